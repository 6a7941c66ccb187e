// Forward latency and generation ms/token of a GPT-2-small-shaped model (random weights, 124M
// parameters) on each available backend, beside Python transformers on the same shapes and thread
// count when the oracle's Python is present. A benchmark that prints figures, not a test.
//
//   pnpm bench:models            (BENCH_BACKENDS=tensorflow,wasm,cpu to choose)
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { availableBackends, loadBackend, type BackendName } from '@peft/backend';
import { GPT2_SMALL, generate, randomGpt2 } from '@peft/models';
import * as tf from '@tensorflow/tfjs-core';

const SHAPE = GPT2_SMALL;
const SEQUENCE = 128;
const PROMPT = 16;
const NEW_TOKENS = 32;
const REPEATS = 5;
const root = path.resolve(import.meta.dirname, '../../..');

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

interface Row {
  name: string;
  forwardMs: number;
  generateMsPerToken: number;
}

async function measure(backend: BackendName): Promise<Row> {
  await loadBackend(backend);
  const model = randomGpt2(SHAPE);
  const ids = [Array.from({ length: SEQUENCE }, (_, i) => (i * 7919) % SHAPE.vocab)];
  const repeats = backend === 'cpu' ? 1 : REPEATS;
  const times: number[] = [];
  for (let i = 0; i < repeats + 1; i++) {
    const start = performance.now();
    const { logits } = model.forward({ inputIds: ids });
    logits.dataSync();
    logits.dispose();
    if (i > 0 || repeats === 1) times.push(performance.now() - start);
  }
  const prompt = [ids[0]!.slice(0, PROMPT)];
  generate(model, { inputIds: prompt, maxNewTokens: 2 });
  const start = performance.now();
  generate(model, { inputIds: prompt, maxNewTokens: NEW_TOKENS });
  const generateMsPerToken = (performance.now() - start) / NEW_TOKENS;
  model.dispose();
  return { name: `${backend} (tfjs ${tf.version_core})`, forwardMs: median(times), generateMsPerToken };
}

function python(): Row | string {
  const interpreter = process.env.PEFT_ORACLE_PYTHON ?? path.join(root, 'oracle/.venv/bin/python');
  if (!existsSync(interpreter))
    return `Python oracle not found at ${interpreter} (see oracle/requirements.txt): our side alone`;
  const result = spawnSync(
    interpreter,
    [
      path.join(root, 'oracle/bench_forward.py'),
      '--threads',
      String(os.availableParallelism()),
      '--sequence',
      String(SEQUENCE),
      '--prompt',
      String(PROMPT),
      '--new-tokens',
      String(NEW_TOKENS),
      '--repeats',
      String(REPEATS),
    ],
    { encoding: 'utf8' },
  );
  if (result.status !== 0) return `Python benchmark failed: ${result.stderr.trim().split('\n').at(-1)}`;
  const out = JSON.parse(result.stdout.trim().split('\n').at(-1)!) as {
    torch: string;
    threads: number;
    attention: string;
    forward_ms: number;
    generate_ms_per_token: number;
  };
  return {
    name: `python torch ${out.torch} (${out.threads} threads, ${out.attention})`,
    forwardMs: out.forward_ms,
    generateMsPerToken: out.generate_ms_per_token,
  };
}

async function main(): Promise<void> {
  const requested = process.env.BENCH_BACKENDS?.split(',') as BackendName[] | undefined;
  // cpu (pure JS, ~1 GFLOPS) needs minutes per forward at this size: only when asked for
  const backends = requested ?? (await availableBackends()).filter((b) => b !== 'cpu');
  console.log(
    `GPT-2 small shape (12 layers, 768 wide, vocabulary 50257), random weights; batch 1, sequence ${SEQUENCE}; ` +
      `generation: prompt ${PROMPT}, ${NEW_TOKENS} new tokens, greedy, with cache; ${os.availableParallelism()} CPUs`,
  );
  const rows: Row[] = [];
  for (const backend of backends) {
    rows.push(await measure(backend));
    console.log(`  measured ${backend}`);
  }
  const reference = python();
  if (typeof reference === 'string') console.log(`  ${reference}`);
  else rows.push(reference);
  console.log(`\n  ${'runtime'.padEnd(48)}${'forward ms'.padStart(12)}${'generate ms/token'.padStart(20)}`);
  for (const row of rows) {
    console.log(
      `  ${row.name.padEnd(48)}${row.forwardMs.toFixed(1).padStart(12)}${row.generateMsPerToken.toFixed(1).padStart(20)}`,
    );
  }
  if (typeof reference !== 'string') {
    for (const row of rows.slice(0, -1)) {
      console.log(
        `  ${row.name}: forward ${(row.forwardMs / reference.forwardMs).toFixed(2)}x torch's time, ` +
          `generation ${(row.generateMsPerToken / reference.generateMsPerToken).toFixed(2)}x`,
      );
    }
  }
}

await main();
