// Every method through the same checks on every host, as peft's PeftCommonTester runs its tuners:
// attaching, disabling, removing, saving and loading, training, mixed batches. A failure names the
// method, the host and the check; the numbers behind each check are in its message.
import {
  BASE_ADAPTER,
  IGNORE_INDEX,
  PeftModel,
  getPeftModel,
  memoryStore,
  train,
  variableGradients,
  type Example,
} from '@peft/core';
import type { TransformerHost } from '@peft/models';
import { fixtureHosts, logits, maxDiff, patternExamples, readLogits } from '@peft/test-helpers';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { HOSTS, METHODS, type HostCase, type MethodCase } from './methods.js';

const CHECKS = 7;
const CASES = METHODS.flatMap((method) =>
  HOSTS.map((host) => ({ method, host, label: `${method.name} on ${host.name}` })),
);
console.log(
  `[conformance] ${METHODS.length} methods x ${HOSTS.length} hosts = ${CASES.length} cases, ` +
    `${CHECKS} checks each: ${CASES.length * CHECKS} tests`,
);

const loadHost = fixtureHosts();

/** Two rows, the second right-padded: masks (and the virtual tokens' place in them) take part. */
const input = {
  inputIds: [
    [3, 5, 7, 11, 13, 17],
    [2, 4, 6, 8, 10, 12],
  ],
  attentionMask: [
    [1, 1, 1, 1, 1, 1],
    [1, 1, 1, 1, 0, 0],
  ],
};

/**
 * Eight short examples of the host's task: a token pattern to continue, a class per example, or
 * (masked LMs) every third token to predict, the others ignored.
 */
function examples(host: HostCase): Example[] {
  const pattern = patternExamples(8, { length: 6, period: 9 });
  if (host.task === 'causal-lm') return pattern;
  if (host.task === 'token-classification')
    return pattern.map((example) => ({
      ...example,
      labels: example.inputIds.map((id, t) => (t % 3 === 1 ? id : IGNORE_INDEX)),
    }));
  return pattern.map((example, i) => ({ ...example, labels: i % 3 }));
}

/** Copies of the values of variables, by name. */
function snapshot(variables: Iterable<[string, tf.Variable]>): Map<string, Float32Array> {
  return new Map([...variables].map(([name, variable]) => [name, variable.dataSync().slice() as Float32Array]));
}

/** Names whose values differ from the snapshot (bit for bit). */
function changed(snap: ReadonlyMap<string, Float32Array>, variables: ReadonlyMap<string, tf.Variable>): string[] {
  return [...snap].filter(([name, before]) => maxDiff(variables.get(name)!.dataSync(), before) !== 0).map(([n]) => n);
}

