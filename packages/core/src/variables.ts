import * as tf from '@tensorflow/tfjs-core';

/**
 * A variable that takes over a freshly made tensor. `tf.variable` copies its initial value and
 * leaves it allocated, so `tf.variable(tf.zeros(...))` leaks the zeros; this disposes it.
 */
export function ownVariable<R extends tf.Rank>(initial: tf.Tensor<R>, trainable: boolean): tf.Variable<R> {
  const variable = tf.variable(initial, trainable);
  initial.dispose();
  return variable;
}
