// What the page does, without the page: methods, training data from pasted text or JSONL, training
// with progress, generation and the probe the end-to-end test compares with Node. The same module
// runs in Node (scripts/driver.ts's trainInNode) so browser and Node time the same work.
import { HoulsbyConfig, PfeifferConfig } from '@peft/adapter';
import {
  causalLmExample,
  getPeftModel,
  train,
  type Example,
  type PeftModel,
  type StepInfo,
  type TrainResult,
} from '@peft/core';
import { LoraConfig } from '@peft/lora';
import { generate, type HfTokenizer, type TransformerHost } from '@peft/models';
import { PrefixTuningConfig } from '@peft/prefix';
import { PromptTuningConfig } from '@peft/prompt';
import { PTuningConfig } from '@peft/ptuning';
import * as tf from '@tensorflow/tfjs-core';

export interface PlaygroundMethod {
  name: string;
  label: string;
  /** AdamW learning rate that suits the method on a small model (as the bench uses). */
  learningRate: number;
  /** Virtual tokens the method puts before every input (its context cost). */
  virtualTokens: number;
  /** The files it saves: Hugging Face PEFT's, or AdapterHub's for bottleneck adapters. */
  format: 'PEFT' | 'AdapterHub';
  make(host: TransformerHost, seed: number): PeftModel;
}

const VIRTUAL_TOKENS = 10;

/** Every method of @peft that trains a causal LM in the browser. */
export const PLAYGROUND_METHODS: readonly PlaygroundMethod[] = [
  {
    name: 'lora',
    label: 'LoRA (r=8)',
    learningRate: 2e-3,
    virtualTokens: 0,
    format: 'PEFT',
    make: (host, seed) =>
      getPeftModel(host, new LoraConfig({ r: 8, loraAlpha: 16, taskType: 'CAUSAL_LM', initSeed: seed })),
  },
  {
    name: 'prompt',
    label: `prompt tuning (${VIRTUAL_TOKENS} tokens)`,
    learningRate: 3e-2,
    virtualTokens: VIRTUAL_TOKENS,
    format: 'PEFT',
    make: (host, seed) =>
      getPeftModel(
        host,
        new PromptTuningConfig({
          numVirtualTokens: VIRTUAL_TOKENS,
          promptTuningInit: 'SAMPLE_VOCAB',
          taskType: 'CAUSAL_LM',
          initSeed: seed,
        }),
      ),
  },
  {
    name: 'prefix',
    label: `prefix tuning (${VIRTUAL_TOKENS}, MLP)`,
    learningRate: 3e-3,
    virtualTokens: VIRTUAL_TOKENS,
    format: 'PEFT',
    make: (host, seed) =>
      getPeftModel(
        host,
        new PrefixTuningConfig({
          numVirtualTokens: VIRTUAL_TOKENS,
          prefixProjection: true,
          taskType: 'CAUSAL_LM',
          initSeed: seed,
        }),
      ),
  },
  {
    name: 'ptuning',
    label: `P-tuning (${VIRTUAL_TOKENS}, MLP)`,
    learningRate: 1e-2,
    virtualTokens: VIRTUAL_TOKENS,
    format: 'PEFT',
    make: (host, seed) =>
      getPeftModel(
        host,
        new PTuningConfig({ numVirtualTokens: VIRTUAL_TOKENS, taskType: 'CAUSAL_LM', initSeed: seed }),
      ),
  },
  {
    name: 'houlsby',
    label: 'Houlsby adapters (factor 16)',
    learningRate: 1e-3,
    virtualTokens: 0,
    format: 'AdapterHub',
    make: (host, seed) =>
      getPeftModel(host, HoulsbyConfig({ reductionFactor: 16, initWeights: 'mam_adapter', initSeed: seed })),
  },
  {
    name: 'pfeiffer',
    label: 'Pfeiffer adapters (factor 16)',
    learningRate: 1e-3,
    virtualTokens: 0,
    format: 'AdapterHub',
    make: (host, seed) =>
      getPeftModel(host, PfeifferConfig({ reductionFactor: 16, initWeights: 'mam_adapter', initSeed: seed })),
  },
];

export function findMethod(name: string): PlaygroundMethod {
  const method = PLAYGROUND_METHODS.find((m) => m.name === name);
  if (!method)
    throw new Error(`unknown method "${name}" (expected one of ${PLAYGROUND_METHODS.map((m) => m.name).join(', ')})`);
  return method;
}