describe.each(CASES)('$label', ({ method, host: hostCase, label }) => {
  const load = (): Promise<TransformerHost> => loadHost(hostCase.fixture);
  const adapter = (seed = 1) => method.active(hostCase, seed);

  it(`attaching at init: ${describeInit(method)}`, async () => {
    const host = await load();
    const base = readLogits(host, input);
    const model = getPeftModel(host, method.initial(hostCase));
    const attached = readLogits(model, input);
    expect(attached.prepended, `${label}: virtual tokens in front`).toBe(method.virtualTokens);
    const [batch, length, vocabulary] = base.shape as [number, number, number];
    const shape = base.shape.length === 3 ? [batch, method.virtualTokens + length, vocabulary] : base.shape;
    expect(attached.shape, `${label}: logits shape (base ${JSON.stringify(base.shape)})`).toEqual(shape);
    const diff = maxDiff(realTokens(attached), base.values);
    if (method.atInit === 'exact') expect(diff, `${label}: max |attached - base|`).toBe(0);
    else expect(diff, `${label}: max |attached - base| (the adapter is not neutral at init)`).toBeGreaterThan(0);
    model.dispose();
  });

  it('disabling (withAdapterDisabled) gives the base outputs, and the adapter back after', async () => {
    const host = await load();
    const base = logits(host, input);
    const model = getPeftModel(host, adapter());
    const adapted = readLogits(model, input);
    expect(maxDiff(realTokens(adapted), base), `${label}: max |adapted - base|`).toBeGreaterThan(0);
    const disabled = model.withAdapterDisabled(() => logits(model, input));
    expect(maxDiff(disabled, base), `${label}: max |disabled - base|`).toBe(0);
    expect(maxDiff(logits(model, input), adapted.values), `${label}: max |after the scope - adapted|`).toBe(0);
    model.dispose();
  });

  it('removing (deleteAdapter, then dispose) restores the outputs and the tensor count', async () => {
    const host = await load();
    const base = logits(host, input); // a first pass: what a host keeps between passes is there from now on
    const tensors = tf.memory().numTensors;
    const model = getPeftModel(host, adapter());
    model.addAdapter('other', adapter(2));
    logits(model, input);
    model.deleteAdapter('default');
    expect(model.activeAdapter, `${label}: the remaining adapter becomes active`).toBe('other');
    model.deleteAdapter('other');
    expect(maxDiff(logits(host, input), base), `${label}: max |after deleteAdapter - base|`).toBe(0);
    model.dispose();
    expect(tf.memory().numTensors, `${label}: tensors after removing, before attaching ${tensors}`).toBe(tensors);
  });

  it('save -> load (saveAdapter to memory, PeftModel.fromPretrained) gives equal logits', async () => {
    const host = await load();
    const model = getPeftModel(host, adapter());
    const saved = logits(model, input);
    const store = memoryStore({}, `mem:/${method.name}`);
    await model.saveAdapter(store);
    model.dispose();
    const reloaded = await PeftModel.fromPretrained(host, store);
    expect(maxDiff(logits(reloaded, input), saved), `${label}: max |reloaded - saved|`).toBe(0);
    reloaded.dispose();
  });

  it('gradient checkpointing (layers recomputed in the backward pass) gives the same gradients, and frees what it kept', async () => {
    const host = await load();
    const model = getPeftModel(host, adapter());
    const variables = [...model.trainableVariables().values()];
    const gradients = async (checkpointLayers: boolean) => {
      let value!: tf.Scalar;
      let grads!: Record<string, tf.Tensor>;
      const { peakBytes } = await tf.profile(() => {
        ({ value, grads } = variableGradients(() => {
          const { logits: out } = model.forward({ ...input, training: true, seed: 3, checkpointLayers });
          return tf.mean(tf.square(out)) as tf.Scalar;
        }, variables));
      });
      const values = new Map(Object.entries(grads).map(([name, g]) => [name, g.dataSync().slice() as Float32Array]));
      const loss = value.dataSync()[0]!;
      tf.dispose([value, ...Object.values(grads)]);
      return { loss, values, peakBytes };
    };
    const plain = await gradients(false);
    const before = tf.memory().numTensors;
    const recomputed = await gradients(true);
    // the layers' activations are not all held at once (the recomputation did happen)
    expect(recomputed.peakBytes, `${label}: peak bytes checkpointed vs plain`).toBeLessThan(plain.peakBytes);
    expect(tf.memory().numTensors, `${label}: tensors left by the checkpointed pass`).toBe(before);
    expect(recomputed.loss, `${label}: loss`).toBe(plain.loss);
    expect([...recomputed.values.keys()].sort(), `${label}: variables with a gradient`).toEqual(
      [...plain.values.keys()].sort(),
    );
    for (const [name, expected] of plain.values) {
      const scale = Math.max(...expected.map(Math.abs), 1e-12);
      expect(maxDiff(recomputed.values.get(name)!, expected) / scale, `${label}: gradient of ${name}`).toBeLessThan(
        1e-5,
      );
    }
    model.dispose();
  });

  // per-token heads only (the masked LMs here)
  if (hostCase.task === 'token-classification')
    it('token classification: the head at the labelled positions only gives the losses of the whole head (virtual tokens in front too)', async () => {
      const losses = async (whole: boolean): Promise<number[]> => {
        const host = await loadHost(hostCase.fixture, { dropout: false });
        const forward = host.forward.bind(host);
        host.forward = (input) => forward(whole ? { ...input, headRows: undefined } : input);
        const model = getPeftModel(host, adapter());
        const result = await train(model, {
          data: examples(hostCase),
          task: hostCase.task,
          padTokenId: 0,
          batchSize: 4,
          epochs: 2,
          maxSteps: 3,
          learningRate: 1e-2,
          seed: 1,
        });
        model.dispose();
        return result.losses;
      };
      const [rows, whole] = [await losses(false), await losses(true)];
      expect(rows).toHaveLength(3);
      for (const [i, loss] of rows.entries()) expect(loss, `${label}: step ${i + 1}`).toBeCloseTo(whole[i]!, 4);
    });

  it('a training step (train, maxSteps 1) changes every trainable variable and no frozen one', async () => {
    const host = await load();
    const model = getPeftModel(host, adapter());
    const trainable = model.trainableVariables();
    const trainableSet = new Set(trainable.values());
    const frozen = [...host.parameters].filter(([, variable]) => !trainableSet.has(variable));
    const frozenBefore = snapshot(frozen);
    const trainableBefore = snapshot(trainable);
    const result = await train(model, {
      data: examples(hostCase),
      task: hostCase.task,
      padTokenId: 0,
      batchSize: 4,
      maxSteps: 1,
      learningRate: 1e-2,
    });
    expect(result.steps, `${label}: optimizer steps`).toBe(1);
    expect(changed(frozenBefore, new Map(frozen)), `${label}: frozen host parameters that changed`).toEqual([]);
    const moved = changed(trainableBefore, trainable);
    const unchanged = [...trainableBefore.keys()].filter((name) => !moved.includes(name));
    expect(unchanged, `${label}: trainable variables one step left unchanged`).toEqual([]);
    model.dispose();
  });

  it(
    method.mixedBatch
      ? 'a mixed-adapter batch (adapterNames) equals separate runs'
      : 'a mixed-adapter batch (adapterNames) is refused: the method serves one adapter per batch',
    async () => {
      const host = await load();
      const model = getPeftModel(host, adapter(1), 'a');
      model.addAdapter('b', adapter(2));
      const batch = {
        inputIds: [
          [3, 5, 7, 9],
          [4, 6, 8, 10],
          [11, 12, 13, 14],
        ],
      };
      const names = ['b', BASE_ADAPTER, 'a'];
      expect(Boolean(model.tuner('a').supportsMixedBatch), `${label}: tuner.supportsMixedBatch`).toBe(
        method.mixedBatch,
      );
      if (!method.mixedBatch) {
        expect(() => model.forward({ ...batch, adapterNames: names }), `${label}: refuses a mixed batch`).toThrow(
          /cannot serve a mixed batch/,
        );
        model.dispose();
        return;
      }
      const mixed = logits(model, { ...batch, adapterNames: names });
      const row = (i: number) => ({ inputIds: [batch.inputIds[i]!] });
      model.setAdapter('b');
      const b = logits(model, row(0));
      const none = model.withAdapterDisabled(() => logits(model, row(1)));
      model.setAdapter('a');
      const a = logits(model, row(2));
      const width = a.length;
      // bit-identical on cpu, wasm and tensorflow today; batched kernels may sum in another order
      expect(maxDiff(mixed.subarray(0, width), b), `${label}: row 0 (adapter b) against b alone`).toBeLessThan(1e-5);
      expect(maxDiff(mixed.subarray(width, 2 * width), none), `${label}: row 1 (base) against the base`).toBeLessThan(
        1e-5,
      );
      expect(maxDiff(mixed.subarray(2 * width), a), `${label}: row 2 (adapter a) against a alone`).toBeLessThan(1e-5);
      model.setAdapter('b');
      expect(maxDiff(logits(model, row(2)), a), `${label}: adapters a and b differ on row 2`).toBeGreaterThan(0);
      model.dispose();
    },
  );
});

function describeInit(method: MethodCase): string {
  if (method.atInit === 'exact') return 'the outputs stay the base outputs bit for bit';
  if (method.atInit === 'attends') return 'same shape, values change (queries attend to the prefix)';
  return `${method.virtualTokens} virtual tokens in front of per-token logits, the real tokens' values change`;
}

/** The logits at the real tokens: per-token logits [B, prepended + T, V] lose the virtual tokens in front. */
function realTokens(output: { values: Float32Array; shape: number[]; prepended: number }): Float32Array {
  if (output.shape.length !== 3 || output.prepended === 0) return output.values;
  const [batch, total, vocabulary] = output.shape as [number, number, number];
  const length = total - output.prepended;
  const out = new Float32Array(batch * length * vocabulary);
  for (let b = 0; b < batch; b++) {
    const from = (b * total + output.prepended) * vocabulary;
    out.set(output.values.subarray(from, from + length * vocabulary), b * length * vocabulary);
  }
  return out;
}
