// Training gradients against torch's (oracle/make_gradient_fixtures.py): the causal-LM loss of each
// fixture's right-padded batch and its gradient for every weight, on every backend. Holds the
// written-out gradients (cross-entropy, norms, GELU, SwiGLU, rotary) and the padding mask to torch.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { availableBackends, loadBackend, type BackendName } from '@peft/backend';
import { IGNORE_INDEX, causalLmLoss, parseSafetensors } from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { loadPretrained } from '../src/index.js';
import { loadFixtures } from './fixtures.js';

const fixtures = loadFixtures().filter((f) => existsSync(path.join(f.directory, 'gradients.safetensors')));
const backends = await availableBackends();

/** Largest |a - b| relative to the largest |b| of the tensor (gradients span several magnitudes). */
function relativeDiff(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let worst = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!));
    scale = Math.max(scale, Math.abs(expected[i]!));
  }
  return worst / scale;
}

describe('gradient fixtures', () => {
  it('cover GPT-2 and every Llama-family fixture', () => {
    expect(fixtures.map((f) => f.name)).toEqual(
      expect.arrayContaining([
        'gpt2-tied',
        'llama-gqa-untied',
        'llama-mqa-tied-llama3-bias',
        'qwen2-tied',
        'mistral-sliding-window',
        'qwen3-gqa-tied',
        'qwen3-sliding-window-bias',
        'gemma2-gqa-softcap-tied',
        'gemma2-mqa-bias-untied',
        'gemma3-gqa-local-global-tied',
      ]),
    );
  });
});

describe.each(backends)('on the %s backend', (backend: BackendName) => {
  it.each(fixtures)('$name: loss and every weight gradient equal torch', async (fixture) => {
    await loadBackend(backend);
    const file = parseSafetensors(
      readFileSync(path.join(fixture.directory, 'gradients.safetensors')),
      `${fixture.name}/gradients.safetensors`,
    );
    const model = await loadPretrained(fixture.directory);
    const input = fixture.forward.right_padded!;
    const mask = input.attention_mask!;
    const labels = input.input_ids.map((row, b) => row.map((id, t) => (mask[b]![t] === 1 ? id : IGNORE_INDEX)));
    const variables = [...model.parameters.values()];
    for (const v of variables) v.trainable = true; // loaded frozen
    const { value, grads } = tf.variableGrads(() => {
      const { logits } = model.forward({ inputIds: input.input_ids, attentionMask: mask });
      return causalLmLoss(logits as tf.Tensor3D, labels).loss;
    }, variables);
    expect(value.dataSync()[0]).toBeCloseTo(Number(file.metadata.loss), 5);
    const names = [...model.parameters.keys()];
    expect(
      names.filter((n) => !file.entries.has(n)),
      'weights without a torch gradient',
    ).toEqual([]);
    for (const [name, variable] of model.parameters) {
      const expected = file.tensor(name);
      // GPT-2's Conv1D weights are held [out, in] here, [in, out] by torch
      const linear = model.linears.get(name.replace(/\.weight$/, ''));
      const transposed = linear?.layout === 'conv1d' && name.endsWith('.weight');
      const gradient = transposed ? tf.transpose(grads[variable.name]!) : grads[variable.name]!;
      expect(gradient.shape, name).toEqual(expected.shape);
      expect(relativeDiff(gradient.dataSync(), expected.values), `${name} @ ${backend}`).toBeLessThan(2e-5);
      if (transposed) gradient.dispose();
    }
    tf.dispose([value, ...Object.values(grads)]);
    model.dispose();
  });
});
