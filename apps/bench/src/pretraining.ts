// What pretraining brown-gpt and brown-bert share: a generated initial checkpoint, the tokenizer
// trained on the pretraining files, and the training curve written as it goes.
import { appendFileSync } from 'node:fs';

import { SeededRandom, type Checkpoint } from '@peft/core';

import { detokenize, type BrownFile } from './data/brown.js';
import { trainByteLevelBpe } from './tokenizer/train-bpe.js';

/** How a generated tensor starts: ones, N(0, std), or zeros. */
export type Start = 'ones' | { std: number } | 'zeros';

/**
 * A checkpoint of the tensors `shapes` names, each made on request as `start` says; the normal draws
 * of the k-th tensor (in `shapes`' order) come from the seed `seed + k·7919`, two at a time
 * (Box-Muller), so every tensor is the same whatever is read before it.
 */
export function generatedCheckpoint(
  location: string,
  shapes: ReadonlyMap<string, readonly number[]>,
  seed: number,
  start: (name: string) => Start,
): Checkpoint {
  const names = [...shapes.keys()];
  return {
    location,
    names: () => names,
    has: (name) => shapes.has(name),
    tensor(name) {
      const shape = [...shapes.get(name)!];
      const values = new Float32Array(shape.reduce((a, b) => a * b, 1));
      const how = start(name);
      if (how === 'ones') values.fill(1);
      else if (how !== 'zeros') {
        const random = new SeededRandom(seed + names.indexOf(name) * 7919);
        for (let i = 0; i < values.length; i += 2) {
          // Box-Muller: two normal draws from two uniform ones
          const r = Math.sqrt(-2 * Math.log(1 - random.next()));
          const angle = 2 * Math.PI * random.next();
          values[i] = how.std * r * Math.cos(angle);
          if (i + 1 < values.length) values[i + 1] = how.std * r * Math.sin(angle);
        }
      }
      return { dtype: 'float32', shape, values };
    },
  };
}

/** The shape of a BERT masked LM (BertForMaskedLM, the decoder tied to the word embeddings). */
export interface BertShape {
  vocab: number;
  positions: number;
  hidden: number;
  layers: number;
  heads: number;
  intermediate: number;
}

/**
 * A BERT masked LM's shape from the scripts' `--layers`, `--width`, `--heads` (the feed-forward 4 x the
 * width, as BERT's) at a vocabulary and position count.
 */
export function bertShape(
  base: Pick<BertShape, 'vocab' | 'positions'>,
  layers: number,
  width: number,
  heads: number,
): BertShape {
  for (const [flag, value] of [
    ['--layers', layers],
    ['--width', width],
    ['--heads', heads],
  ] as const)
    if (!Number.isInteger(value) || value < 1) throw new Error(`${flag}: a positive integer, got ${value}`);
  if (width % heads !== 0) throw new Error(`--width ${width} is not a multiple of --heads ${heads}`);
  return { ...base, hidden: width, layers, heads, intermediate: 4 * width };
}

/** brown-bert's vocabulary and positions (its layers, width and heads are the pretraining's flags). */
export const BROWN_BERT = { vocab: 4096, positions: 128 } as const;

/** The HF config.json of a BertForMaskedLM of `shape` (dropout 0.1, GELU, BERT's start), as transformers loads it. */
export function bertMaskedLmConfig(shape: BertShape, padId: number): Record<string, unknown> {
  return {
    architectures: ['BertForMaskedLM'],
    attention_probs_dropout_prob: 0.1,
    hidden_act: 'gelu',
    hidden_dropout_prob: 0.1,
    hidden_size: shape.hidden,
    initializer_range: 0.02,
    intermediate_size: shape.intermediate,
    layer_norm_eps: 1e-12,
    max_position_embeddings: shape.positions,
    model_type: 'bert',
    num_attention_heads: shape.heads,
    num_hidden_layers: shape.layers,
    pad_token_id: padId,
    position_embedding_type: 'absolute',
    tie_word_embeddings: true,
    torch_dtype: 'float32',
    type_vocab_size: 2,
    vocab_size: shape.vocab,
  };
}

/**
 * BERT's initialisation of a masked LM of `shape`: N(0, 0.02) weights, LayerNorms 1, biases 0 (the
 * decoder is the word embeddings), tensors listed embeddings, layers, then the prediction head.
 */
