// A Node folder written as one change (FileStore.writeFiles, which saveAdapter uses): the new folder
// is made beside the old one and swapped in by rename. Here, the states a kill -9 can leave at each
// step are built by hand (a dead process's siblings), and what a reader and the next save make of
// them is checked; packages/conformance/test/adapter-kill.test.ts kills real saves.
import { spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  promises as fsPromises,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterEach, describe, expect, it, vi } from 'vitest';

import { nodeDirectory } from '../src/node.js';

const encode = (text: string): Uint8Array => new TextEncoder().encode(text);
const files = (entries: Record<string, string>): Map<string, Uint8Array> =>
  new Map(Object.entries(entries).map(([name, text]) => [name, encode(text)]));

/** A pid that no process has now: a child's, after it exited. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(child.stdout);
}

/** Every file under `folder` with its text, by relative path. */
function contents(folder: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of readdirSync(folder, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const full = path.join(entry.parentPath, entry.name);
    out[path.relative(folder, full)] = readFileSync(full, 'utf8');
  }
  return out;
}

/** A parent folder holding `adapter` with the old adapter and a user's files. */
function oldAdapter(): { parent: string; root: string } {
  const parent = mkdtempSync(path.join(tmpdir(), 'peft-atomic-'));
  const root = path.join(parent, 'adapter');
  mkdirSync(path.join(root, 'other'), { recursive: true });
  writeFileSync(path.join(root, 'adapter_config.json'), 'old config');
  writeFileSync(path.join(root, 'adapter_model.safetensors'), 'old weights');
  writeFileSync(path.join(root, 'other', 'adapter_config.json'), 'other config');
  writeFileSync(path.join(root, 'README.md'), 'notes');
  return { parent, root };
}

/** The name a save by process `pid` gives the `kind` sibling of `adapter` (its suffix is random). */
const sibling = (parent: string, kind: 'saving' | 'replaced', pid: number): string =>
  path.join(parent, `.adapter.${kind}-${pid}-abc123`);

/** A sibling of `adapter` as a killed save by process `pid` leaves it, holding `entries`. */
function leftover(parent: string, kind: 'saving' | 'replaced', pid: number, entries: Record<string, string>): void {
  const folder = sibling(parent, kind, pid);
  mkdirSync(folder);
  for (const [name, text] of Object.entries(entries)) writeFileSync(path.join(folder, name), text);
}

/** `root` holds exactly `expected`, and nothing stands beside it in its parent. */
function expectAlone(root: string, expected: Record<string, string>): void {
  expect(contents(root)).toEqual(expected);
  expect(readdirSync(path.dirname(root))).toEqual(['adapter']);
}

const NEW = files({ 'adapter_config.json': 'new config', 'adapter_model.safetensors': 'new weights' });
const OLD_CONTENTS = {
  'adapter_config.json': 'old config',
  'adapter_model.safetensors': 'old weights',
  'other/adapter_config.json': 'other config',
  'README.md': 'notes',
};
const NEW_CONTENTS = {
  ...OLD_CONTENTS,
  'adapter_config.json': 'new config',
  'adapter_model.safetensors': 'new weights',
};

afterEach(() => {
  vi.restoreAllMocks();
});

