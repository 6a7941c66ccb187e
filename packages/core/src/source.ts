import { urlStore, type FileStore } from './files.js';

/** A folder given as a path (Node), a URL (anything with fetch), or a FileStore. */
export type StoreSource = string | FileStore;

export async function resolveStore(source: StoreSource): Promise<FileStore> {
  if (typeof source !== 'string') return source;
  if (/^https?:\/\//.test(source)) return urlStore(source);
  // Loaded only for a path, so browser bundles that pass URLs or stores never need node:fs.
  const { nodeDirectory } = await import('./node.js');
  return nodeDirectory(source);
}
