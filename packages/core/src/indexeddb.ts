// Browser persistence for adapters: a FileStore over IndexedDB. Each file is one record; a save's
// files are written in one transaction, so a reader sees the old adapter or the new one, whole, as
// the Node store's folder swap gives.
import type { FileStore } from './files.js';

/** The database a page's folders live in unless another is named. */
export const DEFAULT_INDEXEDDB_DATABASE = 'peft';
const FILES = 'files';

export interface IndexedDbOptions {
  /** Default DEFAULT_INDEXEDDB_DATABASE. */
  database?: string;
}

/** A folder of an IndexedDB database, with what a page needs beyond reading and writing. */
export interface IndexedDbStore extends FileStore {
  remove(name: string): Promise<void>;
  /** The file names in this folder, sorted. */
  list(): Promise<string[]>;
  /** Deletes every file of this folder. */
  clear(): Promise<void>;
}

function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error('IndexedDB request failed'));
  });
}

function open(database: string): Promise<IDBDatabase> {
  const factory = (globalThis as { indexedDB?: IDBFactory }).indexedDB;
  if (!factory)
    return Promise.reject(new Error('IndexedDB is not available in this runtime (no globalThis.indexedDB)'));
  const req = factory.open(database, 1);
  req.onupgradeneeded = () => {
    if (!req.result.objectStoreNames.contains(FILES)) req.result.createObjectStore(FILES);
  };
  return request(req);
}

/**
 * Runs `body` in one transaction and resolves when that transaction has committed; a failure says
 * `where` it happened and keeps the browser's own error (quota, version) as the cause.
 */
async function transact<T>(
  database: string,
  where: string,
  mode: IDBTransactionMode,
  body: (files: IDBObjectStore) => IDBRequest<T>,
): Promise<T> {
  try {
    const db = await open(database);
    try {
      const transaction = db.transaction(FILES, mode);
      let issued: IDBRequest<T>;
      try {
        issued = body(transaction.objectStore(FILES));
      } catch (error) {
        // a throw between requests does not abort a transaction by itself: the earlier ones would commit
        transaction.abort();
        throw error;
      }
      const result = request(issued);
      const committed = new Promise<void>((resolve, reject) => {
        transaction.oncomplete = () => resolve();
        transaction.onabort = () => reject(transaction.error ?? new Error('the transaction was aborted'));
      });
      // both observed: a failed request also aborts the transaction, and its error is the one to report
      const [value] = await Promise.all([result, committed]);
      return value;
    } finally {
      db.close();
    }
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`${where}: ${message}`, { cause: error });
  }
}

/** Keys are [folder, name]: every file of a folder lies in one key range. */
function folderRange(folder: string): IDBKeyRange {
  return IDBKeyRange.bound([folder, ''], [folder, '\uffff']);
}

function checkName(kind: string, value: string): void {
  if (value === '' || value.includes('\uffff'))
    throw new Error(`IndexedDB store: ${kind} "${value}" is empty or holds U+FFFF`);
}

/**
 * A folder in the page's IndexedDB (`peft` database unless named): save an adapter there with
 * `model.saveAdapter(indexedDbStore('adapters/my-lora'))` and load it back after a reload with
 * `PeftModel.fromPretrained(host, indexedDbStore('adapters/my-lora'))`.
 */
export function indexedDbStore(folder: string, options: IndexedDbOptions = {}): IndexedDbStore {
  checkName('folder', folder);
  const database = options.database ?? DEFAULT_INDEXEDDB_DATABASE;
  const location = `indexeddb:${database}/${folder}`;
  const run = <T>(
    where: string,
    mode: IDBTransactionMode,
    body: (files: IDBObjectStore) => IDBRequest<T>,
  ): Promise<T> => transact(database, where, mode, body);
  return {
    location,
    async read(name) {
      checkName('file name', name);
      const value = await run(
        `${location}/${name}`,
        'readonly',
        (files) => files.get([folder, name]) as IDBRequest<Uint8Array | undefined>,
      );
      if (value === undefined) throw new Error(`${location}/${name}: no such file`);
      return new Uint8Array(value);
    },
    async has(name) {
      checkName('file name', name);
      return (await run(`${location}/${name}`, 'readonly', (files) => files.count([folder, name]))) > 0;
    },
    async write(name, bytes) {
      checkName('file name', name);
      await run(`${location}/${name}`, 'readwrite', (files) => files.put(bytes.slice(), [folder, name]));
    },
    /** Every file of a save in one transaction: all of them are written, or none. */
    async writeFiles(files) {
      for (const name of files.keys()) checkName('file name', name);
      if (files.size === 0) return;
      await run(location, 'readwrite', (store) => {
        let last: IDBRequest<IDBValidKey> | undefined;
        for (const [name, bytes] of files) last = store.put(bytes.slice(), [folder, name]);
        return last!;
      });
    },
    async remove(name) {
      checkName('file name', name);
      await run(`${location}/${name}`, 'readwrite', (files) => files.delete([folder, name]));
    },
    async list() {
      const keys = await run(location, 'readonly', (files) => files.getAllKeys(folderRange(folder)));
      return keys.map((key) => (key as [string, string])[1]).sort();
    },
    async clear() {
      await run(location, 'readwrite', (files) => files.delete(folderRange(folder)));
    },
  };
}

/** The folders that hold at least one file in the database, sorted. */
export async function indexedDbFolders(options: IndexedDbOptions = {}): Promise<string[]> {
  const database = options.database ?? DEFAULT_INDEXEDDB_DATABASE;
  const keys = await transact(database, `indexeddb:${database}`, 'readonly', (files) => files.getAllKeys());
  return [...new Set(keys.map((key) => (key as [string, string])[0]))].sort();
}
