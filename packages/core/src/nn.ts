// Small functions hosts and methods share: activations by their Hugging Face names (ACT2FN), LayerNorm.
import * as tf from '@tensorflow/tfjs-core';

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

/** The activations of Hugging Face's ACT2FN that these architectures use. */
export const ACTIVATIONS: Record<string, (x: tf.Tensor) => tf.Tensor> = {
  // tanh approximation (GPT-2's gelu_new, also gelu_pytorch_tanh)
  gelu_new: (x) =>
    tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), SQRT_2_OVER_PI))))),
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
  if (!fn) throw new Error(`${where}: unsupported activation "${name}" (supported: ${Object.keys(ACTIVATIONS).join(', ')})`);
  return fn;
}

/** LayerNorm over the last axis, as torch.nn.LayerNorm (biased variance). */
export function layerNorm(x: tf.Tensor, weight: tf.Tensor1D, bias: tf.Tensor1D, epsilon: number): tf.Tensor {
  return tf.tidy(() => {
    const { mean, variance } = tf.moments(x, -1, true);
    return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, epsilon))), weight), bias);
  });
}
