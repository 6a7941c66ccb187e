// Resumable training checkpoints in a FileStore: trainable variables, optimizer state, position in
// the data and the run's history. The files of a checkpoint are written first and `latest.json`
// last, so a crash mid-save leaves the previous checkpoint the one that resumes.
import * as tf from '@tensorflow/tfjs-core';

import { describeFile, readJson, writeJson, type FileStore } from './files.js';
import type { Optimizer } from './optimizers.js';
import { parseSafetensors, serializeSafetensors, type TensorToWrite } from './safetensors.js';

export const LATEST_CHECKPOINT_FILE = 'latest.json';
const FORMAT = 'peft-js-trainer/1';

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
}

async function tensorsToFile(tensors: Iterable<[string, tf.Tensor]>): Promise<Uint8Array> {
  const out: Record<string, TensorToWrite> = {};
  for (const [name, tensor] of tensors)
    out[name] = { shape: tensor.shape, values: (await tensor.data()) as Float32Array };
  return serializeSafetensors(out, { format: 'pt' });
}

export async function saveTrainingCheckpoint(
  store: FileStore,
  state: TrainerState,
  variables: ReadonlyMap<string, tf.Variable>,
  optimizer: Optimizer,
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
  await writeJson(store, LATEST_CHECKPOINT_FILE, { checkpoint: directory, step: state.step });
  return directory;
}

/**
 * Restores variables and optimizer from the latest checkpoint in `store`; null when there is none.
 * A checkpoint of other variables (names or shapes) or another optimizer is an error.
 */
export async function loadTrainingCheckpoint(
  store: FileStore,
  variables: ReadonlyMap<string, tf.Variable>,
  optimizer: Optimizer,
): Promise<TrainerState | null> {
  if (!(await store.has(LATEST_CHECKPOINT_FILE))) return null;
  const { checkpoint: directory } = await readJson<{ checkpoint: string }>(store, LATEST_CHECKPOINT_FILE);
  const statePath = `${directory}/trainer_state.json`;
  const saved = await readJson<TrainerState & { format: string; optimizer: { name: string; step: number } }>(
    store,
    statePath,
  );
  if (saved.format !== FORMAT)
    throw new Error(`${describeFile(store, statePath)}: format "${saved.format}", expected "${FORMAT}"`);
  if (saved.optimizer.name !== optimizer.name) {
    throw new Error(
      `${describeFile(store, statePath)}: trained with optimizer ${saved.optimizer.name}, this run uses ${optimizer.name}`,
    );
  }
  const weightsPath = `${directory}/trainable.safetensors`;
  const weights = parseSafetensors(await store.read(weightsPath), describeFile(store, weightsPath));
  const missing = [...variables.keys()].filter((name) => !weights.entries.has(name));
  const extra = [...weights.entries.keys()].filter((name) => !variables.has(name));
  if (missing.length || extra.length) {
    throw new Error(
      `${weights.source}: the checkpoint's variables do not match the model's (missing: ${missing.join(', ') || 'none'}; unknown: ${extra.join(', ') || 'none'})`,
    );
  }
  const optimizerPath = `${directory}/optimizer.safetensors`;
  const slotsFile = parseSafetensors(await store.read(optimizerPath), describeFile(store, optimizerPath));
  tf.tidy(() => {
    for (const [name, variable] of variables) {
      const data = weights.tensor(name);
      if (data.shape.join() !== variable.shape.join()) {
        throw new Error(
          `${weights.source}: tensor "${name}" has shape [${data.shape}], the variable [${variable.shape}]`,
        );
      }
      variable.assign(tf.tensor(data.values, data.shape, 'float32'));
    }
  });
  const slots: Record<string, tf.Tensor> = {};
  for (const name of slotsFile.entries.keys()) {
    const data = slotsFile.tensor(name);
    slots[name] = tf.tensor(data.values, data.shape, 'float32');
  }
  optimizer.setState({ step: saved.optimizer.step, slots });
  tf.dispose(Object.values(slots));
  const { format: _format, optimizer: _optimizer, ...state } = saved;
  return state;
}
