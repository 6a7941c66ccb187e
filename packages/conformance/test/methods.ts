// The methods and hosts the conformance suite crosses, and what each method documents about its
// outputs when it is attached. A new method joins the suite by one entry in METHODS.
import { HoulsbyConfig, PfeifferConfig } from '@peft/adapter';
import type { PeftConfig, TaskName } from '@peft/core';
import { LoraConfig } from '@peft/lora';
import { PrefixTuningConfig } from '@peft/prefix';
import { PromptTuningConfig } from '@peft/prompt';
import { PTuningConfig, PTuningV2Config } from '@peft/ptuning';

export interface HostCase {
  /** How failures name it. */
  name: string;
  /** A model in packages/models/test/fixtures. */
  fixture: string;
  /** What its head is trained for. */
  task: TaskName;
  /** LoRA targets where peft has no default for the model type (phi3). */
  loraTargets?: string[];
}

export const HOSTS: readonly HostCase[] = [
  { name: 'GPT-2', fixture: 'gpt2-tied', task: 'causal-lm' },
  { name: 'Llama GQA', fixture: 'llama-gqa-untied', task: 'causal-lm' },
  { name: 'Qwen3 (q/k norm, head_dim != d/H)', fixture: 'qwen3-gqa-tied', task: 'causal-lm' },
  {
    name: 'Gemma 2 (soft-capping, sliding and full layers, post norms)',
    fixture: 'gemma2-gqa-softcap-tied',
    task: 'causal-lm',
  },
  {
    name: 'Gemma 3 (local and global layers, two RoPE bases, q/k norm)',
    fixture: 'gemma3-gqa-local-global-tied',
    task: 'causal-lm',
  },
  {
    name: 'Phi-3 (fused qkv_proj and gate_up_proj, partial rotary)',
    fixture: 'phi3-gqa-partial-rotary',
    task: 'causal-lm',
    loraTargets: ['qkv_proj', 'gate_up_proj'],
  },
  { name: 'BERT', fixture: 'bert-sequence-classification', task: 'sequence-classification' },
  // masked LMs: a per-token head over the vocabulary, trained on the masked positions' tokens
  { name: 'BERT masked LM (tied decoder)', fixture: 'bert-masked-lm-tied', task: 'token-classification' },
  {
    name: 'RoBERTa masked LM (positions after padding_idx)',
    fixture: 'roberta-masked-lm',
    task: 'token-classification',
  },
];

/**
 * What attaching an adapter at its initial values does to the host's outputs:
 * - `exact`: nothing, bit for bit (the update starts at zero);
 * - `attends`: the shape is kept, the values change (every layer's queries attend to P extra keys
 *   and values, which no initialisation makes neutral: even zero keys take softmax weight);
 * - `prepends`: P virtual tokens go in front of the input, so per-token logits gain P positions
 *   (`prepended` says how many) and the real tokens, which attend to them, change too.
 */
export type AtInit = 'exact' | 'attends' | 'prepends';

export interface MethodCase {
  name: string;
  atInit: AtInit;
  /** Virtual tokens the adapter adds (0 for methods that add none). */
  virtualTokens: number;
  /** Serves a batch whose samples use different adapters (forward's adapterNames). */
  mixedBatch: boolean;
  /** The adapter as documented at init (for `exact`, the zero-update initialisation). */
  initial(host: HostCase): PeftConfig;
  /** An adapter whose outputs differ from the host's, seeded: the checks that need an effect use it. */
  active(host: HostCase, seed: number): PeftConfig;
}

const P = 4;

export const METHODS: readonly MethodCase[] = [
  {
    name: 'LoRA',
    atInit: 'exact', // B = 0 (peft's default init)
    virtualTokens: 0,
    mixedBatch: true,
    initial: (host) => new LoraConfig({ r: 4, ...(host.loraTargets && { targetModules: host.loraTargets }) }),
    active: (host, seed) =>
      new LoraConfig({
        r: 4,
        initLoraWeights: false,
        initSeed: seed,
        ...(host.loraTargets && { targetModules: host.loraTargets }),
      }),
  },
  {
    name: 'Houlsby adapter',
    atInit: 'exact', // mam_adapter: zero up projection
    virtualTokens: 0,
    mixedBatch: true,
    initial: () => HoulsbyConfig({ reductionFactor: 4, initWeights: 'mam_adapter' }),
    active: (_, seed) => HoulsbyConfig({ reductionFactor: 4, initSeed: seed }),
  },
  {
    name: 'Pfeiffer adapter',
    atInit: 'exact', // mam_adapter: zero up projection
    virtualTokens: 0,
    mixedBatch: true,
    initial: () => PfeifferConfig({ reductionFactor: 4, initWeights: 'mam_adapter' }),
    active: (_, seed) => PfeifferConfig({ reductionFactor: 4, initSeed: seed }),
  },
  {
    name: 'prefix tuning',
    atInit: 'attends',
    virtualTokens: 0,
    mixedBatch: false,
    initial: () => new PrefixTuningConfig({ numVirtualTokens: P }),
    active: (_, seed) => new PrefixTuningConfig({ numVirtualTokens: P, initSeed: seed }),
  },
  {
    name: 'prompt tuning',
    atInit: 'prepends',
    virtualTokens: P,
    mixedBatch: false,
    initial: () => new PromptTuningConfig({ numVirtualTokens: P }),
    active: (_, seed) => new PromptTuningConfig({ numVirtualTokens: P, initSeed: seed }),
  },
  {
    name: 'P-tuning v1',
    atInit: 'prepends',
    virtualTokens: P,
    mixedBatch: false,
    initial: () => new PTuningConfig({ numVirtualTokens: P, encoderHiddenSize: 8 }),
    active: (_, seed) => new PTuningConfig({ numVirtualTokens: P, encoderHiddenSize: 8, initSeed: seed }),
  },
  {
    // its head trains with the prompts: on BERT the classifier is a module to save
    name: 'P-tuning v2',
    atInit: 'attends',
    virtualTokens: 0,
    mixedBatch: false,
    initial: (host) => new PTuningV2Config({ numVirtualTokens: P, task: host.task }),
    active: (host, seed) => new PTuningV2Config({ numVirtualTokens: P, task: host.task, initSeed: seed }),
  },
];
