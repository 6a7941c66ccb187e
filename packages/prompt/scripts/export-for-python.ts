// Trains prompt-tuning and P-tuning adapters here on the tiny fixture models, saves them in peft's
// format with the logits we compute, for oracle/check_prompt_from_js.py to load in Python peft.
//
//   pnpm --filter @peft/prompt export-for-python /tmp/js-prompt
//   oracle/.venv/bin/python oracle/check_prompt_from_js.py /tmp/js-prompt
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { selectBackend } from '@peft/backend';
import { getPeftModel, serializeSafetensors, train, type Example, type PeftConfig } from '@peft/core';
import { loadPretrained } from '@peft/models';
import { PTuningConfig } from '@peft/ptuning';

import { PromptTuningConfig } from '../src/index.js';

const MODELS = path.resolve(import.meta.dirname, '../../models/test/fixtures');
const CASES: [string, string, PeftConfig, 'causal-lm' | 'sequence-classification'][] = [
  [
    'gpt2-prompt',
    'gpt2-tied',
    new PromptTuningConfig({ numVirtualTokens: 3, promptTuningInit: 'SAMPLE_VOCAB', taskType: 'CAUSAL_LM' }),
    'causal-lm',
  ],
  [
    'bert-seq-cls-prompt',
    'bert-sequence-classification',
    new PromptTuningConfig({ numVirtualTokens: 2, taskType: 'SEQ_CLS' }),
    'sequence-classification',
  ],
  [
    'llama-gqa-ptuning-lstm',
    'llama-gqa-untied',
    new PTuningConfig({
      numVirtualTokens: 3,
      encoderReparameterizationType: 'LSTM',
      encoderHiddenSize: 8,
      taskType: 'CAUSAL_LM',
    }),
    'causal-lm',
  ],
];

async function main(): Promise<void> {
  const out = process.argv[2];
  if (!out) throw new Error('usage: export-for-python OUTPUT_DIRECTORY');
  await selectBackend({ backend: 'cpu', warnIfSlow: false });
  for (const [name, modelName, config, task] of CASES) {
    const host = await loadPretrained(path.join(MODELS, modelName));
    const model = getPeftModel(host, config);
    const data: Example[] = Array.from({ length: 12 }, (_, i) => {
      const ids = Array.from({ length: 8 }, (_, t) => 2 + ((t * 5 + i) % 13));
      return { inputIds: ids, labels: task === 'causal-lm' ? ids : i % 3 };
    });
    const result = await train(model, {
      data,
      task,
      padTokenId: 0,
      batchSize: 4,
      epochs: 3,
      learningRate: 2e-2,
      seed: 4,
    });
    const ids = [
      [3, 9, 4, 7, 12, 5],
      [6, 2, 8, 10, 11, 3],
    ];
    const mask = [
      [1, 1, 1, 1, 1, 1],
      [1, 1, 1, 1, 0, 0],
    ];
    const { logits } = model.forward({ inputIds: ids, attentionMask: mask });
    const directory = path.join(out, name);
    mkdirSync(directory, { recursive: true });
    await model.saveAdapter(path.join(directory, 'adapter'));
    writeFileSync(
      path.join(directory, 'expected.safetensors'),
      serializeSafetensors({ logits: { shape: logits.shape, values: logits.dataSync() as Float32Array } }),
    );
    writeFileSync(
      path.join(directory, 'inputs.json'),
      JSON.stringify({ input_ids: ids, attention_mask: mask, model: path.join(MODELS, modelName) }),
    );
    console.log(
      `${name}: trained ${result.steps} steps (loss ${result.losses[0]!.toFixed(3)} -> ${result.losses.at(-1)!.toFixed(3)}), saved to ${directory}`,
    );
    model.dispose();
    host.dispose();
  }
}

await main();
