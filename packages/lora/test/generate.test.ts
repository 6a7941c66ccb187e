import { getPeftModel } from '@peft/core';
import { generate } from '@peft/models';
import { fixtureHosts } from '@peft/test-helpers';
import { describe, expect, it } from 'vitest';

import { LoraConfig } from '../src/index.js';

const host = fixtureHosts();

describe('generate with a PeftModel', () => {
  it('takes the PeftModel itself and generates with its active adapter', async () => {
    const base = await host('llama-gqa-untied');
    const options = { inputIds: [[1, 5, 9, 2]], maxNewTokens: 12 };
    const before = generate(base, options).generated;
    // initLoraWeights false: B is random too, so the adapter changes the outputs
    const model = getPeftModel(base, new LoraConfig({ initLoraWeights: false, initSeed: 3, loraAlpha: 64 }));
    const withAdapter = generate(model, options).generated;
    expect(withAdapter).toEqual(generate(model.host, options).generated);
    expect(withAdapter).not.toEqual(before);
    expect(model.withAdapterDisabled(() => generate(model, options).generated)).toEqual(before);
  });
});
