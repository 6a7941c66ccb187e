// What `pnpm bench perf` measures: two model shapes (random weights, given as config.json fields so
// that Python builds the very same model), the methods with their settings on both sides, and the
// matmul work of one training step (for the achieved FLOP/s).
import { PfeifferConfig } from '@peft/adapter';
import { fullFineTuning, getPeftModel, type Example, type PeftHost, type TrainableModel } from '@peft/core';
import { LoraConfig } from '@peft/lora';
import { PrefixTuningConfig } from '@peft/prefix';
import { PromptTuningConfig } from '@peft/prompt';
import { PTuningConfig } from '@peft/ptuning';

export interface PerfModel {
  name: string;
  label: string;
  /** config.json fields; our randomModel and Python's AutoConfig.for_model read the same object. */
  config: Record<string, unknown>;
  /** LoRA's attention targets: peft's defaults for the architecture. */
  loraTargets: string[];
  /** Training batch (examples of `sequence` tokens) where it is not the harness's default. */
  batch?: number;
}

export const PERF_MODELS: readonly PerfModel[] = [
  {
    name: 'gpt2',
    label: 'GPT-2 small (124M: 12 x 768, vocabulary 50,257)',
    config: { model_type: 'gpt2', vocab_size: 50257, n_positions: 1024, n_embd: 768, n_layer: 12, n_head: 12 },
    loraTargets: ['c_attn'],
  },
  {
    name: 'llama',
    label: 'small Llama (12 x 768, SwiGLU 2048, GQA 12/4 heads, vocabulary 32,000)',
    config: {
      model_type: 'llama',
      vocab_size: 32000,
      hidden_size: 768,
      intermediate_size: 2048,
      num_hidden_layers: 12,
      num_attention_heads: 12,
      num_key_value_heads: 4,
      max_position_embeddings: 2048,
      rms_norm_eps: 1e-5,
      tie_word_embeddings: false,
    },
    loraTargets: ['q_proj', 'v_proj'],
  },
  {
    name: 'qwen2.5-0.5b',
    label: 'Qwen2.5-0.5B shape (494M: 24 x 896, SwiGLU 4864, GQA 14/2 heads, vocabulary 151,936, tied)',
    // the published config.json's fields that shape the computation (oracle/make_real_size_checkpoints.py has the same)
    config: {
      model_type: 'qwen2',
      vocab_size: 151936,
      hidden_size: 896,
      intermediate_size: 4864,
      num_hidden_layers: 24,
      num_attention_heads: 14,
      num_key_value_heads: 2,
      max_position_embeddings: 32768,
      rms_norm_eps: 1e-6,
      rope_theta: 1000000.0,
      use_sliding_window: false,
      tie_word_embeddings: true,
    },
    loraTargets: ['q_proj', 'v_proj'],
    batch: 2,
  },
  {
    name: 'qwen3-0.6b',
    label: 'Qwen3-0.6B shape (596M: 28 x 1024, SwiGLU 3072, GQA 16/8 heads of 128, vocabulary 151,936, tied)',
    config: {
      model_type: 'qwen3',
      vocab_size: 151936,
      hidden_size: 1024,
      intermediate_size: 3072,
      num_hidden_layers: 28,
      num_attention_heads: 16,
      num_key_value_heads: 8,
      head_dim: 128,
      attention_bias: false,
      max_position_embeddings: 40960,
      rms_norm_eps: 1e-6,
      rope_theta: 1000000.0,
      use_sliding_window: false,
      tie_word_embeddings: true,
    },
    loraTargets: ['q_proj', 'v_proj'],
    batch: 2,
  },
  {
    name: 'tiny',
    label: 'tiny GPT-2 (2 x 64, vocabulary 512: a smoke test of the harness, not a benchmark)',
    config: { model_type: 'gpt2', vocab_size: 512, n_positions: 256, n_embd: 64, n_layer: 2, n_head: 2 },
    loraTargets: ['c_attn'],
  },
];

