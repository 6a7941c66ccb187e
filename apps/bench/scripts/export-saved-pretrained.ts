// Fine-tunes LoRA on tiny fixture models (GPT-2, Llama), merges it and writes each merged model with
// savePretrained, beside our logits and the adapter itself, for oracle/check_save_pretrained.py to
// load with transformers (and the adapter with peft) and compare.
//
//   pnpm --filter @peft/bench export-saved-pretrained /tmp/saved-pretrained
//   oracle/.venv/bin/python oracle/check_save_pretrained.py /tmp/saved-pretrained
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { selectBackend } from '@peft/backend';
import { getPeftModel, serializeSafetensors, train, type Example, type PeftHost } from '@peft/core';
import { LoraConfig, type LoraConfigOptions } from '@peft/lora';
import { loadPretrained, savePretrained, type SavePretrainedOptions } from '@peft/models';

const FIXTURES = path.resolve(import.meta.dirname, '../../../packages/models/test/fixtures');
const TOKENIZERS = path.join(FIXTURES, 'tokenizers');
const IDS = [
  [3, 9, 4, 7, 12, 5],
  [6, 2, 8, 10, 11, 3],
];

interface Case {
  base: string;
  lora: LoraConfigOptions;
  save: SavePretrainedOptions;
}

const CASES: Record<string, Case> = {
  'gpt2-merged': {
    base: 'gpt2-tied',
    lora: { r: 4, loraAlpha: 16, targetModules: ['c_attn', 'c_proj'] },
    save: { tokenizer: path.join(TOKENIZERS, 'byte-level-bpe') },
  },
  'llama-merged-sharded': {
    base: 'llama-gqa-untied',
    lora: { r: 4, loraAlpha: 8, targetModules: 'all-linear' },
    save: { maxShardSize: '20KB', tokenizer: path.join(TOKENIZERS, 'llama-bpe') },
  },
  'gpt2-merged-bf16': {
    base: 'gpt2-tied',
    lora: { r: 4, loraAlpha: 16, targetModules: ['c_attn', 'c_proj'] },
    save: { dtype: 'BF16' },
  },
};

function logitsOf(host: PeftHost): { shape: number[]; values: Float32Array } {
  const { logits } = host.forward({ inputIds: IDS });
  const out = { shape: logits.shape, values: logits.dataSync() as Float32Array };
  logits.dispose();
  return out;
}

async function main(): Promise<void> {
  const out = process.argv[2];
  if (!out) throw new Error('usage: export-saved-pretrained OUTPUT_DIRECTORY');
  await selectBackend({ backend: 'cpu', warnIfSlow: false });
  for (const [name, { base, lora, save }] of Object.entries(CASES)) {
    const directory = path.join(out, name);
    rmSync(directory, { recursive: true, force: true });
    mkdirSync(directory, { recursive: true });
    const host = await loadPretrained(path.join(FIXTURES, base));
    const model = getPeftModel(host, new LoraConfig(lora));
    const data: Example[] = Array.from({ length: 16 }, (_, i) => {
      const ids = Array.from({ length: 8 }, (_, t) => 2 + ((t * 3 + i) % 11));
      return { inputIds: ids, labels: ids };
    });
    await train(model, {
      data,
      task: 'causal-lm',
      padTokenId: 0,
      batchSize: 4,
      epochs: 3,
      learningRate: 2e-2,
      seed: 5,
    });
    await model.saveAdapter(path.join(directory, 'adapter'));
    const merged = model.mergeAndUnload();
    const saved = await savePretrained(model, path.join(directory, 'model'), save);
    // a half-precision folder is compared as it loads here: the merged weights rounded
    const reloaded = save.dtype ? await loadPretrained(path.join(directory, 'model')) : merged;
    const logits = logitsOf(reloaded);
    writeFileSync(path.join(directory, 'expected.safetensors'), serializeSafetensors({ logits }));
    writeFileSync(
      path.join(directory, 'inputs.json'),
      JSON.stringify({ input_ids: IDS, base: path.join(FIXTURES, base), dtype: save.dtype ?? 'F32' }),
    );
    console.log(`${name}: wrote ${saved.files.join(', ')} (${saved.totalSize} bytes of tensors)`);
    if (reloaded !== merged) reloaded.dispose();
    host.dispose();
  }
}

await main();
