// The training engine's causal-LM loss from the head's input (fusedCausalLmLoss, issue 24): the head
// and the loss a chunk of labelled tokens at a time, the [tokens, vocabulary] logits never whole.
// Held to the plain path (logits, then causalLmLoss): the loss and every gradient, tied and untied
// heads, Gemma's soft-capped one, trainable and frozen head weights, one chunk and several.
import { availableBackends, loadBackend } from '@peft/backend';
import {
  causalLmLoss,
  fusedCausalLmLoss,
  HEAD_PRODUCT_KERNEL,
  IGNORE_INDEX,
  SOFTMAX_CROSS_ENTROPY_KERNEL,
  variableGradients,
  type PeftHost,
} from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';

import { loadPretrained } from '../src/index.js';
import { FIXTURES } from './fixtures.js';

const INPUT = [
  [5, 9, 2, 7, 11, 3, 8, 4],
  [6, 1, 12, 3, 9, 0, 0, 0],
];
// a prompt that takes no loss, padding, and labels the vocabulary covers
const LABELS = [
  [IGNORE_INDEX, IGNORE_INDEX, 2, 7, 11, 3, 8, 4],
  [6, 1, 12, 3, 9, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX],
];
const MASK = [
  [1, 1, 1, 1, 1, 1, 1, 1],
  [1, 1, 1, 1, 1, 0, 0, 0],
];

/** The loss and the gradient of every trainable variable, by the plain path or the fused one. */
function lossAndGradients(host: PeftHost, variables: tf.Variable[], fused: boolean, chunkValues?: number) {
  const { value, grads } = variableGradients(
    () =>
      tf.tidy(() => {
        const output = host.forward({ inputIds: INPUT, attentionMask: MASK, headless: fused, training: true });
        if (fused) {
          expect(output.lmHead).toBeDefined();
          return fusedCausalLmLoss(
            output.logits as tf.Tensor3D,
            output.lmHead!,
            LABELS,
            output.prepended,
            true,
            chunkValues,
          ).loss;
        }
        return causalLmLoss(output.logits as tf.Tensor3D, LABELS, output.prepended).loss;
      }),
    variables,
  );
  const result = {
    loss: value.dataSync()[0]!,
    gradients: new Map(
      variables.filter((v) => grads[v.name]).map((v) => [v.name, grads[v.name]!.dataSync().slice() as Float32Array]),
    ),
  };
  tf.dispose([value, ...Object.values(grads)]);
  return result;
}

function expectClose(plain: ReturnType<typeof lossAndGradients>, fused: ReturnType<typeof lossAndGradients>): number {
  expect(Math.abs(fused.loss - plain.loss)).toBeLessThan(1e-5 * Math.abs(plain.loss));
  expect([...fused.gradients.keys()].sort()).toEqual([...plain.gradients.keys()].sort());
  let worst = 0;
  for (const [name, expected] of plain.gradients) {
    const got = fused.gradients.get(name)!;
    const scale = Math.max(1e-12, ...Array.from(expected, Math.abs));
    const diff = Math.max(...Array.from(expected, (e, i) => Math.abs(e - got[i]!))) / scale;
    worst = Math.max(worst, diff);
    expect(diff, name).toBeLessThan(2e-5);
  }
  return worst;
}

// cpu: the loss composed of tfjs ops; tensorflow: its one-kernel softmax cross-entropy
const BACKENDS = (await availableBackends()).filter((name) => name === 'cpu' || name === 'tensorflow');

