import 'fake-indexeddb/auto';

import { describe, expect, it } from 'vitest';

import { indexedDbFolders, indexedDbStore, readJson, writeJson } from '../src/index.js';

describe('indexedDbStore', () => {
  it('writes, reads back and lists the files of one folder; other folders are apart', async () => {
    const database = 'test-roundtrip';
    const store = indexedDbStore('adapters/a', { database });
    const other = indexedDbStore('adapters/b', { database });
    const bytes = new Uint8Array([1, 2, 3, 250]);
    await store.write('adapter_model.safetensors', bytes);
    await writeJson(store, 'adapter_config.json', { r: 8 });
    await other.write('adapter_config.json', new TextEncoder().encode('{}'));
    bytes[0] = 9; // the store kept its own copy
    expect(Array.from(await store.read('adapter_model.safetensors'))).toEqual([1, 2, 3, 250]);
    expect(await readJson(store, 'adapter_config.json')).toEqual({ r: 8 });
    expect(await store.has('adapter_config.json')).toBe(true);
    expect(await store.has('missing.json')).toBe(false);
    expect(await store.list()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    expect(await indexedDbFolders({ database })).toEqual(['adapters/a', 'adapters/b']);
    await store.clear();
    expect(await store.list()).toEqual([]);
    expect(await indexedDbFolders({ database })).toEqual(['adapters/b']);
  });

  it('overwrites a file whole, and names the folder and file when one is missing', async () => {
    const store = indexedDbStore('x', { database: 'test-errors' });
    await store.write('f', new Uint8Array([1, 2, 3]));
    await store.write('f', new Uint8Array([4]));
    expect(Array.from(await store.read('f'))).toEqual([4]);
    await expect(store.read('g')).rejects.toThrow('indexeddb:test-errors/x/g: no such file');
    await store.remove('f');
    await store.remove('f'); // removing what is not there is no error
    expect(await store.has('f')).toBe(false);
    expect(() => indexedDbStore('')).toThrow('folder "" is empty');
  });

  it('says so when the runtime has no IndexedDB', async () => {
    const store = indexedDbStore('x', { database: 'none' });
    const saved = globalThis.indexedDB;
    Object.defineProperty(globalThis, 'indexedDB', { value: undefined, configurable: true });
    try {
      await expect(store.read('f')).rejects.toThrow('indexeddb:none/x/f: IndexedDB is not available in this runtime');
    } finally {
      Object.defineProperty(globalThis, 'indexedDB', { value: saved, configurable: true });
    }
  });
});

describe('indexedDbStore.writeFiles: a save is one transaction', () => {
  it('writes every file, and a save that fails part-way leaves the old files as they were', async () => {
    const store = indexedDbStore('adapters/one', { database: 'test-write-files' });
    const encode = (text: string): Uint8Array => new TextEncoder().encode(text);
    const text = async (name: string): Promise<string> => new TextDecoder().decode(await store.read(name));
    await store.writeFiles!(
      new Map([
        ['adapter_config.json', encode('old config')],
        ['adapter_model.safetensors', encode('old weights')],
      ]),
    );
    expect(await store.list()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    // the second put of the next save fails: the first must not be kept
    const put = IDBObjectStore.prototype.put;
    let puts = 0;
    IDBObjectStore.prototype.put = function (this: IDBObjectStore, ...args: Parameters<IDBObjectStore['put']>) {
      if (++puts === 2) throw new DOMException('the quota was exceeded', 'QuotaExceededError');
      return put.apply(this, args);
    };
    try {
      await expect(
        store.writeFiles!(
          new Map([
            ['adapter_model.safetensors', encode('new weights')],
            ['adapter_config.json', encode('new config')],
          ]),
        ),
      ).rejects.toThrow('indexeddb:test-write-files/adapters/one: the quota was exceeded');
    } finally {
      IDBObjectStore.prototype.put = put;
    }
    expect(await text('adapter_model.safetensors')).toBe('old weights');
    expect(await text('adapter_config.json')).toBe('old config');
  });
});
