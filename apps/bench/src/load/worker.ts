// Our side of `pnpm bench load`: one load per process (so that its peak RSS is its own), as
// oracle/bench_load.py does with transformers. Prints one JSON line.
//
//   tsx src/load/worker.ts DIRECTORY
import { selectBackend } from '@peft/backend';
import { loadPretrained } from '@peft/models';
import * as tf from '@tensorflow/tfjs-core';

export interface LoadResult {
  runtime: string;
  load_seconds: number;
  /** RSS when the process is ready to load (runtime, backend and libraries in memory). */
  rss_before_mb: number;
  peak_rss_mb: number;
  /** RSS after one forward pass: whatever the load left to be copied or collected shows here. */
  rss_after_forward_mb: number;
  parameters: number;
  /** The last position's first logits for the ids 1..8, to check both sides loaded the same model. */
  logits: number[];
}

export const PROBE_IDS = [1, 2, 3, 4, 5, 6, 7, 8];
export const PROBE_LOGITS = 16;

export async function runLoadWorker(directory: string): Promise<LoadResult> {
  const backend = await selectBackend({ backend: 'tensorflow', warnIfSlow: false });
  const mb = (bytes: number): number => bytes / 2 ** 20;
  const before = mb(process.memoryUsage().rss);
  const started = performance.now();
  const host = await loadPretrained(directory);
  const seconds = (performance.now() - started) / 1000;
  const peak = process.resourceUsage().maxRSS / 1024;
  const logits = tf.tidy(() => {
    const out = host.forward({ inputIds: [PROBE_IDS] }).logits as tf.Tensor3D;
    return Array.from(out.slice([0, PROBE_IDS.length - 1, 0], [1, 1, PROBE_LOGITS]).dataSync());
  });
  const parameters = [...host.parameters.values()].reduce((n, v) => n + v.size, 0);
  return {
    runtime: `tfjs ${tf.version_core} on ${backend.name}`,
    load_seconds: seconds,
    rss_before_mb: before,
    peak_rss_mb: peak,
    rss_after_forward_mb: mb(process.memoryUsage().rss),
    parameters,
    logits,
  };
}

if (process.argv[1] === import.meta.filename) {
  const directory = process.argv[2];
  if (!directory) throw new Error('usage: tsx src/load/worker.ts DIRECTORY');
  console.log(JSON.stringify(await runLoadWorker(directory)));
}
