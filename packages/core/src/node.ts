// `@peft/core/node`: the Node.js file store. Kept out of the main entry so browser bundles never
// see `node:fs`.
import {
  closeSync,
  constants,
  existsSync,
  fstatSync,
  lstatSync,
  openSync,
  readdirSync,
  readlinkSync,
  readSync,
  realpathSync,
  renameSync,
  statSync,
  promises as fs,
} from 'node:fs';
import type { Dirent } from 'node:fs';
import path from 'node:path';

import type { FileStore, RangeFile } from './files.js';

/**
 * A directory on disk. Writes go to a temporary name in the same directory and are renamed into
 * place, so a crash never leaves a half-written adapter or checkpoint behind; `writeFiles` replaces
 * several files as one change (see replaceFolder).
 */
export function nodeDirectory(directory: string): FileStore {
  const root = path.resolve(directory);
  // a save killed between its two renames left the folder beside its place: it comes back
  if (!existsSync(root)) restoreReplacedFolder(swapped(root));
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
      // a regular file, its size known before a byte is read (a FIFO or /dev/zero would never end)
      const file = openRangeFile(resolve(name), path.join(root, name));
      try {
        return file.read(0, file.size);
      } finally {
        file.close();
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
      await replaceFile(resolve(name), bytes);
    },
    async writeFiles(files) {
      for (const name of files.keys()) resolve(name);
      await replaceFolder(root, files);
    },
    async remove(name) {
      const full = resolve(name);
      await fs.rm(full, { force: true });
      // a folder left empty goes with its last file (a pruned training checkpoint)
      const folder = path.dirname(full);
      if (folder !== root && (await entriesOf(folder))?.length === 0) await fs.rmdir(folder);
    },
    async list() {
      const entries = await entriesOf(root, true);
      return (entries ?? [])
        .filter((entry) => entry.isFile())
        .map((entry) => path.relative(root, path.join(entry.parentPath, entry.name)).split(path.sep).join('/'))
        .sort();
    },
    async openRanges(name) {
      return openRangeFile(resolve(name), path.join(root, name));
    },
  };
}

