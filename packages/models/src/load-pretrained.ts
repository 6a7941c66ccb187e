// loadPretrained: a Hugging Face model directory -> a host, architecture chosen by config.json.
import {
  describeFile,
  readCheckpoint,
  readJson,
  resolveStore,
  type Checkpoint,
  type FileStore,
  type StoreSource,
} from '@peft/core';

import { ConfigReader, type RawConfig } from './config.js';
import { BertModel, parseBertConfig } from './bert.js';
import { Gemma2Model, parseGemma2Config, parseGemma3TextConfig } from './gemma2.js';
import { Gpt2Model, parseGpt2Config } from './gpt2.js';
import { LlamaModel, parseLlamaConfig } from './llama.js';
import { Phi3Model, parsePhi3Config } from './phi3.js';

import type { TransformerHost } from './transformer-host.js';

export const CONFIG_FILE = 'config.json';

export interface LoadOptions {
  /**
   * Load the body under another head: a transformers class name (GPT2ForSequenceClassification,
   * GPT2ForTokenClassification), as `AutoModelFor...from_pretrained` does with an LM checkpoint.
   * Head weights the checkpoint lacks are created N(0, 0.02) with `newHeadSeed` (default 0).
   */
  architecture?: string;
  numLabels?: number;
  padTokenId?: number;
  newHeadSeed?: number;
}

/** Parses the config (its errors come before any weight is read), then builds on a checkpoint. */
type Builder = (reader: ConfigReader, options: LoadOptions) => (checkpoint: Checkpoint) => TransformerHost;

const llamaFamily: Builder = (reader) => {
  const config = parseLlamaConfig(reader);
  return (checkpoint) => new LlamaModel(config, checkpoint);
};

const ARCHITECTURES: Record<string, Builder> = {
  gpt2: (reader, options) => {
    const config = parseGpt2Config(reader);
    return (checkpoint) =>
      new Gpt2Model(config, checkpoint, options.architecture ? (options.newHeadSeed ?? 0) : undefined);
  },
  llama: llamaFamily,
  mistral: llamaFamily,
  qwen2: llamaFamily,
  qwen3: llamaFamily,
  phi3: (reader) => {
    const config = parsePhi3Config(reader);
    return (checkpoint) => new Phi3Model(config, checkpoint);
  },
  gemma2: (reader) => {
    const config = parseGemma2Config(reader);
    return (checkpoint) => new Gemma2Model(config, checkpoint);
  },
  gemma3_text: (reader) => {
    const config = parseGemma3TextConfig(reader);
    return (checkpoint) => new Gemma2Model(config, checkpoint);
  },
  bert: (reader) => {
    const config = parseBertConfig(reader);
    return (checkpoint) => new BertModel(config, checkpoint);
  },
};

export const SUPPORTED_MODEL_TYPES = Object.keys(ARCHITECTURES);

/**
 * Loads a model from a Hugging Face model directory: `config.json` + `model.safetensors` (or its
 * shards). `source` is a directory path (Node), a URL (anything with fetch), or a FileStore.
 *
 * ```ts
 * const model = await loadPretrained('./brown-gpt');
 * const { logits } = model.forward({ inputIds: [[464, 3290, 318]] });
 * ```
 */
export async function loadPretrained(source: StoreSource, options: LoadOptions = {}): Promise<TransformerHost> {
  const store = await resolveStore(source);
  const raw = await readJson<RawConfig>(store, CONFIG_FILE);
  const configPath = describeFile(store, CONFIG_FILE);
  const build = builderFor(raw, configPath, options, store);
  const checkpoint = await readCheckpoint(store);
  try {
    return build(checkpoint);
  } finally {
    checkpoint.close?.();
  }
}

/** A host of the architecture `raw` (a config.json object) names, on the weights of `checkpoint`. */
export function hostFromCheckpoint(raw: RawConfig, checkpoint: Checkpoint, options: LoadOptions = {}): TransformerHost {
  return builderFor(raw, `${checkpoint.location} config`, options, null)(checkpoint);
}

function builderFor(
  raw: RawConfig,
  configPath: string,
  options: LoadOptions,
  store: FileStore | null,
): (checkpoint: Checkpoint) => TransformerHost {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new Error(`${configPath}: not a JSON object`);
  const modelType = raw.model_type;
  const builder = typeof modelType === 'string' ? ARCHITECTURES[modelType] : undefined;
  if (!builder) {
    throw new Error(
      `${configPath}: unsupported model_type ${JSON.stringify(modelType)} (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`,
    );
  }
  let config = raw;
  if (options.architecture) {
    const { id2label: _labels, label2id: _ids, ...rest } = raw;
    config = {
      ...rest,
      architectures: [options.architecture],
      num_labels: options.numLabels ?? 2,
      ...(options.padTokenId !== undefined ? { pad_token_id: options.padTokenId } : {}),
    };
  }
  const build = builder(new ConfigReader(config, configPath), options);
  return (checkpoint) => {
    const host = build(checkpoint);
    host.origin = { config, store };
    return host;
  };
}
