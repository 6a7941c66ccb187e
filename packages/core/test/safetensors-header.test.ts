// The safetensors header is read as a stream of entries, each checked as it comes (issue 23: a
// 94 MB header of 1.4M entries failed after 27 s at 1.7 GB, JSON.parse first, checks after).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { openSafetensors, parseSafetensors, serializeSafetensors } from '../src/index.js';
import { nodeDirectory } from '../src/node.js';

function file(headerText: string, dataBytes: number): Uint8Array {
  const header = new TextEncoder().encode(headerText);
  const out = new Uint8Array(8 + header.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(header.length), true);
  out.set(header, 8);
  return out;
}

const entry = (begin: number, end: number) =>
  `{"dtype":"U8","shape":[${end - begin}],"data_offsets":[${begin},${end}]}`;

describe('the safetensors header', () => {
  it('fails at the first entry past the data, before the rest of the header is read', () => {
    const bytes = file(`{"a":${entry(0, 4)},"b":${entry(4, 16)},"c": this is not JSON`, 8);
    expect(() => parseSafetensors(bytes, 'h.safetensors')).toThrow(
      'h.safetensors: tensor "b": data_offsets [4, 16] run past the end of the data (8 bytes; file truncated?)',
    );
  });

  it('fails as soon as the entries claim more bytes than the data has: an overlap, named', () => {
    const bytes = file(`{"a":${entry(0, 8)},"b":${entry(4, 12)},"c": this is not JSON`, 12);
    expect(() => parseSafetensors(bytes, 'h.safetensors')).toThrow(
      'h.safetensors: tensor "b" overlaps tensor "a" in the data section',
    );
  });

  it('refuses a tensor listed twice (JSON.parse would keep the last silently)', () => {
    expect(() => parseSafetensors(file(`{"a":${entry(0, 4)},"a":${entry(0, 4)}}`, 4), 'h.safetensors')).toThrow(
      'h.safetensors: tensor "a" is listed twice in the header',
    );
    expect(() =>
      parseSafetensors(file('{"__metadata__":{"format":"pt"},"__metadata__":{}}', 0), 'h.safetensors'),
    ).toThrow('h.safetensors: __metadata__ is given twice');
  });

  it('keeps names that are keys of Object.prototype as names', () => {
    const parsed = parseSafetensors(
      file(`{"__proto__":${entry(0, 2)},"constructor":${entry(2, 3)},"__metadata__":{"__proto__":"x"}}`, 3),
      'h.safetensors',
    );
    expect([...parsed.entries.keys()]).toEqual(['__proto__', 'constructor']);
    expect(Object.getOwnPropertyDescriptor(parsed.metadata, '__proto__')?.value).toBe('x');
    expect(Object.getPrototypeOf(parsed.metadata)).toBe(Object.prototype);
  });

  it('cuts a huge value short in a message', () => {
    const shape = `[${Array.from({ length: 100_000 }, () => -1).join(',')}]`;
    let message = '';
    try {
      parseSafetensors(file(`{"w":{"dtype":"F32","shape":${shape},"data_offsets":[0,4]}}`, 4), 'h.safetensors');
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(
      /^h\.safetensors: tensor "w": shape must be a list of non-negative integers, got \[-1,-1,.*\.\.\.$/,
    );
    expect(message.length).toBeLessThan(200);
  });

  it('a header of 400,000 entries with a bad last one: refused with little memory beyond the header', () => {
    const count = 400_000;
    const parts: string[] = [];
    for (let i = 0; i < count; i++) parts.push(`"h.${i}.w":${entry(i, i + 1)}`);
    const header = new TextEncoder().encode(`{${parts.join(',')}}`);
    parts.length = 0;
    const length = header.length;
    const bytes = new Uint8Array(8 + length + count - 1);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(length), true);
    bytes.set(header, 8);
    const peak = process.resourceUsage().maxRSS * 1024;
    const started = performance.now();
    expect(() => parseSafetensors(bytes, 'h.safetensors')).toThrow(
      `h.safetensors: tensor "h.${count - 1}.w": data_offsets [${count - 1}, ${count}] run past the end of the data`,
    );
    const grown = process.resourceUsage().maxRSS * 1024 - peak;
    console.log(
      `[safetensors header] ${(length / 2 ** 20).toFixed(1)} MB header of ${count} entries, bad last: refused in ` +
        `${((performance.now() - started) / 1000).toFixed(2)} s, peak RSS +${(grown / 2 ** 20).toFixed(0)} MB`,
    );
    // JSON.parse and the entries kept: ~5x the header (10x at 1.4M entries); the offsets only: under 2x
    expect(grown).toBeLessThan(3 * length);
  });
});

function sameValues(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

describe('a file read by ranges', () => {
  it('gives a tensor past 64 MB a buffer of its own, given back when the next tensor is read', async () => {
    const big = new Float32Array(17 * 2 ** 20).map((_, i) => i % 251);
    const folder = mkdtempSync(path.join(tmpdir(), 'peft-large-'));
    try {
      writeFileSync(
        path.join(folder, 'model.safetensors'),
        serializeSafetensors({
          big: { shape: [big.length], values: big },
          small: { shape: [3], values: Float32Array.of(1, 2, 3) },
        }),
      );
      const file = await nodeDirectory(folder).openRanges!('model.safetensors');
      try {
        const parsed = openSafetensors(file, 'large.safetensors');
        const lent = parsed.bytes('big').bytes;
        expect(lent.byteLength).toBe(big.byteLength);
        // element by element: toEqual on 17M values takes minutes and gigabytes
        expect(sameValues(new Float32Array(lent.slice().buffer), big)).toBe(true);
        expect(Array.from(parsed.tensor('small', new Float32Array(3)).values)).toEqual([1, 2, 3]);
        // released, not left to the collector
        expect(lent.byteLength).toBe(0);
        expect(sameValues(parsed.tensor('big', new Float32Array(big.length)).values as Float32Array, big)).toBe(true);
      } finally {
        file.close();
      }
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });
});
