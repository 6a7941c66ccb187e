// Reading the oracle's fixtures (oracle/make_model_fixtures.py).
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { parseSafetensors, type SafetensorsFile } from '@peft/core';

export const FIXTURES = path.join(import.meta.dirname, 'fixtures');

export interface ForwardCase {
  input_ids: number[][];
  attention_mask: number[][] | null;
  token_type_ids?: number[][];
}

export interface GreedyCase {
  input_ids: number[][];
  attention_mask: number[][] | null;
  max_new_tokens: number;
  output_ids: number[][];
}

export interface Fixture {
  name: string;
  modelType: string;
  directory: string;
  forward: Record<string, ForwardCase>;
  greedy: GreedyCase[];
  expected: SafetensorsFile;
}

export function loadFixtures(): Fixture[] {
  const manifest = JSON.parse(readFileSync(path.join(FIXTURES, 'manifest.json'), 'utf8')) as {
    cases: { name: string; model_type: string }[];
  };
  return manifest.cases.map(({ name, model_type: modelType }) => {
    const directory = path.join(FIXTURES, name);
    const inputs = JSON.parse(readFileSync(path.join(directory, 'inputs.json'), 'utf8')) as {
      forward: Record<string, ForwardCase>;
      greedy: GreedyCase[];
    };
    const expected = parseSafetensors(
      readFileSync(path.join(directory, 'expected.safetensors')),
      `${name}/expected.safetensors`,
    );
    return { name, modelType, directory, forward: inputs.forward, greedy: inputs.greedy, expected };
  });
}

/** Largest |a - b| over the positions whose mask is 1 (padding positions are not compared). */
export function maxAbsDiffAtRealTokens(
  actual: Float32Array | Int32Array | Uint8Array,
  expected: Float32Array | Int32Array,
  shape: number[],
  mask: number[][] | null,
): number {
  const [batch, length] = shape as [number, number];
  const width = shape.slice(2).reduce((a, b) => a * b, 1);
  let worst = 0;
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < length; t++) {
      if (mask && mask[b]![t] === 0) continue;
      for (let i = 0; i < width; i++) {
        const index = (b * length + t) * width + i;
        worst = Math.max(worst, Math.abs(actual[index]! - expected[index]!));
      }
    }
  }
  return worst;
}
