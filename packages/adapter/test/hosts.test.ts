// Bottleneck adapters saved and reloaded on a fresh host with identical logits, on phi3 (a host
// AdapterHub takes only with an interface given, as oracle/adapterhub_base.py does) and gemma2
// (post-sublayer norms after the adapter).
import { PeftModel, getPeftModel, memoryStore } from '@peft/core';
import { fixtureHosts, logits, maxDiff } from '@peft/test-helpers';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { HoulsbyConfig, PfeifferConfig } from '../src/index.js';

const host = fixtureHosts();
const input = { inputIds: [[3, 5, 7, 11, 13, 17, 19]] };

describe.each([
  ['gemma2-gqa-softcap-tied', 'gemma2'],
  ['phi3-gqa-partial-rotary', 'phi3'],
])('%s', (name, modelType) => {
  it.each([
    ['Houlsby', HoulsbyConfig({ reductionFactor: 4 })],
    ['Pfeiffer', PfeifferConfig({ reductionFactor: 2 })],
  ])('a %s adapter saves and reloads to identical logits', async (_, config) => {
    const base = await host(name);
    const before = logits(base, input);
    const model = getPeftModel(base, config);
    // weights far from the near-identity init, so that every adapter moves the logits
    let seed = 1;
    for (const variable of model.trainableVariables().values()) {
      variable.assign(tf.randomNormal(variable.shape, 0, 0.3, 'float32', seed++));
    }
    const adapted = logits(model, input);
    expect(maxDiff(adapted, before)).toBeGreaterThan(1e-2);
    const store = memoryStore({}, 'mem:/adapter');
    await model.saveAdapter(store);
    model.dispose();
    const json = JSON.parse(new TextDecoder().decode(store.files.get('adapter_config.json')));
    expect(json.model_type).toBe(modelType);
    const reloaded = await PeftModel.fromPretrained(await host(name), store);
    expect(maxDiff(logits(reloaded, input), adapted)).toBe(0);
    reloaded.dispose();
  });
});
