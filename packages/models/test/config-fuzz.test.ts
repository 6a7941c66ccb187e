// Property-based tests of the config readers (issue 23): every fixture's config.json with fields
// replaced by hostile values (negative, fractional, non-finite, huge, of the wrong kind, keys of
// Object.prototype), read through loadPretrained's builder on the fixture's real checkpoint. The
// result is a host or an Error that names the config (or the checkpoint and the tensor); never
// another throw, never a tensor left behind, never an allocation the checkpoint could not hold.
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { checkpointFromFiles, parseSafetensors, type Checkpoint, type SafetensorsFile } from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';

import { ConfigReader, SUPPORTED_MODEL_TYPES, hostFromCheckpoint } from '../src/index.js';
import { loadFixtures } from './fixtures.js';

const fixtures = loadFixtures().map((fixture) => {
  const source = path.join(fixture.directory, 'model.safetensors');
  const file = parseSafetensors(readFileSync(source), source);
  const owners = new Map<string, SafetensorsFile>([...file.entries.keys()].map((name) => [name, file]));
  return {
    name: fixture.name,
    config: JSON.parse(readFileSync(path.join(fixture.directory, 'config.json'), 'utf8')) as Record<string, unknown>,
    checkpoint: checkpointFromFiles(source, owners) as Checkpoint,
  };
});

const count = { cases: 0, built: 0 };
const started = performance.now();
afterAll(() => {
  console.log(
    `[config fuzz] ${count.cases} generated cases (${count.built} built a model) in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
});

/** Every field a parser reads, and a few it should not trip on. */
const FIELDS = [
  ...new Set(fixtures.flatMap((fixture) => Object.keys(fixture.config))),
  'n_inner',
  'head_dim',
  'num_labels',
  'id2label',
  'rope_theta',
  'rope_scaling',
  'rope_local_base_freq',
  'partial_rotary_factor',
  'original_max_position_embeddings',
  'layer_types',
  'sliding_window_pattern',
  '__proto__',
  'constructor',
];

/** An array nested `depth` deep, `[[[...]]]`, or an object `{a: {a: ...}}` (JSON.parse makes both). */
function nested(depth: number, array: boolean): unknown {
  let value: unknown = array ? [] : 0;
  for (let level = 0; level < depth; level++) value = array ? [value] : { a: value };
  // fast-check would print a counterexample by recursion, overflowing the stack as the code under test might
  Object.defineProperty(value, fc.toStringMethod, { value: () => `nested(${depth}, ${array})` });
  return value;
}

const hostile = fc.oneof(
  fc.constantFrom(-1, 0, -0, 0.5, 1, 2, 3, 7, 64, 1e-300, Number.NaN, Infinity, -Infinity),
  fc.constantFrom(2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, 1e12, 1e308, -(2 ** 31)),
  fc.integer({ min: -100, max: 300 }),
  fc.double(),
  fc.constantFrom('', 'gelu', 'silu', 'relu', '__proto__', 'constructor', 'default', 'linear', 'llama3', 'longrope'),
  fc.string({ maxLength: 8 }),
  fc.constantFrom(null, true, false, [], {}, [1, 2], { rope_type: 'llama3' }, { rope_type: 'linear', factor: -1 }),
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom(...SUPPORTED_MODEL_TYPES, 'hasOwnProperty', 'toString', '__proto__'),
  fc.tuple(fc.integer({ min: 1, max: 10_000 }), fc.boolean()).map(([depth, array]) => nested(depth, array)),
);

/** Runs `make`; returns what it threw (an Error whose message names where), after disposing what it made. */
function attempt(make: () => { dispose(): void }, where: RegExp): string | null {
  const before = tf.memory().numTensors;
  try {
    make().dispose();
    count.built++;
    return null;
  } catch (error) {
    expect((error as Error).constructor, String(error)).toBe(Error);
    expect((error as Error).message).toMatch(where);
    return (error as Error).message;
  } finally {
    expect(tf.memory().numTensors).toBe(before);
  }
}

describe('config readers (fast-check)', () => {
  it('hostile fields in every fixture config: a host or an Error naming the config or the checkpoint', () => {
    fc.assert(
      fc.property(
        fc.nat(fixtures.length - 1),
        fc.array(fc.tuple(fc.constantFrom(...FIELDS), hostile), { minLength: 1, maxLength: 3 }),
        (index, edits) => {
          count.cases++;
          const { config, checkpoint } = fixtures[index]!;
          const raw: Record<string, unknown> = { ...config };
          for (const [field, value] of edits)
            Object.defineProperty(raw, field, { value, enumerable: true, writable: true });
          attempt(() => hostFromCheckpoint(raw, checkpoint), /config|model\.safetensors: /);
        },
      ),
      { numRuns: 2500 },
    );
  });

  it('nested settings (rope_parameters, rope_scaling) with hostile fields', () => {
    const rope = fc.dictionary(
      fc.constantFrom(
        'rope_type',
        'type',
        'rope_theta',
        'factor',
        'low_freq_factor',
        'high_freq_factor',
        'original_max_position_embeddings',
        'short_factor',
        'long_factor',
        'attention_factor',
        'full_attention',
        'sliding_attention',
      ),
      hostile,
      { maxKeys: 4 },
    );
    fc.assert(
      fc.property(
        fc.nat(fixtures.length - 1),
        fc.constantFrom('rope_parameters', 'rope_scaling'),
        rope,
        (index, field, value) => {
          count.cases++;
          const { config, checkpoint } = fixtures[index]!;
          attempt(() => hostFromCheckpoint({ ...config, [field]: value }, checkpoint), /config|model\.safetensors: /);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('ConfigReader on any object: a value of the kind asked for, or an Error naming the file and the field', () => {
    const methods = ['positiveInteger', 'positiveNumber', 'nonNegativeInteger', 'number', 'boolean', 'string'] as const;
    fc.assert(
      fc.property(
        fc.dictionary(fc.constantFrom('a', 'b', '__proto__', 'constructor', 'toString'), hostile, { maxKeys: 4 }),
        fc.constantFrom(...methods),
        fc.constantFrom('a', 'b', '__proto__', 'constructor', 'toString', 'id2label'),
        fc.option(fc.integer({ min: 1, max: 1e6 })),
        (raw, method, field, size) => {
          count.cases++;
          const reader = new ConfigReader(
            raw,
            'c/config.json',
            size === null ? null : { values: size, location: 'c/model.safetensors' },
          );
          try {
            const value = reader[method](field);
            if (method === 'positiveInteger') expect(Number.isSafeInteger(value) && (value as number) > 0).toBe(true);
            if (method === 'positiveNumber') expect(Number.isFinite(value) && (value as number) > 0).toBe(true);
            if (method === 'boolean') expect(typeof value).toBe('boolean');
            const labels = reader.numLabels();
            expect(Number.isSafeInteger(labels) && labels > 0).toBe(true);
            reader.fits('a tensor', '"a" x "b"', [labels, 4]);
          } catch (error) {
            expect((error as Error).constructor).toBe(Error);
            expect((error as Error).message).toMatch(/^c\/config\.json: /);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});
