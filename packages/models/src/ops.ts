// Building blocks shared by the architectures: attention with its mask, and the split of projections
// into heads and back. Shapes as in the notes at the top of transformer-host.ts.
import { addReleasing, headProduct, reshapeReleasing, type ForwardContext, type HostLinear } from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';

/** Additive mask value: exp() of a score this low is exactly 0 in float32. */
const MASKED = -1e9;

/**
 * The additive attention bias [B, 1, T, S] for T queries over S keys, the last T of which are the
 * queries themselves. `keyMask` [B, S] is 1 for keys that may be attended (real tokens, virtual
 * tokens), 0 for padding. Causal: query i sees keys up to S - T + i (and, with a sliding window w,
 * none before S - T + i - w + 1).
 */
export function attentionBias(
  keyMask: tf.Tensor2D,
  queries: number,
  causal: boolean,
  slidingWindow: number | null = null,
): tf.Tensor4D {
  return tf.tidy(() => {
    const [batch, keys] = keyMask.shape;
    let allowed: tf.Tensor = tf.reshape(keyMask, [batch, 1, 1, keys]);
    if (causal) {
      const past = keys - queries;
      const query = tf.reshape(tf.range(past, keys, 1, 'int32'), [queries, 1]);
      const key = tf.reshape(tf.range(0, keys, 1, 'int32'), [1, keys]);
      let visible = tf.lessEqual(key, query); // [T, S]
      // Mistral: a query sees only the `slidingWindow` most recent keys, itself included
      if (slidingWindow !== null) visible = tf.logicalAnd(visible, tf.greater(key, tf.sub(query, slidingWindow)));
      allowed = tf.mul(allowed, tf.reshape(tf.cast(visible, 'float32'), [1, 1, queries, keys]));
    }
    return tf.mul(tf.sub(1, allowed), MASKED) as tf.Tensor4D;
  });
}

/** c·tanh(x / c) (Gemma 2's soft-capping): bounds x to (-c, c), close to the identity near 0. */
export function softCapped(x: tf.Tensor, cap: number): tf.Tensor {
  return tf.mul(tf.tanh(tf.div(x, cap)), cap);
}

/**
 * Scaled dot-product attention. q [B, H, T, hd]; k, v [B, Hkv, S, hd] with H a multiple of Hkv
 * (grouped-query attention: query heads g·j .. g·j + g - 1 share key/value head j). The g query
 * heads of a group are folded into the query axis, so keys and values are never copied. A scale of 1
 * (queries already scaled) multiplies nothing. `softCap` c (Gemma 2's attn_logit_softcapping) bounds
 * the scaled scores to (-c, c) as c·tanh(x / c), before the mask. `dropout` (training) takes the
 * attention probabilities, as transformers' attention dropout does.
 */
export function attention(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  bias: tf.Tensor4D,
  scale: number,
  softCap: number | null = null,
  dropout: ((probabilities: tf.Tensor4D) => tf.Tensor4D) | null = null,
): tf.Tensor4D {
  return tf.tidy(() => {
    const [batch, heads, length, headDim] = q.shape;
    const kvHeads = k.shape[1];
    const group = heads / kvHeads;
    const grouped = group === 1 ? q : tf.reshape(q, [batch, kvHeads, group * length, headDim]);
    const groupBias = group === 1 ? bias : tf.tile(bias, [1, 1, group, 1]); // [B, 1, g·T, S]
    const products = tf.matMul(grouped, k, false, true); // [B, Hkv, g·T, S]
    let scaled = scale === 1 ? products : tf.mul(products, scale);
    if (softCap !== null) scaled = softCapped(scaled, softCap);
    // the mask takes no gradient; the scores are not kept for the backward pass (softmax keeps its output)
    const scores = addReleasing(scaled, groupBias, { constant: true }); // [B, Hkv, g·T, S]
    const probabilities = tf.softmax(scores) as tf.Tensor4D; // [B, Hkv, g·T, S]
    const out = tf.matMul(dropout ? dropout(probabilities) : probabilities, v); // [B, Hkv, g·T, hd]
    return (group === 1 ? out : tf.reshape(out, [batch, heads, length, headDim])) as tf.Tensor4D;
  });
}

/**
 * [B·T, H·hd] (or [B, T, H·hd]) -> [B, H, T, hd]: one reshape and one transpose; one token
 * (decoding) needs no transpose, the layouts agree.
 */
export function splitHeads(x: tf.Tensor, batch: number, heads: number, headDim: number): tf.Tensor4D {
  const length = x.size / (batch * heads * headDim);
  if (length === 1) return tf.reshape(x, [batch, heads, 1, headDim]);
  return tf.transpose(tf.reshape(x, [batch, length, heads, headDim]), [0, 2, 1, 3]);
}

/** [B, H, T, hd] -> [B·T, H·hd], the rows of a projection's input. */
export function mergeHeads(x: tf.Tensor4D): tf.Tensor2D {
  const [batch, heads, length, headDim] = x.shape;
  if (length === 1) return tf.reshape(x, [batch, heads * headDim]);
  return tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [batch * length, heads * headDim]);
}

/** The projections of a gated MLP (SwiGLU, GeGLU): gate and up d -> intermediate, down back to d. */
export interface GatedMlpBlock {
  gate: HostLinear;
  up: HostLinear;
  down: HostLinear;
}

/** down(act(gate(x)) · up(x)) on the rows of x: [B, T, d] -> [B, T, d]. */
export function gatedMlp(
  block: GatedMlpBlock,
  normed: tf.Tensor3D,
  gatedAct: (gate: tf.Tensor, up: tf.Tensor) => tf.Tensor,
  context: ForwardContext,
): tf.Tensor3D {
  const [batch, length, d] = normed.shape;
  const rows = tf.reshape(normed, [batch * length, d]); // [B·T, d]
  const gated = gatedAct(block.gate.apply(rows, context), block.up.apply(rows, context)); // [B·T, intermediate]
  const output = block.down.apply(gated, context); // [B·T, d]
  return tf.reshape(output, [batch, length, d]) as tf.Tensor3D; // [B, T, d]
}

/**
 * Logits of a language-model head held as [V, d] (tied to the token embeddings, or its own
 * lm_head.weight): [B, T, d] -> [B, T, V], soft-capped when `softCap` is given (Gemma 2's
 * final_logit_softcapping).
 */
export function lmHeadLogits(normed: tf.Tensor3D, lmHead: tf.Tensor2D, softCap: number | null = null): tf.Tensor {
  const [batch, length, d] = normed.shape;
  let logits = headProduct(tf.reshape(normed, [batch * length, d]), lmHead); // [B·T, V]
  if (softCap !== null) logits = softCapped(logits, softCap) as tf.Tensor2D; // [B·T, V]
  return reshapeReleasing(logits, [batch, length, lmHead.shape[0]]); // [B, T, V]
}
