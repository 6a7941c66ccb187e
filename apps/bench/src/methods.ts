// The methods the bench compares, with their default hyperparameters for a small model (sources in
// the README: the papers' and peft's examples, scaled to brown-gpt). Each makes a trainable model
// on a fresh host.
import { HoulsbyConfig, PfeifferConfig } from '@peft/adapter';
import {
  fullFineTuning,
  getPeftModel,
  headOnly,
  type PeftHost,
  type PeftModel,
  type TaskName,
  type TrainableModel,
} from '@peft/core';
import { LoraConfig } from '@peft/lora';
import { PrefixTuningConfig } from '@peft/prefix';
import { PromptTuningConfig } from '@peft/prompt';
import { PTuningConfig, PTuningV2Config } from '@peft/ptuning';

export interface MethodSpec {
  name: string;
  /** Shown in reports. */
  label: string;
  /** Learning rate (AdamW), per method as the literature uses them. */
  learningRate: number;
  /** No training: the frozen model is evaluated as it is. */
  frozen?: boolean;
  /** The adapter merges into the base weights (LoRA): its latency is also timed merged. */
  mergeable?: boolean;
  /** Positions of the context the method takes (the prompt methods' virtual tokens). */
  virtualTokens: number;
  make(host: PeftHost, task: TaskName, seed: number): TrainableModel;
}

const TASK_TYPES: Record<TaskName, string> = {
  'causal-lm': 'CAUSAL_LM',
  'sequence-classification': 'SEQ_CLS',
  'token-classification': 'TOKEN_CLS',
};

/** Virtual tokens of the prompt methods (their context cost, reported per run). */
export const VIRTUAL_TOKENS = 10;

/** P-tuning v2 with `prefixDropout` on its prefix (the bench's 0.1, as its authors' code). */
export function ptuningV2(prefixDropout: number): MethodSpec['make'] {
  return (host, task, seed) =>
    getPeftModel(host, new PTuningV2Config({ numVirtualTokens: VIRTUAL_TOKENS, task, prefixDropout, initSeed: seed }));
}

export const METHODS: readonly MethodSpec[] = [
  {
    name: 'lora',
    label: 'LoRA r=8 (attention)',
    learningRate: 2e-3,
    mergeable: true,
    virtualTokens: 0,
    make: (host, task, seed) =>
      getPeftModel(
        host,
        // peft's default targets for the model type: c_attn (GPT-2), query and value (BERT)
        new LoraConfig({ r: 8, loraAlpha: 16, taskType: TASK_TYPES[task], initSeed: seed }),
      ),
  },
  {
    name: 'houlsby',
    label: 'Houlsby adapters (factor 16)',
    learningRate: 1e-3,
    virtualTokens: 0,
    make: (host, task, seed) =>
      getPeftModel(
        host,
        HoulsbyConfig({
          reductionFactor: 16,
          initWeights: 'mam_adapter',
          initSeed: seed,
          modulesToSave: head(host, task),
        }),
      ),
  },
  {
    name: 'pfeiffer',
    label: 'Pfeiffer adapters (factor 16)',
    learningRate: 1e-3,
    virtualTokens: 0,
    make: (host, task, seed) =>
      getPeftModel(
        host,
        PfeifferConfig({
          reductionFactor: 16,
          initWeights: 'mam_adapter',
          initSeed: seed,
          modulesToSave: head(host, task),
        }),
      ),
  },
  {
    name: 'prefix',
    label: `prefix tuning (${VIRTUAL_TOKENS}, MLP)`,
    learningRate: 3e-3,
    virtualTokens: VIRTUAL_TOKENS,
    make: (host, task, seed) =>
      getPeftModel(
        host,
        new PrefixTuningConfig({
          numVirtualTokens: VIRTUAL_TOKENS,
          prefixProjection: true,
          taskType: TASK_TYPES[task],
          initSeed: seed,
        }),
      ),
  },
  {
    name: 'prompt',
    label: `prompt tuning (${VIRTUAL_TOKENS})`,
    learningRate: 3e-2,
    virtualTokens: VIRTUAL_TOKENS,
    make: (host, task, seed) =>
      getPeftModel(
        host,
        new PromptTuningConfig({
          numVirtualTokens: VIRTUAL_TOKENS,
          promptTuningInit: 'SAMPLE_VOCAB',
          taskType: TASK_TYPES[task],
          initSeed: seed,
        }),
      ),
  },
  {
    name: 'ptuning-v1',
    label: `P-tuning v1 (${VIRTUAL_TOKENS}, MLP)`,
    learningRate: 1e-2,
    virtualTokens: VIRTUAL_TOKENS,
    make: (host, task, seed) =>
      getPeftModel(
        host,
        new PTuningConfig({ numVirtualTokens: VIRTUAL_TOKENS, taskType: TASK_TYPES[task], initSeed: seed }),
      ),
  },
  {
    name: 'ptuning-v2',
    label: `P-tuning v2 (${VIRTUAL_TOKENS})`,
    learningRate: 1e-2,
    virtualTokens: VIRTUAL_TOKENS,
    make: ptuningV2(0.1),
  },
  {
    name: 'full',
    label: 'full fine-tuning',
    learningRate: 3e-4,
    virtualTokens: 0,
    make: (host) => fullFineTuning(host),
  },
  { name: 'head-only', label: 'head only', learningRate: 1e-2, virtualTokens: 0, make: (host) => headOnly(host) },
  {
    name: 'frozen',
    label: 'frozen (zero-shot)',
    learningRate: 0,
    frozen: true,
    virtualTokens: 0,
    make: (host) => ({ host, trainableVariables: () => new Map() }),
  },
];

/** Bottleneck configs carry no task type (AdapterHub's format): the head trains as modules_to_save. */
/** The host's classification head (GPT-2's score or classifier, BERT's classifier): trained with the adapters. */
function head(host: PeftHost, task: TaskName): string[] | null {
  return task === 'causal-lm' ? null : [...host.headModules];
}

export function isPeftModel(model: TrainableModel): model is PeftModel {
  return typeof (model as PeftModel).saveAdapter === 'function';
}
