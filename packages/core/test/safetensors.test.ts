import { describe, expect, it } from 'vitest';

import {
  MAX_HEADER_BYTES,
  bfloat16ToFloat32,
  float16ToFloat32,
  float32ToBfloat16,
  float32ToFloat16,
  parseSafetensors,
  serializeSafetensors,
} from '../src/index.js';

/** A file with a hand-written header and `dataBytes` zero bytes of data. */
function rawFile(header: unknown, dataBytes: number, headerText = JSON.stringify(header)): Uint8Array {
  const headerBytes = new TextEncoder().encode(headerText);
  const out = new Uint8Array(8 + headerBytes.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  return out;
}

describe('float16 and bfloat16', () => {
  const samples = Float32Array.from([
    0,
    -0,
    1,
    -2.5,
    65504,
    1e-7,
    6.103515625e-5,
    2 ** -24,
    0.1,
    Math.PI,
    -1e5,
    Infinity,
    -Infinity,
    NaN,
  ]);

  it('decodes known half-precision bit patterns exactly', () => {
    const half = Uint16Array.from([0x3c00, 0xc000, 0x7bff, 0x0001, 0x0400, 0x7c00, 0xfc00, 0x8000]);
    expect(Array.from(float16ToFloat32(half))).toEqual([
      1,
      -2,
      65504,
      2 ** -24,
      6.103515625e-5,
      Infinity,
      -Infinity,
      -0,
    ]);
    expect(float16ToFloat32(Uint16Array.from([0x7e00]))[0]).toBeNaN();
  });

  it('encodes with round-to-nearest-even, overflow to infinity', () => {
    const encoded = float32ToFloat16(samples);
    expect(Array.from(encoded.slice(0, 5))).toEqual([0x0000, 0x8000, 0x3c00, 0xc100, 0x7bff]);
    expect(encoded[9]).toBe(0x4248); // π -> 3.140625
    expect(encoded[10]).toBe(0xfc00); // -1e5 overflows
    expect(float32ToFloat16(Float32Array.from([1 + 2 ** -11]))[0]).toBe(0x3c00); // tie -> even
    expect(float32ToFloat16(Float32Array.from([1 + 3 * 2 ** -11]))[0]).toBe(0x3c02); // tie -> even (up)
    expect(float32ToFloat16(Float32Array.from([NaN]))[0]! & 0x7c00).toBe(0x7c00);
  });

  it('round-trips every finite half value', () => {
    const all = new Uint16Array(0x7c00);
    for (let i = 0; i < all.length; i++) all[i] = i;
    expect(Array.from(float32ToFloat16(float16ToFloat32(all)))).toEqual(Array.from(all));
  });

  it('bfloat16 keeps the top 16 bits, rounding to nearest even', () => {
    const decoded = bfloat16ToFloat32(float32ToBfloat16(samples));
    for (let i = 0; i < samples.length; i++) {
      const x = samples[i]!;
      if (Number.isNaN(x)) expect(decoded[i]).toBeNaN();
      else if (Number.isFinite(x)) expect(Math.abs(decoded[i]! - x)).toBeLessThanOrEqual(Math.abs(x) * 2 ** -8);
      else expect(decoded[i]).toBe(x);
    }
    expect(float32ToBfloat16(Float32Array.from([1 + 2 ** -8]))[0]).toBe(0x3f80); // tie -> even
  });
});

describe('serializeSafetensors / parseSafetensors', () => {
  it('round-trips F32 exactly and F16/BF16 to their precision, with metadata', () => {
    const values = Float32Array.from({ length: 12 }, (_, i) => (i - 5) / 7);
    const bytes = serializeSafetensors(
      {
        'b.weight': { shape: [3, 4], values },
        'a.half': { shape: [12], values, dtype: 'F16' },
        'c.brain': { shape: [2, 6], values, dtype: 'BF16' },
      },
      { format: 'pt' },
    );
    const file = parseSafetensors(bytes, 'round-trip.safetensors');
    expect(file.metadata).toEqual({ format: 'pt' });
    expect([...file.entries.keys()].sort()).toEqual(['a.half', 'b.weight', 'c.brain']);
    const f32 = file.tensor('b.weight');
    expect(f32).toMatchObject({ dtype: 'float32', shape: [3, 4] });
    expect(Array.from(f32.values)).toEqual(Array.from(values));
    const f16 = file.tensor('a.half').values;
    const bf16 = file.tensor('c.brain').values;
    values.forEach((v, i) => {
      expect(Math.abs(f16[i]! - v)).toBeLessThanOrEqual(2 ** -11);
      expect(Math.abs(bf16[i]! - v)).toBeLessThanOrEqual(2 ** -8);
    });
  });

  it('writes the layout Python safetensors writes: names sorted, header padded to 8 bytes', () => {
    const bytes = serializeSafetensors({
      z: { shape: [1], values: Float32Array.of(1) },
      a: { shape: [1], values: Float32Array.of(2) },
    });
    const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(headerLength % 8).toBe(0);
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
    expect(header).toEqual({
      a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
      z: { dtype: 'F32', shape: [1], data_offsets: [4, 8] },
    });
  });

  it('reads integer tensors as int32 and refuses values that do not fit', () => {
    const ok = rawFile({ ids: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, 16);
    const view = new DataView(ok.buffer, ok.length - 16);
    view.setBigInt64(0, 7n, true);
    view.setBigInt64(8, -3n, true);
    expect(parseSafetensors(ok, 'ids.safetensors').tensor('ids')).toEqual({
      dtype: 'int32',
      shape: [2],
      values: Int32Array.of(7, -3),
    });
    view.setBigInt64(8, 2n ** 40n, true);
    expect(() => parseSafetensors(ok, 'ids.safetensors').tensor('ids')).toThrow(
      'ids.safetensors: tensor "ids": I64 value 1099511627776 at index 1 does not fit in int32',
    );
  });
});

describe('parseSafetensors refuses bad files with the file and the tensor named', () => {
  const entry = (dtype: string, shape: number[], data_offsets: number[]) => ({ dtype, shape, data_offsets });

  it.each([
    [
      'shorter than 8 bytes',
      new Uint8Array(5),
      'bad.safetensors: file is 5 bytes, shorter than the 8-byte header length',
    ],
    [
      'a header length past the end (truncated)',
      (() => {
        const f = rawFile({}, 0);
        new DataView(f.buffer).setBigUint64(0, 1000n, true);
        return f;
      })(),
      'header length 1000 runs past the end of the 10-byte file (truncated?)',
    ],
    [
      'an oversized header length',
      (() => {
        const f = rawFile({}, 0);
        new DataView(f.buffer).setBigUint64(0, 2n ** 60n, true);
        return f;
      })(),
      `exceeds the ${MAX_HEADER_BYTES}-byte limit`,
    ],
    ['a header that is not JSON', rawFile(null, 0, '{"a": '), 'header is not valid UTF-8 JSON'],
    ['a header that is not an object', rawFile([1, 2], 0), 'header is not a JSON object'],
    ['an unknown dtype', rawFile({ w: entry('F8_E4M3', [2], [0, 2]) }, 2), 'tensor "w": unknown dtype "F8_E4M3"'],
    [
      'a bad shape',
      rawFile({ w: entry('F32', [-1], [0, 4]) }, 4),
      'tensor "w": shape must be a list of non-negative integers',
    ],
    [
      'offsets outside the file',
      rawFile({ w: entry('F32', [4], [0, 16]) }, 8),
      'tensor "w": data_offsets [0, 16] run past the end of the data (8 bytes',
    ],
    ['reversed offsets', rawFile({ w: entry('F32', [0], [8, 4]) }, 8), 'tensor "w": data_offsets must be [begin, end]'],
    [
      'a size that does not match the shape',
      rawFile({ w: entry('F32', [3], [0, 8]) }, 8),
      'tensor "w": F32 [3] needs 12 bytes, data_offsets give 8',
    ],
    [
      'overlapping tensors',
      rawFile({ a: entry('F32', [2], [0, 8]), b: entry('F32', [2], [4, 12]) }, 12),
      'tensor "b" overlaps tensor "a"',
    ],
    [
      'a hole in the data',
      rawFile({ a: entry('F32', [1], [4, 8]) }, 8),
      'bytes 0..4 of the data section belong to no tensor',
    ],
    ['trailing bytes', rawFile({ a: entry('F32', [1], [0, 4]) }, 8), 'has 4 bytes after the last tensor'],
    ['bad metadata', rawFile({ __metadata__: { format: 1 } }, 0), '__metadata__ must map strings to strings'],
  ])('%s', (_, bytes, message) => {
    expect(() => parseSafetensors(bytes as Uint8Array, 'bad.safetensors')).toThrow(message);
    expect(() => parseSafetensors(bytes as Uint8Array, 'bad.safetensors')).toThrow(/^bad\.safetensors: /);
  });

  it('a missing tensor', () => {
    const file = parseSafetensors(
      serializeSafetensors({ a: { shape: [1], values: Float32Array.of(1) } }),
      'm.safetensors',
    );
    expect(() => file.tensor('b')).toThrow('m.safetensors: no tensor "b"');
  });
});
