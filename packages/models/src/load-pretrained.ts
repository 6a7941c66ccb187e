// loadPretrained: a Hugging Face model directory -> a host, architecture chosen by config.json.
import { describeFile, readCheckpoint, readJson, resolveStore, type FileStore, type StoreSource } from '@peft/core';

import { ConfigReader, type RawConfig } from './config.js';
import { BertModel, parseBertConfig } from './bert.js';
import { Gpt2Model, parseGpt2Config } from './gpt2.js';
import { LlamaModel, parseLlamaConfig } from './llama.js';

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

type Builder = (reader: ConfigReader, store: FileStore, options: LoadOptions) => Promise<TransformerHost>;

async function llamaFamily(reader: ConfigReader, store: FileStore): Promise<TransformerHost> {
  return new LlamaModel(parseLlamaConfig(reader), await readCheckpoint(store));
}

const ARCHITECTURES: Record<string, Builder> = {
  gpt2: async (reader, store, options) =>
    new Gpt2Model(parseGpt2Config(reader), await readCheckpoint(store), options.architecture ? (options.newHeadSeed ?? 0) : undefined),
  llama: llamaFamily,
  mistral: llamaFamily,
  qwen2: llamaFamily,
  bert: async (reader, store) => new BertModel(parseBertConfig(reader), await readCheckpoint(store)),
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
  let raw = await readJson<RawConfig>(store, CONFIG_FILE);
  const configPath = describeFile(store, CONFIG_FILE);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error(`${configPath}: not a JSON object`);
  if (options.architecture) {
    const { id2label: _labels, label2id: _ids, ...rest } = raw;
    raw = { ...rest, architectures: [options.architecture], num_labels: options.numLabels ?? 2, ...(options.padTokenId !== undefined ? { pad_token_id: options.padTokenId } : {}) };
  }
  const modelType = raw.model_type;
  const build = typeof modelType === 'string' ? ARCHITECTURES[modelType] : undefined;
  if (!build) {
    throw new Error(
      `${configPath}: unsupported model_type ${JSON.stringify(modelType)} (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`,
    );
  }
  return build(new ConfigReader(raw, configPath), store, options);
}
