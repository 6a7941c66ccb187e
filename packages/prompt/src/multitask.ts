// Multi-task prompt tuning (Wang et al., 2023; peft's MULTITASK_PROMPT_TUNING): one shared prompt
// modulated per task by a low-rank multiplicative matrix, prompt_t = P ⊙ (cols_t · rows_t); each
// sample of a batch uses its own task's prompt (taskIds), so one frozen model serves every task.
import {
  evaluate,
  ownVariable,
  PROMPT_EMBEDDINGS,
  promptLearningJson,
  promptMethod,
  registerPeftMethod,
  seededNormal,
  SeededRandom,
  type EvalResult,
  type Example,
  type ForwardContext,
  type PeftConfig,
  type PeftHost,
  type PeftMethod,
  type PromptSource,
  type SafetensorsFile,
  type TensorToWrite,
  type TrainableModel,
  type TrainOptions,
} from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';

export interface MultitaskPromptTuningConfigOptions {
  numVirtualTokens: number;
  numTasks: number;
  /** Rank of each task's modulation (default 1). */
  numRanks?: number;
  taskType?: string | null;
  modulesToSave?: readonly string[] | null;
  initSeed?: number;
}

export class MultitaskPromptTuningConfig implements PeftConfig {
  readonly peftType = 'MULTITASK_PROMPT_TUNING';
  readonly method = multitaskMethod;
  readonly numVirtualTokens: number;
  readonly numTasks: number;
  readonly numRanks: number;
  readonly taskType: string | null;
  readonly modulesToSave: readonly string[] | null;
  readonly initSeed: number;

  constructor(options: MultitaskPromptTuningConfigOptions) {
    const positive = (field: string, value: unknown): void => {
      if (!(Number.isInteger(value) && (value as number) > 0)) {
        throw new Error(
          `MultitaskPromptTuningConfig.${field}: expected a positive integer, got ${JSON.stringify(value)}`,
        );
      }
    };
    this.numVirtualTokens = options.numVirtualTokens;
    this.numTasks = options.numTasks;
    this.numRanks = options.numRanks ?? 1;
    positive('numVirtualTokens', this.numVirtualTokens);
    positive('numTasks', this.numTasks);
    positive('numRanks', this.numRanks);
    this.taskType = options.taskType ?? null;
    this.modulesToSave = options.modulesToSave ?? null;
    this.initSeed = options.initSeed ?? 0;
  }

  toJson(host: PeftHost): Record<string, unknown> {
    return {
      ...promptLearningJson(host, this),
      num_ranks: this.numRanks,
      num_tasks: this.numTasks,
      prompt_tuning_init: 'RANDOM',
      prompt_tuning_init_state_dict_path: null,
      prompt_tuning_init_task: 0,
      prompt_tuning_init_text: null,
      tokenizer_kwargs: null,
      tokenizer_name_or_path: null,
    };
  }

  static fromJson(json: Record<string, unknown>, source = 'adapter_config.json'): MultitaskPromptTuningConfig {
    try {
      return new MultitaskPromptTuningConfig({
        numVirtualTokens: json.num_virtual_tokens as number,
        numTasks: json.num_tasks as number,
        numRanks: (json.num_ranks as number) ?? 1,
        taskType: (json.task_type as string | null) ?? null,
        modulesToSave: (json.modules_to_save as string[] | null) ?? null,
      });
    } catch (error) {
      throw new Error(`${source}: ${(error as Error).message}`);
    }
  }
}

class MultitaskPrompt implements PromptSource {
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

export const multitaskMethod: PeftMethod<MultitaskPromptTuningConfig> = promptMethod(
  'MULTITASK_PROMPT_TUNING',
  (json, source) => MultitaskPromptTuningConfig.fromJson(json, source),
  (host, config) => new MultitaskPrompt(host, config),
);

registerPeftMethod(multitaskMethod as unknown as PeftMethod<PeftConfig>);

/**
 * One training stream where every task is seen equally often: each task's examples are shuffled
 * (seeded) and taken in turn, the smaller tasks cycled until the largest is used up. Each example
 * carries its task (taskId = index in `tasks`).
 */
export function balanceTasks(tasks: readonly (readonly Example[])[], seed = 0): Example[] {
  if (tasks.length === 0 || tasks.some((t) => t.length === 0))
    throw new Error('balanceTasks: every task needs at least one example');
  const random = new SeededRandom(seed);
  const shuffled = tasks.map((examples, task) => random.shuffle(examples.map((e) => ({ ...e, taskId: task }))));
  const rounds = Math.max(...shuffled.map((t) => t.length));
  const out: Example[] = [];
  for (let i = 0; i < rounds; i++) for (const task of shuffled) out.push(task[i % task.length]!);
  return out;
}

/** Evaluation of each task on its own (examples grouped by taskId). */
export async function evaluatePerTask(
  model: TrainableModel,
  examples: readonly Example[],
  options: TrainOptions,
): Promise<Map<number, EvalResult>> {
  const byTask = new Map<number, Example[]>();
  for (const example of examples) {
    const task = example.taskId ?? 0;
    byTask.set(task, [...(byTask.get(task) ?? []), example]);
  }
  const results = new Map<number, EvalResult>();
  for (const [task, group] of [...byTask].sort((a, b) => a[0] - b[0]))
    results.set(task, await evaluate(model, group, options));
  return results;
}
