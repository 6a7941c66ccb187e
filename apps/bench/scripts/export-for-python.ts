// Trains adapters here on the tiny fixture models of @peft/models and saves each in its library's
// format with the logits we compute, for the oracle's Python checks to load and compare. One
// family at a time, since each family has its own check (and AdapterHub its own environment):
//
//   pnpm --filter @peft/bench export-for-python lora /tmp/js-lora
//   oracle/.venv/bin/python oracle/check_lora_from_js.py /tmp/js-lora
//   pnpm --filter @peft/bench export-for-python adapter /tmp/js-bottleneck
//   oracle/.venv-adapters/bin/python oracle/check_adapters_from_js.py /tmp/js-bottleneck
//   pnpm --filter @peft/bench export-for-python prefix /tmp/js-prefix     (prefix tuning, P-tuning v2 style)
//   pnpm --filter @peft/bench export-for-python prompt /tmp/js-prompt     (prompt tuning, P-tuning)
//   oracle/.venv/bin/python oracle/check_prompt_from_js.py /tmp/js-prefix (and /tmp/js-prompt)
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { HoulsbyConfig, PfeifferConfig } from '@peft/adapter';
import { selectBackend } from '@peft/backend';
import { PeftModel, getPeftModel, serializeSafetensors, train, type Example, type PeftHost } from '@peft/core';
import { LoraConfig } from '@peft/lora';
import { loadPretrained } from '@peft/models';
import { PrefixTuningConfig } from '@peft/prefix';
import { PromptTuningConfig } from '@peft/prompt';
import { PTuningConfig } from '@peft/ptuning';

const MODELS = path.resolve(import.meta.dirname, '../../../packages/models/test/fixtures');
const ADAPTER_FIXTURES = path.resolve(import.meta.dirname, '../../../packages/adapter/test/fixtures');

type Task = 'causal-lm' | 'sequence-classification';

interface ExportCase {
  /** The case's folder in the output directory. */
  name: string;
  /** The base model, a folder of @peft/models' fixtures. */
  model: string;
  task: Task;
  /** The adapter to train: a new one, or one loaded from a file. */
  adapter: (host: PeftHost) => PeftModel | Promise<PeftModel>;
}

/** A family of methods with one Python check; its training data and seed as its cases were first exported. */
interface Family {
  cases: ExportCase[];
  /** Example i is `2 + ((t * stride + i) % modulus)` for t < 8. */
  examples: { count: number; stride: number; modulus: number };
  seed: number;
  /** Whether the logits are computed (and checked) with a padded row. */
  padded: boolean;
}

