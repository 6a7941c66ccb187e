// Resumable training checkpoints in a FileStore: trainable variables, optimizer state, position in
// the data and the run's history. The files of a checkpoint are written first and `latest.json`
// last, so a crash mid-save leaves the previous checkpoint the one that resumes; older checkpoints
// and the temporary files of interrupted saves are removed after it. One run at a time writes a
// folder: it holds `train.lock`.
import * as tf from '@tensorflow/tfjs-core';

import { describeFile, readJson, writeJson, type FileStore } from './files.js';
import type { Optimizer } from './optimizers.js';
import { parseSafetensors, serializeSafetensors, type TensorToWrite } from './safetensors.js';

export const LATEST_CHECKPOINT_FILE = 'latest.json';
/** Held by the run writing the folder: `{ pid, token, since }`. */
export const TRAINING_LOCK_FILE = 'train.lock';
/**
 * 2: hosts hold projection weights [out, in]. Checkpoints of format 1 (held [in, out]) resume where
 * they hold no projection weight (adapters, heads of their own); one that does is refused.
 */
const FORMAT = 'peft-js-trainer/2';
const FORMAT_1 = 'peft-js-trainer/1';
/** Checkpoints kept by default: the newest three (and the best one when evaluating). */
export const DEFAULT_KEEP_LAST = 3;

/** Where a run stands; with the variables and optimizer state it resumes bit-identically. */
export interface TrainerState {
  /** Optimizer steps done. */
  step: number;
  /** Epoch in progress (0-based) and batches of it consumed. */
  epoch: number;
  batchesInEpoch: number;
  /** The run's seed: data order of epoch e and dropout of step s derive from it. */
  seed: number;
  losses: number[];
  evaluations: { step: number; loss: number; accuracy?: number; perplexity?: number }[];
  best: number | null;
  badEvaluations: number;
  skippedSteps: number;
  tokens: number;
  /** Why the run stopped, in the checkpoint it saved when it did (absent in those saved on the way). */
  stoppedBy?: 'completed' | 'max-steps' | 'early-stopping' | 'interrupted';
}

export interface SaveCheckpointOptions {
  /** Checkpoints kept: the newest `keepLast` (default 3; Infinity keeps every one), and `keepSteps`. */
  keepLast?: number;
  /** Steps whose checkpoints are kept as well (the best evaluation's). */
  keepSteps?: readonly number[];
  /** Awaited before `latest.json` is written; throwing stops the save there (a lock that was lost). */
  beforeCommit?: () => Promise<void>;
  /** What the save did besides (temporary files of interrupted saves removed). Default console.warn. */
  onNotice?: (message: string) => void;
}

async function tensorsToFile(tensors: Iterable<[string, tf.Tensor]>): Promise<Uint8Array> {
  const out: Record<string, TensorToWrite> = {};
  for (const [name, tensor] of tensors)
    out[name] = { shape: tensor.shape, values: (await tensor.data()) as Float32Array };
  return serializeSafetensors(out, { format: 'pt' });
}

/**
 * Saves the run's state as `checkpoint-<step>/` and points `latest.json` at it; then, where the store
 * can list and delete files, removes the checkpoints beyond `keepLast` and the temporary files that
 * interrupted saves left (a store's `write` names them `<file>.tmp-<pid>-<time>`).
 */
export async function saveTrainingCheckpoint(
  store: FileStore,
  state: TrainerState,
  variables: ReadonlyMap<string, tf.Variable>,
  optimizer: Optimizer,
  options: SaveCheckpointOptions = {},
): Promise<string> {
  const directory = `checkpoint-${state.step}`;
  const optimizerState = optimizer.getState();
  await store.write(`${directory}/trainable.safetensors`, await tensorsToFile(variables));
  await store.write(`${directory}/optimizer.safetensors`, await tensorsToFile(Object.entries(optimizerState.slots)));
  await writeJson(store, `${directory}/trainer_state.json`, {
    format: FORMAT,
    ...state,
    optimizer: { name: optimizer.name, step: optimizerState.step },
  });
  await options.beforeCommit?.();
  await writeJson(store, LATEST_CHECKPOINT_FILE, { checkpoint: directory, step: state.step });
  await pruneCheckpoints(store, state.step, options);
  return directory;
}

const CHECKPOINT_FILE = /^checkpoint-(\d+)\//;
/** What an interrupted `write` leaves of a checkpoint's files, `latest.json` or the lock. */
const TEMPORARY_FILE = /^(?:checkpoint-\d+\/[^/]+|latest\.json|train\.lock)\.tmp-\d+-\d+$/;

