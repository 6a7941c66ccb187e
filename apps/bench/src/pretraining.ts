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
