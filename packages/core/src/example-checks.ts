// What an example must be before it reaches a forward pass: each error names the example (its index
// in the data as read, 0-based) and the field, so a bad row is found in the file, not guessed from a
// loss of 0 or a kernel error several steps in.
import { arrayDataset, mapDataset, type Dataset, type Example } from './data.js';
import { IGNORE_INDEX } from './losses.js';

/** What the host and task allow. */
export interface ExampleRules {
  task: 'causal-lm' | 'sequence-classification' | 'token-classification';
  vocabSize: number;
  maxPositions: number;
  /** Positions the adapter's hooks take in front of the real tokens (prefix, virtual tokens). */
  virtualTokens: number;
  /** Of those, the ones whose logits the loss sees (prompt tuning's virtual tokens; not a key/value prefix). */
  prepended: number;
  /** Classes of the head or verbaliser; null for causal-lm. */
  classes: number | null;
  /** A masked LM's verbalizer: the [MASK] token and how many each example must hold. */
  masks?: { tokenId: number; needed: number };
}

const show = (value: unknown): string =>
  typeof value === 'string' ? JSON.stringify(value) : Array.isArray(value) ? 'an array' : String(value);

/** Throws, naming `where` (`data[12]`) and the field, when the example cannot train as the rules say. */
export function checkExample(example: Example, where: string, rules: ExampleRules): void {
  if (typeof example !== 'object' || example === null)
    throw new Error(`${where}: expected an example { inputIds, labels }, got ${show(example)}`);
  const { inputIds, labels } = example;
  if (!Array.isArray(inputIds))
    throw new Error(`${where}.inputIds: expected an array of token ids, got ${show(inputIds)}`);
  if (inputIds.length === 0) throw new Error(`${where}.inputIds: empty (an example needs at least one token)`);
  const lastToken = rules.vocabSize - 1;
  for (const [t, id] of inputIds.entries()) {
    if (!Number.isInteger(id) || id < 0 || id > lastToken) {
      throw new Error(
        `${where}.inputIds[${t}]: ${show(id)} is not a token id (an integer from 0 to ${lastToken}, the model's vocabulary)`,
      );
    }
  }
  const positions = inputIds.length + rules.virtualTokens;
  if (positions > rules.maxPositions) {
    throw new Error(
      rules.virtualTokens === 0
        ? `${where}.inputIds: ${inputIds.length} tokens, more than the model's ${rules.maxPositions} positions; truncate the examples`
        : `${where}.inputIds: ${inputIds.length} tokens plus the adapter's ${rules.virtualTokens} virtual tokens need ${positions} ` +
            `positions, more than the model's ${rules.maxPositions}; truncate the examples to ${rules.maxPositions - rules.virtualTokens} tokens`,
    );
  }
  for (const field of ['tokenTypeIds'] as const) {
    const values = example[field];
    if (values === undefined) continue;
    if (
      !Array.isArray(values) ||
      values.length !== inputIds.length ||
      !values.every((v) => Number.isInteger(v) && v >= 0)
    )
      throw new Error(
        `${where}.${field}: expected one integer >= 0 per input id (${inputIds.length}), got ${show(values)}`,
      );
  }
  if (example.taskId !== undefined && !(Number.isInteger(example.taskId) && example.taskId >= 0))
    throw new Error(`${where}.taskId: expected an integer >= 0, got ${show(example.taskId)}`);
  if (rules.task === 'sequence-classification') {
    if (typeof labels !== 'number') {
      throw new Error(
        `${where}.labels: expected one class (an integer) for task "sequence-classification", got ${show(labels)}`,
      );
    }
    checkClass(labels, `${where}.labels`, rules.classes!);
    if (rules.masks) {
      const { tokenId, needed } = rules.masks;
      const held = inputIds.filter((id) => id === tokenId).length;
      if (held < needed)
        throw new Error(
          `${where}.inputIds: ${held} [MASK] tokens (id ${tokenId}), the verbalizer reads ${needed} (its longest label word's tokens)`,
        );
    }
    return;
  }
  if (!Array.isArray(labels)) {
    throw new Error(
      `${where}.labels: expected one label per input id for task "${rules.task}" (-100 where none), got ${show(labels)}`,
    );
  }
  if (labels.length !== inputIds.length) {
    throw new Error(
      `${where}.labels: ${labels.length} entries for ${inputIds.length} input ids (${rules.task} takes one label per input id, -100 where none)`,
    );
  }
  // causal LM: position t's logits predict the label at t + 1, so the first label counts only when
  // virtual tokens come before it
  const first = rules.task === 'causal-lm' && rules.prepended === 0 ? 1 : 0;
  let labelled = 0;
  for (const [t, label] of labels.entries()) {
    if (!Number.isInteger(label)) {
      const what = rules.task === 'causal-lm' ? 'a token id' : 'a class';
      throw new Error(
        `${where}.labels[${t}]: ${show(label)} is not an integer (${what}, or -100 to ignore the position)`,
      );
    }
    if (label === IGNORE_INDEX) continue;
    if (rules.task === 'causal-lm' && (label < 0 || label > lastToken)) {
      throw new Error(
        `${where}.labels[${t}]: ${label} is outside the vocabulary of ${rules.vocabSize} tokens (0..${lastToken}, or -100 to ignore the position)`,
      );
    }
    if (rules.task === 'token-classification') checkClass(label, `${where}.labels[${t}]`, rules.classes!);
    if (t >= first) labelled += 1;
  }
  if (labelled === 0) {
    throw new Error(
      first === 1
        ? `${where}.labels: no labelled token (every label after the first, which is never predicted, is -100): the example would train nothing`
        : `${where}.labels: no labelled token (every label is -100): the example would train nothing`,
    );
  }
}

function checkClass(label: number, where: string, classes: number): void {
  if (!Number.isInteger(label) || label < 0 || label >= classes)
    throw new Error(`${where}: ${show(label)} is outside the ${classes} classes of the head (0..${classes - 1})`);
}

/**
 * The data with every example checked (`name[i]` in errors): an array at once, before any compute; a
 * stream as each example is read (an error there comes after the steps its earlier examples made).
 */
export function checkedData(
  data: Dataset<Example> | readonly Example[],
  name: string,
  rules: ExampleRules,
): Dataset<Example> {
  if (Array.isArray(data)) {
    const examples = data as readonly Example[];
    for (const [i, example] of examples.entries()) checkExample(example, `${name}[${i}]`, rules);
    return arrayDataset(examples);
  }
  // as read, and where the dataset reads in any order (`at`), as each index is read
  return mapDataset(data as Dataset<Example>, (example, index) => {
    checkExample(example, `${name}[${index}]`, rules);
    return example;
  });
}
