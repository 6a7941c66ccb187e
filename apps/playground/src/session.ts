// What the page does, without the page: methods, training data from pasted text or JSONL (chat rows
// through a chat template), training with progress, generation and the probe the end-to-end test
// compares with Node. The same module
// runs in Node (scripts/driver.ts's trainInNode) so browser and Node time the same work.
import { HoulsbyConfig, PfeifferConfig } from '@peft/adapter';
import {
  IGNORE_INDEX,
  causalLmExample,
  getPeftModel,
  train,
  type Example,
  type PeftModel,
  type StepInfo,
  type TrainResult,
} from '@peft/core';
import { LoraConfig } from '@peft/lora';
import { chatExample, generate, parseChatMessages, type HfTokenizer, type TransformerHost } from '@peft/models';
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

/**
 * ChatML as transformers documents it for a model without a template of its own: offered by name,
 * never applied unasked. Its `<|im_start|>`/`<|im_end|>` are plain text to a tokenizer that lacks them.
 */
export const CHATML_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}" +
  "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** A chat template the user may choose for chat rows. */
export interface ChatTemplateChoice {
  name: 'model' | 'chatml';
  label: string;
  template: string;
}

/**
 * The templates offered for chat rows: the checkpoint's own where its tokenizer has one, else ChatML,
 * labelled as not the model's (transformers' `apply_chat_template(chat_template=...)`).
 */
export function chatTemplateChoices(tokenizer: HfTokenizer): ChatTemplateChoice[] {
  const own = tokenizer.chatTemplate;
  if (own !== null) return [{ name: 'model', label: "the model's chat template", template: own }];
  return [{ name: 'chatml', label: 'ChatML (the model has no chat template of its own)', template: CHATML_TEMPLATE }];
}

export interface TrainingData {
  /** Plain text, JSON Lines of prompt/completion or text, or JSON Lines of chat messages. */
  format: 'text' | 'jsonl' | 'chat';
  examples: Example[];
  /** Tokens in the examples. */
  tokens: number;
  /** Tokens whose label is not IGNORE_INDEX: the ones the loss is on (chat: the assistant turns). */
  lossTokens: number;
  /** Chat: conversations left out because no assistant token fits in the block. */
  skipped: number;
}

export interface TrainingDataOptions {
  /** The Jinja template for chat rows; default the tokenizer's own (an error where it has none). */
  chatTemplate?: string;
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

function summarise(format: TrainingData['format'], examples: Example[], skipped = 0): TrainingData {
  let tokens = 0;
  let lossTokens = 0;
  for (const example of examples) {
    tokens += example.inputIds.length;
    lossTokens += (example.labels as number[]).filter((label) => label !== IGNORE_INDEX).length;
  }
  return { format, examples, tokens, lossTokens, skipped };
}

/**
 * Chat rows as causal LM examples: each conversation rendered with the chat template (`chatExample`),
 * the loss on the assistant turns only. Conversations whose assistant tokens all fall past the block
 * are left out and counted: they would train nothing.
 */
function chatData(
  rows: { record: Record<string, unknown>; where: string }[],
  tokenizer: HfTokenizer,
  blockSize: number,
  chatTemplate: string | undefined,
): TrainingData {
  if (chatTemplate === undefined && tokenizer.chatTemplate === null)
    throw new Error(
      `${rows[0]!.where}: chat rows ({"messages"}) are rendered with a chat template, and ${tokenizer.source} has ` +
        "none (chat_template.jinja or tokenizer_config.json's chat_template); choose one (ChatML) or load a model " +
        'that has one',
    );
  const examples: Example[] = [];
  let skipped = 0;
  for (const { record, where } of rows) {
    const messages = parseChatMessages(record.messages, where);
    let example: Example;
    try {
      example = chatExample(tokenizer, messages, {
        maxLength: blockSize,
        ...(chatTemplate !== undefined ? { chatTemplate } : {}),
      });
    } catch (error) {
      throw new Error(`${where}: ${(error as Error).message}`);
    }
    if ((example.labels as number[]).every((label) => label === IGNORE_INDEX)) skipped++;
    else examples.push(example);
  }
  if (examples.length === 0)
    throw new Error(`no conversation has an assistant token within the first ${blockSize} tokens (block)`);
  return summarise('chat', examples, skipped);
}

/**
 * Training examples from what the user pasted or dropped. Input whose first non-empty line starts
 * with `{` is JSON Lines, one shape per input: `{"messages": [{"role", "content"}, ...]}` (chat,
 * rendered with `options.chatTemplate` or the tokenizer's own; loss on the assistant turns), or
 * `{"prompt", "completion"}` (loss on the completion) and `{"text"}` lines. A bad line is named by
 * its line number. Anything else is plain text, cut into blocks of `blockSize` tokens.
 */
export function parseTrainingData(
  input: string,
  tokenizer: HfTokenizer,
  blockSize: number,
  options: TrainingDataOptions = {},
): TrainingData {
  // blank lines are skipped, but count for the line numbers in errors
  const lines = input.split(/\r?\n/).flatMap((text, i) => (text.trim() === '' ? [] : [{ text, number: i + 1 }]));
  if (lines.length === 0) throw new Error('no training data: paste text or JSON Lines, or drop a .txt/.jsonl file');
  if (lines[0]!.text.trimStart().startsWith('{')) {
    const rows = lines.map(({ text, number }) => {
      const where = `JSONL line ${number}`;
      return { record: parseJsonLine(text, where), where };
    });
    const chat = 'messages' in rows[0]!.record;
    for (const { record, where } of rows) {
      if ('messages' in record !== chat)
        throw new Error(
          chat
            ? `${where}: expected a chat row {"messages": [...]} like ${rows[0]!.where}; found ${Object.keys(record).join(', ') || 'no fields'} (one shape per input)`
            : `${where}: found "messages", but ${rows[0]!.where} is not a chat row (one shape per input)`,
        );
    }
    if (chat) return chatData(rows, tokenizer, blockSize, options.chatTemplate);
    const examples = rows.map(({ record, where }) => {
      if (typeof record.prompt === 'string' && typeof record.completion === 'string') {
        return causalLmExample(tokenizer, record.prompt, record.completion, { maxLength: blockSize });
      }
      if (typeof record.text === 'string')
        return causalLmExample(tokenizer, record.text, undefined, { maxLength: blockSize });
      throw new Error(
        `${where}: expected string fields "prompt" and "completion", or "text"; found ${Object.keys(record).join(', ') || 'no fields'}`,
      );
    });
    return summarise('jsonl', examples);
  }
  const ids = tokenizer.encode(input, { addSpecialTokens: false }).ids;
  if (ids.length < 2)
    throw new Error(`the text has ${ids.length} token(s): a language model needs at least 2 to learn from`);
  const examples: Example[] = [];
  for (let start = 0; start + 1 < ids.length; start += blockSize) {
    const block = ids.slice(start, start + blockSize);
    if (block.length >= 2) examples.push({ inputIds: block, labels: [...block] });
  }
  return { ...summarise('text', examples), tokens: ids.length };
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
