import { urlStore, type FileStore } from './files.js';

/** A folder given as a path (Node), a URL (anything with fetch), or a FileStore. */
export type StoreSource = string | FileStore;

// A specifier bundlers do not follow: browser bundles never contain the Node store or `node:fs`
// (Vite and esbuild leave a non-literal dynamic import alone), while Node loads it next to this file.
const NODE_STORE_MODULE = './node.js';

export async function resolveStore(source: StoreSource): Promise<FileStore> {
  if (typeof source !== 'string') return source;
  if (/^https?:\/\//.test(source)) return urlStore(source);
  if (typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node !== 'string') {
    throw new Error(
      `"${source}": a folder path needs Node.js; here pass an http(s) URL or a FileStore (memoryStore, urlStore, indexedDbStore)`,
    );
  }
  const { nodeDirectory } = (await import(/* @vite-ignore */ NODE_STORE_MODULE)) as typeof import('./node.js');
  return nodeDirectory(source);
}
