// Training speed of the core engine: tokens/s of a training step on each available backend, for
// full fine-tuning and for a small trainable subset (the last block's MLP output bias path), on a
// GPT-2-shaped model with random weights; and a seeded loss curve. A benchmark, not a test.
//
//   pnpm bench:train        (BENCH_BACKENDS=tensorflow,cpu to choose)
import { availableBackends, loadBackend, type BackendName } from '@peft/backend';
import { fullFineTuning, train, type Example, type TrainableModel } from '@peft/core';
import { NO_DROPOUT, randomGpt2, type Gpt2Shape, type TransformerHost } from '@peft/models';
import * as tf from '@tensorflow/tfjs-core';

// Small enough that the pure-JS cpu backend finishes a few steps in seconds.
const SHAPE: Gpt2Shape = { layers: 4, hidden: 256, heads: 4, vocab: 2000, positions: 128 };
const BATCH = 8;
const SEQUENCE = 64;
const STEPS = 6;

function examples(count: number): Example[] {
  return Array.from({ length: count }, (_, i) => {
    const ids = Array.from({ length: SEQUENCE }, (_, t) => 5 + ((t * 7 + i * 13) % 50));
    return { inputIds: ids, labels: ids };
  });
}

/** Trainable bias on the last MLP projection: the smallest adapter-shaped trainable set. */
function smallAdapter(host: TransformerHost): TrainableModel {
  const linear = host.linears.get(`transformer.h.${SHAPE.layers - 1}.mlp.c_proj`)!;
  const bias = tf.variable(tf.zeros([linear.outFeatures]), true);
  linear.addDelta('bench', (x) => tf.tile(tf.expandDims(bias, 0), [x.shape[0], 1]) as tf.Tensor2D);
  return { host, trainableVariables: () => new Map([['bias', bias]]) };
}

async function tokensPerSecond(
  backend: BackendName,
  kind: 'full' | 'small',
): Promise<{ tokensPerSecond: number; losses: number[] }> {
  await loadBackend(backend);
  const host = randomGpt2(SHAPE);
  host.dropoutRates = NO_DROPOUT; // GPT-2's config default would train with dropout 0.1
  const model = kind === 'full' ? fullFineTuning(host) : smallAdapter(host);
  const steps = backend === 'cpu' ? 3 : STEPS;
  // the first step pays for kernel set-up: timed steps start after it
  let firstStepSeconds = 0;
  const result = await train(model, {
    data: examples(BATCH * (steps + 1)),
    task: 'causal-lm',
    padTokenId: 0,
    batchSize: BATCH,
    learningRate: 1e-3,
    schedule: 'constant',
    seed: 1,
    onStep: ({ step, seconds }) => {
      if (step === 1) firstStepSeconds = seconds;
    },
  });
  host.dispose();
  const timedTokens = result.tokens - BATCH * SEQUENCE;
  return { tokensPerSecond: timedTokens / (result.seconds - firstStepSeconds), losses: result.losses };
}

/** A seeded run on the fastest backend, its loss printed every few steps: the curve must fall. */
async function lossCurve(backend: BackendName): Promise<void> {
  await loadBackend(backend);
  const host = randomGpt2(SHAPE);
  host.dropoutRates = NO_DROPOUT; // GPT-2's config default would train with dropout 0.1
  const losses: number[] = [];
  await train(fullFineTuning(host), {
    data: examples(BATCH * 10),
    task: 'causal-lm',
    padTokenId: 0,
    batchSize: BATCH,
    epochs: 4,
    learningRate: 2e-3,
    warmupSteps: 4,
    seed: 1,
    onStep: ({ loss }) => losses.push(loss),
  });
  host.dispose();
  console.log(`\n  loss curve (${backend}, seed 1, 40 steps, linear schedule with 4 warm-up steps):`);
  const top = Math.max(...losses);
  losses.forEach((loss, i) => {
    if (i % 4 === 0 || i === losses.length - 1)
      console.log(
        `  step ${String(i + 1).padStart(3)}  ${loss.toFixed(4)}  ${'#'.repeat(Math.round((loss / top) * 50))}`,
      );
  });
}

async function main(): Promise<void> {
  const requested = process.env.BENCH_BACKENDS?.split(',') as BackendName[] | undefined;
  const backends = requested ?? (await availableBackends());
  console.log(
    `GPT-2 shape ${SHAPE.layers} layers x ${SHAPE.hidden} wide, vocabulary ${SHAPE.vocab}; batch ${BATCH} x ${SEQUENCE} tokens; AdamW`,
  );
  const rows: { backend: BackendName; full: number; small: number }[] = [];
  for (const backend of backends) {
    const full = await tokensPerSecond(backend, 'full');
    const small = await tokensPerSecond(backend, 'small');
    rows.push({ backend, full: full.tokensPerSecond, small: small.tokensPerSecond });
    console.log(
      `  ${backend}: full fine-tuning ${full.tokensPerSecond.toFixed(0)} tokens/s, small trainable set ${small.tokensPerSecond.toFixed(0)} tokens/s`,
    );
  }
  const baseline = rows.find((r) => r.backend === 'cpu');
  if (baseline) {
    for (const row of rows.filter((r) => r !== baseline)) {
      console.log(
        `  ${row.backend} / cpu: full ${(row.full / baseline.full).toFixed(1)}x, small ${(row.small / baseline.small).toFixed(1)}x`,
      );
    }
  }
  await lossCurve(backends[0]!);
}

await main();
