// kill -9 during saveAdapter (issue 23): a child process saves two versions of a real LoRA adapter
// over one folder in turn and is killed at a random moment, 20 times. After every kill the folder
// holds one whole version, the old or the new, byte for byte, and loads with that version's alpha:
// never a mix, never nothing. The children run the sources (tsx with the workspace's paths), as the
// tests do.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { PeftModel, getPeftModel, memoryStore } from '@peft/core';
import { LoraConfig } from '@peft/lora';
import { MODEL_FIXTURES, fixtureHosts } from '@peft/test-helpers';
import { describe, expect, it } from 'vitest';

import { killLoopAdapter, type Version } from './children/versions.js';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const CHILD = path.join(import.meta.dirname, 'children/save-loop.ts');
const FIXTURE = path.join(MODEL_FIXTURES, 'gpt2-tied');
const KILLS = 20;
/** Children run side by side, each over its own folder. */
const LANES = 2;
/** The kill comes this long after the child is ready (it saves all the time from then on). */
const MAX_DELAY_MS = 150;

const loadHost = fixtureHosts();

type Found = Version | 'mixed' | 'lost';

interface Outcome {
  found: Found;
  /** The version the folder held before the save the kill cut (the last one the child finished). */
  old: Version;
  /** The version the child was saving when killed, if it was saving. */
  inFlight: Version | null;
  /** Sibling folders of the interrupted save, left beside the adapter. */
  leftovers: string[];
  /** The folder loaded with the alpha of the version it holds. */
  loads: boolean;
}

/** A tsconfig that sends tsx to the sources: `@peft/<name>` -> packages/<name>/src/index.ts. */
function sourcesTsconfig(): string {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'peft-kill-tsx-')), 'tsconfig.json');
  const compilerOptions = { baseUrl: ROOT, paths: { '@peft/*': ['packages/*/src/index.ts'] } };
  writeFileSync(file, JSON.stringify({ compilerOptions }));
  return file;
}

/** Starts a save loop over `folder` and kills it with SIGKILL at a random moment of its saves. */
function killDuringSaves(
  folder: string,
  first: Version,
  tsconfig: string,
): Promise<{ saved: Version[]; inFlight: Version | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, folder, FIXTURE, first], {
      cwd: ROOT,
      env: { ...process.env, TSX_TSCONFIG_PATH: tsconfig },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    let errors = '';
    child.stderr.on('data', (chunk: Buffer) => {
      errors += chunk.toString();
    });
    child.stdout.on('data', (chunk: Buffer) => {
      const ready = !output.includes('ready\n');
      output += chunk.toString();
      if (ready && output.includes('ready\n')) setTimeout(() => child.kill('SIGKILL'), Math.random() * MAX_DELAY_MS);
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL') {
        reject(new Error(`the save loop exited (${code ?? signal}) before it was killed:\n${output}${errors}`));
        return;
      }
      const lines = output.split('\n');
      const saved = lines.filter((l) => l.startsWith('saved ')).map((l) => l.slice(6) as Version);
      const last = lines.filter((l) => l.startsWith('sav')).at(-1);
      resolve({ saved, inFlight: last?.startsWith('saving ') ? (last.slice(7) as Version) : null });
    });
  });
}

