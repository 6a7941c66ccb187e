// The three task losses. Cross-entropy carries its own gradient (so gathering the labels' logits
// needs no gather gradient, which wasm lacks, and the logits-sized temporaries stay few).
import * as tf from '@tensorflow/tfjs-core';

import type { LmHead } from './host.js';
import { headProduct, reshapeReleasing } from './nn.js';

/** Labels at this value take no part in a loss (Hugging Face's convention). */
export const IGNORE_INDEX = -100;

/**
 * Mean cross-entropy of logits [N, C] against labels [N], skipping IGNORE_INDEX; also the count.
 *
 * One fused op with its gradient written out, (softmax(logits) - onehot(label)) · w / count, as
 * torch's cross_entropy has it. The forward pass keeps exp(logits - max) (which replaces the
 * logits it saved before) so the gradient is one multiply, softmax · w / count, and an update of
 * the N labelled entries: two passes over the logits-sized tensors where recomputing the softmax
 * and subtracting a one-hot matrix took seven (a Llama step at batch 4 x 128 and a vocabulary of
 * 32,000: the gradient's kernels 31 -> 12 ms).
 */
export function maskedCrossEntropy(logits: tf.Tensor2D, labels: Int32Array): { loss: tf.Scalar; count: number } {
  const [rows, classes] = logits.shape;
  if (labels.length !== rows) throw new Error(`${labels.length} labels for ${rows} rows of logits`);
  let count = 0;
  const safe = new Int32Array(labels.length);
  const weights = new Float32Array(labels.length);
  labels.forEach((label, i) => {
    if (label === IGNORE_INDEX) return;
    if (label < 0 || label >= classes)
      throw new Error(`label ${label} is outside the ${classes} classes of the logits`);
    safe[i] = label;
    weights[i] = 1;
    count += 1;
  });
  const divisor = Math.max(1, count);
  // the labelled entries by their flat index (wasm's gather with batchDims gives wrong values)
  const flatIndex = safe.map((label, row) => row * classes + label);
  const labelled = Int32Array.from(labels.keys()).filter((row) => weights[row] === 1);
  const crossEntropy = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, save] = args as [tf.Tensor2D, tf.GradSaveFunc];
    const weight = tf.tensor2d(weights, [rows, 1]);
    const max = tf.max(x, -1, true); // [N, 1]
    const shiftedExp = tf.exp(tf.sub(x, max)); // [N, C]
    const total = tf.sum(shiftedExp, -1, true); // [N, 1]
    const logNormaliser = tf.add(tf.log(total), max);
    const picked = tf.reshape(tf.gather(tf.reshape(x, [-1]), tf.tensor1d(flatIndex, 'int32')), [rows, 1]);
    const value = tf.div(tf.sum(tf.mul(tf.sub(logNormaliser, picked), weight)), divisor);
    save([shiftedExp, total, weight]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        tf.tidy(() => {
          const [expShifted, sum, rowWeight] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
          const scale = tf.mul(rowWeight, tf.div(dy, divisor)); // [N, 1]: 0 on unlabelled rows
          const scaled = tf.mul(expShifted, tf.div(scale, sum)); // softmax · scale
          if (labelled.length === 0) return scaled;
          // the labels' entries: softmax · scale - scale, the scale of a labelled row being dy / count
          const index = tf.tensor1d(
            labelled.map((row) => flatIndex[row]!),
            'int32',
          );
          const updates = tf.sub(tf.gather(tf.reshape(scaled, [-1]), index), tf.div(dy, divisor));
          const positions = new Int32Array(2 * labelled.length);
          for (const [i, row] of labelled.entries()) positions.set([row, safe[row]!], 2 * i);
          return tf.tensorScatterUpdate(scaled, tf.tensor2d(positions, [labelled.length, 2], 'int32'), updates);
        }),
    };
  });
  const loss = tf.tidy(() => crossEntropy(logits) as tf.Scalar);
  return { loss, count };
}

/**
 * Values of one chunk's [rows, vocabulary] temporaries in fusedCausalLmLoss (256 MB of float32). Each
 * chunk reads the head's weight twice: smaller chunks cost speed (GPT-2, 508 labelled tokens in two
 * chunks of 2^24 values: 1.14x the plain step's time, paired A/B; in one chunk: 1.00x).
 */
const FUSED_CHUNK_VALUES = 2 ** 26;

