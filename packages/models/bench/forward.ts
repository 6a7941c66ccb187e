// Forward latency and generation ms/token of a GPT-2-small-shaped model (random weights, 124M
// parameters) on each available backend, beside Python transformers on the same shapes and thread
// count when the oracle's Python is present. A benchmark that prints figures, not a test.
//
//   pnpm --filter @peft/models bench            (BENCH_BACKENDS=tensorflow,wasm,cpu to choose)
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { availableBackends, loadBackend, type BackendName } from '@peft/backend';
import { memoryStore, serializeSafetensors, type TensorToWrite } from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';

import { generate, loadPretrained } from '../src/index.js';

const SHAPE = { layers: 12, hidden: 768, heads: 12, vocab: 50257, positions: 1024 };
const SEQUENCE = 128;
const PROMPT = 16;
const NEW_TOKENS = 32;
const REPEATS = 5;
const root = path.resolve(import.meta.dirname, '../../..');

/** A GPT2LMHeadModel checkpoint with small uniform random weights (LayerNorm weights 1). */
function randomGpt2(): { config: object; weights: Uint8Array } {
  const { layers, hidden: d, vocab, positions } = SHAPE;
  let state = 12345;
  const random = (shape: number[], scale = 0.02): TensorToWrite => {
    const values = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < values.length; i++) {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      values[i] = (state / 4294967296 - 0.5) * 2 * scale;
    }
    return { shape, values };
  };
  const ones = (n: number): TensorToWrite => ({ shape: [n], values: new Float32Array(n).fill(1) });
  const tensors: Record<string, TensorToWrite> = {
    'transformer.wte.weight': random([vocab, d]),
    'transformer.wpe.weight': random([positions, d]),
    'transformer.ln_f.weight': ones(d),
    'transformer.ln_f.bias': random([d]),
  };
  for (let i = 0; i < layers; i++) {
    const p = `transformer.h.${i}`;
    Object.assign(tensors, {
      [`${p}.ln_1.weight`]: ones(d),
      [`${p}.ln_1.bias`]: random([d]),
      [`${p}.attn.c_attn.weight`]: random([d, 3 * d]),
      [`${p}.attn.c_attn.bias`]: random([3 * d]),
      [`${p}.attn.c_proj.weight`]: random([d, d]),
      [`${p}.attn.c_proj.bias`]: random([d]),
      [`${p}.ln_2.weight`]: ones(d),
      [`${p}.ln_2.bias`]: random([d]),
      [`${p}.mlp.c_fc.weight`]: random([d, 4 * d]),
      [`${p}.mlp.c_fc.bias`]: random([4 * d]),
      [`${p}.mlp.c_proj.weight`]: random([4 * d, d]),
      [`${p}.mlp.c_proj.bias`]: random([d]),
    });
  }
  const config = { model_type: 'gpt2', vocab_size: vocab, n_positions: positions, n_embd: d, n_layer: layers, n_head: SHAPE.heads };
  return { config, weights: serializeSafetensors(tensors, { format: 'pt' }) };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

interface Row {
  name: string;
  forwardMs: number;
  generateMsPerToken: number;
}

async function measure(backend: BackendName, checkpoint: { config: object; weights: Uint8Array }): Promise<Row> {
  await loadBackend(backend);
  const store = memoryStore({
    'config.json': new TextEncoder().encode(JSON.stringify(checkpoint.config)),
    'model.safetensors': checkpoint.weights,
  });
  const model = await loadPretrained(store);
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
  if (!existsSync(interpreter)) return `Python oracle not found at ${interpreter} (see oracle/requirements.txt): our side alone`;
  const result = spawnSync(
    interpreter,
    [path.join(root, 'oracle/bench_forward.py'), '--threads', String(os.availableParallelism()), '--sequence', String(SEQUENCE),
      '--prompt', String(PROMPT), '--new-tokens', String(NEW_TOKENS), '--repeats', String(REPEATS)],
    { encoding: 'utf8' },
  );
  if (result.status !== 0) return `Python benchmark failed: ${result.stderr.trim().split('\n').at(-1)}`;
  const out = JSON.parse(result.stdout.trim().split('\n').at(-1)!) as {
    torch: string; threads: number; attention: string; forward_ms: number; generate_ms_per_token: number;
  };
  return { name: `python torch ${out.torch} (${out.threads} threads, ${out.attention})`, forwardMs: out.forward_ms, generateMsPerToken: out.generate_ms_per_token };
}

async function main(): Promise<void> {
  const requested = process.env.BENCH_BACKENDS?.split(',') as BackendName[] | undefined;
  // cpu (pure JS, ~1 GFLOPS) needs minutes per forward at this size: only when asked for
  const backends = requested ?? (await availableBackends()).filter((b) => b !== 'cpu');
  console.log(`GPT-2 small shape (12 layers, 768 wide, vocabulary 50257), random weights; batch 1, sequence ${SEQUENCE}; ` +
    `generation: prompt ${PROMPT}, ${NEW_TOKENS} new tokens, greedy, with cache; ${os.availableParallelism()} CPUs`);
  const checkpoint = randomGpt2();
  const rows: Row[] = [];
  for (const backend of backends) {
    rows.push(await measure(backend, checkpoint));
    console.log(`  measured ${backend}`);
  }
  const reference = python();
  if (typeof reference === 'string') console.log(`  ${reference}`);
  else rows.push(reference);
  console.log(`\n  ${'runtime'.padEnd(48)}${'forward ms'.padStart(12)}${'generate ms/token'.padStart(20)}`);
  for (const row of rows) {
    console.log(`  ${row.name.padEnd(48)}${row.forwardMs.toFixed(1).padStart(12)}${row.generateMsPerToken.toFixed(1).padStart(20)}`);
  }
  if (typeof reference !== 'string') {
    for (const row of rows.slice(0, -1)) {
      console.log(`  ${row.name}: forward ${(row.forwardMs / reference.forwardMs).toFixed(2)}x torch's time, ` +
        `generation ${(row.generateMsPerToken / reference.generateMsPerToken).toFixed(2)}x`);
    }
  }
}

await main();
