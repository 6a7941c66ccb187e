import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { getPeftModel } from '@peft/core';
import { loadPretrained, savePretrained } from '@peft/models';
import { MODEL_FIXTURES } from '@peft/test-helpers';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { LoraConfig } from '../src/index.js';

describe('a merged LoRA model leaves as a checkpoint', () => {
  it.each(['gpt2-tied', 'llama-gqa-untied'])(
    '%s: savePretrained after mergeAndUnload, loadPretrained gives the merged logits',
    async (name) => {
      const inputIds = [[1, 5, 9, 2, 7]];
      const model = getPeftModel(
        await loadPretrained(path.join(MODEL_FIXTURES, name)),
        new LoraConfig({ initLoraWeights: false, initSeed: 4, loraAlpha: 32 }),
      );
      const adapted = model.forward({ inputIds }).logits;
      const merged = model.mergeAndUnload();
      const dir = mkdtempSync(path.join(tmpdir(), `peft-merged-${name}-`));
      await savePretrained(merged, dir);
      expect(readdirSync(dir)).toEqual(
        expect.arrayContaining(['config.json', 'model.safetensors', 'generation_config.json']),
      );
      const reloaded = await loadPretrained(dir);
      const logits = reloaded.forward({ inputIds }).logits;
      const difference = tf.max(tf.abs(tf.sub(logits, adapted))).dataSync()[0]!;
      console.log(`[merged LoRA ${name}] reloaded vs adapter logits: max |diff| ${difference.toExponential(2)}`);
      expect(difference).toBeLessThan(1e-4);
      expect(tf.max(tf.abs(adapted)).dataSync()[0]).toBeGreaterThan(0);
      tf.dispose([adapted, logits]);
      merged.dispose();
      reloaded.dispose();
      rmSync(dir, { recursive: true });
    },
  );
});