/**
 * A backend's one-kernel softmax cross-entropy (the native backend's is libtensorflow's
 * SparseSoftmaxCrossEntropyWithLogits): inputs `logits` [n, V] float32 and `labels` [n] int32 (each
 * in 0..V-1); outputs the rows' losses logsumexp(row) - row[label] [n] and their gradient
 * softmax(row) - onehot(label) [n, V]. fusedCausalLmLoss takes it where registered, its own
 * composed ops otherwise.
 */
export const SOFTMAX_CROSS_ENTROPY_KERNEL = 'PeftSoftmaxCrossEntropy';

/**
 * causalLmLoss from the head's input [B, P+T, d] and the head, the logits made and dropped a chunk of
 * labelled tokens at a time (rows · vocabulary ≤ 2^26 values), so that the [tokens, vocabulary]
 * logits never exist whole (Qwen's 151,936-token vocabulary at 256 tokens: 155 MB each, and the
 * softmax and its gradient as many again). Unlabelled positions (prompts, padding, the last one) are
 * skipped: no head product at all for them. `withGradients` (training): each chunk's gradients, of
 * the head's input and, where the head's weight is a trainable variable, of the weight, are made in
 * the same pass while the chunk's softmax is at hand; the loss's gradient function only scales them
 * by dy. Equal to causalLmLoss(input · weightᵀ) within float32 rounding.
 */
