import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import {
  countParameters,
  formatParameterCount,
  memoryStore,
  parseSafetensors,
  readCheckpoint,
  serializeSafetensors,
} from '../src/index.js';
import { nodeDirectory } from '../src/node.js';

const fixtures = path.join(import.meta.dirname, 'fixtures');

describe('files written by Python safetensors', () => {
  const file = parseSafetensors(readFileSync(path.join(fixtures, 'python.safetensors')), 'python.safetensors');
  const expected = JSON.parse(readFileSync(path.join(fixtures, 'python.expected.json'), 'utf8')) as Record<
    string,
    { shape: number[]; values: (number | string)[] }
  >;

  it.each(Object.keys(expected))('%s decodes to the values torch holds', (name) => {
    const tensor = file.tensor(name);
    expect(tensor.shape).toEqual(expected[name]!.shape);
    const want = expected[name]!.values.map(Number);
    // float32 holds every F16 and BF16 value exactly; F64 is rounded to float32
    expect(Array.from(tensor.values)).toEqual(Array.from(Float32Array.from(want)));
  });

  it('keeps the metadata', () => {
    expect(file.metadata).toEqual({ format: 'pt', written_by: 'python' });
  });

  it('re-serialises byte for byte as Python wrote it (F32 tensors)', () => {
    const original = readFileSync(path.join(fixtures, 'sharded', 'model-00001-of-00002.safetensors'));
    const a = parseSafetensors(original).tensor('a');
    const ours = serializeSafetensors({ a: { shape: a.shape, values: a.values as Float32Array } }, { format: 'pt' });
    expect(Buffer.from(ours).equals(original)).toBe(true);
  });
});

