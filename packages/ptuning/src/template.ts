// The paper's templates for P-tuning v1: pseudo tokens anywhere in the input, the real words of
// the template kept, only the target labelled.
import { IGNORE_INDEX, type Example, type ExampleTokenizer } from '@peft/core';

/** A template part: pseudo tokens, fixed text, the input, or the target (what the model learns to produce). */
export type TemplatePart = { pseudo: number } | { text: string } | { slot: 'input' } | { slot: 'target' };

/**
 * Builds a causal-LM example from the paper's template, e.g. `[{ pseudo: 3 }, { slot: 'input' },
 * { pseudo: 2 }, { text: ' is the capital of' }, { slot: 'target' }]`: pseudo tokens become the
 * placeholder id (replaced by the prompt encoder's output), only the target is labelled.
 */
export function templateExample(
  tokenizer: ExampleTokenizer,
  template: readonly TemplatePart[],
  values: { input: string; target?: string },
  placeholderTokenId: number,
): Example {
  const inputIds: number[] = [];
  const labels: number[] = [];
  for (const part of template) {
    let ids: number[];
    let labelled = false;
    if ('pseudo' in part) ids = new Array<number>(part.pseudo).fill(placeholderTokenId);
    else if ('text' in part) ids = tokenizer.encode(part.text, { addSpecialTokens: false }).ids;
    else if (part.slot === 'input') ids = tokenizer.encode(values.input, { addSpecialTokens: false }).ids;
    else {
      ids = values.target === undefined ? [] : tokenizer.encode(values.target, { addSpecialTokens: false }).ids;
      labelled = true;
    }
    if (!('pseudo' in part) && ids.includes(placeholderTokenId)) {
      throw new Error(
        `templateExample: the text itself contains the placeholder token ${placeholderTokenId}; choose another placeholderTokenId`,
      );
    }
    inputIds.push(...ids);
    labels.push(...ids.map((id) => (labelled ? id : IGNORE_INDEX)));
  }
  return { inputIds, labels };
}