const FAMILIES: Record<string, Family> = {
  lora: {
    cases: [
      {
        name: 'gpt2-tied',
        model: 'gpt2-tied',
        task: 'causal-lm',
        adapter: (host) =>
          getPeftModel(host, new LoraConfig({ r: 4, loraAlpha: 16, targetModules: ['c_attn', 'c_proj'] })),
      },
      {
        name: 'llama-gqa-untied',
        model: 'llama-gqa-untied',
        task: 'causal-lm',
        adapter: (host) =>
          getPeftModel(
            host,
            new LoraConfig({
              r: 4,
              loraAlpha: 8,
              targetModules: 'all-linear',
              useRslora: true,
              rankPattern: { v_proj: 2 },
            }),
          ),
      },
      {
        name: 'bert-sequence-classification',
        model: 'bert-sequence-classification',
        task: 'sequence-classification',
        adapter: (host) => getPeftModel(host, new LoraConfig({ r: 2, loraAlpha: 4, taskType: 'SEQ_CLS' })),
      },
      // no targetModules: peft's defaults for qwen3, gemma2 and gemma3_text (q_proj, v_proj)
      ...['qwen3-gqa-tied', 'gemma2-gqa-softcap-tied', 'gemma3-gqa-local-global-tied'].map(
        (model): ExportCase => ({
          name: model,
          model,
          task: 'causal-lm',
          adapter: (host) => getPeftModel(host, new LoraConfig({ r: 4, loraAlpha: 8 })),
        }),
      ),
      // peft has no default for phi3: its fused qkv_proj and gate_up_proj (one LoRA pair each), and the rest
      {
        name: 'phi3-gqa-partial-rotary',
        model: 'phi3-gqa-partial-rotary',
        task: 'causal-lm',
        adapter: (host) =>
          getPeftModel(
            host,
            new LoraConfig({ r: 4, loraAlpha: 8, targetModules: ['qkv_proj', 'o_proj', 'gate_up_proj', 'down_proj'] }),
          ),
      },
    ],
    examples: { count: 16, stride: 3, modulus: 11 },
    seed: 5,
    padded: false,
  },
  // AdapterHub's layout; "gpt2-my-task" starts from AdapterHub's own "my_task" and must come back to
  // Python under that name
  adapter: {
    cases: [
      {
        name: 'gpt2-houlsby',
        model: 'gpt2-tied',
        task: 'causal-lm',
        adapter: (host) => getPeftModel(host, HoulsbyConfig({ reductionFactor: 4, lnBefore: true })),
      },
      {
        name: 'gpt2-pfeiffer',
        model: 'gpt2-tied',
        task: 'causal-lm',
        adapter: (host) => getPeftModel(host, PfeifferConfig({ reductionFactor: 2, lnAfter: true })),
      },
      {
        name: 'bert-pfeiffer',
        model: 'bert-sequence-classification',
        task: 'sequence-classification',
        adapter: (host) => getPeftModel(host, PfeifferConfig({ reductionFactor: 4 })),
      },
      {
        name: 'bert-houlsby',
        model: 'bert-sequence-classification',
        task: 'sequence-classification',
        adapter: (host) =>
          getPeftModel(host, HoulsbyConfig({ reductionFactor: 3, nonLinearity: 'gelu', leaveOut: [1] })),
      },
      {
        name: 'gpt2-my-task',
        model: 'gpt2-tied',
        task: 'causal-lm',
        adapter: (host) =>
          PeftModel.fromPretrained(host, path.join(ADAPTER_FIXTURES, 'gpt2-my-task/adapter'), { isTrainable: true }),
      },
      // qwen3 and gemma2 / gemma3_text through AdapterHub's own interfaces, phi3 through
      // oracle/adapterhub_base.py's. On Gemma, AdapterHub's original_ln_before adapters take the last
      // layer's post norm in every layer (a bug of its init_bottleneck, packages/adapter/README.md):
      // those (Pfeiffer, and gemma2-residual-after-ln below) keep only the last layer (leaveOut), where
      // that norm is the right one
      ...(
        [
          ['llama', 'llama-gqa-untied', []],
          ['qwen3', 'qwen3-gqa-tied', []],
          ['phi3', 'phi3-gqa-partial-rotary', []],
          ['gemma2', 'gemma2-gqa-softcap-tied', [0, 1]],
          ['gemma3', 'gemma3-gqa-local-global-tied', [0, 1]],
        ] as [string, string, number[]][]
      ).flatMap(([prefix, model, pfeifferLeaveOut]): ExportCase[] => [
        {
          name: `${prefix}-houlsby`,
          model,
          task: 'causal-lm',
          adapter: (host) => getPeftModel(host, HoulsbyConfig({ reductionFactor: 4 })),
        },
        {
          name: `${prefix}-pfeiffer`,
          model,
          task: 'causal-lm',
          adapter: (host) => getPeftModel(host, PfeifferConfig({ reductionFactor: 2, leaveOut: pfeifferLeaveOut })),
        },
      ]),
      {
        name: 'gemma2-residual-after-ln',
        model: 'gemma2-mqa-bias-untied',
        task: 'causal-lm',
        adapter: (host) =>
          getPeftModel(
            host,
            HoulsbyConfig({
              reductionFactor: 2,
              nonLinearity: 'tanh',
              originalLnBefore: true,
              residualBeforeLn: false,
              adapterResidualBeforeLn: true,
              lnAfter: true,
              leaveOut: [0],
            }),
          ),
      },
      {
        name: 'gemma3-parallel',
        model: 'gemma3-gqa-local-global-tied',
        task: 'causal-lm',
        adapter: (host) =>
          getPeftModel(
            host,
            PfeifferConfig({ reductionFactor: 4, isParallel: true, scaling: 2, originalLnBefore: false }),
          ),
      },
    ],
    examples: { count: 12, stride: 5, modulus: 13 },
    seed: 2,
    padded: false,
  },
  // with the projection MLP (baked on save); GQA; a P-tuning-v2-style SEQ_CLS prefix with its head
  prefix: {
    cases: [
      {
        name: 'gpt2-prefix-projection',
        model: 'gpt2-tied',
        task: 'causal-lm',
        adapter: (host) =>
          getPeftModel(
            host,
            new PrefixTuningConfig({
              numVirtualTokens: 3,
              prefixProjection: true,
              encoderHiddenSize: 16,
              taskType: 'CAUSAL_LM',
            }),
          ),
      },
      {
        name: 'llama-gqa-prefix',
        model: 'llama-gqa-untied',
        task: 'causal-lm',
        adapter: (host) => getPeftModel(host, new PrefixTuningConfig({ numVirtualTokens: 4, taskType: 'CAUSAL_LM' })),
      },
      {
        name: 'bert-seq-cls-prefix',
        model: 'bert-sequence-classification',
        task: 'sequence-classification',
        adapter: (host) =>
          getPeftModel(host, new PrefixTuningConfig({ numVirtualTokens: 3, taskType: 'SEQ_CLS', prefixDropout: 0.1 })),
      },
      // the new hosts: head_dim != hidden / heads (qwen3, gemma), Gemma 2's attention soft-capping over the prefix,
      // sliding and global layers (window 3-4, shorter than prefix + input), MQA, partial rotary, LongRoPE (short factors)
      {
        name: 'qwen3-gqa-prefix',
        model: 'qwen3-gqa-tied',
        task: 'causal-lm',
        adapter: (host) => getPeftModel(host, new PrefixTuningConfig({ numVirtualTokens: 3, taskType: 'CAUSAL_LM' })),
      },
      {
        name: 'gemma2-softcap-prefix-projection',
        model: 'gemma2-gqa-softcap-tied',
        task: 'causal-lm',
        adapter: (host) =>
          getPeftModel(
            host,
            new PrefixTuningConfig({
              numVirtualTokens: 3,
              prefixProjection: true,
              encoderHiddenSize: 10,
              taskType: 'CAUSAL_LM',
            }),
          ),
      },
      {
        name: 'gemma2-mqa-prefix',
        model: 'gemma2-mqa-bias-untied',
        task: 'causal-lm',
        adapter: (host) => getPeftModel(host, new PrefixTuningConfig({ numVirtualTokens: 2, taskType: 'CAUSAL_LM' })),
      },
      {
        name: 'gemma3-local-global-prefix',
        model: 'gemma3-gqa-local-global-tied',
        task: 'causal-lm',
        adapter: (host) => getPeftModel(host, new PrefixTuningConfig({ numVirtualTokens: 3, taskType: 'CAUSAL_LM' })),
      },
      {
        name: 'phi3-partial-rotary-prefix',
        model: 'phi3-gqa-partial-rotary',
        task: 'causal-lm',
        adapter: (host) => getPeftModel(host, new PrefixTuningConfig({ numVirtualTokens: 2, taskType: 'CAUSAL_LM' })),
      },
      {
        name: 'phi3-longrope-prefix-projection',
        model: 'phi3-longrope-mqa-tied',
        task: 'causal-lm',
        adapter: (host) =>
          getPeftModel(
            host,
            new PrefixTuningConfig({
              numVirtualTokens: 4,
              prefixProjection: true,
              encoderHiddenSize: 8,
              taskType: 'CAUSAL_LM',
            }),
          ),
      },
    ],
    examples: { count: 12, stride: 5, modulus: 13 },
    seed: 4,
    padded: true,
  },
  prompt: {
    cases: [
      {
        name: 'gpt2-prompt',
        model: 'gpt2-tied',
        task: 'causal-lm',
        adapter: (host) =>
          getPeftModel(
            host,
            new PromptTuningConfig({ numVirtualTokens: 3, promptTuningInit: 'SAMPLE_VOCAB', taskType: 'CAUSAL_LM' }),
          ),
      },
      {
        name: 'bert-seq-cls-prompt',
        model: 'bert-sequence-classification',
        task: 'sequence-classification',
        adapter: (host) => getPeftModel(host, new PromptTuningConfig({ numVirtualTokens: 2, taskType: 'SEQ_CLS' })),
      },
      {
        name: 'llama-gqa-ptuning-lstm',
        model: 'llama-gqa-untied',
        task: 'causal-lm',
        adapter: (host) =>
          getPeftModel(
            host,
            new PTuningConfig({
              numVirtualTokens: 3,
              encoderReparameterizationType: 'LSTM',
              encoderHiddenSize: 8,
              taskType: 'CAUSAL_LM',
            }),
          ),
      },
      // the new hosts: Gemma's virtual tokens enter unscaled (its embed_tokens scales only the real ones by √d)
      {
        name: 'qwen3-gqa-prompt',
        model: 'qwen3-gqa-tied',
        task: 'causal-lm',
        adapter: (host) => getPeftModel(host, new PromptTuningConfig({ numVirtualTokens: 3, taskType: 'CAUSAL_LM' })),
      },
      {
        name: 'gemma2-softcap-prompt',
        model: 'gemma2-gqa-softcap-tied',
        task: 'causal-lm',
        adapter: (host) =>
          getPeftModel(
            host,
            new PromptTuningConfig({ numVirtualTokens: 4, promptTuningInit: 'SAMPLE_VOCAB', taskType: 'CAUSAL_LM' }),
          ),
      },
      {
        name: 'gemma3-local-global-prompt',
        model: 'gemma3-gqa-local-global-tied',
        task: 'causal-lm',
        adapter: (host) => getPeftModel(host, new PromptTuningConfig({ numVirtualTokens: 3, taskType: 'CAUSAL_LM' })),
      },
      {
        name: 'phi3-longrope-prompt',
        model: 'phi3-longrope-mqa-tied',
        task: 'causal-lm',
        adapter: (host) => getPeftModel(host, new PromptTuningConfig({ numVirtualTokens: 4, taskType: 'CAUSAL_LM' })),
      },
      {
        name: 'qwen3-gqa-ptuning-mlp',
        model: 'qwen3-gqa-tied',
        task: 'causal-lm',
        adapter: (host) =>
          getPeftModel(
            host,
            new PTuningConfig({
              numVirtualTokens: 2,
              encoderReparameterizationType: 'MLP',
              encoderHiddenSize: 12,
              taskType: 'CAUSAL_LM',
            }),
          ),
      },
      {
        name: 'gemma2-mqa-ptuning-lstm',
        model: 'gemma2-mqa-bias-untied',
        task: 'causal-lm',
        adapter: (host) =>
          getPeftModel(
            host,
            new PTuningConfig({
              numVirtualTokens: 3,
              encoderReparameterizationType: 'LSTM',
              encoderHiddenSize: 8,
              taskType: 'CAUSAL_LM',
            }),
          ),
      },
      {
        name: 'gemma3-local-global-ptuning-mlp',
        model: 'gemma3-gqa-local-global-tied',
        task: 'causal-lm',
        adapter: (host) =>
          getPeftModel(
            host,
            new PTuningConfig({
              numVirtualTokens: 3,
              encoderReparameterizationType: 'MLP',
              encoderHiddenSize: 10,
              taskType: 'CAUSAL_LM',
            }),
          ),
      },
      {
        name: 'phi3-partial-rotary-ptuning-lstm',
        model: 'phi3-gqa-partial-rotary',
        task: 'causal-lm',
        adapter: (host) =>
          getPeftModel(
            host,
            new PTuningConfig({
              numVirtualTokens: 2,
              encoderReparameterizationType: 'LSTM',
              encoderHiddenSize: 6,
              encoderNumLayers: 2,
              taskType: 'CAUSAL_LM',
            }),
          ),
      },
    ],
    examples: { count: 12, stride: 5, modulus: 13 },
    seed: 4,
    padded: true,
  },
};

