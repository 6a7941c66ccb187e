// Bottleneck adapters made by AdapterHub's `adapters` library (oracle/make_adapter_fixtures.py)
// load here, under the name they were saved with, and give its logits.
import path from 'node:path';

import { PeftModel } from '@peft/core';
import {
  fixtureHosts,
  forwardInput,
  logits,
  maxDiff,
  maxDiffAtRealTokens,
  parityReport,
  readJsonFixture,
  readSafetensorsFixture,
  type OracleInput,
} from '@peft/test-helpers';
import { describe, expect, it } from 'vitest';

import '../src/index.js';

const FIXTURES = path.join(import.meta.dirname, 'fixtures');
const manifest = readJsonFixture<{ cases: { name: string; model: string; adapter_name: string }[] }>(
  path.join(FIXTURES, 'manifest.json'),
);
const loadHost = fixtureHosts();
const record = parityReport('[adapter parity] max |ours - adapters|');

describe.each(manifest.cases)('$name', ({ name, model, adapter_name: savedName }) => {
  it("loads under its saved name and gives AdapterHub's logits, plain and padded", async () => {
    const directory = path.join(FIXTURES, name);
    const inputs = readJsonFixture<Record<string, OracleInput>>(path.join(directory, 'inputs.json'));
    const expected = readSafetensorsFixture(path.join(directory, 'expected.safetensors'));
    const host = await loadHost(model);
    const peft = await PeftModel.fromPretrained(host, path.join(directory, 'adapter'));
    expect(peft.adapterNames).toEqual([savedName]);
    expect(peft.activeAdapter).toBe(savedName);
    for (const key of ['plain', 'right_padded']) {
      const input = inputs[key]!;
      const got = logits(peft, forwardInput(input));
      const want = expected.tensor(`${key}.logits`);
      const diff = maxDiffAtRealTokens(got, want.values, want.shape, input.attention_mask);
      const base = peft.withAdapterDisabled(() => logits(peft, forwardInput({ ...input, attention_mask: null })));
      const effect = maxDiff(base, got);
      record(name, diff);
      expect(diff).toBeLessThan(1e-4);
      expect(effect).toBeGreaterThan(1e-2); // the adapter changes the outputs
    }
    peft.dispose();
  });
});