export function fusedCausalLmLoss(
  hidden: tf.Tensor3D,
  head: LmHead,
  labels: readonly (readonly number[])[],
  prepended: number,
  withGradients: boolean,
  /** Values of one chunk's temporaries (tests make it small to run several chunks). */
  chunkValues = FUSED_CHUNK_VALUES,
): { loss: tf.Scalar; count: number } {
  const [batch, length, d] = hidden.shape;
  const [vocabulary] = head.weight.shape;
  const shifted = nextTokenLabels(labels, prepended, batch, length);
  const targets: number[] = [];
  const rowsOf: number[] = [];
  shifted.forEach((label, row) => {
    if (label === IGNORE_INDEX) return;
    if (label < 0 || label >= vocabulary)
      throw new Error(`label ${label} is outside the ${vocabulary} classes of the logits`);
    rowsOf.push(row);
    targets.push(label);
  });
  const count = targets.length;
  // no labelled token: a loss of 0, still connected to the input (its gradient is zeros); + 0 makes -0 +0
  if (count === 0) return { loss: tf.tidy(() => tf.add(tf.mul(tf.sum(hidden), 0), 0) as tf.Scalar), count };
  const chunkRows = Math.max(1, Math.floor(chunkValues / vocabulary));
  const weightTrains = withGradients && head.weight instanceof tf.Variable && head.weight.trainable;
  const rows = tf.tensor1d(rowsOf, 'int32');
  const nativeLoss = tf.getKernel(SOFTMAX_CROSS_ENTROPY_KERNEL, tf.getBackend()) !== undefined;

  /** The chunk's summed loss and, with gradients, those of its rows of the input and of the weight. */
  const chunk = (
    x: tf.Tensor2D,
    weight: tf.Tensor2D,
    start: number,
    size: number,
  ): { loss: tf.Scalar; input?: tf.Tensor2D; weight?: tf.Tensor2D } =>
    tf.tidy(() => {
      const h = tf.gather(x, tf.slice(rows, [start], [size])) as tf.Tensor2D; // [n, d]
      // each [n, V] temporary is freed once the next one exists (the tidy would keep them all to the
      // chunk's end): two at a time at most
      let z = headProduct(h, weight); // [n, V]
      let capped: tf.Tensor2D | null = null;
      if (head.softCap !== null) {
        const scaled = tf.div(z, head.softCap);
        capped = tf.tanh(scaled) as tf.Tensor2D;
        tf.dispose([scaled, z]);
        z = tf.mul(capped, head.softCap) as tf.Tensor2D;
      }
      if (nativeLoss) {
        // one kernel: each row's loss and softmax - onehot; the 1/count goes on the [n, d] products
        const [rowLosses, backprop] = tf.engine().runKernel(SOFTMAX_CROSS_ENTROPY_KERNEL, {
          logits: z,
          labels: tf.tensor1d(targets.slice(start, start + size), 'int32'),
        }) as [tf.Tensor1D, tf.Tensor2D];
        z.dispose();
        const loss = tf.sum(rowLosses) as tf.Scalar;
        if (!withGradients) return { loss };
        const gradient = capped ? (tf.mul(backprop, tf.sub(1, tf.square(capped))) as tf.Tensor2D) : backprop;
        return {
          loss,
          input: tf.mul(tf.matMul(gradient, weight), 1 / count) as tf.Tensor2D, // [n, d]
          ...(weightTrains ? { weight: tf.mul(tf.matMul(gradient, h, true, false), 1 / count) as tf.Tensor2D } : {}),
        };
      }
      // the targets' entries by their flat index
      const flatIndex = tf.tensor1d(
        Int32Array.from(targets.slice(start, start + size), (label, i) => i * vocabulary + label),
        'int32',
      );
      const max = tf.max(z, -1, true); // [n, 1]
      const shiftedExp = tf.exp(tf.sub(z, max)); // [n, V]
      const total = tf.sum(shiftedExp, -1, true); // [n, 1]
      const picked = tf.gather(tf.reshape(z, [-1]), flatIndex); // [n]
      const loss = tf.sum(tf.sub(tf.reshape(tf.add(tf.log(total), max), [-1]), picked)) as tf.Scalar;
      if (!withGradients) return { loss };
      // (softmax - onehot) / count, through the soft cap's derivative 1 - tanh² where there is one
      let gradient = tf.div(shiftedExp, tf.mul(total, count)) as tf.Tensor2D; // [n, V]
      const positions = new Int32Array(2 * size);
      for (let i = 0; i < size; i++) positions.set([i, targets[start + i]!], 2 * i);
      const updates = tf.sub(tf.gather(tf.reshape(gradient, [-1]), flatIndex), 1 / count);
      gradient = tf.tensorScatterUpdate(gradient, tf.tensor2d(positions, [size, 2], 'int32'), updates);
      if (capped) gradient = tf.mul(gradient, tf.sub(1, tf.square(capped))) as tf.Tensor2D;
      return {
        loss,
        input: tf.matMul(gradient, weight) as tf.Tensor2D, // [n, d]
        ...(weightTrains ? { weight: tf.matMul(gradient, h, true, false) as tf.Tensor2D } : {}), // [V, d]
      };
    });

  const flat = reshapeReleasing(hidden, [batch * length, d]) as tf.Tensor2D;
  try {
    if (!withGradients) {
      return {
        loss: tf.tidy(() => {
          let sum = tf.scalar(0);
          for (let start = 0; start < count; start += chunkRows) {
            const { loss } = chunk(flat, head.weight, start, Math.min(chunkRows, count - start));
            sum = tf.add(sum, loss);
          }
          return tf.div(sum, count) as tf.Scalar;
        }),
        count,
      };
    }
    const fused = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const save = args[args.length - 1] as tf.GradSaveFunc;
      const x = args[0] as tf.Tensor2D;
      const weight = weightTrains ? (args[1] as tf.Tensor2D) : head.weight;
      let sum: tf.Tensor = tf.scalar(0);
      const inputGradients: tf.Tensor2D[] = [];
      let weightGradient: tf.Tensor | null = null;
      for (let start = 0; start < count; start += chunkRows) {
        const part = chunk(x, weight, start, Math.min(chunkRows, count - start));
        const next = tf.add(sum, part.loss);
        tf.dispose([sum, part.loss]);
        sum = next;
        inputGradients.push(part.input!);
        if (part.weight) {
          const accumulated: tf.Tensor = weightGradient ? tf.add(weightGradient, part.weight) : part.weight;
          if (weightGradient) tf.dispose([weightGradient, part.weight]);
          weightGradient = accumulated;
        }
      }
      const value = tf.div(sum, count) as tf.Scalar;
      sum.dispose();
      // the labelled rows' gradients in their places of the input: zeros elsewhere
      const rowGradients = inputGradients.length === 1 ? inputGradients[0]! : tf.concat(inputGradients, 0);
      const inputGradient = tf.scatterND(tf.reshape(rows, [count, 1]), rowGradients, [batch * length, d]);
      tf.dispose([...inputGradients, rowGradients]);
      save(weightGradient ? [inputGradient, weightGradient] : [inputGradient]);
      return {
        value,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => saved.map((gradient) => tf.mul(gradient, dy)),
      };
    });
    const loss = tf.tidy(() => (weightTrains ? fused(flat, head.weight) : fused(flat)) as tf.Scalar);
    return { loss, count };
  } finally {
    flat.dispose();
    rows.dispose();
  }
}

/**
 * What each position predicts, [B·(P+T)]: the label of the next position (IGNORE_INDEX at the last one
 * and at the virtual tokens). The labels move one position left, not the logits: no copy of them.
 */
