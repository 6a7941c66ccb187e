// Property-based tests of the safetensors parser (issue 23): hostile bytes, headers and files, over
// memory (parseSafetensors) and over a file read by ranges (openSafetensors). Whatever comes in,
// the result is a file whose entries tile the data, or an Error that names the file; never another
// throw (a RangeError from an allocation sized by the header, a stack overflow), never a hang.
// The header's JSON reader is checked against JSON.parse on generated and mutated JSON.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';

import { SAFETENSORS_DTYPES, openSafetensors, parseSafetensors, type SafetensorsFile } from '../src/index.js';
import { nodeDirectory } from '../src/node.js';

const SOURCE = 'fuzz.safetensors';
const encoder = new TextEncoder();
/** Cases per property: the suite's total is logged at the end. */
const runs = { bytes: 2000, json: 2000, files: 2000, big: 1000, ranges: 300 };

/** A file of a header text and `data` bytes; the length field may be given another value. */
function file(headerText: string, data: Uint8Array, headerLength?: bigint): Uint8Array {
  const header = encoder.encode(headerText);
  const out = new Uint8Array(8 + header.length + data.length);
  new DataView(out.buffer).setBigUint64(0, headerLength ?? BigInt(header.length), true);
  out.set(header, 8);
  out.set(data, 8 + header.length);
  return out;
}

/** Parses, and checks what came back: an Error naming the file, or entries that tile the data. */
function outcome(parse: () => SafetensorsFile, bytes: number): string {
  let parsed: SafetensorsFile;
  try {
    parsed = parse();
  } catch (error) {
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).constructor).toBe(Error);
    expect((error as Error).message.startsWith(`${SOURCE}: `), (error as Error).message).toBe(true);
    return (error as Error).message;
  }
  let covered = 0;
  for (const [name, entry] of parsed.entries) {
    covered += entry.end - entry.begin;
    try {
      const decoded = parsed.tensor(name);
      // what a tensor decodes to is at most 4 bytes a value: I8/U8/BOOL become int32
      expect(decoded.values.byteLength).toBeLessThanOrEqual(4 * (entry.end - entry.begin));
      expect(decoded.values.length).toBe(entry.shape.reduce((a, b) => a * b, 1));
    } catch (error) {
      expect((error as Error).message).toMatch(/^fuzz\.safetensors: tensor ".*": I64 value .* does not fit in int32$/s);
    }
  }
  expect(covered).toBeLessThanOrEqual(bytes);
  return `ok ${[...parsed.entries.keys()].join('|')} ${JSON.stringify(parsed.metadata)}`;
}