describe('writeFiles: a folder replaced as one change', () => {
  it('writes a new folder, and leaves nothing beside it', async () => {
    const parent = mkdtempSync(path.join(tmpdir(), 'peft-atomic-'));
    const root = path.join(parent, 'new', 'adapter');
    await nodeDirectory(root).writeFiles!(files({ 'a.json': 'a', 'sub/b.bin': 'b' }));
    expectAlone(root, { 'a.json': 'a', 'sub/b.bin': 'b' });
  });

  it('replaces the named files and keeps the others (hard links: no copy), nothing left beside it', async () => {
    const { parent, root } = oldAdapter();
    symlinkSync('README.md', path.join(root, 'link'));
    const readme = statSync(path.join(root, 'README.md')).ino;
    await nodeDirectory(root).writeFiles!(
      new Map([...NEW, ['other/adapter_model.safetensors', encode('other weights')]]),
    );
    expect(contents(root)).toEqual({ ...NEW_CONTENTS, 'other/adapter_model.safetensors': 'other weights' });
    expect(statSync(path.join(root, 'README.md')).ino).toBe(readme);
    expect(readFileSync(path.join(root, 'link'), 'utf8')).toBe('notes');
    expect(readdirSync(parent)).toEqual(['adapter']);
  });

  it('a folder reached through a link is replaced where it is: the link stays a link', async () => {
    const { parent, root } = oldAdapter();
    const link = path.join(parent, 'latest');
    symlinkSync('adapter', link);
    await nodeDirectory(link).writeFiles!(NEW);
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(contents(root)).toEqual(NEW_CONTENTS);
    expect(readdirSync(parent).sort()).toEqual(['adapter', 'latest']);
  });

  it('killed while the new folder was written: readers see the old folder; the next save deletes the leftover', async () => {
    const { parent, root } = oldAdapter();
    leftover(parent, 'saving', deadPid(), { 'adapter_model.safetensors': 'new wei' }); // cut short
    const store = nodeDirectory(root);
    expect(new TextDecoder().decode(await store.read('adapter_config.json'))).toBe('old config');
    expect(contents(root)).toEqual(OLD_CONTENTS);
    await store.writeFiles!(NEW);
    expectAlone(root, NEW_CONTENTS);
  });

  it('killed between its two renames: the next open puts the old folder back', async () => {
    const { parent, root } = oldAdapter();
    const pid = deadPid();
    leftover(parent, 'saving', pid, { 'adapter_config.json': 'new config' });
    renameSync(root, sibling(parent, 'replaced', pid));
    const store = nodeDirectory(root);
    expect(contents(root)).toEqual(OLD_CONTENTS);
    await store.writeFiles!(NEW);
    expectAlone(root, NEW_CONTENTS);
  });

  it('killed between its two renames after the store was opened: the next save puts the old folder back first', async () => {
    const { parent, root } = oldAdapter();
    const store = nodeDirectory(root);
    renameSync(root, sibling(parent, 'replaced', deadPid()));
    await store.writeFiles!(files({ 'adapter_config.json': 'new config' }));
    // the user's files come through: the old folder was restored, then replaced
    expectAlone(root, { ...OLD_CONTENTS, 'adapter_config.json': 'new config' });
  });

  it('killed after the swap, before the old folder was deleted: the next save deletes it', async () => {
    const { parent, root } = oldAdapter();
    leftover(parent, 'replaced', deadPid(), { 'adapter_config.json': 'older config' });
    const store = nodeDirectory(root);
    expect(contents(root)).toEqual(OLD_CONTENTS);
    await store.writeFiles!(NEW);
    expectAlone(root, NEW_CONTENTS);
  });

  it("leaves alone the siblings of a live save, and another folder's", async () => {
    const { parent, root } = oldAdapter();
    const dead = deadPid();
    const kept = [
      `.adapter.saving-${process.pid}-live01`,
      `.adapter2.saving-${dead}-abc123`,
      `.adapter.saving-${dead}-abc123.txt`,
    ];
    for (const name of kept) mkdirSync(path.join(parent, name));
    await nodeDirectory(root).writeFiles!(NEW);
    expect(readdirSync(parent).sort()).toEqual([...kept, 'adapter'].sort());
  });

  it('a failed write leaves the old folder as it was, and nothing beside it', async () => {
    const { root } = oldAdapter();
    const open = fsPromises.open;
    vi.spyOn(fsPromises, 'open').mockImplementation(async (file, ...rest) => {
      if (String(file).endsWith('adapter_config.json') && String(file).includes('.saving-'))
        throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
      return open(file, ...rest);
    });
    await expect(nodeDirectory(root).writeFiles!(NEW)).rejects.toThrow('ENOSPC: no space left on device');
    expectAlone(root, OLD_CONTENTS);
  });

  it('a folder that cannot be renamed (a mount point) is written file by file, with a warning', async () => {
    const { root } = oldAdapter();
    const rename = fsPromises.rename;
    vi.spyOn(fsPromises, 'rename').mockImplementation(async (from, to) => {
      if (String(from) === root)
        throw Object.assign(new Error(`EBUSY: resource busy or locked, rename '${root}'`), { code: 'EBUSY' });
      return rename(from, to);
    });
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    await nodeDirectory(root).writeFiles!(NEW);
    expectAlone(root, NEW_CONTENTS);
    expect(warn).toHaveBeenCalledWith(
      `@peft/core: ${root}: files written one by one, not as one change: cannot rename ${root} (EBUSY: resource busy or locked, rename '${root}')`,
    );
  });

  it('a second save into the folder while one is under way is refused, naming the holder; the first ends intact', async () => {
    const { parent, root } = oldAdapter();
    const store = nodeDirectory(root);
    const first = store.writeFiles!(NEW);
    await expect(store.writeFiles!(files({ 'adapter_config.json': 'second config' }))).rejects.toThrow(
      `${root}: another save into this folder is in progress (in this process, lock ${path.join(parent, '.adapter.lock')}); wait for it to end`,
    );
    await first;
    expectAlone(root, NEW_CONTENTS);
    // the first save still comes first when the second's file system calls return sooner (CI under load)
    const mkdir = fsPromises.mkdir;
    let calls = 0;
    vi.spyOn(fsPromises, 'mkdir').mockImplementation(async (...args: Parameters<typeof mkdir>) => {
      if (calls++ === 0) await new Promise((resolve) => setTimeout(resolve, 50));
      return mkdir(...args);
    });
    const slow = store.writeFiles!(NEW);
    await expect(store.writeFiles!(files({ 'adapter_config.json': 'second config' }))).rejects.toThrow(
      'another save into this folder is in progress (in this process',
    );
    await slow;
    vi.restoreAllMocks();
    expectAlone(root, NEW_CONTENTS);
    // and the folder is free again
    await store.writeFiles!(files({ 'adapter_config.json': 'third config' }));
    expect(contents(root)['adapter_config.json']).toBe('third config');
  });

  it("a lock of another live process is refused with its pid, and left in place; a dead process's is taken over", async () => {
    const { parent, root } = oldAdapter();
    const lock = path.join(parent, '.adapter.lock');
    writeFileSync(lock, `${process.ppid}\n`);
    await expect(nodeDirectory(root).writeFiles!(NEW)).rejects.toThrow(
      `${root}: another save into this folder is in progress (process ${process.ppid}, lock ${lock})`,
    );
    expect(readFileSync(lock, 'utf8')).toBe(`${process.ppid}\n`);
    expect(contents(root)).toEqual(OLD_CONTENTS);
    expect(readdirSync(parent).sort()).toEqual(['.adapter.lock', 'adapter']);
    const dead = deadPid();
    writeFileSync(lock, `${dead}\n`);
    writeFileSync(path.join(parent, `.adapter.locking-${dead}-abc123`), `${dead}\n`);
    await nodeDirectory(root).writeFiles!(NEW);
    expectAlone(root, NEW_CONTENTS);
  });

  it('two processes saving into one folder at once: one wins or they take turns, never a mixed folder', async () => {
    const { parent, root } = oldAdapter();
    const script = (tag: string): string =>
      `import('${path.resolve(import.meta.dirname, '../src/node.ts')}').then(async ({ nodeDirectory }) => {` +
      `const store = nodeDirectory(${JSON.stringify(root)}); let saved = 0, refused = 0;` +
      `for (let i = 0; i < 20; i++) { try { await store.writeFiles(new Map([['adapter_config.json', new TextEncoder().encode('${tag} ' + i)], ['adapter_model.safetensors', new TextEncoder().encode('${tag} ' + i)]])); saved++; }` +
      `catch (e) { if (!/another save into this folder is in progress \\(process \\d+/.test(e.message)) throw e; refused++; } }` +
      `console.log(JSON.stringify({ saved, refused })); });`;
    const run = (tag: string) =>
      new Promise<{ saved: number; refused: number }>((resolve, reject) => {
        const child = spawn(process.execPath, ['--import', 'tsx', '-e', script(tag)], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        let err = '';
        child.stdout.on('data', (chunk) => (out += chunk));
        child.stderr.on('data', (chunk) => (err += chunk));
        child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim())) : reject(new Error(err))));
      });
    const [a, b] = await Promise.all([run('a'), run('b')]);
    console.log(
      `[lock] process a: ${a.saved} saved, ${a.refused} refused; process b: ${b.saved} saved, ${b.refused} refused`,
    );
    expect(a.saved + a.refused).toBe(20);
    expect(b.saved + b.refused).toBe(20);
    expect(a.saved + b.saved).toBeGreaterThan(0);
    const after = contents(root);
    // the two files come from one save
    expect(after['adapter_config.json']).toBe(after['adapter_model.safetensors']);
    expect(readdirSync(parent)).toEqual(['adapter']);
  }, 60_000);

  it('refuses a name that leaves the folder, before writing anything', async () => {
    const { parent, root } = oldAdapter();
    await expect(nodeDirectory(root).writeFiles!(files({ '../escape.json': 'x' }))).rejects.toThrow(
      `../escape.json: file name escapes the directory ${root}`,
    );
    expect(existsSync(path.join(parent, 'escape.json'))).toBe(false);
    expect(contents(root)).toEqual(OLD_CONTENTS);
  });
});