/** After the save of `step`: the checkpoints it does not keep, and temporary files of interrupted saves, go. */
async function pruneCheckpoints(store: FileStore, step: number, options: SaveCheckpointOptions): Promise<void> {
  if (!store.list || !store.remove) return;
  const names = await store.list();
  const temporary = names.filter((name) => TEMPORARY_FILE.test(name));
  for (const name of temporary) await store.remove(name);
  if (temporary.length > 0) {
    const notice = options.onNotice ?? ((message: string) => console.warn(message));
    notice(
      `${store.location}: removed ${temporary.length} temporary file${temporary.length === 1 ? '' : 's'} ` +
        `left by an interrupted save (${temporary.join(', ')})`,
    );
  }
  const keepLast = options.keepLast ?? DEFAULT_KEEP_LAST;
  const steps = [...new Set(names.flatMap((name) => CHECKPOINT_FILE.exec(name)?.[1] ?? []).map(Number))];
  // checkpoints of later steps are another run's, which this one replaced in the folder (latest.json
  // points here now): they go
  const earlier = steps.filter((s) => s < step).sort((a, b) => b - a);
  const kept = new Set([step, ...earlier.slice(0, keepLast - 1), ...(options.keepSteps ?? [])]);
  for (const name of names) {
    const match = CHECKPOINT_FILE.exec(name);
    if (match && !kept.has(Number(match[1])) && !temporary.includes(name)) await store.remove(name);
  }
}