function nextTokenLabels(
  labels: readonly (readonly number[])[],
  prepended: number,
  batch: number,
  length: number,
): Int32Array {
  const aligned = alignLabels(labels, prepended, length);
  const shifted = new Int32Array(batch * length).fill(IGNORE_INDEX);
  for (let b = 0; b < batch; b++) shifted.set(aligned.subarray(b * length + 1, (b + 1) * length), b * length);
  return shifted;
}

/** labels [B][T] with `prepended` IGNORE_INDEX in front of each row, as an Int32Array [B·(P+T)]. */
function alignLabels(labels: readonly (readonly number[])[], prepended: number, length: number): Int32Array {
  const out = new Int32Array(labels.length * length).fill(IGNORE_INDEX);
  labels.forEach((row, b) => {
    if (row.length + prepended !== length) {
      throw new Error(
        `labels row ${b} has ${row.length} entries; the logits have ${length - prepended} real positions`,
      );
    }
    out.set(row, b * length + prepended);
  });
  return out;
}

/**
 * Next-token loss: the logits at position t predict the label at t + 1. Positions labelled
 * IGNORE_INDEX (prompt, padding) and the `prepended` virtual tokens are excluded.
 */
export function causalLmLoss(
  logits: tf.Tensor3D,
  labels: readonly (readonly number[])[],
  prepended = 0,
): { loss: tf.Scalar; count: number } {
  const [batch, length, vocabulary] = logits.shape;
  const shifted = nextTokenLabels(labels, prepended, batch, length);
  const flat = reshapeReleasing(logits, [batch * length, vocabulary]) as tf.Tensor2D;
  try {
    return maskedCrossEntropy(flat, shifted);
  } finally {
    flat.dispose();
  }
}

/** Per-token classification; labels [B][T] with IGNORE_INDEX where no label applies. */
export function tokenClassificationLoss(
  logits: tf.Tensor3D,
  labels: readonly (readonly number[])[],
  prepended = 0,
): { loss: tf.Scalar; count: number } {
  const [, length, classes] = logits.shape;
  const aligned = alignLabels(labels, prepended, length);
  const flat = reshapeReleasing(logits, [-1, classes]) as tf.Tensor2D;
  try {
    return maskedCrossEntropy(flat, aligned);
  } finally {
    flat.dispose();
  }
}

/** One label per sequence from a classification head's logits [B, C]. */
export function sequenceClassificationLoss(
  logits: tf.Tensor2D,
  labels: readonly number[],
): { loss: tf.Scalar; count: number } {
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

/**
 * A masked LM's class logits [B, C] from its logits [B, L, V] at each row's [MASK] positions
 * (`maskPositions[b]`, in order): a class's score is the mean over its label word's tokens of their
 * log-probability, the k-th token read at the k-th mask (a label word of one token: its logit less
 * the row's log-sum-exp, so the softmax over classes is the one over the label words' logits).
 */
export function maskedVerbalizerLogits(
  logits: tf.Tensor3D,
  maskPositions: readonly (readonly number[])[],
  words: readonly (readonly number[])[],
): tf.Tensor2D {
  const [batch, length, vocabulary] = logits.shape;
  const masks = Math.max(...words.map((word) => word.length)); // K
  return tf.tidy(() => {
    const rows = new Int32Array(batch * masks);
    maskPositions.forEach((positions, b) => {
      for (let k = 0; k < masks; k++) rows[b * masks + k] = b * length + positions[k]!;
    });
    const flat = tf.reshape(logits, [batch * length, vocabulary]); // [B·L, V]
    const atMasks = tf.logSoftmax(tf.gather(flat, tf.tensor1d(rows, 'int32'))); // [B·K, V]
    // each label word's tokens (N in all) at their masks, then 1/n of each into its class's column
    const picks = words.flatMap((word) => word.map((token, k) => k * vocabulary + token));
    const average = new Float32Array(picks.length * words.length);
    let n = 0;
    words.forEach((word, c) => {
      for (let k = 0; k < word.length; k++) average[n++ * words.length + c] = 1 / word.length;
    });
    const picked = tf.gather(tf.reshape(atMasks, [batch, masks * vocabulary]), tf.tensor1d(picks, 'int32'), 1); // [B, N]
    return tf.matMul(picked, tf.tensor2d(average, [picks.length, words.length])) as tf.Tensor2D; // [B, C]
  });
}