describe('kill -9 during saveAdapter', () => {
  it(`${KILLS} kills at random moments: every time one whole adapter, the old or the new`, {
    timeout: 180_000,
  }, async () => {
    // what each version's files are, byte for byte (the children save the same, from the same code)
    const host = await loadHost('gpt2-tied');
    const expected = new Map<Version, Map<string, Uint8Array>>();
    for (const version of ['A', 'B'] as const) {
      const model = getPeftModel(host, new LoraConfig(killLoopAdapter(version)));
      const store = memoryStore();
      await model.saveAdapter(store);
      expected.set(version, store.files);
      model.dispose();
    }
    const tsconfig = sourcesTsconfig();
    const base = mkdtempSync(path.join(tmpdir(), 'peft-kill-'));
    const classify = (folder: string): Found => {
      let files: Map<string, Uint8Array>;
      try {
        files = new Map(
          readdirSync(folder).map((name) => [name, new Uint8Array(readFileSync(path.join(folder, name)))] as const),
        );
      } catch {
        return 'lost';
      }
      for (const [version, want] of expected) {
        const same =
          files.size === want.size &&
          [...want].every(([name, bytes]) => Buffer.from(bytes).equals(Buffer.from(files.get(name) ?? [])));
        if (same) return version;
      }
      return files.size === 0 ? 'lost' : 'mixed';
    };

    const lane = async (index: number, kills: number): Promise<Outcome[]> => {
      // a host of its own: the lanes load and save at the same time
      const host = await loadHost('gpt2-tied');
      const parent = path.join(base, `lane-${index}`);
      const folder = path.join(parent, 'adapter');
      const first = getPeftModel(host, new LoraConfig(killLoopAdapter('A')));
      await first.saveAdapter(folder);
      first.dispose();
      let current: Version = 'A';
      const outcomes: Outcome[] = [];
      for (let kill = 0; kill < kills; kill++) {
        const next: Version = current === 'A' ? 'B' : 'A';
        const { saved, inFlight } = await killDuringSaves(folder, next, tsconfig);
        const old = saved.at(-1) ?? current;
        const leftovers = readdirSync(parent).filter((name) => name !== 'adapter');
        // loading opens the folder first: a save cut between its renames is put back here
        let loads = false;
        let found: Found = 'lost';
        try {
          const model = await PeftModel.fromPretrained(host, folder);
          found = classify(folder);
          loads =
            found !== 'lost' &&
            found !== 'mixed' &&
            (model.config() as LoraConfig).loraAlpha === killLoopAdapter(found).loraAlpha;
          model.dispose();
        } catch {
          found = classify(folder);
        }
        outcomes.push({ found, old, inFlight, leftovers, loads });
        if (found === 'A' || found === 'B') current = found;
      }
      return outcomes;
    };
    const perLane = Math.ceil(KILLS / LANES);
    const outcomes = (await Promise.all(Array.from({ length: LANES }, (_, i) => lane(i, perLane)))).flat();

    const count = (test: (o: Outcome) => boolean): number => outcomes.filter(test).length;
    const summary = {
      kills: outcomes.length,
      inSave: count((o) => o.inFlight !== null),
      oldIntact: count((o) => o.found === o.old),
      newComplete: count((o) => o.found !== o.old && o.found === o.inFlight),
      mixed: count((o) => o.found === 'mixed'),
      lost: count((o) => o.found === 'lost'),
      loaded: count((o) => o.loads),
      // a kill while the new folder was written leaves `.adapter.saving-*`; between the renames, or
      // before the old folder was deleted, `.adapter.replaced-*`
      leftBeside: count((o) => o.leftovers.length > 0),
      leftReplaced: count((o) => o.leftovers.some((name) => name.includes('.replaced-'))),
    };
    console.log(`[kill -9 during saveAdapter] ${JSON.stringify(summary)}`);
    expect(summary.kills).toBe(KILLS);
    expect(summary.mixed, 'folders with one version config and the other weights').toBe(0);
    expect(summary.lost, 'folders with no adapter').toBe(0);
    expect(summary.oldIntact + summary.newComplete, 'the old version or the one being saved').toBe(KILLS);
    expect(summary.loaded, 'loads with the alpha of the version it holds').toBe(KILLS);
    // what the killed saves left beside the folders goes with the next save
    for (let i = 0; i < LANES; i++) {
      const parent = path.join(base, `lane-${i}`);
      const model = getPeftModel(host, new LoraConfig(killLoopAdapter('A')));
      await model.saveAdapter(path.join(parent, 'adapter'));
      model.dispose();
      expect(readdirSync(parent)).toEqual(['adapter']);
    }
  });
});
