// Small functions hosts and methods share: activations by their Hugging Face names (ACT2FN), the norms,
// and a reshape and an add whose gradients keep no inputs for the backward pass.
import * as tf from '@tensorflow/tfjs-core';

import { recordingGradients } from './gradients.js';

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/**
 * The native backend's inference kernels: the same function as the op here, run as plain
 * libtensorflow ops when no gradient is recorded (decoding one token, a norm or an activation cost
 * more in per-op bookkeeping than in arithmetic). Inputs and attributes as the names say.
 */
export const LAYER_NORM_KERNEL = 'PeftLayerNorm'; // x, weight, bias; epsilon
export const RMS_NORM_KERNEL = 'PeftRmsNorm'; // x, weight; epsilon
export const GELU_TANH_KERNEL = 'PeftGeluTanh'; // x
export const SWIGLU_KERNEL = 'PeftSwiGlu'; // gate, up

/** `kernel` on float32 inputs when no gradient is recorded and the backend registers it; else null. */
function inferenceKernel(
  kernel: string,
  inputs: Record<string, tf.Tensor>,
  attrs: Record<string, number> = {},
): tf.Tensor | null {
  if (recordingGradients() || !tf.getKernel(kernel, tf.getBackend())) return null;
  for (const input of Object.values(inputs)) if (input.dtype !== 'float32') return null;
  return tf.engine().runKernel(kernel, inputs, attrs) as tf.Tensor;
}

/**
 * A backend's product of a language-model head (the native backend's runs on oneDNN where the build
 * has it): inputs `rows` [N, d] and `weight` [V, d], both float32; output rows·weightᵀ [N, V]. Its
 * gradient is registered here, so a recorded pass can take it too.
 */
export const HEAD_PRODUCT_KERNEL = 'PeftHeadProduct';

tf.registerGradient({
  kernelName: HEAD_PRODUCT_KERNEL,
  inputsToSave: ['rows', 'weight'],
  gradFunc: (dy, saved) => {
    const [rows, weight] = saved as [tf.Tensor2D, tf.Tensor2D];
    return {
      rows: () => tf.matMul(dy as tf.Tensor2D, weight), // [N, d]
      weight: () => tf.matMul(dy as tf.Tensor2D, rows, true, false), // [V, d]
    };
  },
});

/**
 * rows [N, d] by a head's weight [V, d] (tied to the token embeddings, or its own lm_head.weight):
 * rows·weightᵀ [N, V], as the backend's HEAD_PRODUCT_KERNEL where it registers one. Backends without
 * it (cpu, wasm, webgl) keep the form every host used before, (W·rowsᵀ)ᵀ; it was chosen on
 * libtensorflow, whose product with the vocabulary-sized operand transposed then ran at 35-62 GFLOPS
 * against 92-101 for the plain one, and was not measured against rows·Wᵀ on the others.
 */
export function headProduct(rows: tf.Tensor2D, weight: tf.Tensor2D): tf.Tensor2D {
  if (rows.dtype === 'float32' && weight.dtype === 'float32' && tf.getKernel(HEAD_PRODUCT_KERNEL, tf.getBackend()))
    return tf.engine().runKernel(HEAD_PRODUCT_KERNEL, { rows, weight }) as tf.Tensor2D;
  return tf.tidy(() => tf.transpose(tf.matMul(weight, tf.transpose(rows))) as tf.Tensor2D);
}

const GELU_CUBIC = 0.044715;

/**
 * GELU, tanh approximation: 0.5·x·(1 + tanh(c·(x + 0.044715·x³))), c = √(2/π), computed as
 * x·σ(2c·(x + 0.044715·x³)) (the same function: 0.5·(1 + tanh z) = σ(2z)). One op with its derivative
 * written out, s + x·s·(1 - s)·2c·(1 + 3·0.044715·x²), s the sigmoid: the composed version spent a
 * tenth of a GPT-2 training step in `pow` and its gradient, and ran 19 kernels where this runs 15.
 */
const geluTanh = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [x, save] = args as [tf.Tensor, tf.GradSaveFunc];
  const twoC = 2 * SQRT_2_OVER_PI;
  const s = tf.sigmoid(tf.mul(x, tf.add(tf.mul(tf.square(x), twoC * GELU_CUBIC), twoC)));
  save([x, s]);
  return {
    value: tf.mul(x, s),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
      tf.tidy(() => {
        const [input, sigmoid] = saved as [tf.Tensor, tf.Tensor];
        const slope = tf.add(tf.mul(tf.square(input), 3 * twoC * GELU_CUBIC), twoC); // d(argument)/dx
        const outer = tf.mul(tf.mul(input, tf.mul(sigmoid, tf.sub(1, sigmoid))), slope);
        return tf.mul(dy, tf.add(sigmoid, outer));
      }),
  };
});