const INPUT_IDS = [
  [3, 9, 4, 7, 12, 5],
  [6, 2, 8, 10, 11, 3],
];
const ATTENTION_MASK = [
  [1, 1, 1, 1, 1, 1],
  [1, 1, 1, 1, 0, 0],
];

/** Trains one case's adapter, then writes adapter/, expected.safetensors (our logits) and inputs.json. */
async function trainAndExport(family: Family, exportCase: ExportCase, out: string): Promise<void> {
  const host = await loadPretrained(path.join(MODELS, exportCase.model));
  const model = await exportCase.adapter(host);
  const adapterName = model.activeAdapter!;
  const { count, stride, modulus } = family.examples;
  const data: Example[] = Array.from({ length: count }, (_, i) => {
    const ids = Array.from({ length: 8 }, (_, t) => 2 + ((t * stride + i) % modulus));
    return { inputIds: ids, labels: exportCase.task === 'causal-lm' ? ids : i % 3 };
  });
  const result = await train(model, {
    data,
    task: exportCase.task,
    padTokenId: 0,
    batchSize: 4,
    epochs: 3,
    learningRate: 2e-2,
    seed: family.seed,
  });
  const { logits } = model.forward({
    inputIds: INPUT_IDS,
    ...(family.padded ? { attentionMask: ATTENTION_MASK } : {}),
  });
  const directory = path.join(out, exportCase.name);
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
    JSON.stringify({
      input_ids: INPUT_IDS,
      ...(family.padded ? { attention_mask: ATTENTION_MASK } : {}),
      model: path.join(MODELS, exportCase.model),
      adapter,
      adapter_name: adapterName,
    }),
  );
  console.log(
    `${exportCase.name}: adapter "${adapterName}" trained ${result.steps} steps (loss ${result.losses[0]!.toFixed(3)} -> ${result.losses.at(-1)!.toFixed(3)}), saved to ${path.join(directory, adapter)}`,
  );
  logits.dispose();
  model.dispose();
  host.dispose();
}

async function main(): Promise<void> {
  const [familyName, out] = process.argv.slice(2);
  const family = familyName === undefined ? undefined : FAMILIES[familyName];
  if (!family || !out) {
    throw new Error(`usage: export-for-python ${Object.keys(FAMILIES).join('|')} OUTPUT_DIRECTORY`);
  }
  await selectBackend({ backend: 'cpu', warnIfSlow: false });
  for (const exportCase of family.cases) await trainAndExport(family, exportCase, out);
}

await main();
