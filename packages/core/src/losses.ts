// The three task losses, built only from ops every backend differentiates (no gather on logits:
// its gradient has no wasm kernel).
import * as tf from '@tensorflow/tfjs-core';

/** Labels at this value take no part in a loss (Hugging Face's convention). */
export const IGNORE_INDEX = -100;

/** Mean cross-entropy of logits [N, C] against labels [N], skipping IGNORE_INDEX; also the count. */
export function maskedCrossEntropy(logits: tf.Tensor2D, labels: Int32Array): { loss: tf.Scalar; count: number } {
  const classes = logits.shape[1];
  let count = 0;
  const safe = new Int32Array(labels.length);
  const weights = new Float32Array(labels.length);
  labels.forEach((label, i) => {
    if (label === IGNORE_INDEX) return;
    if (label < 0 || label >= classes) throw new Error(`label ${label} is outside the ${classes} classes of the logits`);
    safe[i] = label;
    weights[i] = 1;
    count += 1;
  });
  const loss = tf.tidy(() => {
    const picked = tf.sum(tf.mul(logits, tf.oneHot(tf.tensor1d(safe, 'int32'), classes)), -1);
    const perRow = tf.sub(tf.logSumExp(logits, -1), picked); // [N]
    return tf.div(tf.sum(tf.mul(perRow, tf.tensor1d(weights))), Math.max(1, count)) as tf.Scalar;
  });
  return { loss, count };
}

/** labels [B][T] with `prepended` IGNORE_INDEX in front of each row, as an Int32Array [B·(P+T)]. */
function alignLabels(labels: readonly (readonly number[])[], prepended: number, length: number): Int32Array {
  const out = new Int32Array(labels.length * length).fill(IGNORE_INDEX);
  labels.forEach((row, b) => {
    if (row.length + prepended !== length) {
      throw new Error(`labels row ${b} has ${row.length} entries; the logits have ${length - prepended} real positions`);
    }
    out.set(row, b * length + prepended);
  });
  return out;
}

/**
 * Next-token loss: the logits at position t predict the label at t + 1. Positions labelled
 * IGNORE_INDEX (prompt, padding) and the `prepended` virtual tokens are excluded.
 */
export function causalLmLoss(logits: tf.Tensor3D, labels: readonly (readonly number[])[], prepended = 0): { loss: tf.Scalar; count: number } {
  const [batch, length, vocabulary] = logits.shape;
  const aligned = alignLabels(labels, prepended, length);
  const shifted = new Int32Array(batch * (length - 1));
  for (let b = 0; b < batch; b++) shifted.set(aligned.subarray(b * length + 1, (b + 1) * length), b * (length - 1));
  const predictions = tf.tidy(() => tf.reshape(tf.slice(logits, [0, 0, 0], [batch, length - 1, vocabulary]), [-1, vocabulary]) as tf.Tensor2D);
  try {
    return maskedCrossEntropy(predictions, shifted);
  } finally {
    predictions.dispose();
  }
}

/** Per-token classification; labels [B][T] with IGNORE_INDEX where no label applies. */
export function tokenClassificationLoss(logits: tf.Tensor3D, labels: readonly (readonly number[])[], prepended = 0): { loss: tf.Scalar; count: number } {
  const [, length, classes] = logits.shape;
  const aligned = alignLabels(labels, prepended, length);
  const flat = tf.reshape(logits, [-1, classes]) as tf.Tensor2D;
  try {
    return maskedCrossEntropy(flat, aligned);
  } finally {
    flat.dispose();
  }
}

/** One label per sequence from a classification head's logits [B, C]. */
export function sequenceClassificationLoss(logits: tf.Tensor2D, labels: readonly number[]): { loss: tf.Scalar; count: number } {
  return maskedCrossEntropy(logits, Int32Array.from(labels));
}

/**
 * Class logits [B, C] from a language model's logits [B, L, V]: at each row's last real position,
 * the logits of the verbaliser tokens (one token id per class). Selection by matMul with one-hot
 * matrices, so it differentiates on every backend.
 */
export function verbalizerLogits(
  logits: tf.Tensor3D,
  lastPositions: readonly number[],
  verbalizer: readonly number[],
): tf.Tensor2D {
  const [batch, length, vocabulary] = logits.shape;
  return tf.tidy(() => {
    const position = tf.oneHot(tf.tensor1d(Int32Array.from(lastPositions), 'int32'), length); // [B, L]
    const atLast = tf.reshape(tf.matMul(tf.reshape(position, [batch, 1, length]), logits), [batch, vocabulary]); // [B, V]
    const selector = tf.transpose(tf.oneHot(tf.tensor1d(Int32Array.from(verbalizer), 'int32'), vocabulary)); // [V, C]
    return tf.matMul(atLast, selector) as tf.Tensor2D;
  });
}
