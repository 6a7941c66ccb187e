// savePretrained: a host (merged or fully fine-tuned) -> a Hugging Face model directory that
// transformers, vLLM and llama.cpp's converter read as they read transformers' own: config.json,
// model.safetensors (or shards with model.safetensors.index.json) under transformers' tensor names
// and layouts, and the tokenizer files of the folder the host came from.
import {
  PeftModel,
  SAFETENSORS_FILE,
  SAFETENSORS_INDEX_FILE,
  describeFile,
  readJson,
  resolveStore,
  serializeSafetensors,
  type FileStore,
  type PeftHost,
  type SafetensorsFloatDtype,
  type StoreSource,
  type TensorToWrite,
} from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';

import { CONFIG_FILE } from './load-pretrained.js';
import { TOKENIZER_CONFIG_FILE, TOKENIZER_FILE } from './tokenizer.js';
import { TransformerHost } from './transformer-host.js';

/** The tokenizer files transformers saves (fast and slow tokenizers, chat templates), copied as they are. */
export const TOKENIZER_FILES = [
  TOKENIZER_FILE,
  TOKENIZER_CONFIG_FILE,
  'special_tokens_map.json',
  'added_tokens.json',
  'vocab.json',
  'merges.txt',
  'vocab.txt',
  'tokenizer.model',
  'spiece.model',
  'sentencepiece.bpe.model',
  'chat_template.jinja',
  'chat_template.json',
] as const;
/** Generation defaults (eos, sampling) of the model the host was loaded from: vLLM and generate read them. */
export const GENERATION_CONFIG_FILE = 'generation_config.json';

/**
 * Node's `readFile` refuses files over 2 GiB (ERR_FS_FILE_TOO_LARGE, Node 20): larger shards would
 * load in Python but not here. transformers' own default is 50GB.
 */
export const DEFAULT_MAX_SHARD_SIZE = '2GB';
/** A shard is built in one buffer; Node's typed arrays hold at most 2^32 bytes. */
const LARGEST_SHARD_BYTES = 2 ** 32;

/** Decimal units, as huggingface_hub's parse_size_to_int reads max_shard_size. */
const SIZE_UNITS: Record<string, number> = { TB: 1e12, GB: 1e9, MB: 1e6, KB: 1e3 };

export type SaveDtype = SafetensorsFloatDtype | 'float32' | 'float16' | 'bfloat16';
const DTYPES: Record<SaveDtype, SafetensorsFloatDtype> = {
  F32: 'F32',
  F16: 'F16',
  BF16: 'BF16',
  float32: 'F32',
  float16: 'F16',
  bfloat16: 'BF16',
};
/** config.json's `dtype` (and `torch_dtype`) for each file dtype. */
const TORCH_DTYPES: Record<SafetensorsFloatDtype, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };
const BYTES_PER_VALUE: Record<SafetensorsFloatDtype, number> = { F32: 4, F16: 2, BF16: 2 };

function float32FromBits(bits: number): number {
  return new Float32Array(new Uint32Array([bits]).buffer)[0]!;
}
/**
 * The smallest magnitude that rounds to infinity in each dtype (round to nearest even): F16's largest
 * finite value is 65504, BF16's 0x7f7f (3.39e38).
 */
const OVERFLOW: Record<SafetensorsFloatDtype, number> = {
  F32: Number.POSITIVE_INFINITY,
  F16: 65520,
  BF16: float32FromBits(0x7f7f8000),
};

export interface SavePretrainedOptions {
  /**
   * The files' tensor dtype: F32 (default; every weight exact), F16 or BF16 (half the size, rounded to
   * nearest even). torch's names (float32, float16, bfloat16) work too.
   */
  dtype?: SaveDtype;
  /**
   * Largest shard, as transformers' max_shard_size: bytes, or a string such as "2GB" or "500MB"
   * (units of 1000). A tensor larger than the limit gets a shard of its own. Default "2GB".
   */
  maxShardSize?: number | string;
  /**
   * Where the tokenizer files come from: by default the folder the host was loaded from (a path,
   * URL or FileStore names another); false writes none.
   */
  tokenizer?: StoreSource | false;
  /** The config.json object to write; by default the one the host was loaded with (a host built by hand has none). */
  config?: Record<string, unknown>;
}

export interface SavedPretrained {
  /** The files written, in order; config.json is last. */
  files: string[];
  /** The weight files: `model.safetensors`, or `model-00001-of-0000N.safetensors`... */
  shards: string[];
  /** Bytes of tensor data in all shards (the index's `total_size`). */
  totalSize: number;
}

/** What savePretrained accepts: a host, or a model wrapping one (a PeftModel after mergeAndUnload, a full fine-tuning). */
export type SavableModel = PeftHost | { readonly host: PeftHost };

