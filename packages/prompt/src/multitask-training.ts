// Training and evaluating over several tasks: a balanced stream of every task's examples, and a
// per-task evaluation.
import {
  evaluate,
  SeededRandom,
  type EvalResult,
  type Example,
  type TrainableModel,
  type TrainOptions,
} from '@peft/core';

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
