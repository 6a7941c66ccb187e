// The LoRA tuner: finds the target projections of a host (peft's matching rules), attaches one
// LoraLayer to each, saves and loads peft's keys, merges, and combines adapters.
import {
  STATE_DICT_PREFIX,
  deriveSeed,
  expectTensorShape,
  type AdapterTuner,
  type HostLinear,
  type LinearDelta,
  type LoadedAdapter,
  type PeftHost,
  type PeftMethod,
  type SafetensorsFile,
  type TensorToWrite,
} from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';

import { DEFAULT_TARGET_MODULES, LoraConfig, type TargetModules } from './config.js';
import { LoraLayer } from './layer.js';

/** peft's check_target_module_exists: exact name or `.name` suffix; a string is a full-match regex. */
function matches(rule: TargetModules, name: string, host: PeftHost): boolean {
  if (rule === 'all-linear') return !host.headModules.some((head) => name === head || name.endsWith(`.${head}`));
  if (typeof rule === 'string') return new RegExp(`^(?:${rule})$`).test(name);
  return rule.some((target) => name === target || name.endsWith(`.${target}`));
}

/** The layer index of a module path: its first `.<digits>.` segment. */
function layerIndex(name: string): number | null {
  const match = /\.(\d+)\./.exec(name);
  return match ? Number(match[1]) : null;
}

/** peft's get_pattern_key: the first pattern matching the end of the module path. */
function patternValue(patterns: Readonly<Record<string, number>>, name: string): number | undefined {
  for (const [pattern, value] of Object.entries(patterns)) {
    if (new RegExp(`^(.*\\.)?(?:${pattern})$`).test(name)) return value;
  }
  return undefined;
}

/** The projections a config targets on a host, or an error listing the available ones. */
export function resolveTargets(host: PeftHost, config: LoraConfig): HostLinear[] {
  const rule = config.targetModules ?? DEFAULT_TARGET_MODULES[host.config.modelType];
  if (!rule) {
    throw new Error(
      `LoraConfig.targetModules: no default for model type "${host.config.modelType}"; name the modules to adapt`,
    );
  }
  const selected = [...host.linears.values()].filter((linear) => {
    if (config.excludeModules && matches(config.excludeModules, linear.name, host)) return false;
    if (!matches(rule, linear.name, host)) return false;
    if (config.layersToTransform) {
      const layer = layerIndex(linear.name);
      if (layer === null || !config.layersToTransform.includes(layer)) return false;
    }
    return true;
  });
  if (selected.length === 0) {
    const available = [...new Set([...host.linears.keys()].map((name) => name.split('.').at(-1)!))];
    throw new Error(
      `LoraConfig.targetModules ${JSON.stringify(rule)} matches no linear projection of this ${host.config.modelType} model` +
        `${config.layersToTransform ? ` in layers ${config.layersToTransform.join(', ')}` : ''}; available module names: ${available.join(', ')}`,
    );
  }
  return selected;
}

const loraKey = (module: string, matrix: 'lora_A' | 'lora_B'): string =>
  `${STATE_DICT_PREFIX}${module}.${matrix}.weight`;

export class LoraTuner implements AdapterTuner {
  readonly supportsMixedBatch = true;
  readonly layers: LoraLayer[];
  private readonly deltaKey: string;

  constructor(
    readonly host: PeftHost,
    readonly adapterName: string,
    readonly config: LoraConfig,
    layers: LoraLayer[],
  ) {
    this.layers = layers;
    this.deltaKey = `lora:${adapterName}`;
    for (const layer of layers) {
      const delta: LinearDelta = (x, context) => layer.delta(x, context);
      delta.graphForm = (context) => layer.graphForm(context);
      layer.linear.addDelta(this.deltaKey, delta);
    }
  }