interface TensorToSave {
  /** Its name in the checkpoint (transformers'). */
  name: string;
  /** Its shape in the checkpoint. */
  shape: number[];
  bytes: number;
  /** Values in checkpoint layout. */
  read(): Promise<Float32Array>;
}

interface Shard {
  file: string;
  tensors: TensorToSave[];
  bytes: number;
}

/**
 * Writes `model` as a Hugging Face model directory: `config.json`, `model.safetensors` (or shards and
 * `model.safetensors.index.json` past `maxShardSize`) with the tensor names and layouts transformers
 * saves (GPT-2's Conv1D weights [in, out], nn.Linear weights [out, in], a tied LM head left out), and
 * the tokenizer files and generation_config.json of the folder the host was loaded from. Every file
 * lands whole (temporary name, then rename) and config.json lands last: a folder interrupted midway
 * has none, and no loader takes it for a model. An earlier save in the folder is replaced: its
 * config.json goes first, then any index, shards or model.safetensors this save would not overwrite.
 *
 * ```ts
 * const model = getPeftModel(await loadPretrained('./gpt2'), new LoraConfig({ r: 8 }));
 * await train(model, { data, epochs: 3 });
 * const merged = model.mergeAndUnload();
 * await savePretrained(merged, './gpt2-merged', { dtype: 'BF16' });
 * // Python: AutoModelForCausalLM.from_pretrained('./gpt2-merged')
 * ```
 */
export async function savePretrained(
  model: SavableModel,
  destination: StoreSource,
  options: SavePretrainedOptions = {},
): Promise<SavedPretrained> {
  const host = hostToSave(model);
  const dtype = fileDtype(options.dtype);
  const config = configToWrite(host, dtype, options.config);
  const shards = planShards(
    checkpointTensors(host, dtype),
    parseShardSize(options.maxShardSize ?? DEFAULT_MAX_SHARD_SIZE),
  );
  const companions = await readCompanionFiles(host, options.tokenizer);
  const store = await resolveStore(destination);

  await clearEarlierSave(
    store,
    shards.map((shard) => shard.file),
  );
  const files: string[] = [];
  const write = async (name: string, bytes: Uint8Array): Promise<void> => {
    try {
      await store.write(name, bytes);
    } catch (error) {
      throw new Error(`${describeFile(store, name)}: could not be written (${(error as Error).message})`, {
        cause: error,
      });
    }
    files.push(name);
  };
  for (const shard of shards) await write(shard.file, await shardBytes(store, shard, dtype));
  const totalSize = shards.reduce((sum, shard) => sum + shard.bytes, 0);
  if (shards.length > 1) await write(SAFETENSORS_INDEX_FILE, jsonBytes(indexJson(shards, totalSize, dtype)));
  for (const [name, bytes] of companions) await write(name, bytes);
  await write(CONFIG_FILE, jsonBytes(config));
  return { files, shards: shards.map((shard) => shard.file), totalSize };
}

/** The host to write, refused while anything would make the files differ from what it computes. */
function hostToSave(model: SavableModel): TransformerHost {
  if (model instanceof PeftModel && model.adapterNames.length > 0) {
    throw new Error(
      `savePretrained: the PeftModel still holds adapters (${model.adapterNames.join(', ')}); call mergeAndUnload() to fold the ` +
        'active one into the weights first, or saveAdapter() to save the adapter alone',
    );
  }
  const host = 'hooks' in model ? model : model.host;
  if (!(host instanceof TransformerHost)) {
    throw new Error(
      `savePretrained: writes the hosts of @peft/models (GPT-2, Llama, BERT and their families), got a ${host.config.modelType} host of another kind`,
    );
  }
  const attached = [...host.linears.values()].flatMap((linear) =>
    linear.deltaKeys().map((key) => `delta path "${key}" on ${linear.name}`),
  );
  attached.push(...host.hooks.installed());
  if (attached.length > 0) {
    const shown = attached.slice(0, 3).join('; ') + (attached.length > 3 ? `; and ${attached.length - 3} more` : '');
    throw new Error(
      `savePretrained: adapters are attached to the host (${shown}); the files would hold the base weights without them. ` +
        'Merge with mergeAndUnload() or remove them first',
    );
  }
  return host;
}

function fileDtype(dtype: SaveDtype | undefined): SafetensorsFloatDtype {
  if (dtype === undefined) return 'F32';
  const known = Object.hasOwn(DTYPES, dtype) ? DTYPES[dtype] : undefined;
  if (!known)
    throw new Error(`savePretrained: dtype ${JSON.stringify(dtype)} is not one of ${Object.keys(DTYPES).join(', ')}`);
  return known;
}

