/**
 * The one I/O abstraction of @peft: named byte blobs in a folder-like place. Node reads and writes a
 * directory (`nodeDirectory` from `@peft/core/node`); a browser reads URLs or dropped files and
 * writes to memory, IndexedDB or a download. Model and adapter code only ever sees this interface,
 * so the same code saves and loads everywhere.
 */
export interface FileStore {
  /** Where the files live, for error messages (a path or a URL). */
  readonly location: string;
  /** The bytes of `name`; rejects with an error naming the file when it is not there. */
  read(name: string): Promise<Uint8Array>;
  /** Whether `name` exists. */
  has(name: string): Promise<boolean>;
  /** Writes `name` whole; a reader never sees a half-written file where the store allows it. */
  write(name: string, bytes: Uint8Array): Promise<void>;
  /**
   * Writes several files as one change, where the store can: whenever it is interrupted (a crash, a
   * kill -9), a reader finds all the new files or the old ones, never a mix. The folder's other files
   * stay. `saveAdapter` uses it for an adapter's config and weights; without it they go one by one.
   */
  writeFiles?(files: ReadonlyMap<string, Uint8Array>): Promise<void>;
  /**
   * Deletes `name`; nothing happens when it is not there. Stores that cannot delete (a URL) leave it
   * out, and writers that replace files (savePretrained over an earlier save) say so when they need it.
   */
  remove?(name: string): Promise<void>;
  /**
   * Every file name in the store (names in folders with `/`), sorted, where the store can list them:
   * training checkpoints are pruned, and temporary files of interrupted saves removed, through it.
   */
  list?(): Promise<string[]>;
  /**
   * Opens `name` for reads of byte ranges, where the store can (a Node directory): a checkpoint then
   * reads each tensor as it is used instead of whole shards. Rejects, naming the file, for anything
   * but a regular file (a FIFO or a device would never end).
   */
  openRanges?(name: string): Promise<RangeFile>;
}

/**
 * Writes a save's files as one change where the store can (`writeFiles`); otherwise one by one in
 * the map's order (put each config after its weights: a folder with a config then has its weights).
 */
export async function writeTogether(store: FileStore, files: ReadonlyMap<string, Uint8Array>): Promise<void> {
  if (store.writeFiles) return store.writeFiles(files);
  for (const [name, bytes] of files) await store.write(name, bytes);
}

/** A file open for reads of byte ranges. */
export interface RangeFile {
  /** Its size in bytes when it was opened. */
  readonly size: number;
  /**
   * `length` bytes from `offset`, in a new buffer or at the start of `into`; a file that has shrunk
   * since it was opened is an error naming it.
   */
  read(offset: number, length: number, into?: Uint8Array): Uint8Array;
  close(): void;
}

/** Joins a store's location and a file name for messages: `./model/config.json`. */
export function describeFile(store: FileStore, name: string): string {
  return `${store.location.replace(/\/+$/, '')}/${name}`;
}

export async function readText(store: FileStore, name: string): Promise<string> {
  return new TextDecoder().decode(await store.read(name));
}

/** Reads and parses a JSON file; a syntax error names the file. */
export async function readJson<T = unknown>(store: FileStore, name: string): Promise<T> {
  const text = await readText(store, name);
  try {
    return JSON.parse(text) as T;
  } catch (error) {
    throw new Error(`${describeFile(store, name)}: not valid JSON (${(error as Error).message})`);
  }
}

export async function writeJson(store: FileStore, name: string, value: unknown): Promise<void> {
  await store.write(name, new TextEncoder().encode(`${JSON.stringify(value, null, 2)}\n`));
}

/** Files held in memory: tests, and browsers before a download or an IndexedDB save. */
export function memoryStore(
  files: Record<string, Uint8Array> = {},
  location = 'memory:',
): FileStore & {
  files: Map<string, Uint8Array>;
} {
  const map = new Map(Object.entries(files));
  return {
    location,
    files: map,
    async read(name) {
      const bytes = map.get(name);
      if (!bytes) throw new Error(`${location}/${name}: no such file`);
      return bytes;
    },
    async has(name) {
      return map.has(name);
    },
    async write(name, bytes) {
      map.set(name, bytes.slice());
    },
    async writeFiles(files) {
      // one synchronous pass: no other code runs between the first file and the last
      for (const [name, bytes] of files) map.set(name, bytes.slice());
    },
    async remove(name) {
      map.delete(name);
    },
    async list() {
      return [...map.keys()].sort();
    },
  };
}

/** Read-only files under a base URL (browser, or any runtime with `fetch`). */
export function urlStore(baseUrl: string, fetchImpl: typeof fetch = fetch): FileStore {
  const base = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
  return {
    location: base,
    async read(name) {
      const response = await fetchImpl(new URL(name, base).toString());
      if (!response.ok) throw new Error(`${base}${name}: HTTP ${response.status} ${response.statusText}`);
      return new Uint8Array(await response.arrayBuffer());
    },
    async has(name) {
      const response = await fetchImpl(new URL(name, base).toString(), { method: 'HEAD' });
      return response.ok;
    },
    async write(name) {
      throw new Error(`${base}${name}: a URL store is read-only`);
    },
  };
}
