// LoRA on Phi-3's fused projections: qkv_proj (q, k, v in one nn.Linear) and gate_up_proj (gate and
// up in one) are each one target, as in peft, and merging folds one rank-r update into the fused weight.
import { getPeftModel } from '@peft/core';
import { fixtureHosts, logits, maxDiff } from '@peft/test-helpers';
import { afterAll, describe, expect, it } from 'vitest';

import { LoraConfig, resolveTargets } from '../src/index.js';

const host = fixtureHosts();
const FUSED = ['qkv_proj', 'o_proj', 'gate_up_proj', 'down_proj'];
const input = { inputIds: [[3, 5, 7, 11, 13, 17, 19]] };
const figures: string[] = [];

afterAll(() => {
  console.log(`[lora phi3]\n${figures.map((line) => `  ${line}`).join('\n')}`);
});

describe.each(['phi3-gqa-partial-rotary', 'phi3-longrope-mqa-tied'])('LoRA on %s', (name) => {
  it('has no default targets, as peft 0.21 has none for phi3', async () => {
    const base = await host(name);
    expect(() => getPeftModel(base, new LoraConfig())).toThrow(
      'LoraConfig.targetModules: no default for model type "phi3"; name the modules to adapt',
    );
  });

  it('targets each fused projection as one module, r·(in + out) parameters each', async () => {
    const base = await host(name);
    const config = new LoraConfig({ r: 4, targetModules: ['qkv_proj', 'gate_up_proj'] });
    const targets = resolveTargets(base, config);
    expect(targets.map((t) => t.name)).toEqual(
      Array.from({ length: base.config.numLayers }, (_, i) => [
        `model.layers.${i}.self_attn.qkv_proj`,
        `model.layers.${i}.mlp.gate_up_proj`,
      ]).flat(),
    );
    const { numAttentionHeads: heads, numKeyValueHeads: kvHeads, headDim, hiddenSize: d } = base.config;
    const qkvOut = (heads + 2 * kvHeads) * headDim;
    const gateUpOut = targets[1]!.outFeatures;
    expect(targets[0]!.outFeatures).toBe(qkvOut);
    const model = getPeftModel(base, config);
    expect(model.parameterCount().trainable).toBe(base.config.numLayers * 4 * (d + qkvOut + (d + gateUpOut)));
    model.dispose();
  });

  it('merged logits equal unmerged ones, and unmerging restores the fused weights to float32 rounding', async () => {
    const base = await host(name);
    const original = new Map([...base.parameters].map(([n, v]) => [n, v.dataSync().slice() as Float32Array]));
    const before = logits(base, input);
    const model = getPeftModel(base, new LoraConfig({ initLoraWeights: false, targetModules: FUSED }));
    const unmerged = logits(model, input);
    // the update reaches the output: B is random, not zero
    expect(maxDiff(unmerged, before)).toBeGreaterThan(1e-2);
    model.merge();
    const merged = logits(model, input);
    const mergedWeights = new Map([...base.parameters].map(([n, v]) => [n, v.dataSync().slice() as Float32Array]));
    for (const fused of ['model.layers.0.self_attn.qkv_proj.weight', 'model.layers.0.mlp.gate_up_proj.weight']) {
      expect(maxDiff(mergedWeights.get(fused)!, original.get(fused)!), fused).toBeGreaterThan(1e-3);
    }
    // x·(W + ΔW) against x·W + (x·A)·B: the same sums in another order, a few float32 ulps of the logits
    const mergedDiff = maxDiff(merged, unmerged);
    model.unmerge();
    // Unmerging subtracts the very ΔW that merging added, so W'' = fl(fl(W + ΔW) - ΔW). Each float32
    // operation rounds to nearest (relative error at most u = 2^-24), hence per element
    // |W'' - W| <= u·|W'| + u·|W''|, with W' the merged weight. Nothing looser is allowed: a larger
    // difference would mean unmerge took out something other than what merge put in.
    let restored = 0;
    let outOfBound = 0;
    for (const [parameter, variable] of base.parameters) {
      const now = variable.dataSync() as Float32Array;
      const was = original.get(parameter)!;
      const mergedValue = mergedWeights.get(parameter)!;
      for (let i = 0; i < now.length; i++) {
        const error = Math.abs(now[i]! - was[i]!);
        restored = Math.max(restored, error);
        if (error > 2 ** -24 * (Math.abs(mergedValue[i]!) + Math.abs(now[i]!))) outOfBound++;
      }
    }
    const afterUnmerge = maxDiff(logits(model, input), unmerged);
    figures.push(
      `${name}: |merged - unmerged logits| ${mergedDiff.toExponential(2)}, |W after unmerge - W| ${restored.toExponential(2)}, ` +
        `|unmerged again - unmerged logits| ${afterUnmerge.toExponential(2)}`,
    );
    expect(mergedDiff).toBeLessThan(1e-5);
    expect(outOfBound).toBe(0);
    expect(afterUnmerge).toBeLessThan(1e-5);
    model.dispose();
  });
});
