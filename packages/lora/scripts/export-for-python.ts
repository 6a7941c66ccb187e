// Trains a LoRA adapter here on each tiny fixture model, saves it in peft's format with the
// logits we compute, for oracle/check_lora_from_js.py to load in Python peft and compare.
//
//   pnpm --filter @peft/lora export-for-python /tmp/js-adapters
//   oracle/.venv/bin/python oracle/check_lora_from_js.py /tmp/js-adapters
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { selectBackend } from '@peft/backend';
import { getPeftModel, serializeSafetensors, train, type Example } from '@peft/core';
import { loadPretrained } from '@peft/models';

import { LoraConfig, type LoraConfigOptions } from '../src/index.js';

const MODELS = path.resolve(import.meta.dirname, '../../models/test/fixtures');
const CASES: Record<string, { options: LoraConfigOptions; task: 'causal-lm' | 'sequence-classification' }> = {
  'gpt2-tied': { options: { r: 4, loraAlpha: 16, targetModules: ['c_attn', 'c_proj'] }, task: 'causal-lm' },
  'llama-gqa-untied': {
    options: { r: 4, loraAlpha: 8, targetModules: 'all-linear', useRslora: true, rankPattern: { v_proj: 2 } },
    task: 'causal-lm',
  },
  'bert-sequence-classification': {
    options: { r: 2, loraAlpha: 4, taskType: 'SEQ_CLS' },
    task: 'sequence-classification',
  },
};

async function main(): Promise<void> {
  const out = process.argv[2];
  if (!out) throw new Error('usage: export-for-python OUTPUT_DIRECTORY');
  await selectBackend({ backend: 'cpu', warnIfSlow: false });
  for (const [name, { options, task }] of Object.entries(CASES)) {
    const host = await loadPretrained(path.join(MODELS, name));
    const model = getPeftModel(host, new LoraConfig(options));
    const data: Example[] = Array.from({ length: 16 }, (_, i) => {
      const ids = Array.from({ length: 8 }, (_, t) => 2 + ((t * 3 + i) % 11));
      return { inputIds: ids, labels: task === 'causal-lm' ? ids : i % 3 };
    });
    const result = await train(model, {
      data,
      task,
      padTokenId: 0,
      batchSize: 4,
      epochs: 3,
      learningRate: 2e-2,
      seed: 5,
    });
    const ids = [
      [3, 9, 4, 7, 12, 5],
      [6, 2, 8, 10, 11, 3],
    ];
    const { logits } = model.forward({ inputIds: ids });
    const directory = path.join(out, name);
    mkdirSync(directory, { recursive: true });
    await model.saveAdapter(path.join(directory, 'adapter'));
    writeFileSync(
      path.join(directory, 'expected.safetensors'),
      serializeSafetensors({ logits: { shape: logits.shape, values: logits.dataSync() as Float32Array } }),
    );
    writeFileSync(
      path.join(directory, 'inputs.json'),
      JSON.stringify({ input_ids: ids, model: path.join(MODELS, name) }),
    );
    console.log(
      `${name}: trained ${result.steps} steps (loss ${result.losses[0]!.toFixed(3)} -> ${result.losses.at(-1)!.toFixed(3)}), saved to ${directory}`,
    );
    model.dispose();
    host.dispose();
  }
}

await main();
