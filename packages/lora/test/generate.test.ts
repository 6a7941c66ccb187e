import path from 'node:path';

import { getPeftModel } from '@peft/core';
import { generate, loadPretrained } from '@peft/models';
import { describe, expect, it } from 'vitest';

import { LoraConfig } from '../src/index.js';

const MODELS = path.resolve(import.meta.dirname, '../../models/test/fixtures');

describe('generate with a PeftModel', () => {
  it('takes the PeftModel itself and generates with its active adapter', async () => {
    const base = await loadPretrained(path.join(MODELS, 'llama-gqa-untied'));
    try {
      const options = { inputIds: [[1, 5, 9, 2]], maxNewTokens: 12 };
      const before = generate(base, options).generated;
      // initLoraWeights false: B is random too, so the adapter changes the outputs
      const model = getPeftModel(base, new LoraConfig({ initLoraWeights: false, initSeed: 3, loraAlpha: 64 }));
      const withAdapter = generate(model, options).generated;
      expect(withAdapter).toEqual(generate(model.host, options).generated);
      expect(withAdapter).not.toEqual(before);
      expect(model.withAdapterDisabled(() => generate(model, options).generated)).toEqual(before);
    } finally {
      base.dispose();
    }
  });
});