const count = { cases: 0 };
const started = performance.now();
afterAll(() => {
  console.log(
    `[safetensors fuzz] ${count.cases} generated cases in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
});

// strings with what JSON must escape, lone surrogates, and keys of Object.prototype
const text = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c)),
  fc.constantFrom('__proto__', 'constructor', 'toString', '__metadata__', '', '"', '\\', '\u0000'),
);
const dtype = fc.oneof(
  fc.constantFrom(...(Object.keys(SAFETENSORS_DTYPES) as (keyof typeof SAFETENSORS_DTYPES)[])),
  text,
  fc.constantFrom(null, 4, [], {}),
);
const number = fc.oneof(
  fc.nat(16),
  fc.integer({ min: -8, max: -1 }),
  fc.constantFrom(2 ** 31, 2 ** 32 + 4, 2 ** 53, 2 ** 53 + 2, 2 ** 60, 1e308, 0.5, -0, 1e-7),
);
const anything = fc.jsonValue({ maxDepth: 3 });

interface Tensor {
  name: string;
  dtype: keyof typeof SAFETENSORS_DTYPES;
  shape: number[];
}

/** A well-formed file: tensors tiling the data section, in a shuffled header, with metadata. */
const wellFormed = fc
  .record({
    tensors: fc.uniqueArray(
      fc.record({
        name: text,
        dtype: fc.constantFrom(...(Object.keys(SAFETENSORS_DTYPES) as (keyof typeof SAFETENSORS_DTYPES)[])),
        shape: fc.array(fc.nat(4), { maxLength: 3 }),
      }),
      { selector: (t) => t.name, maxLength: 6 },
    ),
    metadata: fc.option(fc.dictionary(text, text, { maxKeys: 3 })),
    order: fc.array(fc.nat(), { maxLength: 6 }),
    seed: fc.nat(255),
  })
  .filter(({ tensors }) => tensors.every((t) => t.name !== '__metadata__'))
  .map(({ tensors, metadata, order, seed }) => {
    const header: Record<string, unknown> = {};
    const spans: [Tensor, number, number][] = [];
    let offset = 0;
    for (const tensor of tensors as Tensor[]) {
      const bytes = tensor.shape.reduce((a, b) => a * b, 1) * SAFETENSORS_DTYPES[tensor.dtype];
      spans.push([tensor, offset, offset + bytes]);
      offset += bytes;
    }
    // header order is not offset order
    order.forEach((n, k) => {
      const i = k % Math.max(1, spans.length);
      const j = n % Math.max(1, spans.length);
      if (spans[i] && spans[j]) [spans[i], spans[j]] = [spans[j]!, spans[i]!];
    });
    if (metadata) header.__metadata__ = metadata;
    for (const [tensor, begin, end] of spans) {
      Object.defineProperty(header, tensor.name, {
        value: { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [begin, end] },
        enumerable: true,
      });
    }
    const data = new Uint8Array(offset).map((_, i) => (i * 31 + seed) & 0xff);
    return { headerText: JSON.stringify(header), data };
  });

/** Changes to a file's bytes and header: the lies a hostile file tells. */
const mutation = fc.oneof(
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('append' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 9 }) }),
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat(7) }),
  fc.record({ kind: fc.constant('length' as const), value: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }) }),
  fc.record({ kind: fc.constant('text' as const), at: fc.nat(), cut: fc.nat(4), insert: fc.string({ maxLength: 4 }) }),
  fc.record({
    kind: fc.constant('field' as const),
    field: fc.constantFrom('dtype', 'shape', 'data_offsets', 'extra'),
    value: fc.oneof(dtype, fc.array(number, { maxLength: 4 }), number, anything),
  }),
  fc.record({ kind: fc.constant('duplicate' as const) }),
);

type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

function mutate({ headerText, data }: { headerText: string; data: Uint8Array }, change: Mutation): Uint8Array {
  switch (change.kind) {
    case 'truncate': {
      const whole = file(headerText, data);
      return whole.subarray(0, change.at % (whole.length + 1));
    }
    case 'append':
      return file(headerText, Uint8Array.from([...data, ...change.bytes]));
    case 'flip': {
      const whole = file(headerText, data);
      if (whole.length > 0) whole[change.at % whole.length]! ^= 1 << change.bit;
      return whole;
    }
    case 'length':
      return file(headerText, data, change.value);
    case 'text': {
      const at = change.at % (headerText.length + 1);
      return file(headerText.slice(0, at) + change.insert + headerText.slice(at + change.cut), data);
    }
    case 'field': {
      const header = JSON.parse(headerText) as Record<string, Record<string, unknown>>;
      const names = Object.keys(header).filter((name) => name !== '__metadata__');
      if (names.length === 0) return file(headerText, data);
      const target = header[names[data.length % names.length]!]!;
      target[change.field] = change.value;
      return file(JSON.stringify(header), data);
    }
    case 'duplicate': {
      // the same key twice: JSON.parse keeps the last, the parser refuses
      const header = JSON.parse(headerText) as Record<string, unknown>;
      const [name, value] = Object.entries(header).find(([key]) => key !== '__metadata__') ?? [];
      if (name === undefined) return file(headerText, data);
      const again = `${JSON.stringify(name)}:${JSON.stringify(value)}`;
      return file(`{${again},${headerText.slice(1)}`, data);
    }
  }
}

describe('parseSafetensors on hostile input (fast-check)', () => {
  it('arbitrary bytes, and arbitrary headers with a consistent length field: a file or an Error naming it', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 64 }),
          fc
            .tuple(fc.string({ unit: 'binary', maxLength: 64 }), fc.uint8Array({ maxLength: 16 }))
            .map(([header, data]) => file(header, data)),
          fc
            .tuple(anything, fc.uint8Array({ maxLength: 16 }))
            .map(([header, data]) => file(JSON.stringify(header), data)),
        ),
        (bytes) => {
          count.cases++;
          outcome(() => parseSafetensors(bytes, SOURCE), bytes.length);
        },
      ),
      { numRuns: runs.bytes },
    );
  });

  it('reads JSON as JSON.parse does: the same values accepted, the same texts refused', () => {
    // top-level arrays: valid ones are "not a JSON object", invalid ones a syntax error
    const mangled = fc
      .tuple(
        fc.jsonValue({ maxDepth: 4 }),
        fc.nat(),
        fc.nat(3),
        fc.constantFrom('', ',', '"', '\\', '}', ']', '{', '[', '-', '0', '1e', 'tru', '\u0001', '\\u12', ' '),
      )
      .map(([value, at, cut, insert]) => {
        const json = JSON.stringify([value]);
        const place = at % (json.length + 1);
        return json.slice(0, place) + insert + json.slice(place + cut);
      });
    fc.assert(
      fc.property(
        fc.oneof(
          fc.jsonValue({ maxDepth: 4 }).map((value) => JSON.stringify([value])),
          mangled,
        ),
        (json) => {
          count.cases++;
          let valid = true;
          try {
            JSON.parse(json);
          } catch {
            valid = false;
          }
          const message = outcome(() => parseSafetensors(file(json, new Uint8Array(0)), SOURCE), 0);
          if (valid && json.trimStart().startsWith('[')) expect(message).toBe(`${SOURCE}: header is not a JSON object`);
          // an object is checked entry by entry as it is read: a bad entry may be said before bad JSON after it
          else if (!valid && !json.trimStart().startsWith('{'))
            expect(message).toMatch(/^fuzz\.safetensors: header is not valid UTF-8 JSON \(/);
          else if (!valid) expect(message.startsWith('ok')).toBe(false);
        },
      ),
      { numRuns: runs.json },
    );
  });

  it('well-formed files round-trip; mutated ones give a file or an Error naming it', () => {
    fc.assert(
      fc.property(wellFormed, fc.option(mutation, { freq: 3 }), (made, change) => {
        count.cases++;
        const bytes = change ? mutate(made, change) : file(made.headerText, made.data);
        const result = outcome(() => parseSafetensors(bytes, SOURCE), bytes.length);
        if (!change) {
          expect(result.startsWith('ok ')).toBe(true);
          const parsed = parseSafetensors(bytes, SOURCE);
          const header = JSON.parse(made.headerText) as Record<string, { data_offsets: [number, number] }>;
          for (const [name, entry] of parsed.entries)
            expect([entry.begin, entry.end]).toEqual(header[name]!.data_offsets);
          expect(parsed.entries.size).toBe(Object.keys(header).filter((k) => k !== '__metadata__').length);
        }
      }),
      { numRuns: runs.files },
    );
  });

  it('sizes from the header (huge dims, offsets past 2^53, a million-deep nesting) never size an allocation', () => {
    const big = fc.record({
      dtype,
      shape: fc.oneof(fc.array(number, { maxLength: 6 }), anything),
      data_offsets: fc.oneof(fc.tuple(number, number), fc.array(number, { maxLength: 3 }), anything),
    });
    fc.assert(
      fc.property(fc.dictionary(text, big, { maxKeys: 4 }), fc.uint8Array({ maxLength: 32 }), (header, data) => {
        count.cases++;
        outcome(() => parseSafetensors(file(JSON.stringify(header), data), SOURCE), data.length);
      }),
      { numRuns: runs.big },
    );
    for (const bomb of ['['.repeat(1_000_000), `{"a":${'['.repeat(100_000)}`, `{"a":{"shape":${'['.repeat(70)}`]) {
      count.cases++;
      expect(outcome(() => parseSafetensors(file(bomb, new Uint8Array(0)), SOURCE), 0)).toMatch(
        /^fuzz\.safetensors: header nests deeper than 64 levels$/,
      );
    }
  });
});

describe('openSafetensors over a file read by ranges', () => {
  const folder = mkdtempSync(path.join(tmpdir(), 'peft-fuzz-'));
  afterAll(() => rmSync(folder, { recursive: true, force: true }));

  it('gives what parseSafetensors gives over memory, file or error', async () => {
    const store = nodeDirectory(folder);
    await fc.assert(
      fc.asyncProperty(wellFormed, fc.option(mutation, { freq: 2 }), async (made, change) => {
        count.cases++;
        const bytes = change ? mutate(made, change) : file(made.headerText, made.data);
        writeFileSync(path.join(folder, 'model.safetensors'), bytes);
        const inMemory = outcome(() => parseSafetensors(bytes, SOURCE), bytes.length);
        const opened = await store.openRanges!('model.safetensors');
        try {
          expect(outcome(() => openSafetensors(opened, SOURCE), bytes.length)).toBe(inMemory);
        } finally {
          opened.close();
        }
      }),
      { numRuns: runs.ranges },
    );
  });
});