/** Bytes from a number or "5GB"/"500MB"/"10KB" (huggingface_hub's parse_size_to_int). */
export function parseShardSize(size: number | string): number {
  let bytes = typeof size === 'number' ? size : Number.NaN;
  if (typeof size === 'string') {
    const match = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]B)\s*$/i.exec(size);
    if (match) bytes = Math.floor(Number(match[1]) * SIZE_UNITS[match[2]!.toUpperCase()]!);
  }
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new Error(
      'savePretrained: maxShardSize must be a positive number of bytes or a size such as "2GB" or "500MB" ' +
        `(units KB, MB, GB, TB), got ${JSON.stringify(size)}`,
    );
  }
  return bytes;
}

/** The loaded config.json with the dtype of the files and the class the host was built as. */
function configToWrite(
  host: TransformerHost,
  dtype: SafetensorsFloatDtype,
  given: Record<string, unknown> | undefined,
): Record<string, unknown> {
  const base = given ?? host.origin?.config;
  if (!base) {
    throw new Error(
      `savePretrained: this ${host.config.modelType} host was built by hand and has no config.json to write; ` +
        'pass options.config (the config.json object it was built from)',
    );
  }
  if (base.model_type !== host.config.modelType) {
    throw new Error(
      `savePretrained: options.config has model_type ${JSON.stringify(base.model_type)}, the host is ${JSON.stringify(host.config.modelType)}`,
    );
  }
  const config: Record<string, unknown> = { ...base };
  if (host.config.architecture) config.architectures = [host.config.architecture];
  // transformers 5 reads `dtype`; transformers 4, older vLLM and llama.cpp's converter read `torch_dtype`
  config.dtype = TORCH_DTYPES[dtype];
  config.torch_dtype = TORCH_DTYPES[dtype];
  return config;
}

/**
 * Every parameter under its checkpoint name and layout: hosts hold projection weights [out, in], as
 * nn.Linear checkpoints store them; GPT-2's Conv1D stores them [in, out]. A tied LM head is no
 * parameter of its own, and transformers saves none.
 */
function checkpointTensors(host: TransformerHost, dtype: SafetensorsFloatDtype): TensorToSave[] {
  const tensors: TensorToSave[] = [];
  for (const [parameterName, variable] of host.parameters) {
    if (variable.dtype !== 'float32')
      throw new Error(`savePretrained: parameter "${parameterName}" is ${variable.dtype}, not float32`);
    const linear = parameterName.endsWith('.weight')
      ? host.linears.get(parameterName.slice(0, -'.weight'.length))
      : undefined;
    const transpose = linear?.layout === 'conv1d';
    tensors.push({
      name: parameterName,
      shape: transpose ? [...variable.shape].reverse() : [...variable.shape],
      bytes: variable.size * BYTES_PER_VALUE[dtype],
      read: async () => {
        const held = transpose ? tf.transpose(variable) : variable;
        const values = (await held.data()) as Float32Array;
        if (held !== variable) held.dispose();
        return values;
      },
    });
  }
  return tensors;
}

/**
 * Splits the tensors into shards as huggingface_hub does: in order, a new shard when the next tensor
 * would push the current one past the limit, a tensor larger than the limit alone. One shard is
 * `model.safetensors`; more are `model-00001-of-0000N.safetensors`...
 */
function planShards(tensors: readonly TensorToSave[], maxBytes: number): Shard[] {
  const groups: TensorToSave[][] = [];
  let current: TensorToSave[] = [];
  let currentBytes = 0;
  for (const tensor of tensors) {
    if (tensor.bytes > maxBytes) {
      groups.push([tensor]);
      continue;
    }
    if (currentBytes + tensor.bytes > maxBytes && current.length > 0) {
      groups.push(current);
      current = [];
      currentBytes = 0;
    }
    current.push(tensor);
    currentBytes += tensor.bytes;
  }
  if (current.length > 0 || groups.length === 0) groups.push(current);
  const count = String(groups.length).padStart(5, '0');
  return groups.map((group, i) => {
    const file =
      groups.length === 1 ? SAFETENSORS_FILE : `model-${String(i + 1).padStart(5, '0')}-of-${count}.safetensors`;
    const bytes = group.reduce((sum, tensor) => sum + tensor.bytes, 0);
    if (bytes >= LARGEST_SHARD_BYTES) {
      const largest = group.reduce((a, b) => (b.bytes > a.bytes ? b : a));
      throw new Error(
        `savePretrained: ${file} would hold ${bytes} bytes (tensor "${largest.name}" alone ${largest.bytes}); ` +
          'a shard is built in one buffer of at most 2^32 bytes',
      );
    }
    return { file, tensors: group, bytes };
  });
}