/** The config.json fields of an architecture's dropout (GPT-2's default 0.1 each; the others' 0). */
const DROPOUT_FIELDS: Record<string, readonly string[]> = {
  gpt2: ['embd_pdrop', 'attn_pdrop', 'resid_pdrop'],
  llama: ['attention_dropout'],
  qwen2: ['attention_dropout'],
  qwen3: ['attention_dropout'],
};

/**
 * The model's config.json with every dropout field at `rate`, what both sides build: 0 (the harness's
 * default) times the same work on both; transformers' own defaults would train GPT-2 with dropout 0.1.
 */
export function perfConfig(model: PerfModel, rate: number): Record<string, unknown> {
  const fields = DROPOUT_FIELDS[model.config.model_type as string];
  if (!fields) throw new Error(`perfConfig: no dropout fields known for model_type ${String(model.config.model_type)}`);
  return { ...model.config, ...Object.fromEntries(fields.map((field) => [field, rate])) };
}

/** `--dropout`'s fields of a model, for the report. */
export const dropoutFields = (model: PerfModel): readonly string[] =>
  DROPOUT_FIELDS[model.config.model_type as string] ?? [];

/** The shapes `pnpm bench perf` measures unless told otherwise. */
export const DEFAULT_PERF_MODELS = ['gpt2', 'llama'];

/** Virtual tokens of prefix, prompt and P-tuning; the bottleneck size of the Pfeiffer adapter. */
export const PERF_VIRTUAL_TOKENS = 20;
export const PERF_BOTTLENECK = 64;

export interface PerfMethod {
  name: string;
  label: string;
  /** Which virtual tokens the method adds: to the keys (prefix) or to the whole sequence (prompts). */
  virtual: 'none' | 'keys' | 'sequence';
  /** Gradients reach every weight (full fine-tuning) or only the inputs of each layer. */
  full: boolean;
  /** The adapter merges into the base weights (LoRA): inference is also timed merged. */
  mergeable: boolean;
  /** The Python library that runs the same method: Hugging Face peft, or AdapterHub's `adapters`. */
  counterpart: 'peft' | 'adapters';
  make(host: PeftHost, model: PerfModel): TrainableModel;
}

export const PERF_METHODS: readonly PerfMethod[] = [
  {
    name: 'lora',
    label: 'LoRA r=8 (attention)',
    virtual: 'none',
    full: false,
    mergeable: true,
    counterpart: 'peft',
    make: (host, model) =>
      getPeftModel(
        host,
        new LoraConfig({ r: 8, loraAlpha: 16, targetModules: model.loraTargets, taskType: 'CAUSAL_LM' }),
      ),
  },
  {
    name: 'prefix',
    label: `prefix tuning (${PERF_VIRTUAL_TOKENS})`,
    virtual: 'keys',
    full: false,
    mergeable: false,
    counterpart: 'peft',
    make: (host) =>
      getPeftModel(host, new PrefixTuningConfig({ numVirtualTokens: PERF_VIRTUAL_TOKENS, taskType: 'CAUSAL_LM' })),
  },
  {
    name: 'prompt',
    label: `prompt tuning (${PERF_VIRTUAL_TOKENS})`,
    virtual: 'sequence',
    full: false,
    mergeable: false,
    counterpart: 'peft',
    make: (host) =>
      getPeftModel(host, new PromptTuningConfig({ numVirtualTokens: PERF_VIRTUAL_TOKENS, taskType: 'CAUSAL_LM' })),
  },
  {
    name: 'ptuning',
    label: `P-tuning (${PERF_VIRTUAL_TOKENS}, MLP)`,
    virtual: 'sequence',
    full: false,
    mergeable: false,
    counterpart: 'peft',
    make: (host) =>
      getPeftModel(
        host,
        new PTuningConfig({
          numVirtualTokens: PERF_VIRTUAL_TOKENS,
          encoderReparameterizationType: 'MLP',
          taskType: 'CAUSAL_LM',
        }),
      ),
  },
  {
    name: 'pfeiffer',
    label: `Pfeiffer adapter (m=${PERF_BOTTLENECK})`,
    virtual: 'none',
    full: false,
    mergeable: false,
    counterpart: 'adapters',
    make: (host) => getPeftModel(host, PfeifferConfig({ bottleneckSize: PERF_BOTTLENECK })),
  },
  {
    name: 'full',
    label: 'full fine-tuning',
    virtual: 'none',
    full: true,
    mergeable: false,
    counterpart: 'peft',
    make: (host) => fullFineTuning(host),
  },
];

