// A Hugging Face checkpoint as a set of named tensors: one `model.safetensors`, or shards listed in
// `model.safetensors.index.json`. Pickle files (`pytorch_model.bin`) are never read: loading them
// can execute code.
import { describeFile, readJson, type FileStore, type RangeFile } from './files.js';
import {
  openSafetensors,
  parseSafetensors,
  type SafetensorsFile,
  type StoredTensor,
  type TensorData,
} from './safetensors.js';

export const SAFETENSORS_FILE = 'model.safetensors';
export const SAFETENSORS_INDEX_FILE = 'model.safetensors.index.json';

export interface Checkpoint {
  /** Where the tensors came from, for messages. */
  readonly location: string;
  names(): string[];
  has(name: string): boolean;
  /**
   * Decodes a tensor; with `expectedShape`, a tensor of another shape is an error that names the
   * file, the tensor and both shapes. A float tensor's values go to the start of `into` when given.
   */
  tensor(name: string, expectedShape?: readonly number[], into?: Float32Array): TensorData;
  /**
   * A tensor's bytes as stored, undecoded (a view the next call may reuse), shape-checked as
   * `tensor` does: for loaders that decode natively. Absent where a checkpoint has no files.
   */
  stored?(name: string, expectedShape?: readonly number[]): StoredTensor;
  /** Releases the files it holds open (a checkpoint read by ranges); `tensor` fails after it. */
  close?(): void;
  /** Values of all its tensors together, from the headers; absent where not known (made in memory). */
  readonly totalValues?: number;
  /** For messages: the file that holds a tensor (a shard's path), where there are files. */
  fileOf?(name: string): string | undefined;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** A checkpoint over already parsed files, each tensor looked up in the file that holds it. */
export function checkpointFromFiles(
  location: string,
  owners: ReadonlyMap<string, SafetensorsFile>,
  close?: () => void,
): Checkpoint {
  const owner = (name: string, expectedShape?: readonly number[]): SafetensorsFile => {
    const file = owners.get(name);
    if (!file) throw new Error(`${location}: the checkpoint has no tensor "${name}"`);
    const entry = file.entries.get(name)!;
    if (expectedShape && !sameShape(entry.shape, expectedShape)) {
      throw new Error(
        `${file.source}: tensor "${name}" has shape [${entry.shape.join(', ')}], expected [${expectedShape.join(', ')}]`,
      );
    }
    return file;
  };
  let totalValues = 0;
  for (const [name, file] of owners) totalValues += file.entries.get(name)!.shape.reduce((a, b) => a * b, 1);
  return {
    location,
    totalValues,
    ...(close ? { close } : {}),
    fileOf: (name) => owners.get(name)?.source,
    names: () => [...owners.keys()],
    has: (name) => owners.has(name),
    tensor: (name, expectedShape, into) => owner(name, expectedShape).tensor(name, into),
    stored: (name, expectedShape) => owner(name, expectedShape).bytes(name),
  };
}

/**
 * Opens the checkpoint in `store`: sharded if an index is present, else `model.safetensors`. Where
 * the store reads byte ranges (a Node directory), only the headers are read now and each tensor when
 * it is decoded: close the checkpoint when done. Elsewhere each file is read whole.
 */
export async function readCheckpoint(store: FileStore): Promise<Checkpoint> {
  const opened: RangeFile[] = [];
  const close = () => {
    for (const file of opened.splice(0)) file.close();
  };
  const open = async (name: string): Promise<SafetensorsFile> => {
    const source = describeFile(store, name);
    if (!store.openRanges) return parseSafetensors(await store.read(name), source);
    const file = await store.openRanges(name);
    opened.push(file);
    return openSafetensors(file, source);
  };
  try {
    const owners = new Map<string, SafetensorsFile>();
    if (await store.has(SAFETENSORS_INDEX_FILE)) {
      const indexPath = describeFile(store, SAFETENSORS_INDEX_FILE);
      const index = await readJson<{ weight_map?: unknown }>(store, SAFETENSORS_INDEX_FILE);
      const weightMap = index.weight_map;
      if (
        typeof weightMap !== 'object' ||
        weightMap === null ||
        !Object.values(weightMap).every((file) => typeof file === 'string')
      ) {
        throw new Error(`${indexPath}: "weight_map" must map tensor names to shard file names`);
      }
      const shards = new Map<string, SafetensorsFile>();
      for (const shard of new Set(Object.values(weightMap as Record<string, string>))) {
        shards.set(shard, await open(shard));
      }
      for (const [name, shard] of Object.entries(weightMap as Record<string, string>)) {
        const file = shards.get(shard)!;
        if (!file.entries.has(name))
          throw new Error(`${indexPath}: lists tensor "${name}" in ${shard}, which does not hold it`);
        owners.set(name, file);
      }
      return checkpointFromFiles(indexPath, owners, close);
    }
    if (await store.has(SAFETENSORS_FILE)) {
      const file = await open(SAFETENSORS_FILE);
      for (const name of file.entries.keys()) owners.set(name, file);
      return checkpointFromFiles(file.source, owners, close);
    }
  } catch (error) {
    close();
    throw error;
  }
  throw new Error(
    `${store.location}: no ${SAFETENSORS_FILE} or ${SAFETENSORS_INDEX_FILE} (only safetensors checkpoints are read; ` +
      'convert a pytorch_model.bin with Python `safetensors` first)',
  );
}