describe.each(BACKENDS)('fusedCausalLmLoss equals the plain loss, and its gradients (%s)', (backend) => {
  beforeAll(async () => {
    await loadBackend(backend);
  });

  it("takes the backend's one-kernel softmax cross-entropy and head product where it has them", async () => {
    const host = await loadPretrained(`${FIXTURES}/gpt2-tied`);
    const output = host.forward({ inputIds: INPUT, attentionMask: MASK, headless: true });
    const profile = await tf.profile(() => {
      const { loss } = fusedCausalLmLoss(output.logits as tf.Tensor3D, output.lmHead!, LABELS, 0, false);
      loss.dispose();
    });
    for (const kernelName of [SOFTMAX_CROSS_ENTROPY_KERNEL, HEAD_PRODUCT_KERNEL]) {
      const used = profile.kernels.some((kernel) => kernel.name === kernelName);
      expect(used, kernelName).toBe(backend === 'tensorflow');
    }
    output.logits.dispose();
    host.dispose();
  });

  it.each([
    ['gpt2-tied', 'tied head'],
    ['llama-gqa-untied', 'untied lm_head'],
    ['gemma2-gqa-softcap-tied', 'soft-capped logits (final_logit_softcapping)'],
    ['phi3-gqa-partial-rotary', 'phi3'],
  ])('%s (%s): full fine-tuning (the head trains), in one chunk and in chunks of 3 tokens', async (name) => {
    const host = await loadPretrained(`${FIXTURES}/${name}`, { dropout: false });
    const variables = [...host.parameters.values()];
    for (const variable of variables) variable.trainable = true;
    const plain = lossAndGradients(host, variables, false);
    const vocabulary = host.config.vocabSize;
    const worst = Math.max(
      expectClose(plain, lossAndGradients(host, variables, true)),
      expectClose(plain, lossAndGradients(host, variables, true, 3 * vocabulary)),
    );
    console.log(
      `[fused loss] ${name}: loss ${plain.loss.toFixed(6)}, worst relative gradient difference ${worst.toExponential(1)}`,
    );
    host.dispose();
  });

  it('virtual tokens in front (a prompt), a frozen head: the prompt gradient', async () => {
    const host = await loadPretrained(`${FIXTURES}/llama-gqa-untied`, { dropout: false });
    const prompt = tf.variable(tf.randomNormal([3, host.config.hiddenSize], 0, 0.5, 'float32', 7), true);
    const remove = host.hooks.setInputEmbeddingHook(
      (embeddings) => ({
        embeddings: tf.concat(
          [tf.tile(tf.expandDims(prompt, 0), [embeddings.shape[0], 1, 1]), embeddings],
          1,
        ) as tf.Tensor3D,
        prepended: 3,
      }),
      3,
    );
    const plain = lossAndGradients(host, [prompt], false);
    expectClose(plain, lossAndGradients(host, [prompt], true, 2 * host.config.vocabSize));
    remove.remove();
    prompt.dispose();
    host.dispose();
  });

  it('without gradients (evaluation): the same loss; no label at all: 0; nothing left behind', async () => {
    const host = await loadPretrained(`${FIXTURES}/gpt2-tied`);
    const plainOutput = host.forward({ inputIds: INPUT, attentionMask: MASK });
    const plain = causalLmLoss(plainOutput.logits as tf.Tensor3D, LABELS, 0);
    const output = host.forward({ inputIds: INPUT, attentionMask: MASK, headless: true });
    const before = tf.memory().numTensors;
    const fused = fusedCausalLmLoss(output.logits as tf.Tensor3D, output.lmHead!, LABELS, 0, false, 300);
    expect(fused.count).toBe(plain.count);
    expect(Math.abs(fused.loss.dataSync()[0]! - plain.loss.dataSync()[0]!)).toBeLessThan(1e-6);
    const unlabelled = LABELS.map((row) => row.map(() => IGNORE_INDEX));
    const none = fusedCausalLmLoss(output.logits as tf.Tensor3D, output.lmHead!, unlabelled, 0, false);
    expect(none.count).toBe(0);
    expect(none.loss.dataSync()[0]).toBe(0);
    tf.dispose([fused.loss, none.loss]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([output.logits, plainOutput.logits, plain.loss]);
    host.dispose();
  });

  it.runIf(backend === 'tensorflow')(
    'holds at most two [tokens, vocabulary] temporaries at a time (the loss is where a step peaks)',
    async () => {
      const [tokens, vocabulary, d] = [64, 8192, 16];
      const hidden = tf.randomNormal([1, tokens + 1, d], 0, 1, 'float32', 3) as tf.Tensor3D;
      const head = { weight: tf.randomNormal([vocabulary, d], 0, 0.1, 'float32', 4) as tf.Tensor2D, softCap: null };
      const labels = [Array.from({ length: tokens + 1 }, (_, i) => (i * 37) % vocabulary)];
      const before = tf.memory().numBytes;
      const profile = await tf.profile(() => {
        const { loss } = fusedCausalLmLoss(hidden, head, labels, 0, true);
        loss.dispose();
      });
      const oneLogits = tokens * vocabulary * 4; // 2 MB; the logits, their transpose and the gradient were 3
      expect(profile.peakBytes - before).toBeGreaterThan(2 * oneLogits);
      expect(profile.peakBytes - before).toBeLessThan(2.5 * oneLogits);
      tf.dispose([hidden, head.weight]);
    },
  );

  it('a host without a language-model head (a classifier) returns its logits, no lmHead', async () => {
    const host = await loadPretrained(`${FIXTURES}/gpt2-sequence-classification`);
    const output = host.forward({ inputIds: INPUT, headless: true });
    expect(output.lmHead).toBeUndefined();
    expect(output.logits.shape).toEqual([2, host.config.numLabels]);
    output.logits.dispose();
    host.dispose();
  });
});