interface Dimensions {
  hidden: number;
  layers: number;
  vocab: number;
  /** [in, out] of each linear layer of one block. */
  linears: [number, number][];
}

function dimensions(model: PerfModel): Dimensions {
  const c = model.config as Record<string, number>;
  if (model.config.model_type === 'gpt2') {
    const d = c.n_embd!;
    return {
      hidden: d,
      layers: c.n_layer!,
      vocab: c.vocab_size!,
      linears: [
        [d, 3 * d],
        [d, d],
        [d, 4 * d],
        [4 * d, d],
      ],
    };
  }
  const d = c.hidden_size!;
  const kv = (d / c.num_attention_heads!) * c.num_key_value_heads!;
  const inner = c.intermediate_size!;
  return {
    hidden: d,
    layers: c.num_hidden_layers!,
    vocab: c.vocab_size!,
    linears: [
      [d, d],
      [d, kv],
      [d, kv],
      [d, d],
      [d, inner],
      [d, inner],
      [inner, d],
    ],
  };
}

export interface MatmulShape {
  /** [m, k, n]: an [m, k] by [k, n] product. */
  shape: [number, number, number];
  /** How often it occurs in one forward. */
  count: number;
}

/** The distinct matmuls of a forward over `tokens` rows, the ceiling is measured on these. */
export function forwardMatmuls(model: PerfModel, tokens: number): MatmulShape[] {
  const { hidden, layers, vocab, linears } = dimensions(model);
  const found = new Map<string, MatmulShape>();
  for (const [k, n] of linears) {
    const entry = found.get(`${k},${n}`) ?? { shape: [tokens, k, n], count: 0 };
    entry.count += layers;
    found.set(`${k},${n}`, entry);
  }
  return [...found.values(), { shape: [tokens, hidden, vocab], count: 1 }];
}

/** FLOP/s a runtime reaches on these matmuls, each timed alone (seconds per product, same order). */
export function matmulCeiling(matmuls: readonly MatmulShape[], seconds: readonly number[]): number {
  let flops = 0;
  let time = 0;
  matmuls.forEach(({ shape: [m, k, n], count }, i) => {
    flops += count * 2 * m * k * n;
    time += count * seconds[i]!;
  });
  return flops / time;
}

/**
 * Floating-point operations of one training step (multiply-adds counted as 2): the forward's
 * matmuls (linear layers, the LM head, and attention's two products), then the backward's: the
 * input gradients (as many as the forward) and, for full fine-tuning, the weight gradients (as many
 * again). The methods' own small weights are left out; both runtimes are charged the same work.
 */
export function trainingFlops(
  model: PerfModel,
  method: PerfMethod,
  batch: number,
  sequence: number,
  virtual: number,
): number {
  const { hidden, layers, vocab, linears } = dimensions(model);
  const rows = batch * (sequence + (method.virtual === 'sequence' ? virtual : 0));
  const keys = sequence + (method.virtual === 'none' ? 0 : virtual);
  const queries = sequence + (method.virtual === 'sequence' ? virtual : 0);
  const perLayer = linears.reduce((sum, [k, n]) => sum + 2 * rows * k * n, 0) + 2 * 2 * batch * queries * keys * hidden;
  const forward = layers * perLayer + 2 * rows * hidden * vocab;
  return forward * (method.full ? 3 : 2);
}

/**
 * `count` deterministic causal-LM examples of 128 tokens (labels = inputs) for the step scripts
 * (profile-step, ab-step): the same data for every run, so that their steps compare.
 */
export function stepExamples(count: number, vocab: number): Example[] {
  return Array.from({ length: count }, (_, i) => {
    const ids = Array.from({ length: 128 }, (_, t) => (i * 7919 + t * 31) % vocab);
    return { inputIds: ids, labels: ids };
  });
}
