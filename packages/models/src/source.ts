import { urlStore, type FileStore } from '@peft/core';

/** A model directory given as a path (Node), a URL (anything with fetch), or a FileStore. */
export type ModelSource = string | FileStore;

export async function resolveStore(source: ModelSource): Promise<FileStore> {
  if (typeof source !== 'string') return source;
  if (/^https?:\/\//.test(source)) return urlStore(source);
  // Loaded only for a path, so browser bundles that pass URLs or stores never need node:fs.
  const { nodeDirectory } = await import('@peft/core/node');
  return nodeDirectory(source);
}