describe('readCheckpoint', () => {
  it('follows model.safetensors.index.json across shards', async () => {
    const checkpoint = await readCheckpoint(nodeDirectory(path.join(fixtures, 'sharded')));
    expect(checkpoint.names().sort()).toEqual(['a', 'b', 'c']);
    expect(checkpoint.tensor('b', [4, 3]).values).toEqual(Int32Array.from({ length: 12 }, (_, i) => i - 6));
    expect(checkpoint.tensor('c', []).values[0]).toBe(2.5);
  });

  it('names the file, the tensor and both shapes on a shape mismatch', async () => {
    const checkpoint = await readCheckpoint(nodeDirectory(path.join(fixtures, 'sharded')));
    expect(() => checkpoint.tensor('a', [5, 3])).toThrow(
      /sharded\/model-00001-of-00002\.safetensors: tensor "a" has shape \[3, 5\], expected \[5, 3\]/,
    );
    expect(() => checkpoint.tensor('zzz')).toThrow(
      /model\.safetensors\.index\.json: the checkpoint has no tensor "zzz"/,
    );
  });

  it('reads a single model.safetensors', async () => {
    const store = memoryStore({
      'model.safetensors': serializeSafetensors({ w: { shape: [2], values: Float32Array.of(1, 2) } }),
    });
    expect((await readCheckpoint(store)).tensor('w', [2]).values).toEqual(Float32Array.of(1, 2));
  });

  it('refuses an index whose shard does not hold a listed tensor', async () => {
    const store = memoryStore({
      'model.safetensors.index.json': new TextEncoder().encode(
        JSON.stringify({ weight_map: { w: 's1.safetensors', v: 's1.safetensors' } }),
      ),
      's1.safetensors': serializeSafetensors({ w: { shape: [1], values: Float32Array.of(1) } }),
    });
    await expect(readCheckpoint(store)).rejects.toThrow(
      'memory:/model.safetensors.index.json: lists tensor "v" in s1.safetensors, which does not hold it',
    );
  });

  it('from a directory reads each tensor by its byte range, decoding into a given buffer, the same values', async () => {
    const folder = mkdtempSync(path.join(tmpdir(), 'peft-ranges-'));
    const values = Float32Array.from({ length: 300 }, (_, i) => (i - 150) / 7);
    const file = serializeSafetensors({
      f32: { shape: [20, 15], values },
      bf16: { shape: [300], values, dtype: 'BF16' },
      f16: { shape: [300], values, dtype: 'F16' },
    });
    writeFileSync(path.join(folder, 'model.safetensors'), file);
    const whole = await readCheckpoint(memoryStore({ 'model.safetensors': file }));
    const ranged = await readCheckpoint(nodeDirectory(folder));
    const into = new Float32Array(400).fill(9);
    for (const name of ['f32', 'bf16', 'f16']) {
      const expected = whole.tensor(name).values;
      expect(ranged.tensor(name).values).toEqual(expected);
      const decoded = ranged.tensor(name, undefined, into);
      expect(decoded.values.buffer).toBe(into.buffer);
      expect(decoded.values).toEqual(expected);
    }
    expect(() => ranged.tensor('f32', undefined, new Float32Array(10))).toThrow(
      /tensor "f32": 300 values do not fit a 10-value buffer/,
    );
    ranged.close?.();
    expect(() => ranged.tensor('f32')).toThrow(/model\.safetensors: read after the file was closed/);
  });

  it('names a shard that shrank after it was opened, and refuses FIFOs and devices before reading', async () => {
    const folder = mkdtempSync(path.join(tmpdir(), 'peft-ranges-'));
    writeFileSync(
      path.join(folder, 'model.safetensors'),
      serializeSafetensors({
        a: { shape: [64], values: new Float32Array(64) },
        b: { shape: [64], values: new Float32Array(64) },
      }),
    );
    const checkpoint = await readCheckpoint(nodeDirectory(folder));
    truncateSync(path.join(folder, 'model.safetensors'), 300);
    expect(() => checkpoint.tensor('b')).toThrow(
      /model\.safetensors: 300 bytes now, 640 when it was opened: bytes 384\.\.640 are gone/,
    );
    checkpoint.close?.();

    const fifo = mkdtempSync(path.join(tmpdir(), 'peft-fifo-'));
    execFileSync('mkfifo', [path.join(fifo, 'model.safetensors')]);
    await expect(readCheckpoint(nodeDirectory(fifo))).rejects.toThrow(
      /model\.safetensors: a FIFO, not a regular file \(refused: reading it might never end\)/,
    );
    const device = mkdtempSync(path.join(tmpdir(), 'peft-device-'));
    symlinkSync('/dev/zero', path.join(device, 'model.safetensors'));
    await expect(readCheckpoint(nodeDirectory(device))).rejects.toThrow(
      /model\.safetensors: a device, not a regular file/,
    );
  });

  it('whole-file reads (config.json, adapter files) refuse FIFOs, devices and folders before reading', async () => {
    const folder = mkdtempSync(path.join(tmpdir(), 'peft-special-'));
    execFileSync('mkfifo', [path.join(folder, 'config.json')]);
    symlinkSync('/dev/zero', path.join(folder, 'adapter_model.safetensors'));
    mkdirSync(path.join(folder, 'adapter_config.json'));
    writeFileSync(path.join(folder, 'tokenizer.json'), '{"a": 1}');
    const store = nodeDirectory(folder);
    // a read that hangs fails here instead of hanging the run
    const settled = <T>(promise: Promise<T>): Promise<T> =>
      Promise.race([
        promise,
        new Promise<T>((_, reject) => setTimeout(() => reject(new Error('still reading after 5 s')), 5000)),
      ]);
    await expect(settled(store.read('config.json'))).rejects.toThrow(
      `${path.join(folder, 'config.json')}: a FIFO, not a regular file (refused: reading it might never end)`,
    );
    await expect(settled(store.read('adapter_model.safetensors'))).rejects.toThrow(
      `${path.join(folder, 'adapter_model.safetensors')}: a device, not a regular file`,
    );
    await expect(settled(store.read('adapter_config.json'))).rejects.toThrow(
      `${path.join(folder, 'adapter_config.json')}: a folder, not a file`,
    );
    await expect(store.read('missing.json')).rejects.toThrow(`${path.join(folder, 'missing.json')}: no such file`);
    expect(new TextDecoder().decode(await store.read('tokenizer.json'))).toBe('{"a": 1}');
  });

  it('refuses a folder with no safetensors checkpoint, and never reads pickle', async () => {
    const store = memoryStore({ 'pytorch_model.bin': new Uint8Array(4) });
    await expect(readCheckpoint(store)).rejects.toThrow(/no model\.safetensors or model\.safetensors\.index\.json/);
  });
});

describe('nodeDirectory', () => {
  it('writes atomically and reads back; a missing file is named', async () => {
    const store = nodeDirectory(mkdtempSync(path.join(tmpdir(), 'peft-store-')));
    await store.write('sub/x.bin', Uint8Array.of(1, 2, 3));
    expect(await store.has('sub/x.bin')).toBe(true);
    expect(Array.from(await store.read('sub/x.bin'))).toEqual([1, 2, 3]);
    await expect(store.read('nope.json')).rejects.toThrow(/peft-store-.*\/nope\.json: no such file/);
  });

  it('refuses names that escape the directory', async () => {
    const store = nodeDirectory(mkdtempSync(path.join(tmpdir(), 'peft-store-')));
    await expect(store.write('../evil', Uint8Array.of(1))).rejects.toThrow('file name escapes the directory');
  });
});

describe('parameter counting', () => {
  it('counts and prints as Hugging Face peft does', () => {
    const trainable = countParameters([{ shape: [768, 8] }, { shape: [8, 2304] }]);
    expect(trainable).toBe(24_576);
    expect(formatParameterCount({ trainable: 294_912, all: 124_734_720 })).toBe(
      'trainable params: 294,912 || all params: 124,734,720 || trainable%: 0.2364',
    );
  });
});
