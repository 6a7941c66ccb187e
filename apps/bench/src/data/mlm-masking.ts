// BERT's masked-LM objective on a block of token ids (brown-bert's pretraining, issue 26).
import { IGNORE_INDEX, type Example, type SeededRandom } from '@peft/core';

/** BERT's masking: the share of tokens chosen, and of those the shares masked and replaced at random. */
export const MASKING = { chosen: 0.15, masked: 0.8, random: 0.1 } as const;

export interface SpecialIds {
  pad: number;
  cls: number;
  sep: number;
  mask: number;
  unk: number;
}

export interface MaskingVocabulary extends SpecialIds {
  /** Random replacements are drawn from firstWord..vocab-1 (the special tokens take the ids before). */
  firstWord: number;
  vocab: number;
}

/**
 * BERT's masking of one block [CLS] ... [SEP]: each token between them chosen with probability 0.15
 * (at least one), a chosen token becoming [MASK] (80%), a random word (10%) or itself (10%); the
 * labels hold the chosen tokens, -100 elsewhere.
 */
export function maskBlock(block: readonly number[], random: SeededRandom, vocabulary: MaskingVocabulary): Example {
  const inner = block.length - 2;
  if (inner < 1) throw new Error(`maskBlock: a block of ${block.length} tokens has none between [CLS] and [SEP]`);
  const inputIds = [...block];
  const labels = block.map(() => IGNORE_INDEX);
  const chosen: number[] = [];
  for (let t = 1; t <= inner; t++) if (random.next() < MASKING.chosen) chosen.push(t);
  if (chosen.length === 0) chosen.push(1 + Math.floor(random.next() * inner));
  const { mask, firstWord, vocab } = vocabulary;
  for (const t of chosen) {
    labels[t] = block[t]!;
    const draw = random.next();
    if (draw < MASKING.masked) inputIds[t] = mask;
    else if (draw < MASKING.masked + MASKING.random)
      inputIds[t] = firstWord + Math.floor(random.next() * (vocab - firstWord));
  }
  return { inputIds, labels };
}

/**
 * The examples with their labels kept only where the input is [MASK]: what the model predicts from
 * the context alone (the chosen tokens kept as themselves or replaced at random leave their label
 * out). An example left without a label is left out.
 */
export function labelsAtMasks(examples: readonly Example[], mask: number): Example[] {
  return examples.flatMap((example) => {
    const labels = (example.labels as number[]).map((label, t) =>
      example.inputIds[t] === mask ? label : IGNORE_INDEX,
    );
    return labels.some((label) => label !== IGNORE_INDEX) ? [{ ...example, labels }] : [];
  });
}
