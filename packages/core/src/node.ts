// `@peft/core/node`: the Node.js file store. Kept out of the main entry so browser bundles never
// see `node:fs`.
import { closeSync, constants, fstatSync, openSync, readSync, promises as fs } from 'node:fs';
import path from 'node:path';

import type { FileStore, RangeFile } from './files.js';

/**
 * A directory on disk. Writes go to a temporary name in the same directory and are renamed into
 * place, so a crash never leaves a half-written adapter or checkpoint behind.
 */
export function nodeDirectory(directory: string): FileStore {
  const root = path.resolve(directory);
  const resolve = (name: string): string => {
    const full = path.resolve(root, name);
    if (full !== root && !full.startsWith(root + path.sep)) {
      throw new Error(`${name}: file name escapes the directory ${root}`);
    }
    return full;
  };
  return {
    location: root,
    async read(name) {
      try {
        const buffer = await fs.readFile(resolve(name));
        return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT')
          throw new Error(`${path.join(root, name)}: no such file`);
        throw error;
      }
    },
    async has(name) {
      try {
        await fs.access(resolve(name));
        return true;
      } catch {
        return false;
      }
    },
    async write(name, bytes) {
      const target = resolve(name);
      await fs.mkdir(path.dirname(target), { recursive: true });
      const temporary = `${target}.tmp-${process.pid}-${Date.now()}`;
      try {
        const handle = await fs.open(temporary, 'w');
        try {
          await handle.writeFile(bytes);
          // on disk before the rename: after a power cut the name holds the new bytes or the old ones
          await handle.sync();
        } finally {
          await handle.close();
        }
        await fs.rename(temporary, target);
      } catch (error) {
        await fs.rm(temporary, { force: true });
        throw error;
      }
    },
    async remove(name) {
      await fs.rm(resolve(name), { force: true });
    },
    async openRanges(name) {
      return openRangeFile(resolve(name), path.join(root, name));
    },
  };
}

/** `full` open for synchronous range reads; `shown` names it in errors. */
function openRangeFile(full: string, shown: string): RangeFile {
  let fd: number;
  try {
    // non-blocking: opening a FIFO for reading would otherwise wait for a writer (no effect on files)
    fd = openSync(full, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`${shown}: no such file`);
    throw error;
  }
  const stat = fstatSync(fd);
  if (!stat.isFile()) {
    closeSync(fd);
    const kind = stat.isFIFO()
      ? 'a FIFO'
      : stat.isCharacterDevice() || stat.isBlockDevice()
        ? 'a device'
        : 'not a file';
    throw new Error(`${shown}: ${kind}, not a regular file (refused: reading it might never end)`);
  }
  const size = stat.size;
  let open = true;
  return {
    size,
    read(offset, length, into) {
      if (!open) throw new Error(`${shown}: read after the file was closed`);
      const out = into ? into.subarray(0, length) : new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const got = readSync(fd, out, done, length - done, offset + done);
        if (got === 0) {
          throw new Error(
            `${shown}: ${fstatSync(fd).size} bytes now, ${size} when it was opened: bytes ${offset}..${offset + length} ` +
              'are gone (the file changed while it was read)',
          );
        }
        done += got;
      }
      return out;
    },
    close() {
      if (open) closeSync(fd);
      open = false;
    },
  };
}
