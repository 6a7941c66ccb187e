// The multi-task prompt: a shared table [P, d] times each task's low-rank matrix cols_t · rows_t,
// one prompt per sample chosen by its taskId; saved in peft's keys (prompt_embeddings,
// prefix_task_cols, prefix_task_rows).
import {
  ownVariable,
  PROMPT_EMBEDDINGS,
  seededNormal,
  type ForwardContext,
  type PeftHost,
  type PromptSource,
  type SafetensorsFile,
  type TensorToWrite,
} from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';

import type { MultitaskPromptTuningConfig } from './multitask-config.js';

export class MultitaskPrompt implements PromptSource {
  readonly embedding: tf.Variable<tf.Rank.R2>; // [P, d]
  readonly cols: tf.Variable<tf.Rank.R3>; // [tasks, P, ranks]
  readonly rows: tf.Variable<tf.Rank.R3>; // [tasks, ranks, d]

  constructor(
    host: PeftHost,
    readonly config: MultitaskPromptTuningConfig,
  ) {
    const { numVirtualTokens: P, numTasks, numRanks, initSeed } = config;
    const d = host.config.hiddenSize;
    this.embedding = ownVariable(seededNormal([P, d], 0, 1, initSeed), true) as tf.Variable<tf.Rank.R2>;
    this.cols = ownVariable(
      seededNormal([numTasks, P, numRanks], 0, 0.02, initSeed + 1),
      true,
    ) as tf.Variable<tf.Rank.R3>;
    this.rows = ownVariable(
      seededNormal([numTasks, numRanks, d], 0, 0.02, initSeed + 2),
      true,
    ) as tf.Variable<tf.Rank.R3>;
  }

  get virtualTokens(): number {
    return this.config.numVirtualTokens;
  }

  /** [B, P, d]: each sample's task prompt (selected by one-hot matmuls: differentiable on every backend). */
  embeddings(context: ForwardContext): tf.Tensor {
    const tasks = context.taskIds;
    if (!tasks)
      throw new Error(
        'multi-task prompt tuning needs the task of each sample: pass taskIds to forward (Example.taskId in training)',
      );
    const { numTasks, numVirtualTokens: P, numRanks } = this.config;
    const bad = tasks.find((t) => !Number.isInteger(t) || t < 0 || t >= numTasks);
    if (bad !== undefined) throw new Error(`taskIds: task ${bad} is outside 0..${numTasks - 1}`);
    if (tasks.length !== context.batchSize)
      throw new Error(`taskIds: ${tasks.length} tasks for a batch of ${context.batchSize}`);
    const d = this.embedding.shape[1];
    const select = tf.oneHot(tf.tensor1d(Array.from(tasks), 'int32'), numTasks); // [B, tasks]
    const cols = tf.reshape(tf.matMul(select, tf.reshape(this.cols, [numTasks, P * numRanks])), [-1, P, numRanks]);
    const rows = tf.reshape(tf.matMul(select, tf.reshape(this.rows, [numTasks, numRanks * d])), [-1, numRanks, d]);
    return tf.mul(this.embedding, tf.matMul(cols, rows)); // [B, P, d]
  }

  trainableVariables(): ReadonlyMap<string, tf.Variable> {
    return new Map<string, tf.Variable>([
      ['prompt_encoder.embedding.weight', this.embedding],
      ['prompt_encoder.prefix_task_cols', this.cols],
      ['prompt_encoder.prefix_task_rows', this.rows],
    ]);
  }

  async stateDict(): Promise<Record<string, TensorToWrite>> {
    const out: Record<string, TensorToWrite> = {};
    for (const [key, variable] of [
      [PROMPT_EMBEDDINGS, this.embedding],
      ['prefix_task_cols', this.cols],
      ['prefix_task_rows', this.rows],
    ] as const) {
      out[key] = { shape: variable.shape, values: (await variable.data()) as Float32Array };
    }
    return out;
  }

  loadStateDict(file: SafetensorsFile): void {
    for (const [key, variable] of [
      [PROMPT_EMBEDDINGS, this.embedding],
      ['prefix_task_cols', this.cols],
      ['prefix_task_rows', this.rows],
    ] as const) {
      const entry = file.entries.get(key);
      if (!entry) throw new Error(`${file.source}: tensor "${key}" is missing`);
      if (entry.shape.join() !== variable.shape.join())
        throw new Error(`${file.source}: tensor "${key}" has shape [${entry.shape}], expected [${variable.shape}]`);
      const data = file.tensor(key);
      tf.tidy(() => (variable as tf.Variable).assign(tf.tensor(data.values, variable.shape, 'float32')));
    }
  }

  dispose(): void {
    tf.dispose([this.embedding, this.cols, this.rows]);
  }
}