export interface TrainingData {
  format: 'text' | 'jsonl';
  examples: Example[];
  tokens: number;
}

function parseJsonLine(line: string, where: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (error) {
    throw new Error(`${where}: not valid JSON (${(error as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new Error(`${where}: expected a JSON object`);
  return value as Record<string, unknown>;
}

/**
 * Training examples from what the user pasted or dropped. Input whose first non-empty line starts
 * with `{` is JSON Lines: every line an object with `{"prompt", "completion"}` (loss on the
 * completion) or `{"text"}`, a bad line named. Anything else is plain text, cut into blocks of
 * `blockSize` tokens.
 */
export function parseTrainingData(input: string, tokenizer: HfTokenizer, blockSize: number): TrainingData {
  const lines = input.split(/\r?\n/).filter((line) => line.trim() !== '');
  if (lines.length === 0) throw new Error('no training data: paste text or JSON Lines, or drop a .txt/.jsonl file');
  if (lines[0]!.trimStart().startsWith('{')) {
    const examples = lines.map((line, index) => {
      const where = `JSONL line ${index + 1}`;
      const record = parseJsonLine(line, where);
      if (typeof record.prompt === 'string' && typeof record.completion === 'string') {
        return causalLmExample(tokenizer, record.prompt, record.completion, { maxLength: blockSize });
      }
      if (typeof record.text === 'string')
        return causalLmExample(tokenizer, record.text, undefined, { maxLength: blockSize });
      throw new Error(
        `${where}: expected string fields "prompt" and "completion", or "text"; found ${Object.keys(record).join(', ') || 'no fields'}`,
      );
    });
    return { format: 'jsonl', examples, tokens: examples.reduce((sum, e) => sum + e.inputIds.length, 0) };
  }
  const ids = tokenizer.encode(input, { addSpecialTokens: false }).ids;
  if (ids.length < 2)
    throw new Error(`the text has ${ids.length} token(s): a language model needs at least 2 to learn from`);
  const examples: Example[] = [];
  for (let start = 0; start + 1 < ids.length; start += blockSize) {
    const block = ids.slice(start, start + blockSize);
    if (block.length >= 2) examples.push({ inputIds: block, labels: [...block] });
  }
  return { format: 'text', examples, tokens: ids.length };
}

export interface TrainSettings {
  steps: number;
  batchSize: number;
  learningRate: number;
  seed: number;
  signal?: AbortSignal;
  onStep?: (info: StepInfo) => unknown;
}

/** Trains `steps` optimizer steps (as many passes over the data as that takes), constant rate. */
export async function trainSteps(model: PeftModel, data: TrainingData, settings: TrainSettings): Promise<TrainResult> {
  const { steps, batchSize } = settings;
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`steps: expected a positive integer, got ${steps}`);
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new Error(`batch size: expected a positive integer, got ${batchSize}`);
  const batchesPerEpoch = Math.ceil(data.examples.length / batchSize);
  return train(model, {
    data: data.examples,
    task: 'causal-lm',
    padTokenId: 0,
    batchSize,
    epochs: Math.ceil(steps / batchesPerEpoch),
    maxSteps: steps,
    learningRate: settings.learningRate,
    schedule: 'constant',
    seed: settings.seed,
    ...(settings.signal ? { signal: settings.signal } : {}),
    ...(settings.onStep ? { onStep: settings.onStep } : {}),
  });
}

/** Greedy continuation of `prompt` through the host (and the adapter attached to it). */
export function continueText(
  host: TransformerHost,
  tokenizer: HfTokenizer,
  prompt: string,
  maxNewTokens: number,
): string {
  const inputIds = tokenizer.encode(prompt, { addSpecialTokens: false }).ids;
  if (inputIds.length === 0) throw new Error('the prompt is empty');
  const { generated } = generate(host, { inputIds: [inputIds], maxNewTokens });
  return tokenizer.decode(generated[0]!);
}

/** The logits of the last position for `text`: what the end-to-end test compares with Node. */
export function probeLogits(host: TransformerHost, tokenizer: HfTokenizer, text: string): number[] {
  const ids = tokenizer.encode(text, { addSpecialTokens: false }).ids;
  return tf.tidy(() => {
    const { logits } = host.forward({ inputIds: tf.tensor2d([ids], [1, ids.length], 'int32') });
    const last = logits.shape[1]! - 1;
    return Array.from(tf.slice(logits, [0, last, 0], [1, 1, -1]).dataSync());
  });
}
