import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { generate, loadPretrained, type TransformerHost } from '../src/index.js';
import { loadFixtures } from './fixtures.js';

const fixtures = loadFixtures().filter((f) => f.greedy.length > 0);

describe.each(fixtures)('$name: greedy generation', (fixture) => {
  let model: TransformerHost;
  beforeAll(async () => {
    model = await loadPretrained(fixture.directory);
  });
  afterAll(() => model.dispose());

  it.each(fixture.greedy.map((c, i) => [c.attention_mask ? 'left-padded' : 'unpadded', i] as const))(
    'gives the tokens transformers gives (%s batch)',
    (_, index) => {
      const greedy = fixture.greedy[index]!;
      const before = tf.memory().numTensors;
      const { sequences } = generate(model, {
        inputIds: greedy.input_ids,
        ...(greedy.attention_mask ? { attentionMask: greedy.attention_mask } : {}),
        maxNewTokens: greedy.max_new_tokens,
      });
      expect(sequences).toEqual(greedy.output_ids);
      expect(tf.memory().numTensors).toBe(before);
    },
  );

  it('with the cache equals recomputing the whole prefix each step', () => {
    const prompt = fixture.greedy[0]!.input_ids.slice(0, 1);
    const { sequences } = generate(model, { inputIds: prompt, maxNewTokens: 4 });
    const recomputed = [...prompt[0]!];
    for (let step = 0; step < 4; step++) {
      const { logits } = model.forward({ inputIds: [recomputed] });
      const next = tf.tidy(
        () => tf.argMax(tf.squeeze(tf.slice(logits, [0, recomputed.length - 1, 0], [1, 1, -1]))).dataSync()[0]!,
      );
      logits.dispose();
      recomputed.push(next);
    }
    expect(sequences[0]).toEqual(recomputed);
  });

  it('samples reproducibly with a seed, and stops at a stop token', () => {
    const prompt = fixture.greedy[0]!.input_ids;
    const options = {
      inputIds: prompt,
      maxNewTokens: 5,
      doSample: true,
      temperature: 0.8,
      topK: 20,
      topP: 0.9,
      seed: 7,
    };
    const first = generate(model, options);
    expect(generate(model, options)).toEqual(first);
    const stopAt = first.generated[0]![1]!;
    const stopped = generate(model, { ...options, stopTokens: [stopAt], padTokenId: 0 });
    expect(stopped.generated[0]).toEqual(first.generated[0]!.slice(0, first.generated[0]!.indexOf(stopAt) + 1));
  });
});

describe('generate refuses bad options', () => {
  it.each([
    [{ maxNewTokens: -1 }, 'maxNewTokens: expected a non-negative integer'],
    [{ maxNewTokens: 1, temperature: 0 }, 'temperature: expected a positive number'],
    [{ maxNewTokens: 1, topP: 1.5 }, 'topP: expected a number in (0, 1]'],
  ])('%o', async (options, message) => {
    const model = await loadPretrained(fixtures[0]!.directory);
    expect(() => generate(model, { inputIds: [[2, 3]], ...options })).toThrow(message);
    model.dispose();
  });
});