/** One shard's safetensors bytes; a value the dtype cannot hold is an error naming file, tensor and index. */
async function shardBytes(store: FileStore, shard: Shard, dtype: SafetensorsFloatDtype): Promise<Uint8Array> {
  const tensors: Record<string, TensorToWrite> = {};
  for (const tensor of shard.tensors) {
    const values = await tensor.read();
    checkRepresentable(values, dtype, () => `${describeFile(store, shard.file)}: tensor "${tensor.name}"`);
    tensors[tensor.name] = { shape: tensor.shape, values, dtype };
  }
  return serializeSafetensors(tensors, { format: 'pt' });
}

function checkRepresentable(values: Float32Array, dtype: SafetensorsFloatDtype, where: () => string): void {
  const limit = OVERFLOW[dtype];
  for (let i = 0; i < values.length; i++) {
    const value = values[i]!;
    if (Math.abs(value) < limit) continue;
    if (!Number.isFinite(value))
      throw new Error(`${where()} holds ${value} at index ${i}; refusing to save a weight that is not finite`);
    const wider = dtype === 'F16' ? 'BF16 or F32' : 'F32';
    throw new Error(
      `${where()} holds ${value} at index ${i}, which ${dtype} cannot hold (it would become infinity); save as ${wider}`,
    );
  }
}

/** model.safetensors.index.json as transformers writes it. */
function indexJson(shards: readonly Shard[], totalSize: number, dtype: SafetensorsFloatDtype): Record<string, unknown> {
  const weightMap: Record<string, string> = {};
  for (const shard of shards) for (const tensor of shard.tensors) weightMap[tensor.name] = shard.file;
  return {
    metadata: { total_parameters: totalSize / BYTES_PER_VALUE[dtype], total_size: totalSize },
    weight_map: weightMap,
  };
}

/**
 * The tokenizer files (from `tokenizer`, else the folder the host was loaded from) and the
 * generation config of that folder, read before the destination is touched: saving over the folder
 * the host came from copies them onto themselves.
 */
async function readCompanionFiles(
  host: TransformerHost,
  tokenizer: StoreSource | false | undefined,
): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>();
  const copy = async (store: FileStore, names: readonly string[]): Promise<void> => {
    for (const name of names) if (await store.has(name)) files.set(name, await store.read(name));
  };
  const origin = host.origin?.store ?? null;
  if (origin) {
    await copy(
      origin,
      tokenizer === undefined ? [...TOKENIZER_FILES, GENERATION_CONFIG_FILE] : [GENERATION_CONFIG_FILE],
    );
  }
  if (tokenizer !== undefined && tokenizer !== false) {
    const store = await resolveStore(tokenizer);
    await copy(store, TOKENIZER_FILES);
    if (!TOKENIZER_FILES.some((name) => files.has(name))) {
      throw new Error(
        `savePretrained: ${store.location} holds no tokenizer file (looked for ${TOKENIZER_FILES.join(', ')})`,
      );
    }
  }
  return files;
}

/**
 * Makes the folder an unfinished one before this save writes anything: an earlier config.json goes
 * first, then what a loader would read instead of this save's files (an earlier index, its shards
 * this save does not overwrite, a model.safetensors beside new shards: transformers prefers it).
 */
async function clearEarlierSave(store: FileStore, shardFiles: readonly string[]): Promise<void> {
  const stale = [CONFIG_FILE, SAFETENSORS_INDEX_FILE];
  if (await store.has(SAFETENSORS_INDEX_FILE)) {
    const index = await readJson<{ weight_map?: unknown }>(store, SAFETENSORS_INDEX_FILE).catch(() => ({
      weight_map: undefined,
    }));
    const weightMap =
      typeof index.weight_map === 'object' && index.weight_map !== null ? Object.values(index.weight_map) : [];
    stale.push(...new Set(weightMap.filter((file): file is string => typeof file === 'string')));
  }
  stale.push(SAFETENSORS_FILE);
  const present: string[] = [];
  for (const name of new Set(stale)) {
    if (shardFiles.includes(name)) continue;
    if (await store.has(name)) present.push(name);
  }
  if (present.length === 0) return;
  if (!store.remove) {
    throw new Error(
      `savePretrained: ${store.location} holds an earlier save (${present.join(', ')}) and this store cannot delete files; ` +
        'save into an empty folder',
    );
  }
  for (const name of present) await store.remove(name);
}

/** JSON as transformers writes its files: keys sorted at every level, two-space indent, final newline. */
function jsonBytes(value: unknown): Uint8Array {
  return new TextEncoder().encode(`${JSON.stringify(sortKeys(value), null, 2)}\n`);
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(
    Object.keys(value)
      .sort()
      .map((key) => [key, sortKeys((value as Record<string, unknown>)[key])]),
  );
}
