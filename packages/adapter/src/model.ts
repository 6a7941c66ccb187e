// The bottleneck-adapter tuner: one BottleneckModule per layer and placement, attached through the
// host's sublayer-output hooks only; weights in AdapterHub's names and layout.
import {
  deriveSeed,
  expectTensorShape,
  type AdapterTuner,
  type Disposer,
  type LoadedAdapter,
  type PeftHost,
  type PeftMethod,
  type SafetensorsFile,
  type SublayerPoint,
  type TensorToWrite,
} from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';

import { BottleneckConfig } from './config.js';
import { BottleneckModule } from './layer.js';

/** AdapterHub saves weights under this name (and never as peft's adapter_model.safetensors). */
export const ADAPTERHUB_WEIGHTS_FILE = 'adapter.safetensors';

/**
 * AdapterHub's module path of an adapter: BERT-style post-LN models (BERT, RoBERTa) keep them in the sublayer's
 * output module, decoders in `attention_adapters` / `output_adapters` of the block.
 */
export function adapterPath(host: PeftHost, layer: number, point: SublayerPoint, name: string): string {
  const base = host.layerPaths[layer]!;
  if (host.config.modelType === 'bert' || host.config.modelType === 'roberta') {
    return `${base}.${point === 'afterAttention' ? 'attention.output' : 'output'}.adapters.${name}`;
  }
  return `${base}.${point === 'afterAttention' ? 'attention_adapters' : 'output_adapters'}.adapters.${name}`;
}

export class BottleneckTuner implements AdapterTuner {
  readonly supportsMixedBatch = true;
  readonly modules: BottleneckModule[] = [];
  private readonly hooks: Disposer[] = [];

  constructor(
    readonly host: PeftHost,
    readonly adapterName: string,
    readonly config: BottleneckConfig,
  ) {
    const { numLayers, hiddenSize } = host.config;
    const bad = config.leaveOut.filter((l) => !Number.isInteger(l) || l < 0 || l >= numLayers);
    if (bad.length)
      throw new Error(`BottleneckConfig.leaveOut: layers ${bad.join(', ')} are outside 0..${numLayers - 1}`);
    const points: SublayerPoint[] = [
      ...(config.mhAdapter ? ['afterAttention' as const] : []),
      ...(config.outputAdapter ? ['afterFfn' as const] : []),
    ];
    for (let layer = 0; layer < numLayers; layer++) {
      if (config.leaveOut.includes(layer)) continue;
      for (const point of points) {
        const module = new BottleneckModule(
          adapterPath(host, layer, point, adapterName),
          adapterName,
          config,
          hiddenSize,
          config.bottleneck(layer, hiddenSize),
          deriveSeed(config.initSeed, layer, point === 'afterAttention' ? 0 : 1),
        );
        this.modules.push(module);
        this.hooks.push(
          host.hooks.addSublayerHook(point, layer, (h, _layer, context, surroundings) =>
            module.apply(h, context, surroundings),
          ),
        );
      }
    }
  }

  setActive(active: boolean): void {
    for (const module of this.modules) module.active = active;
  }

  trainableVariables(): ReadonlyMap<string, tf.Variable> {
    return new Map(this.modules.flatMap((m) => m.entries().map(({ key, variable }) => [key, variable] as const)));
  }

  async stateDict(): Promise<Record<string, TensorToWrite>> {
    const out: Record<string, TensorToWrite> = {};
    for (const module of this.modules) {
      for (const { key, variable, transposed } of module.entries()) {
        const tensor = transposed ? tf.transpose(variable) : variable;
        out[key] = { shape: tensor.shape, values: (await tensor.data()) as Float32Array };
        if (transposed) tensor.dispose();
      }
      for (const { key, of } of module.aliases()) out[key] = out[of]!;
    }
    return out;
  }