export function bertMaskedLmStart(location: string, shape: BertShape, seed: number): Checkpoint {
  const { vocab, positions, hidden: d, layers, intermediate } = shape;
  const shapes = new Map<string, number[]>([
    ['bert.embeddings.word_embeddings.weight', [vocab, d]],
    ['bert.embeddings.position_embeddings.weight', [positions, d]],
    ['bert.embeddings.token_type_embeddings.weight', [2, d]],
    ['bert.embeddings.LayerNorm.weight', [d]],
    ['bert.embeddings.LayerNorm.bias', [d]],
  ]);
  for (let i = 0; i < layers; i++) {
    const p = `bert.encoder.layer.${i}`;
    for (const [name, tensor] of [
      ['attention.self.query', [d, d]],
      ['attention.self.key', [d, d]],
      ['attention.self.value', [d, d]],
      ['attention.output.dense', [d, d]],
      ['intermediate.dense', [intermediate, d]],
      ['output.dense', [d, intermediate]],
    ] as const) {
      shapes.set(`${p}.${name}.weight`, [...tensor]);
      shapes.set(`${p}.${name}.bias`, [tensor[0]]);
    }
    for (const norm of ['attention.output.LayerNorm', 'output.LayerNorm']) {
      shapes.set(`${p}.${norm}.weight`, [d]);
      shapes.set(`${p}.${norm}.bias`, [d]);
    }
  }
  shapes.set('cls.predictions.transform.dense.weight', [d, d]);
  shapes.set('cls.predictions.transform.dense.bias', [d]);
  shapes.set('cls.predictions.transform.LayerNorm.weight', [d]);
  shapes.set('cls.predictions.transform.LayerNorm.bias', [d]);
  shapes.set('cls.predictions.bias', [vocab]);
  return generatedCheckpoint(location, shapes, seed, (name) =>
    name.endsWith('LayerNorm.weight') ? 'ones' : name.endsWith('.weight') ? { std: 0.02 } : 'zeros',
  );
}

/**
 * The log-probability of every token id under its frequency in `blocks` (add-one smoothed over
 * `vocab` ids; ids in `skip`, such as [CLS] and [SEP], not counted): a masked LM's output bias started
 * there predicts the unigram distribution from its first step, so training does not spend its early
 * steps learning token frequencies through the bias.
 */
export function unigramLogPrior(
  blocks: readonly (readonly number[])[],
  vocab: number,
  skip: readonly number[],
): Float32Array {
  const counts = new Float64Array(vocab).fill(1);
  let total = vocab;
  for (const block of blocks)
    for (const id of block)
      if (!skip.includes(id)) {
        counts[id]! += 1;
        total += 1;
      }
  return Float32Array.from(counts, (count) => Math.log(count / total));
}

/** `start` with the masked LM's output bias (`cls.predictions.bias`) replaced by `bias`. */
export function withOutputBias(start: Checkpoint, bias: Float32Array): Checkpoint {
  return {
    ...start,
    tensor: (name) =>
      name === 'cls.predictions.bias'
        ? { dtype: 'float32', shape: [bias.length], values: Float32Array.from(bias) }
        : start.tensor(name),
  };
}

/** A byte-level BPE of `vocabSize` tokens trained on the sentences of `files`, timed and said. */
export function brownBpe(
  files: readonly BrownFile[],
  vocabSize: number,
  specialTokens: readonly string[],
): ReturnType<typeof trainByteLevelBpe> {
  const texts = files.flatMap((f) => f.sentences.map((s) => detokenize(s.map((w) => w.word))));
  const started = performance.now();
  const trained = trainByteLevelBpe(texts, { vocabSize, specialTokens: [...specialTokens] });
  console.log(
    `tokenizer: ${trained.vocab.size} tokens (${trained.merges.length} merges) in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
  return trained;
}

/** What train's onStep hands over that the curve keeps. */
export interface CurveStep {
  step: number;
  totalSteps: number | null;
  loss: number;
  learningRate: number;
  tokens: number;
  seconds: number;
}

/** train's onStep for a pretraining run: each step's loss and rate appended to `curveFile`, every 20th said. */
export function curveStepper(curveFile: string): (step: CurveStep) => void {
  return ({ step, totalSteps, loss, learningRate, tokens, seconds }) => {
    appendFileSync(curveFile, `${JSON.stringify({ step, loss, learningRate })}\n`);
    if (step % 20 === 0)
      console.log(
        `step ${step}/${totalSteps} loss ${loss.toFixed(4)} lr ${learningRate.toExponential(2)} ${(tokens / seconds).toFixed(0)} tok/s`,
      );
  };
}

/** A held-out evaluation appended to `curveFile` (the card's held-out column). */
export function appendCurve(curveFile: string, record: Record<string, number | undefined>): void {
  appendFileSync(curveFile, `${JSON.stringify(record)}\n`);
}

/** A stage of the pretraining: blocks of at most `block` tokens, `batch` a step, the corpus masked `maskings` times. */
export interface Phase {
  block: number;
  batch: number;
  maskings: number;
}

/**
 * `--phases BLOCKxBATCHxMASKINGS,...`: BERT's plateau (the unigram stage) is left sooner on short
 * sequences, so a run may start on short blocks and go on to all the model's positions (the last
 * phase's blocks are the held-out evaluation's).
 */
export function parsePhases(text: string, positions: number): Phase[] {
  const phases = text.split(',').map((part) => {
    const match = /^(\d+)x(\d+)x(\d+)$/.exec(part.trim());
    const [block, batch, maskings] = match ? [Number(match[1]), Number(match[2]), Number(match[3])] : [];
    if (!match || block! < 8 || block! > positions || batch! < 1 || maskings! < 1)
      throw new Error(
        `--phases: expected BLOCKxBATCHxMASKINGS (block 8 to ${positions} tokens, batch and maskings at least 1), got "${part}"`,
      );
    return { block: block!, batch: batch!, maskings: maskings! };
  });
  if (phases.at(-1)!.block !== positions)
    throw new Error(
      `--phases: the last phase trains all ${positions} positions of the model, not ${phases.at(-1)!.block}`,
    );
  return phases;
}
