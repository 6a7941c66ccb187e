// The paper's templates for P-tuning v1: pseudo tokens anywhere in the input, the real words of
// the template kept (anchors), only the target labelled. On a causal LM the target is written out
// and predicted token by token; on a masked LM it is [MASK] tokens, predicted where they stand (the
// paper's "The capital of [X] is [MASK].").
import { IGNORE_INDEX, type Example, type ExampleTokenizer } from '@peft/core';

/**
 * A template part: pseudo tokens, fixed text (anchor words), the input, or the target (what the model
 * learns to produce). On a masked LM, `masks` is how many [MASK] tokens the target takes when it has
 * no text (classification through a verbalizer: as many as the longest label word has tokens; 1 by default).
 */
export type TemplatePart =
  | { pseudo: number }
  | { text: string }
  | { slot: 'input' }
  | { slot: 'target'; masks?: number };

export interface TemplateOptions {
  /**
   * Masked LMs: the [MASK] token. The target becomes one [MASK] per target token, each labelled with
   * its token (train with task 'token-classification': the loss over the vocabulary at the masks);
   * with `label` instead of a target, `masks` [MASK] tokens and the example's class (task
   * 'sequence-classification' with a verbalizer and this maskTokenId).
   */
  maskTokenId?: number;
  /** Ids before and after the template, as the tokenizer's special tokens ([CLS] ... [SEP]). */
  prefix?: readonly number[];
  suffix?: readonly number[];
  /** The input slot cut to its first this many tokens (so that the template and the target fit the context). */
  inputMaxTokens?: number;
}

/**
 * Builds an example from the paper's template, e.g. `[{ pseudo: 3 }, { slot: 'input' }, { pseudo: 2 },
 * { text: ' is the capital of' }, { slot: 'target' }]`: pseudo tokens become the placeholder id
 * (replaced by the prompt encoder's output), only the target is labelled. `values.label` makes a
 * classification example (masked LMs, read by a verbalizer).
 */
export function templateExample(
  tokenizer: ExampleTokenizer,
  template: readonly TemplatePart[],
  values: { input: string; target?: string; label?: number },
  placeholderTokenId: number,
  options: TemplateOptions = {},
): Example {
  const { maskTokenId, inputMaxTokens } = options;
  const fail = (why: string): never => {
    throw new Error(`templateExample: ${why}`);
  };
  if (inputMaxTokens !== undefined && !(Number.isInteger(inputMaxTokens) && inputMaxTokens > 0))
    fail(`inputMaxTokens: expected a positive integer, got ${inputMaxTokens}`);
  if (values.label !== undefined) {
    if (maskTokenId === undefined) fail('a label (a class read by a verbalizer) needs maskTokenId (masked LMs)');
    if (values.target !== undefined) fail('give a target (labelled tokens) or a label (a class), not both');
  }
  if (template.filter((part) => 'slot' in part && part.slot === 'target').length > 1) fail('more than one target slot');
  const inputIds: number[] = [...(options.prefix ?? [])];
  const labels: number[] = inputIds.map(() => IGNORE_INDEX);
  const encode = (text: string): number[] => tokenizer.encode(text, { addSpecialTokens: false }).ids;
  for (const part of template) {
    let ids: number[];
    let targets: number[] | null = null;
    if ('pseudo' in part) ids = new Array<number>(part.pseudo).fill(placeholderTokenId);
    else if ('text' in part) ids = encode(part.text);
    else if (part.slot === 'input') ids = encode(values.input).slice(0, inputMaxTokens);
    else {
      const target = values.target === undefined ? [] : encode(values.target);
      if (maskTokenId === undefined) {
        if (part.masks !== undefined) fail('a target of [MASK] tokens (masks) needs maskTokenId (masked LMs)');
        ids = target;
        targets = target;
      } else if (values.target !== undefined) {
        if (part.masks !== undefined && part.masks !== target.length)
          fail(`the target "${values.target}" is ${target.length} tokens, the template's target ${part.masks} masks`);
        ids = target.map(() => maskTokenId);
        targets = target;
      } else {
        const masks = part.masks ?? 1;
        if (!(Number.isInteger(masks) && masks > 0)) fail(`masks: expected a positive integer, got ${masks}`);
        ids = new Array<number>(masks).fill(maskTokenId);
      }
    }
    if (!('pseudo' in part) && ids.includes(placeholderTokenId)) {
      fail(`the text itself contains the placeholder token ${placeholderTokenId}; choose another placeholderTokenId`);
    }
    if (
      maskTokenId !== undefined &&
      targets === null &&
      !('slot' in part && part.slot === 'target') &&
      ids.includes(maskTokenId)
    )
      fail(`the text itself contains the [MASK] token ${maskTokenId}: only the target slot holds masks`);
    inputIds.push(...ids);
    labels.push(...(targets ?? ids.map(() => IGNORE_INDEX)));
  }
  inputIds.push(...(options.suffix ?? []));
  labels.push(...(options.suffix ?? []).map(() => IGNORE_INDEX));
  return { inputIds, labels: values.label !== undefined ? values.label : labels };
}
