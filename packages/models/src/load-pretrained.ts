// loadPretrained: a Hugging Face model directory -> a host, architecture chosen by config.json.
import {
  describeFile,
  readCheckpoint,
  preview,
  readJson,
  resolveStore,
  type Checkpoint,
  type FileStore,
  type StoreSource,
} from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';

import { ConfigReader, type RawConfig } from './config.js';
import { BertModel, parseBertConfig } from './bert.js';
import { Gemma2Model, parseGemma2Config, parseGemma3TextConfig } from './gemma2.js';
import { Gpt2Model, parseGpt2Config } from './gpt2.js';
import { LlamaModel, parseLlamaConfig } from './llama.js';
import { Phi3Model, parsePhi3Config } from './phi3.js';

import { NO_DROPOUT, type TransformerHost } from './transformer-host.js';

export const CONFIG_FILE = 'config.json';

export interface LoadOptions {
  /**
   * Load the body under another head: a transformers class name (GPT2ForSequenceClassification,
   * GPT2ForTokenClassification, BertForSequenceClassification, BertForTokenClassification), as
   * `AutoModelFor...from_pretrained` does with an LM or a base model's checkpoint.
   * Head weights the checkpoint lacks are created N(0, 0.02) with `newHeadSeed` (default 0).
   */
  architecture?: string;
  numLabels?: number;
  padTokenId?: number;
  newHeadSeed?: number;
  /**
   * The model's dropout in training passes, as transformers runs it after `model.train()`: the
   * rates of config.json (GPT-2 `*_pdrop`, BERT `hidden_dropout_prob`, `attention_dropout`, ...).
   * `false` turns every one off (as a config with zeros would); `host.dropoutRates` shows them.
   * Inference never drops. Default true.
   */
  dropout?: boolean;
}

/**
 * Parses the config (its errors come before any tensor is made; sizes checked against the
 * checkpoint's headers where known), then builds on the checkpoint.
 */
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
  bert: (reader, options) => {
    const config = parseBertConfig(reader);
    return (checkpoint) =>
      new BertModel(config, checkpoint, options.architecture ? (options.newHeadSeed ?? 0) : undefined);
  },
  roberta: (reader) => {
    const config = parseBertConfig(reader, 'roberta');
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
 *
 * Nothing is left behind when it fails: the checkpoint is closed and every tensor made so far is
 * freed. The config is checked against the checkpoint's headers before any tensor is made, and
 * every weight is checked to be finite (a NaN in the file is an error naming it, not NaN logits).
 */
export async function loadPretrained(source: StoreSource, options: LoadOptions = {}): Promise<TransformerHost> {
  checkLoadOptions(options);
  const store = await resolveStore(source);
  const raw = await readJson<RawConfig>(store, CONFIG_FILE);
  const configPath = describeFile(store, CONFIG_FILE);
  const builder = builderFor(raw, configPath);
  const checkpoint = await readCheckpoint(store);
  try {
    return construct(builder, raw, configPath, options, store, checkpoint);
  } finally {
    checkpoint.close?.();
  }
}

/** A host of the architecture `raw` (a config.json object) names, on the weights of `checkpoint`. */
export function hostFromCheckpoint(raw: RawConfig, checkpoint: Checkpoint, options: LoadOptions = {}): TransformerHost {
  checkLoadOptions(options);
  const configPath = `${checkpoint.location} config`;
  return construct(builderFor(raw, configPath), raw, configPath, options, null, checkpoint);
}

function builderFor(raw: RawConfig, configPath: string): Builder {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new Error(`${configPath}: not a JSON object`);
  const modelType = raw.model_type;
  // own keys only: "__proto__" or "constructor" name no architecture
  if (typeof modelType !== 'string' || !Object.hasOwn(ARCHITECTURES, modelType)) {
    throw new Error(
      `${configPath}: unsupported model_type ${preview(modelType)} (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`,
    );
  }
  return ARCHITECTURES[modelType]!;
}

function construct(
  builder: Builder,
  raw: RawConfig,
  configPath: string,
  options: LoadOptions,
  store: FileStore | null,
  checkpoint: Checkpoint,
): TransformerHost {
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
  const size =
    checkpoint.totalValues === undefined ? null : { values: checkpoint.totalValues, location: checkpoint.location };
  const build = builder(new ConfigReader(config, configPath, size), options);
  const host = freeingOnError(() => build(checkpoint));
  host.origin = { config, store };
  if (options.dropout === false) host.dropoutRates = NO_DROPOUT;
  return host;
}

function checkLoadOptions(options: LoadOptions): void {
  if (options.dropout !== undefined && typeof options.dropout !== 'boolean')
    throw new Error(`LoadOptions.dropout: expected true or false, got ${JSON.stringify(options.dropout)}`);
}

/**
 * Runs a host's construction; when it throws, everything it made is freed: the weights read so far
 * (the variables the engine registered meanwhile: construction is synchronous, so nothing else
 * made them) and any other tensor (tidy). Hosts keep no tensor that is not a variable (keptTable).
 */
function freeingOnError(build: () => TransformerHost): TransformerHost {
  const before = new Set(Object.keys(tf.engine().state.registeredVariables));
  let host: TransformerHost | null = null;
  try {
    tf.tidy(() => {
      host = build();
    });
  } catch (error) {
    for (const [name, variable] of Object.entries(tf.engine().state.registeredVariables))
      if (!before.has(name)) variable.dispose();
    throw error;
  }
  return host!;
}