  static attach(host: PeftHost, adapterName: string, config: LoraConfig): LoraTuner {
    const layers = resolveTargets(host, config).map((linear, i) => {
      const r = patternValue(config.rankPattern, linear.name) ?? config.r;
      const alpha = patternValue(config.alphaPattern, linear.name) ?? config.loraAlpha;
      return new LoraLayer(linear, {
        adapterName,
        r,
        scale: config.useRslora ? alpha / Math.sqrt(r) : alpha / r,
        dropout: config.loraDropout,
        init: config.initLoraWeights,
        seed: deriveSeed(config.initSeed, i),
      });
    });
    return new LoraTuner(host, adapterName, config, layers);
  }

  get merged(): boolean {
    return this.layers.some((layer) => layer.merged);
  }

  setActive(active: boolean): void {
    for (const layer of this.layers) layer.active = active;
  }

  trainableVariables(): ReadonlyMap<string, tf.Variable> {
    const variables = new Map<string, tf.Variable>();
    for (const layer of this.layers) {
      variables.set(loraKey(layer.linear.name, 'lora_A'), layer.down);
      variables.set(loraKey(layer.linear.name, 'lora_B'), layer.up);
    }
    return variables;
  }

  async stateDict(): Promise<Record<string, TensorToWrite>> {
    const out: Record<string, TensorToWrite> = {};
    for (const layer of this.layers) {
      const [a, b] = tf.tidy(() => [tf.transpose(layer.down), tf.transpose(layer.up)]);
      out[loraKey(layer.linear.name, 'lora_A')] = { shape: a!.shape, values: (await a!.data()) as Float32Array };
      out[loraKey(layer.linear.name, 'lora_B')] = { shape: b!.shape, values: (await b!.data()) as Float32Array };
      tf.dispose([a!, b!]);
    }
    return out;
  }

  loadStateDict(file: SafetensorsFile): void {
    const expected = new Set<string>();
    for (const layer of this.layers) {
      const { inFeatures, outFeatures } = layer.linear;
      for (const [matrix, shape, variable] of [
        ['lora_A', [layer.r, inFeatures], layer.down],
        ['lora_B', [outFeatures, layer.r], layer.up],
      ] as const) {
        const key = loraKey(layer.linear.name, matrix);
        expected.add(key);
        const entry = file.entries.get(key);
        if (!entry)
          throw new Error(`${file.source}: tensor "${key}" is missing (the config targets ${layer.linear.name})`);
        if (entry.shape.join() !== shape.join()) {
          throw new Error(
            `${file.source}: tensor "${key}" has shape [${entry.shape}], expected [${shape}] (r=${layer.r})`,
          );
        }
        const data = file.tensor(key);
        tf.tidy(() => variable.assign(tf.transpose(tf.tensor2d(data.values as Float32Array, [shape[0], shape[1]]))));
      }
    }
    const unknown = [...file.entries.keys()].filter((key) => !expected.has(key));
    if (unknown.length)
      throw new Error(
        `${file.source}: tensors the config does not explain: ${unknown.slice(0, 5).join(', ')}${unknown.length > 5 ? ', ...' : ''}`,
      );
  }

  /** All layers or none: every ΔW is checked for NaN/Inf before any weight changes. */
  merge(): void {
    for (const layer of this.layers) {
      if (layer.merged) continue;
      const delta = layer.deltaWeight();
      try {
        layer.linear.assertMergeable(delta);
      } finally {
        delta.dispose();
      }
    }
    for (const layer of this.layers) layer.merge();
  }

  unmerge(): void {
    for (const layer of [...this.layers].reverse()) layer.unmerge();
  }

  dispose(options: { keepMerged?: boolean } = {}): void {
    for (const layer of this.layers) {
      if (layer.merged && !options.keepMerged) layer.unmerge();
      layer.linear.removeDelta(this.deltaKey);
      layer.dispose();
    }
  }
}

/**
 * peft's add_weighted_adapter for `linear` (equal ranks: A = Σ ±√|w·s|·Aᵢ, B = Σ √|w·s|·Bᵢ) and
 * `cat` (ranks stacked: A = [w·s·Aᵢ], B = [Bᵢ]); the new adapter has scale 1 (alpha = r).
 */