/** The activations of Hugging Face's ACT2FN that these architectures use. */
export const ACTIVATIONS: Record<string, (x: tf.Tensor) => tf.Tensor> = {
  // tanh approximation (GPT-2's gelu_new, also gelu_pytorch_tanh)
  gelu_new: (x) => inferenceKernel(GELU_TANH_KERNEL, { x }) ?? geluTanh(x),
  // exact: x·Φ(x)
  gelu: (x) => tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))))),
  silu: (x) => tf.tidy(() => tf.mul(x, tf.sigmoid(x))),
  relu: (x) => tf.relu(x),
  tanh: (x) => tf.tanh(x),
  sigmoid: (x) => tf.sigmoid(x),
  leakyrelu: (x) => tf.leakyRelu(x, 0.01),
};
ACTIVATIONS.gelu_pytorch_tanh = ACTIVATIONS.gelu_new!;
ACTIVATIONS.swish = ACTIVATIONS.silu!;

export function activation(name: string, where: string): (x: tf.Tensor) => tf.Tensor {
  const fn = ACTIVATIONS[name];
  if (!fn)
    throw new Error(`${where}: unsupported activation "${name}" (supported: ${Object.keys(ACTIVATIONS).join(', ')})`);
  return fn;
}

/**
 * SiLU(gate)·up, the gated feed-forward of Llama-family models (SwiGLU), as one op with its gradient
 * written out: with s = σ(gate) and a = gate·s, d/d(up) = dy·a and d/d(gate) = dy·up·(s + a·(1 - s)).
 * Composed from tfjs ops its backward pass ran 12 kernels of the feed-forward's width (mul's gradient
 * casts its other operand each time); this runs 6.
 */
const swiGlu = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [gate, up, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
  const s = tf.sigmoid(gate);
  const a = tf.mul(gate, s);
  save([s, a, up]);
  return {
    value: tf.mul(a, up),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
      tf.tidy(() => {
        const [sigmoid, activated, upSaved] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
        const slope = tf.add(sigmoid, tf.mul(activated, tf.sub(1, sigmoid))); // d(gate·σ(gate))/d(gate)
        return [tf.mul(tf.mul(dy, upSaved), slope), tf.mul(dy, activated)];
      }),
  };
});

/**
 * act(gate)·up for a gated feed-forward whose activation is named as in config.json `hidden_act`:
 * SiLU (also called swish) takes the written-out op above, any other activation is composed.
 */
export function gatedActivation(name: string, where: string): (gate: tf.Tensor, up: tf.Tensor) => tf.Tensor {
  const act = activation(name, where);
  if (act === ACTIVATIONS.silu) return (gate, up) => inferenceKernel(SWIGLU_KERNEL, { gate, up }) ?? swiGlu(gate, up);
  return (gate, up) => tf.tidy(() => tf.mul(act(gate), up));
}

/**
 * Whether an op's gradient for `weight` can be asked for. A tf.Variable that is not trainable is
 * never differentiated (tf.variableGrads takes trainable variables only), so its gradient, a full
 * pass over the activations for a norm's weight, is not computed: zeros stand in for it.
 */
function wantsGradient(weight: tf.Tensor): boolean {
  return !(weight instanceof tf.Variable) || weight.trainable;
}

/** Sums [..., d] over every axis but the last: the gradient of a per-feature weight. */
function featureSum(x: tf.Tensor): tf.Tensor1D {
  return tf.sum(tf.reshape(x, [-1, x.shape[x.rank - 1]!]), 0);
}

/**
 * LayerNorm over the last axis, as torch.nn.LayerNorm (biased variance): (x - μ)/√(σ² + ε)·w + b.
 * One op with its gradient written out (dx = (g - mean(g) - x̂·mean(g·x̂))/√(σ² + ε), g = dy·w):
 * the composed version ran three times as many kernels in the backward pass. A frozen weight or
 * bias (a tf.Variable that is not trainable) takes no gradient pass. Outside training (no gradient
 * recorded), a backend that registers LAYER_NORM_KERNEL (the native one) runs it instead: fewer ops,
 * which is most of a norm's time when decoding one token.
 */
