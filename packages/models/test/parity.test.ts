// Our hosts against Hugging Face transformers on the oracle's tiny random models: fp32 logits
// within 1e-4 on every backend that loads here (cpu always; tensorflow, wasm where present).
import { availableBackends, loadBackend, type BackendName } from '@peft/backend';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { loadPretrained, type TransformerHost } from '../src/index.js';
import { loadFixtures, maxAbsDiffAtRealTokens } from './fixtures.js';

const TOLERANCE = 1e-4;
const fixtures = loadFixtures();
const backends = await availableBackends();
const worst = new Map<string, number>();

afterAll(() => {
  console.log(
    `[parity] max |logits - transformers| per model and backend:\n${[...worst].map(([k, v]) => `  ${k}: ${v.toExponential(2)}`).join('\n')}`,
  );
});

describe.each(backends)('on the %s backend', (backend: BackendName) => {
  describe.each(fixtures)('$name', (fixture) => {
    let model: TransformerHost;
    beforeAll(async () => {
      await loadBackend(backend);
      model = await loadPretrained(fixture.directory);
    });
    afterAll(() => model.dispose());

    it.each(Object.keys(fixture.forward))('logits of the %s batch match', (key) => {
      const input = fixture.forward[key]!;
      const expected = fixture.expected.tensor(`${key}.logits`);
      const tensorsBefore = tf.memory().numTensors;
      const { logits } = model.forward({
        inputIds: input.input_ids,
        ...(input.attention_mask ? { attentionMask: input.attention_mask } : {}),
        ...(input.token_type_ids ? { tokenTypeIds: input.token_type_ids } : {}),
      });
      expect(logits.shape).toEqual(expected.shape);
      // per-token logits are compared at real tokens; sequence logits [B, labels] whole
      const mask = expected.shape.length === 3 ? input.attention_mask : null;
      const diff = maxAbsDiffAtRealTokens(logits.dataSync(), expected.values, expected.shape, mask);
      logits.dispose();
      const label = `${fixture.name} @ ${backend}`;
      worst.set(label, Math.max(worst.get(label) ?? 0, diff));
      expect(diff).toBeLessThan(TOLERANCE);
      expect(tf.memory().numTensors).toBe(tensorsBefore);
    });

    it('hidden states match transformers (embeddings, every layer, last one normalised)', () => {
      const input = fixture.forward.plain!;
      const { logits, hiddenStates } = model.forward({
        inputIds: input.input_ids,
        ...(input.token_type_ids ? { tokenTypeIds: input.token_type_ids } : {}),
        outputHiddenStates: true,
      });
      logits.dispose();
      expect(hiddenStates).toHaveLength(model.config.numLayers + 1);
      hiddenStates!.forEach((state, layer) => {
        const expected = fixture.expected.tensor(`plain.hidden.${layer}`);
        expect(state.shape).toEqual(expected.shape);
        expect(maxAbsDiffAtRealTokens(state.dataSync(), expected.values, expected.shape, null)).toBeLessThan(TOLERANCE);
        state.dispose();
      });
    });
  });
});