function combine(
  host: PeftHost,
  sources: readonly { name: string; config: LoraConfig; tuner: AdapterTuner; weight: number }[],
  name: string,
  type: string,
): { config: LoraConfig; tuner: LoraTuner } {
  const kind = sources.length === 1 ? 'linear' : type;
  if (kind !== 'linear' && kind !== 'cat')
    throw new Error(`addWeightedAdapter: combination type "${type}" is not supported (linear, cat)`);
  const tuners = sources.map((s) => s.tuner as LoraTuner);
  const ranks = tuners.map((t) => Math.max(...t.layers.map((l) => l.r)));
  if (kind === 'linear' && new Set(ranks).size > 1) {
    throw new Error(`addWeightedAdapter: "linear" needs adapters of equal rank, got ${ranks.join(', ')} (use "cat")`);
  }
  const modules = [...new Set(tuners.flatMap((t) => t.layers.map((l) => l.linear.name)))];
  const rank = kind === 'linear' ? ranks[0]! : ranks.reduce((a, b) => a + b, 0);
  const config = new LoraConfig({
    r: rank,
    loraAlpha: rank,
    targetModules: modules,
    taskType: sources[0]!.config.taskType,
  });
  const layers = modules.map((module, i) => {
    const linear = host.linears.get(module)!;
    const layer = new LoraLayer(linear, {
      adapterName: name,
      r: rank,
      scale: 1,
      dropout: 0,
      init: true,
      seed: deriveSeed(7, i),
    });
    tf.tidy(() => {
      const downs: tf.Tensor[] = [];
      const ups: tf.Tensor[] = [];
      sources.forEach((source, s) => {
        const found = tuners[s]!.layers.find((l) => l.linear.name === module);
        if (!found) return;
        if (kind === 'linear') {
          const weighted = source.weight * found.scale;
          const root = Math.sqrt(Math.abs(weighted));
          downs.push(tf.mul(found.down, Math.sign(weighted) * root || 0));
          ups.push(tf.mul(found.up, root));
        } else {
          downs.push(tf.mul(found.down, source.weight * found.scale));
          ups.push(found.up);
        }
      });
      if (kind === 'linear') {
        layer.down.assign(tf.addN(downs) as tf.Tensor2D);
        layer.up.assign(tf.addN(ups) as tf.Tensor2D);
      } else {
        // modules missing from some source: their rank slots stay zero
        const down = tf.concat(downs as tf.Tensor2D[], 1);
        const up = tf.concat(ups as tf.Tensor2D[], 0);
        layer.down.assign(
          tf.pad(down, [
            [0, 0],
            [0, rank - down.shape[1]],
          ]) as tf.Tensor2D,
        );
        layer.up.assign(
          tf.pad(up, [
            [0, rank - up.shape[0]],
            [0, 0],
          ]) as tf.Tensor2D,
        );
      }
    });
    return layer;
  });
  return { config, tuner: new LoraTuner(host, name, config, layers) };
}

/** Before attach allocates A and B: every targeted module's pair is in the file, with the config's rank. */
function checkWeights(host: PeftHost, config: LoraConfig, file: SafetensorsFile, adapter: LoadedAdapter): void {
  let targets: HostLinear[];
  try {
    targets = resolveTargets(host, config);
  } catch (error) {
    throw new Error(`${adapter.configSource}: ${(error as Error).message}`);
  }
  for (const linear of targets) {
    const patterned = patternValue(config.rankPattern, linear.name);
    const r = patterned ?? config.r;
    const because = `${adapter.configSource} (${patterned === undefined ? 'r' : 'rank_pattern'} ${r} for ${linear.name})`;
    expectTensorShape(file, loraKey(linear.name, 'lora_A'), [r, linear.inFeatures], because);
    expectTensorShape(file, loraKey(linear.name, 'lora_B'), [linear.outFeatures, r], because);
  }
}

export const loraMethod: PeftMethod<LoraConfig> = {
  peftType: 'LORA',
  fromJson: (json, source) => LoraConfig.fromJson(json, source),
  checkWeights,
  attach: (host, adapterName, config) => LoraTuner.attach(host, adapterName, config),
  combine,
};