  /**
   * Loads AdapterHub's tensors. Their keys carry the name the adapter was saved under (the config's
   * savedName), which may differ from this adapter's name: as AdapterHub's `load_adapter(load_as=...)`,
   * the tensors are read under the saved name and held (and saved again) under ours.
   */
  loadStateDict(file: SafetensorsFile): void {
    const savedName = this.config.savedName ?? this.adapterName;
    checkSavedName(file, savedName, this.config);
    const expected = new Set<string>();
    for (const module of this.modules) {
      for (const { key: ourKey, variable, transposed } of module.entries()) {
        const key = keyUnderName(module, ourKey, savedName);
        expected.add(key);
        const entry = file.entries.get(key);
        const shape = transposed ? [variable.shape[1]!, variable.shape[0]!] : variable.shape;
        if (!entry) throw new Error(`${file.source}: tensor "${key}" is missing`);
        if (entry.shape.join() !== shape.join())
          throw new Error(`${file.source}: tensor "${key}" has shape [${entry.shape}], expected [${shape}]`);
        const data = file.tensor(key);
        tf.tidy(() => {
          const value = tf.tensor(data.values, shape, 'float32');
          variable.assign(transposed ? tf.transpose(value) : value);
        });
      }
    }
    // aliases (adapter_norm_before) hold the same values as the keys they alias: nothing more to load
    for (const module of this.modules)
      for (const { key } of module.aliases()) expected.add(keyUnderName(module, key, savedName));
    const unknown = [...file.entries.keys()].filter((key) => !expected.has(key));
    if (unknown.length)
      throw new Error(
        `${file.source}: tensors the config does not explain: ${unknown.slice(0, 5).join(', ')}${unknown.length > 5 ? ', ...' : ''}`,
      );
  }

  dispose(): void {
    for (const hook of this.hooks) hook.remove();
    for (const module of this.modules) module.dispose();
  }
}

/**
 * AdapterHub loads only the keys with the config's name and leaves the adapter at its initial
 * weights when the file's keys carry another name; we refuse such a file.
 */
function checkSavedName(file: SafetensorsFile, savedName: string, config: BottleneckConfig): void {
  for (const key of file.entries.keys()) {
    const found = ADAPTER_KEY.exec(key)?.[1];
    if (found === undefined || found === savedName) continue;
    const expected =
      config.savedName === null
        ? `the adapter is named "${savedName}" (adapter_config.json gives no "name")`
        : `adapter_config.json's "name" is "${savedName}"`;
    throw new Error(`${file.source}: tensor "${key}" is saved under the adapter name "${found}", but ${expected}`);
  }
}

/** Before attach allocates the modules: each one's tensors are in the file with the config's bottleneck size. */
function checkWeights(host: PeftHost, config: BottleneckConfig, file: SafetensorsFile, adapter: LoadedAdapter): void {
  const savedName = config.savedName ?? adapter.name;
  checkSavedName(file, savedName, config);
  const { numLayers, hiddenSize } = host.config;
  for (let layer = 0; layer < numLayers; layer++) {
    if (config.leaveOut.includes(layer)) continue;
    const size = config.bottleneck(layer, hiddenSize);
    const factor =
      typeof config.reductionFactor === 'number'
        ? config.reductionFactor
        : (config.reductionFactor[String(layer)] ?? config.reductionFactor.default!);
    const because = `${adapter.configSource} (reduction_factor ${factor}: bottleneck size of the hidden size ${hiddenSize} / ${factor} = ${size})`;
    for (const point of [
      ...(config.mhAdapter ? ['afterAttention' as const] : []),
      ...(config.outputAdapter ? ['afterFfn' as const] : []),
    ]) {
      for (const { key, shape } of BottleneckModule.savedShapes(
        adapterPath(host, layer, point, savedName),
        config,
        hiddenSize,
        size,
      ))
        expectTensorShape(file, key, shape, because);
    }
  }
}

/** An adapter tensor's key; group 1 is the adapter's name. */
const ADAPTER_KEY = /\.adapters\.(.+?)\.adapter_(?:down|up|norm_before|norm_after)\./;

/** `key`, one of `module`'s, with the adapter name in it replaced by `name`. */
function keyUnderName(module: BottleneckModule, key: string, name: string): string {
  const namePosition = module.path.length - module.adapterName.length; // path ends with `.adapters.<name>`
  return `${module.path.slice(0, namePosition)}${name}${key.slice(module.path.length)}`;
}

function sortKeys(value: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.keys(value)
      .sort()
      .map((key) => [key, value[key]]),
  );
}

export const bottleneckMethod: PeftMethod<BottleneckConfig> = {
  peftType: 'BOTTLENECK',
  weightsFile: ADAPTERHUB_WEIGHTS_FILE,
  // AdapterHub requires a float `scaling` (isinstance(scaling, float)): JSON.stringify(1.0) is "1"
  configText: (json) =>
    `${JSON.stringify({ ...json, config: sortKeys(json.config as Record<string, unknown>) }, null, 2).replace(/("scaling": )(-?\d+)(,?)$/m, '$1$2.0$3')}\n`,
  recognizes: (json) =>
    typeof json.config === 'object' &&
    json.config !== null &&
    typeof json.version === 'string' &&
    json.version.startsWith('adapters'),
  fromJson: (json, source) => BottleneckConfig.fromJson(json, source),
  checkWeights,
  attach: (host, adapterName, config) => new BottleneckTuner(host, adapterName, config),
};
