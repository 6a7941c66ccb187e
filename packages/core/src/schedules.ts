/** Learning-rate schedules with linear warm-up, as transformers' get_*_schedule_with_warmup. */
export type ScheduleName = 'constant' | 'linear' | 'cosine';

export const SCHEDULE_NAMES: readonly ScheduleName[] = ['constant', 'linear', 'cosine'];

export interface ScheduleOptions {
  schedule: ScheduleName;
  learningRate: number;
  /** Steps of linear warm-up from 0 (default 0). */
  warmupSteps?: number;
  /** Total optimizer steps (needed by linear and cosine decay). */
  totalSteps: number;
}

/** The learning rate of optimizer step `step` (0-based). */
export function learningRateAt(step: number, options: ScheduleOptions): number {
  const { learningRate, totalSteps } = options;
  const warmup = options.warmupSteps ?? 0;
  if (!SCHEDULE_NAMES.includes(options.schedule))
    throw new Error(`schedule: expected "constant", "linear" or "cosine", got ${JSON.stringify(options.schedule)}`);
  if (!(Number.isInteger(warmup) && warmup >= 0))
    throw new Error(`warmupSteps: expected an integer >= 0, got ${warmup}`);
  if (!(Number.isFinite(learningRate) && learningRate >= 0))
    throw new Error(`learningRate: expected a finite number >= 0, got ${learningRate}`);
  if (step < warmup) return (learningRate * step) / Math.max(1, warmup);
  if (options.schedule === 'constant') return learningRate;
  const progress = (step - warmup) / Math.max(1, totalSteps - warmup);
  if (options.schedule === 'linear') return learningRate * Math.max(0, 1 - progress);
  return learningRate * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
}
