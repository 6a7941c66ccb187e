// The fixtures oracle/*.py writes: manifests, inputs.json, expected.safetensors, and the largest
// difference to them each test file reports at its end.
import { readFileSync } from 'node:fs';

import { parseSafetensors, type HostForwardInput, type SafetensorsFile } from '@peft/core';
import { afterAll } from 'vitest';

/** A forward input as the oracle writes it (inputs.json: transformers' names). */
export interface OracleInput {
  input_ids: number[][];
  attention_mask: number[][] | null;
  token_type_ids?: number[][];
}

/** A greedy generation the oracle ran (inputs.json's `greedy`): its prompt and the tokens it got. */
export interface OracleGreedy extends OracleInput {
  max_new_tokens: number;
  output_ids: number[][];
}

/** The options of `generate` (@peft/models) that repeat an oracle's greedy generation. */
export function greedyOptions(greedy: OracleGreedy): {
  inputIds: number[][];
  attentionMask?: number[][];
  maxNewTokens: number;
} {
  return {
    inputIds: greedy.input_ids,
    ...(greedy.attention_mask ? { attentionMask: greedy.attention_mask } : {}),
    maxNewTokens: greedy.max_new_tokens,
  };
}

/** The oracle's input in our names; absent mask and token types stay absent. */
export function forwardInput(input: OracleInput): HostForwardInput {
  return {
    inputIds: input.input_ids,
    ...(input.attention_mask ? { attentionMask: input.attention_mask } : {}),
    ...(input.token_type_ids ? { tokenTypeIds: input.token_type_ids } : {}),
  };
}

/** A JSON fixture file (manifest.json, inputs.json, adapter_config.json), typed by the caller. */
export function readJsonFixture<T>(file: string): T {
  return JSON.parse(readFileSync(file, 'utf8')) as T;
}

/** A safetensors fixture file; parse errors name it. */
export function readSafetensorsFixture(file: string): SafetensorsFile {
  return parseSafetensors(readFileSync(file), file);
}

/**
 * Keeps the largest difference per label and prints them all after the file's tests, under
 * `heading`: `const record = parityReport('[lora parity] max |ours - peft|'); expect(record(name, diff))...`.
 * Returns the recorder, which returns the difference it was given.
 */
export function parityReport(heading: string): (label: string, diff: number) => number {
  const worst = new Map<string, number>();
  afterAll(() => {
    console.log(`${heading}:\n${[...worst].map(([label, diff]) => `  ${label}: ${diff.toExponential(2)}`).join('\n')}`);
  });
  return (label, diff) => {
    worst.set(label, Math.max(worst.get(label) ?? 0, diff));
    return diff;
  };
}
