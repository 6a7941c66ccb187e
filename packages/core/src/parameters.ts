/** Anything with a shape: tf.Variable, tf.Tensor, or a plain description. */
export interface Shaped {
  readonly shape: readonly number[];
}

export function countParameters(tensors: Iterable<Shaped>): number {
  let total = 0;
  for (const tensor of tensors) total += tensor.shape.reduce((a, b) => a * b, 1);
  return total;
}

export interface ParameterCount {
  trainable: number;
  all: number;
}

/** The line Hugging Face peft's `print_trainable_parameters` prints, with the same numbers. */
export function formatParameterCount({ trainable, all }: ParameterCount): string {
  const share = all === 0 ? 0 : (100 * trainable) / all;
  return `trainable params: ${trainable.toLocaleString('en-US')} || all params: ${all.toLocaleString('en-US')} || trainable%: ${share.toFixed(4)}`;
}
