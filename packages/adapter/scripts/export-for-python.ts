// Trains bottleneck adapters here on the tiny fixture models, saves them in AdapterHub's layout
// with the logits we compute, for oracle/check_adapters_from_js.py to load with `adapters`. One of
// them starts from AdapterHub's own "my_task" fixture and must come back to Python as "my_task".
//
//   pnpm --filter @peft/adapter export-for-python /tmp/js-bottleneck
//   oracle/.venv-adapters/bin/python oracle/check_adapters_from_js.py /tmp/js-bottleneck
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { selectBackend } from '@peft/backend';
import { PeftModel, getPeftModel, serializeSafetensors, train, type Example, type PeftHost } from '@peft/core';
import { loadPretrained } from '@peft/models';

import { HoulsbyConfig, PfeifferConfig } from '../src/index.js';

const MODELS = path.resolve(import.meta.dirname, '../../models/test/fixtures');
const FIXTURES = path.resolve(import.meta.dirname, '../test/fixtures');
/** [case, base model, the adapter to train: a new one, or one AdapterHub saved as "my_task"] */
const CASES: [string, string, (host: PeftHost) => Promise<PeftModel>][] = [
  [
    'gpt2-houlsby',
    'gpt2-tied',
    async (host) => getPeftModel(host, HoulsbyConfig({ reductionFactor: 4, lnBefore: true })),
  ],
  [
    'gpt2-pfeiffer',
    'gpt2-tied',
    async (host) => getPeftModel(host, PfeifferConfig({ reductionFactor: 2, lnAfter: true })),
  ],
  [
    'bert-pfeiffer',
    'bert-sequence-classification',
    async (host) => getPeftModel(host, PfeifferConfig({ reductionFactor: 4 })),
  ],
  [
    'bert-houlsby',
    'bert-sequence-classification',
    async (host) => getPeftModel(host, HoulsbyConfig({ reductionFactor: 3, nonLinearity: 'gelu', leaveOut: [1] })),
  ],
  [
    'gpt2-my-task',
    'gpt2-tied',
    (host) => PeftModel.fromPretrained(host, path.join(FIXTURES, 'gpt2-my-task/adapter'), { isTrainable: true }),
  ],
];

async function main(): Promise<void> {
  const out = process.argv[2];
  if (!out) throw new Error('usage: export-for-python OUTPUT_DIRECTORY');
  await selectBackend({ backend: 'cpu', warnIfSlow: false });
  for (const [name, modelName, makeModel] of CASES) {
    const host = await loadPretrained(path.join(MODELS, modelName));
    const model = await makeModel(host);
    const adapterName = model.activeAdapter!;
    const causal = modelName.startsWith('gpt2');
    const data: Example[] = Array.from({ length: 12 }, (_, i) => {
      const ids = Array.from({ length: 8 }, (_, t) => 2 + ((t * 5 + i) % 13));
      return { inputIds: ids, labels: causal ? ids : i % 3 };
    });
    const result = await train(model, {
      data,
      task: causal ? 'causal-lm' : 'sequence-classification',
      padTokenId: 0,
      batchSize: 4,
      epochs: 3,
      learningRate: 2e-2,
      seed: 2,
    });
    const ids = [
      [3, 9, 4, 7, 12, 5],
      [6, 2, 8, 10, 11, 3],
    ];
    const { logits } = model.forward({ inputIds: ids });
    const directory = path.join(out, name);
    mkdirSync(directory, { recursive: true });
    await model.saveAdapter(path.join(directory, 'adapter'));
    // saveAdapter puts an adapter not named "default" in a sub-folder of its name
    const adapter = adapterName === 'default' ? 'adapter' : `adapter/${adapterName}`;
    writeFileSync(
      path.join(directory, 'expected.safetensors'),
      serializeSafetensors({ logits: { shape: logits.shape, values: logits.dataSync() as Float32Array } }),
    );
    writeFileSync(
      path.join(directory, 'inputs.json'),
      JSON.stringify({ input_ids: ids, model: path.join(MODELS, modelName), adapter, adapter_name: adapterName }),
    );
    console.log(
      `${name}: adapter "${adapterName}" trained ${result.steps} steps (loss ${result.losses[0]!.toFixed(3)} -> ${result.losses.at(-1)!.toFixed(3)}), saved to ${path.join(directory, adapter)}`,
    );
    model.dispose();
    host.dispose();
  }
}

await main();