/** Whether process `pid` runs (on this machine); a process of another user counts. */
function processAlive(pid: number): boolean {
  const nodeProcess = (globalThis as { process?: NodeJS.Process }).process;
  try {
    nodeProcess!.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

interface LockRecord {
  pid: number | null;
  token: string;
  since: string;
  released?: boolean;
}

/** The locks held by runs of this process, by token. */
const heldLocks = new Set<string>();

/** The lock of one run on its checkpoint folder. */
export interface TrainingLock {
  /** Throws, naming the holder and `step`, when another run has taken the lock since. */
  verify(step: number): Promise<void>;
  /** Gives the folder back (removes the lock file, or marks it released where the store cannot delete). */
  release(): Promise<void>;
}

/**
 * Takes `train.lock` in `store` for one run (under Node, where process ids tell a live holder from a
 * dead one). Refused, naming the holder's process, while another run holds it; the lock of a process
 * that is gone is taken over, and said so through `onNotice`.
 */
export async function lockCheckpointFolder(
  store: FileStore,
  onNotice: (message: string) => void = (message) => console.warn(message),
): Promise<TrainingLock> {
  const pid = (globalThis as { process?: NodeJS.Process }).process?.pid;
  if (typeof pid !== 'number') return { verify: async () => undefined, release: async () => undefined };
  const file = describeFile(store, TRAINING_LOCK_FILE);
  const readLock = async (): Promise<LockRecord | null> =>
    (await store.has(TRAINING_LOCK_FILE)) ? readJson<LockRecord>(store, TRAINING_LOCK_FILE) : null;
  const inUse = (holder: LockRecord): Error =>
    new Error(
      `${file}: the checkpoint folder is in use by another training run (process ${holder.pid}, since ${holder.since}); ` +
        'two runs writing one folder would mix their checkpoints: wait for it to end, or use another folder',
    );
  const held = await readLock();
  if (held && !held.released) {
    // a run of this process holds its token; a lock of this pid with another token outlived its run
    const live = held.pid === pid ? heldLocks.has(held.token) : typeof held.pid === 'number' && processAlive(held.pid);
    if (live) throw inUse(held);
    onNotice(`${file}: took over the lock of process ${held.pid} (since ${held.since}), which is no longer running`);
  }
  const token = `${pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
  const mine: LockRecord = { pid, token, since: new Date().toISOString() };
  await writeJson(store, TRAINING_LOCK_FILE, mine);
  // two runs that both found the folder free: the one whose lock is there now goes on
  const now = await readLock();
  if (now?.token !== token) throw inUse(now ?? mine);
  heldLocks.add(token);
  return {
    async verify(step) {
      const current = await readLock();
      if (current?.token === token) return;
      throw new Error(
        current
          ? `${file}: the lock of this run was taken by process ${current.pid} (since ${current.since}); stopped without saving step ${step}`
          : `${file}: the lock of this run was removed by someone else; stopped without saving step ${step}`,
      );
    },
    async release() {
      heldLocks.delete(token);
      if ((await readLock())?.token !== token) return;
      if (store.remove) await store.remove(TRAINING_LOCK_FILE);
      else await writeJson(store, TRAINING_LOCK_FILE, { ...mine, released: true });
    },
  };
}

/**
 * Restores variables and optimizer from the latest checkpoint in `store`; null when there is none.
 * `accept` sees the saved state (and its file) before any tensor is read or made, and may refuse it.
 * A checkpoint of other variables (names or shapes) or another optimizer, or holding NaN or
 * Infinity, is an error. `projections`: the names among `variables` of host projection weights,
 * which a checkpoint of format 1 holds transposed (it is refused if it holds any).
 */
export async function loadTrainingCheckpoint(
  store: FileStore,
  variables: ReadonlyMap<string, tf.Variable>,
  optimizer: Optimizer,
  accept?: (state: TrainerState, where: { directory: string; file: string }) => void,
  projections: ReadonlySet<string> = new Set(),
): Promise<TrainerState | null> {
  if (!(await store.has(LATEST_CHECKPOINT_FILE))) return null;
  const { checkpoint: directory } = await readJson<{ checkpoint: string }>(store, LATEST_CHECKPOINT_FILE);
  const statePath = `${directory}/trainer_state.json`;
  const saved = await readJson<TrainerState & { format: string; optimizer: { name: string; step: number } }>(
    store,
    statePath,
  );
  if (saved.format !== FORMAT && saved.format !== FORMAT_1)
    throw new Error(`${describeFile(store, statePath)}: format "${saved.format}", expected "${FORMAT}"`);
  if (saved.optimizer.name !== optimizer.name) {
    throw new Error(
      `${describeFile(store, statePath)}: trained with optimizer ${saved.optimizer.name}, this run uses ${optimizer.name}`,
    );
  }
  const { format: _format, optimizer: savedOptimizer, ...state } = saved;
  accept?.(state, { directory, file: describeFile(store, statePath) });
  const weightsPath = `${directory}/trainable.safetensors`;
  const weights = parseSafetensors(await store.read(weightsPath), describeFile(store, weightsPath));
  const transposed = saved.format === FORMAT_1 ? [...projections].filter((name) => weights.entries.has(name)) : [];
  if (transposed.length) {
    throw new Error(
      `${describeFile(store, statePath)}: format "${FORMAT_1}" holds projection weights [in, out] ` +
        `(${transposed.slice(0, 3).join(', ')}${transposed.length > 3 ? ', ...' : ''}), which are [out, in] since ` +
        `"${FORMAT}": resume it with the @peft/core that wrote it, or start the run again`,
    );
  }
  const missing = [...variables.keys()].filter((name) => !weights.entries.has(name));
  const extra = [...weights.entries.keys()].filter((name) => !variables.has(name));
  if (missing.length || extra.length) {
    throw new Error(
      `${weights.source}: the checkpoint's variables do not match the model's (missing: ${missing.join(', ') || 'none'}; unknown: ${extra.join(', ') || 'none'})`,
    );
  }
  const optimizerPath = `${directory}/optimizer.safetensors`;
  const slotsFile = parseSafetensors(await store.read(optimizerPath), describeFile(store, optimizerPath));
  // every value is checked before the first variable changes (a refused checkpoint leaves the model
  // as it was), one tensor at a time: a full fine-tuning checkpoint is never decoded whole
  const decode = (file: typeof weights, name: string, shape?: readonly number[]) => {
    const data = file.tensor(name);
    if (shape && data.shape.join() !== shape.join())
      throw new Error(`${file.source}: tensor "${name}" has shape [${data.shape}], the variable [${shape}]`);
    return data;
  };
  for (const [file, names] of [
    [weights, [...variables.keys()]],
    [slotsFile, [...slotsFile.entries.keys()]],
  ] as const) {
    for (const name of names) {
      const { values } = decode(file, name, file === weights ? variables.get(name)!.shape : undefined);
      const bad = values.findIndex((value) => !Number.isFinite(value));
      if (bad >= 0) {
        throw new Error(
          `${file.source}: tensor "${name}" holds ${values[bad]} at element ${bad}; this checkpoint cannot resume ` +
            '(resume from an earlier one: point latest.json at it)',
        );
      }
    }
  }
  tf.tidy(() => {
    for (const [name, variable] of variables) {
      const data = decode(weights, name);
      variable.assign(tf.tensor(data.values, data.shape, 'float32'));
    }
  });
  const slots: Record<string, tf.Tensor> = {};
  for (const name of slotsFile.entries.keys()) {
    const data = decode(slotsFile, name);
    slots[name] = tf.tensor(data.values, data.shape, 'float32');
  }
  try {
    optimizer.setState({ step: savedOptimizer.step, slots });
  } finally {
    tf.dispose(Object.values(slots));
  }
  return state;
}
