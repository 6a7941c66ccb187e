// AdapterHub keeps an adapter's name in its files (`save_adapter(dir, "my_task")`: tensor keys
// `...adapters.my_task...` and "name": "my_task"). The fixture gpt2-my-task was saved so by AdapterHub
// itself (oracle/make_adapter_fixtures.py); its logits are checked against AdapterHub's in parity.test.ts.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { PeftModel, memoryStore, parseSafetensors, type PeftForwardInput } from '@peft/core';
import type { TransformerHost } from '@peft/models';
import { fixtureHosts, logits as logitsOf, maxDiff } from '@peft/test-helpers';
import { afterEach, describe, expect, it } from 'vitest';

import { BottleneckConfig } from '../src/index.js';

const SAVED = path.join(import.meta.dirname, 'fixtures/gpt2-my-task/adapter');
const savedConfig = JSON.parse(readFileSync(path.join(SAVED, 'adapter_config.json'), 'utf8')) as Record<
  string,
  unknown
>;
const savedBytes = readFileSync(path.join(SAVED, 'adapter.safetensors'));
const input = {
  inputIds: [
    [3, 5, 7, 11, 13, 17],
    [2, 4, 6, 8, 10, 12],
  ],
};

// registered before the cleanups: vitest runs after-hooks in reverse, so models go before their host
const loadHost = fixtureHosts();
const gpt2 = (): Promise<TransformerHost> => loadHost('gpt2-tied');
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});
function temporaryDirectory(): string {
  const directory = mkdtempSync(path.join(tmpdir(), 'peft-adapter-name-'));
  cleanups.push(() => rmSync(directory, { recursive: true, force: true }));
  return directory;
}
const logits = (model: PeftModel, extra: Partial<PeftForwardInput> = {}): Float32Array =>
  logitsOf(model, { ...input, ...extra });
/** A safetensors file's values by key (renamed by `rename`). */
function tensorsByKey(bytes: Uint8Array, rename: (key: string) => string = (key) => key): Map<string, number[]> {
  const file = parseSafetensors(bytes);
  return new Map([...file.entries.keys()].map((key) => [rename(key), Array.from(file.tensor(key).values)]));
}

describe('an AdapterHub adapter saved under its own name ("my_task")', () => {
  it('loads under that name, and saves back keys, "name" and config as AdapterHub wrote them, in the sub-folder my_task/', async () => {
    const host = await gpt2();
    const model = await PeftModel.fromPretrained(host, SAVED);
    expect(model.adapterNames).toEqual(['my_task']);
    expect(model.activeAdapter).toBe('my_task');
    const loaded = logits(model);

    const out = temporaryDirectory();
    await model.saveAdapter(out);
    const folder = path.join(out, 'my_task'); // not 'default': a sub-folder of its name, as peft and AdapterHub's save_all_adapters do
    const config = JSON.parse(readFileSync(path.join(folder, 'adapter_config.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    expect(config.name).toBe('my_task');
    expect(config.config).toEqual(savedConfig.config);
    expect(tensorsByKey(readFileSync(path.join(folder, 'adapter.safetensors')))).toEqual(tensorsByKey(savedBytes));
    model.dispose(); // one PeftModel at a time on a host: both would add their adapter

    const again = await PeftModel.fromPretrained(host, folder);
    cleanups.push(() => again.dispose());
    expect(again.activeAdapter).toBe('my_task');
    expect(maxDiff(logits(again), loaded)).toBe(0);
  });

  it('takes the adapterName it is given instead, as load_adapter(load_as=...) does, and saves under it', async () => {
    const host = await gpt2();
    const model = await PeftModel.fromPretrained(host, SAVED);
    const asSaved = logits(model);
    model.dispose();

    const renamed = await PeftModel.fromPretrained(host, SAVED, { adapterName: 'sentiment' });
    cleanups.push(() => renamed.dispose());
    expect(renamed.adapterNames).toEqual(['sentiment']);
    expect(maxDiff(logits(renamed), asSaved)).toBe(0);
    const store = memoryStore({}, 'mem:/out');
    await renamed.saveAdapter(store);
    expect(JSON.parse(new TextDecoder().decode(store.files.get('sentiment/adapter_config.json')))).toMatchObject({
      name: 'sentiment',
    });
    expect(tensorsByKey(store.files.get('sentiment/adapter.safetensors')!)).toEqual(
      tensorsByKey(savedBytes, (key) => key.replace('.adapters.my_task.', '.adapters.sentiment.')),
    );
  });

  it('loads twice into one model under two names, each serving its own samples of a mixed batch', async () => {
    const host = await gpt2();
    const model = await PeftModel.fromPretrained(host, SAVED);
    cleanups.push(() => model.dispose());
    await expect(model.loadAdapter(SAVED)).rejects.toThrow('an adapter "my_task" already exists');
    expect(await model.loadAdapter(SAVED, 'copy')).toBe('copy');
    expect(model.adapterNames).toEqual(['my_task', 'copy']);
    const single = logits(model);
    const base = model.withAdapterDisabled(() => logits(model));
    expect(maxDiff(single, base)).toBeGreaterThan(1e-2); // the adapter matters
    expect(maxDiff(logits(model, { adapterNames: ['copy', 'my_task'] }), single)).toBeLessThan(1e-5);
    const width = single.length / 2;
    const mixed = logits(model, { adapterNames: ['copy', '__base__'] });
    expect(maxDiff(mixed.subarray(0, width), single.subarray(0, width))).toBeLessThan(1e-5);
    expect(maxDiff(mixed.subarray(width), base.subarray(width))).toBeLessThan(1e-5);
  });

  it('refuses tensors saved under another name than adapter_config.json says, naming the file and both names', async () => {
    const host = await gpt2();
    const mislabelled = memoryStore(
      {
        'adapter_config.json': new TextEncoder().encode(JSON.stringify({ ...savedConfig, name: 'other_task' })),
        'adapter.safetensors': savedBytes,
      },
      'mem:/mislabelled',
    );
    const firstKey = [...parseSafetensors(savedBytes).entries.keys()][0]!;
    await expect(PeftModel.fromPretrained(host, mislabelled)).rejects.toThrow(
      `mem:/mislabelled/adapter.safetensors: tensor "${firstKey}" is saved under the adapter name "my_task", but adapter_config.json's "name" is "other_task"`,
    );
    await expect(PeftModel.fromPretrained(host, mislabelled, { adapterName: 'my_task' })).rejects.toThrow(
      'is saved under the adapter name "my_task", but adapter_config.json\'s "name" is "other_task"',
    );
  });

  it('reads "name" into savedName; a bare BnConfig has none; a name that is not a string is refused', () => {
    expect(BottleneckConfig.fromJson(savedConfig, 'adapter_config.json').savedName).toBe('my_task');
    expect(
      BottleneckConfig.fromJson(savedConfig.config as Record<string, unknown>, 'config.json').savedName,
    ).toBeNull();
    expect(() => BottleneckConfig.fromJson({ ...savedConfig, name: 7 }, 'x.json')).toThrow(
      'x.json: "name": expected the adapter\'s name (a non-empty string), got 7',
    );
  });
});