/** The entries of a folder (and of its folders, `recursive`); null when it does not exist. */
async function entriesOf(folder: string, recursive = false): Promise<Dirent[] | null> {
  try {
    return await fs.readdir(folder, { recursive, withFileTypes: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
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
    if (stat.isDirectory()) throw new Error(`${shown}: a folder, not a file`);
    const kind = stat.isFIFO()
      ? 'a FIFO'
      : stat.isCharacterDevice() || stat.isBlockDevice()
        ? 'a device'
        : 'a socket or another special file';
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

/**
 * Beside a folder while it is replaced: `.<folder>.saving-<pid>-<nonce>` (the new folder being
 * written), `.<folder>.replaced-<pid>-<nonce>` (the old one, between the two renames) and
 * `.<folder>.locking-<pid>-<nonce>` (the lock before it is linked into place).
 */
const SIBLING = /^\.(.+)\.(saving|replaced|locking)-(\d+)-[0-9a-z]+$/;

/** Failures that say this folder cannot be swapped by rename (a mount point, a read-only parent, Windows' open handles). */
const CANNOT_SWAP = new Set(['EACCES', 'EPERM', 'EROFS', 'EBUSY', 'EXDEV']);

/**
 * Writes `files` (names relative to `root`) into the folder `root` as one change. The new folder is
 * made beside it: the files (each synced), and hard links to the old folder's other entries; synced;
 * then the old folder is renamed away, the new one into its place, and the old one deleted. Killed
 * at any moment, it leaves the old folder in place or the new one, plus a sibling that the next save
 * deletes; killed between the two renames, the old folder is beside its place, and the next save or
 * open puts it back. Where a folder cannot be swapped (see CANNOT_SWAP), the files are written one by
 * one (each atomically), with a warning.
 */
async function replaceFolder(folder: string, files: ReadonlyMap<string, Uint8Array>): Promise<void> {
  const root = swapped(folder);
  // claimed before the first await: a second save of this process started meanwhile sees it
  if (savingFolders.has(root)) throw inUse(root, process.pid);
  savingFolders.add(root);
  try {
    await fs.mkdir(path.dirname(root), { recursive: true });
    const release = await lockFolder(root);
    try {
      await removeStaleSiblings(root);
      await swapFolder(root, files);
    } finally {
      await release();
    }
  } finally {
    savingFolders.delete(root);
  }
}

/** The refusal of a save into `root` while `pid` (this process or another) saves into it. */
function inUse(root: string, pid: number): Error {
  return new Error(
    `${root}: another save into this folder is in progress (${pid === process.pid ? 'in this process' : `process ${pid}`}, ` +
      `lock ${lockPath(root)}); wait for it to end`,
  );
}

/** The lock file of saves into `root`. */
function lockPath(root: string): string {
  return path.join(path.dirname(root), `.${path.basename(root)}.lock`);
}

/** Tries at taking a save's lock whose holder keeps releasing and taking it again. */
const LOCK_ATTEMPTS = 20;

/** The folders this process is saving into now. */
const savingFolders = new Set<string>();

/**
 * Takes `.<folder>.lock` beside `root` (created exclusively, holding the pid) for one save: a save
 * from another live process is refused naming the holder (saves of this process are refused by
 * replaceFolder through savingFolders); the lock of a process that is gone is taken over. Where the
 * parent refuses new entries, no lock is taken (the save then writes file by file, with
 * replaceFolder's warning). The lock appears whole: written under a name of this process's, then
 * hard-linked to its place (which fails if it exists).
 */
async function lockFolder(root: string): Promise<() => Promise<void>> {
  const lock = lockPath(root);
  const mine = path.join(
    path.dirname(root),
    `.${path.basename(root)}.locking-${process.pid}-${Math.floor(Math.random() * 36 ** 6).toString(36)}`,
  );
  const unlocked = async (): Promise<void> => {};
  try {
    try {
      await fs.writeFile(mine, `${process.pid}\n`);
    } catch (error) {
      if (CANNOT_SWAP.has((error as NodeJS.ErrnoException).code ?? '')) return unlocked;
      throw error;
    }
    let takenOver = false;
    for (let attempt = 0; ; attempt++) {
      try {
        await fs.link(mine, lock);
        return async () => fs.rm(lock, { force: true });
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code ?? '';
        // a filesystem without hard links: no lock between processes
        if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP') return unlocked;
        if (code !== 'EEXIST' || attempt >= LOCK_ATTEMPTS) throw error;
      }
      let text: string;
      try {
        text = await fs.readFile(lock, 'utf8');
      } catch (error) {
        // released between the link and the read: the next link may take it (nothing removed here, so
        // a lock its holder takes again meanwhile stays its own)
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw error;
      }
      const holder = Number.parseInt(text, 10);
      // this process's saves are in savingFolders: a lock of this pid outlived an earlier process of the same pid
      if (Number.isInteger(holder) && holder !== process.pid && alive(holder)) throw inUse(root, holder);
      // a lock left by a process that is gone: taken over once
      if (takenOver) throw inUse(root, holder);
      takenOver = true;
      await fs.rm(lock, { force: true });
    }
  } finally {
    await fs.rm(mine, { force: true });
  }
}

/** replaceFolder's work once the folder is locked. */
async function swapFolder(root: string, files: ReadonlyMap<string, Uint8Array>): Promise<void> {
  const parent = path.dirname(root);
  const base = path.basename(root);
  const nonce = Math.floor(Math.random() * 36 ** 6).toString(36);
  const staging = path.join(parent, `.${base}.saving-${process.pid}-${nonce}`);
  const replaced = path.join(parent, `.${base}.replaced-${process.pid}-${nonce}`);
  try {
    await fs.mkdir(staging);
  } catch (error) {
    if (!CANNOT_SWAP.has((error as NodeJS.ErrnoException).code ?? '')) throw error;
    return writeInPlace(root, files, `cannot create ${staging} (${(error as Error).message})`);
  }
  let moved = false;
  try {
    const existing = await isDirectory(root);
    const written = new Set([...files.keys()].map((name) => path.normalize(name)));
    if (existing && !(await mirror(root, staging, '', written))) {
      await fs.rm(staging, { recursive: true, force: true });
      return writeInPlace(root, files, `${root} holds an entry that is not a file, folder or link`);
    }
    for (const [name, bytes] of files) {
      const target = path.join(staging, name);
      await fs.mkdir(path.dirname(target), { recursive: true });
      await writeSynced(target, bytes);
    }
    await syncTree(staging);
    if (existing) {
      try {
        await fs.rename(root, replaced);
      } catch (error) {
        if (!CANNOT_SWAP.has((error as NodeJS.ErrnoException).code ?? '')) throw error;
        await fs.rm(staging, { recursive: true, force: true });
        return writeInPlace(root, files, `cannot rename ${root} (${(error as Error).message})`);
      }
      moved = true;
    }
    await fs.rename(staging, root);
    moved = false;
    await syncDirectory(parent);
  } catch (error) {
    if (moved) await fs.rename(replaced, root);
    await fs.rm(staging, { recursive: true, force: true });
    throw error;
  }
  await fs.rm(replaced, { recursive: true, force: true });
}

/**
 * The folder a save swaps for `root`: the one a link at `root` points to (a `latest` link stays a
 * link, to a folder replaced as one change), else `root`.
 */
function swapped(root: string): string {
  try {
    return realpathSync(root);
  } catch {
    // not there, or a link to a folder that is not there (a save cut between its renames)
  }
  try {
    return lstatSync(root).isSymbolicLink() ? path.resolve(path.dirname(root), readlinkSync(root)) : root;
  } catch {
    return root;
  }
}

/** The fallback of replaceFolder: each file replaced atomically, the set of them not. */
async function writeInPlace(root: string, files: ReadonlyMap<string, Uint8Array>, why: string): Promise<void> {
  console.warn(`@peft/core: ${root}: files written one by one, not as one change: ${why}`);
  for (const [name, bytes] of files) await replaceFile(path.join(root, name), bytes);
}

/**
 * `target` replaced whole: written under a temporary name beside it (its folder made if missing),
 * synced, renamed into place. A crash leaves the old file or the new one, never half of one.
 */
async function replaceFile(target: string, bytes: Uint8Array): Promise<void> {
  await fs.mkdir(path.dirname(target), { recursive: true });
  const temporary = `${target}.tmp-${process.pid}-${Date.now()}`;
  try {
    await writeSynced(temporary, bytes);
    await fs.rename(temporary, target);
  } catch (error) {
    await fs.rm(temporary, { force: true });
    throw error;
  }
}

async function writeSynced(target: string, bytes: Uint8Array): Promise<void> {
  const handle = await fs.open(target, 'w');
  try {
    await handle.writeFile(bytes);
    // on disk before any rename: after a power cut the name holds the new bytes or the old ones
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function isDirectory(full: string): Promise<boolean> {
  try {
    return (await fs.stat(full)).isDirectory();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

/**
 * Recreates the folder `from` in `to` with hard links (copies where the file system has none),
 * leaving out the `skip` names (relative, normalised); false when an entry is neither a file, a
 * folder nor a link.
 */
async function mirror(from: string, to: string, relative: string, skip: ReadonlySet<string>): Promise<boolean> {
  for (const entry of await fs.readdir(path.join(from, relative), { withFileTypes: true })) {
    const name = path.join(relative, entry.name);
    if (skip.has(name)) continue;
    const source = path.join(from, name);
    const target = path.join(to, name);
    if (entry.isDirectory()) {
      await fs.mkdir(target);
      if (!(await mirror(from, to, name, skip))) return false;
    } else if (entry.isSymbolicLink()) {
      await fs.symlink(await fs.readlink(source), target);
    } else if (entry.isFile()) {
      try {
        await fs.link(source, target);
      } catch {
        await fs.copyFile(source, target);
      }
    } else {
      return false;
    }
  }
  return true;
}

/** fsync of every folder under `folder` and of itself: their entries are on disk before the rename. */
async function syncTree(folder: string): Promise<void> {
  for (const entry of await fs.readdir(folder, { withFileTypes: true }))
    if (entry.isDirectory()) await syncTree(path.join(folder, entry.name));
  await syncDirectory(folder);
}

async function syncDirectory(folder: string): Promise<void> {
  // Windows cannot open a folder for fsync; its renames are journaled by NTFS
  if (process.platform === 'win32') return;
  const handle = await fs.open(folder, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The siblings replaceFolder left beside `root` in processes that are gone. */
function staleSiblings(root: string, names: readonly string[]): { full: string; kind: string }[] {
  const base = path.basename(root);
  return names.flatMap((name) => {
    const match = SIBLING.exec(name);
    if (!match || match[1] !== base || alive(Number(match[3]))) return [];
    return [{ full: path.join(path.dirname(root), name), kind: match[2]! }];
  });
}

/** Puts back the old folder of a save killed between its two renames (synchronous: at open). */
function restoreReplacedFolder(root: string): void {
  let names: string[];
  try {
    names = readdirSync(path.dirname(root));
  } catch {
    return;
  }
  const replaced = staleSiblings(root, names)
    .filter((sibling) => sibling.kind === 'replaced')
    .sort((a, b) => statSync(b.full).mtimeMs - statSync(a.full).mtimeMs)[0];
  if (replaced) renameSync(replaced.full, root);
}

/** Before a save: restores an old folder left between two renames, deletes what dead saves left. */
async function removeStaleSiblings(root: string): Promise<void> {
  if (!existsSync(root)) restoreReplacedFolder(root);
  for (const sibling of staleSiblings(root, await fs.readdir(path.dirname(root))))
    await fs.rm(sibling.full, { recursive: true, force: true });
}
