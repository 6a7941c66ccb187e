// Bottleneck adapters made by AdapterHub's `adapters` library (oracle/make_adapter_fixtures.py)
// load here, under the name they were saved with, and give its logits.
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { PeftModel, parseSafetensors } from '@peft/core';
import { loadPretrained } from '@peft/models';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, describe, expect, it } from 'vitest';

import '../src/index.js';

const MODELS = path.resolve(import.meta.dirname, '../../models/test/fixtures');
const FIXTURES = path.join(import.meta.dirname, 'fixtures');
const manifest = JSON.parse(readFileSync(path.join(FIXTURES, 'manifest.json'), 'utf8')) as {
  cases: { name: string; model: string; adapter_name: string }[];
};
const worst = new Map<string, number>();
afterAll(() =>
  console.log(
    `[adapter parity] max |ours - adapters|:\n${[...worst].map(([k, v]) => `  ${k}: ${v.toExponential(2)}`).join('\n')}`,
  ),
);

interface Case {
  input_ids: number[][];
  attention_mask: number[][] | null;
  token_type_ids?: number[][];
}

describe.each(manifest.cases)('$name', ({ name, model, adapter_name: savedName }) => {
  it("loads under its saved name and gives AdapterHub's logits, plain and padded", async () => {
    const directory = path.join(FIXTURES, name);
    const inputs = JSON.parse(readFileSync(path.join(directory, 'inputs.json'), 'utf8')) as Record<string, Case>;
    const expected = parseSafetensors(readFileSync(path.join(directory, 'expected.safetensors')));
    const host = await loadPretrained(path.join(MODELS, model));
    const peft = await PeftModel.fromPretrained(host, path.join(directory, 'adapter'));
    expect(peft.adapterNames).toEqual([savedName]);
    expect(peft.activeAdapter).toBe(savedName);
    for (const key of ['plain', 'right_padded']) {
      const input = inputs[key]!;
      const { logits } = peft.forward({
        inputIds: input.input_ids,
        ...(input.attention_mask ? { attentionMask: input.attention_mask } : {}),
        ...(input.token_type_ids ? { tokenTypeIds: input.token_type_ids } : {}),
      });
      const want = expected.tensor(`${key}.logits`);
      const got = logits.dataSync();
      const [batch, length] = want.shape as [number, number];
      const width = want.values.length / (batch * (want.shape.length === 3 ? length : 1));
      let diff = 0;
      got.forEach((v, i) => {
        const row = Math.floor(i / width);
        if (
          want.shape.length === 3 &&
          input.attention_mask &&
          input.attention_mask[Math.floor(row / length)]![row % length] === 0
        )
          return;
        diff = Math.max(diff, Math.abs(v - want.values[i]!));
      });
      const base = peft.withAdapterDisabled(
        () =>
          peft.forward({
            inputIds: input.input_ids,
            ...(input.token_type_ids ? { tokenTypeIds: input.token_type_ids } : {}),
          }).logits,
      );
      const effect = Array.from(base.dataSync()).reduce((m, v, i) => Math.max(m, Math.abs(v - got[i]!)), 0);
      tf.dispose([logits, base]);
      worst.set(name, Math.max(worst.get(name) ?? 0, diff));
      expect(diff).toBeLessThan(1e-4);
      expect(effect).toBeGreaterThan(1e-2); // the adapter changes the outputs
    }
    peft.dispose();
    host.dispose();
  });
});