export function layerNorm(x: tf.Tensor, weight: tf.Tensor1D, bias: tf.Tensor1D, epsilon: number): tf.Tensor {
  const native = inferenceKernel(LAYER_NORM_KERNEL, { x, weight, bias }, { epsilon });
  if (native) return native;
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [input, w, b, save] = args as [tf.Tensor, tf.Tensor1D, tf.Tensor1D, tf.GradSaveFunc];
    const centred = tf.sub(input, tf.mean(input, -1, true));
    const inverse = tf.rsqrt(tf.add(tf.mean(tf.square(centred), -1, true), epsilon));
    const normed = tf.mul(centred, inverse);
    save([normed, inverse, w]);
    return {
      value: tf.add(tf.mul(normed, w), b),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        tf.tidy(() => {
          const [xHat, inv, scale] = saved as [tf.Tensor, tf.Tensor, tf.Tensor1D];
          const g = tf.mul(dy, scale);
          const dx = tf.mul(
            tf.sub(tf.sub(g, tf.mean(g, -1, true)), tf.mul(xHat, tf.mean(tf.mul(g, xHat), -1, true))),
            inv,
          );
          return [
            dx,
            wantsGradient(weight) ? featureSum(tf.mul(dy, xHat)) : tf.zerosLike(scale),
            wantsGradient(bias) ? featureSum(dy) : tf.zerosLike(scale),
          ];
        }),
    };
  });
  return op(x, weight, bias);
}

/**
 * RMSNorm over the last axis, as Llama's: x / √(mean(x²) + ε)·w. Its gradient written out:
 * dx = (g - x̂·mean(g·x̂))/√(mean(x²) + ε), g = dy·w. A frozen weight takes no gradient pass.
 * Outside training, RMS_NORM_KERNEL where the backend has it, as layerNorm.
 */
export function rmsNorm(x: tf.Tensor, weight: tf.Tensor1D, epsilon: number): tf.Tensor {
  const native = inferenceKernel(RMS_NORM_KERNEL, { x, weight }, { epsilon });
  if (native) return native;
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [input, w, save] = args as [tf.Tensor, tf.Tensor1D, tf.GradSaveFunc];
    const inverse = tf.rsqrt(tf.add(tf.mean(tf.square(input), -1, true), epsilon));
    const normed = tf.mul(input, inverse);
    save([normed, inverse, w]);
    return {
      value: tf.mul(normed, w),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        tf.tidy(() => {
          const [xHat, inv, scale] = saved as [tf.Tensor, tf.Tensor, tf.Tensor1D];
          const g = tf.mul(dy, scale);
          const dx = tf.mul(tf.sub(g, tf.mul(xHat, tf.mean(tf.mul(g, xHat), -1, true))), inv);
          return [dx, wantsGradient(weight) ? featureSum(tf.mul(dy, xHat)) : tf.zerosLike(scale)];
        }),
    };
  });
  return op(x, weight);
}

/**
 * tf.reshape whose gradient keeps the input's shape only. tfjs's Reshape gradient keeps the input
 * tensor itself until the backward pass reaches it: for a language model's logits (a Llama step
 * at batch 4 x 128 and 32,000 tokens: 65 MB) that is the whole loss gradient's time.
 */
export function reshapeReleasing(x: tf.Tensor, shape: number[]): tf.Tensor {
  if (!recordingGradients()) return tf.reshape(x, shape);
  const inputShape = x.shape;
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [input] = args as [tf.Tensor];
    return { value: tf.reshape(input, shape), gradFunc: (dy: tf.Tensor) => tf.reshape(dy, inputShape) };
  });
  return op(x);
}

/**
 * a + b whose gradient keeps neither input: tfjs's Add gradient keeps both until the backward pass
 * reaches it, for their shapes only (the residual stream, a projection's output under its LoRA
 * path, the attention scores under their mask), and reshapes dy for each. `b` has a's shape or
 * broadcasts onto it ([out] onto [N, out]); a `b` that is a frozen tf.Variable, or marked
 * `constant`, takes no gradient and is not an input of the op.
 */
export function addReleasing(a: tf.Tensor, b: tf.Tensor, options: { constant?: boolean } = {}): tf.Tensor {
  const shape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
  if (!tf.util.arraysEqual(shape, a.shape))
    throw new Error(
      `addReleasing: [${b.shape}] broadcasts [${a.shape}] to [${shape}]; the first operand must carry the result's shape`,
    );
  if (!recordingGradients()) return tf.add(a, b);
  if (options.constant || !wantsGradient(b)) {
    const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const [x] = args as [tf.Tensor];
      return { value: tf.add(x, b), gradFunc: (dy: tf.Tensor) => dy };
    });
    return op(a);
  }
  const axes = tf.backend_util.getReductionAxes(b.shape, a.shape);
  const bShape = b.shape;
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, y] = args as [tf.Tensor, tf.Tensor];
    return {
      value: tf.add(x, y),
      // distinct tensors for the two inputs: tfjs's own backward pass disposes one it accumulates into
      gradFunc: (dy: tf.Tensor) =>
        tf.tidy(() => [dy, axes.length > 0 ? tf.reshape(tf.sum(dy, axes), bShape) : tf.clone(dy)]),
    };
  });
  return op(a, b);
}
