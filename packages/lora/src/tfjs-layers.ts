// `@peft/lora/layers`: LoRA on a user's own tf.LayersModel. Each targeted Dense layer keeps its
// kernel and bias frozen and gains trainable A and B (LayerVariables of the layer, so `model.fit`
// trains them); every other layer is frozen too, so the adapter alone carries what training changed.
// Its call computes act(x·W + b + x·Aᵀ·Bᵀ·scale). Mergeable, unloadable back to a plain model, and
// saved in peft's key layout (`base_model.model.<layer>.lora_A.weight [r, in]`).
import {
  STATE_DICT_PREFIX,
  describeFile,
  parseSafetensors,
  readJson,
  resolveStore,
  serializeSafetensors,
  writeTogether,
  type StoreSource,
  type TensorToWrite,
} from '@peft/core';
import * as tf from '@tensorflow/tfjs-core';
import { initializers, type LayersModel, type LayerVariable } from '@tensorflow/tfjs-layers';

export interface LayersLoraOptions {
  r?: number; // default 8
  loraAlpha?: number; // default 8
  loraDropout?: number; // default 0, on the LoRA input during training
  /** Dense layer names (exact), a RegExp on the name, or 'all-dense' (default). */
  targetLayers?: readonly string[] | RegExp | 'all-dense';
  /** true: A kaiming-uniform, B zero (starts at the base model); false: B random too. */
  initLoraWeights?: boolean;
  seed?: number;
}

type LayerCall = (inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>) => tf.Tensor | tf.Tensor[];

/** The parts of a tfjs-layers Layer this relies on (private in its typings, stable in 4.x). */
interface LayerInternals {
  name: string;
  trainable: boolean;
  call: LayerCall;
  _trainableWeights: LayerVariable[];
  _nonTrainableWeights: LayerVariable[];
  getClassName(): string;
  /** Present on a model used as a layer. */
  layers?: LayerInternals[];
}

/** The parts of tfjs-layers' Dense this relies on. */
interface DenseInternals extends LayerInternals {
  built: boolean;
  units: number;
  kernel: LayerVariable;
  bias: LayerVariable | null;
  activation: { apply(x: tf.Tensor): tf.Tensor } | null;
  addWeight(
    name: string,
    shape: number[],
    dtype: tf.DataType,
    initializer: unknown,
    regularizer: unknown,
    trainable: boolean,
  ): LayerVariable;
}

/** Every layer inside `container`, nested models and their layers included, parents first. */
function nestedLayers(container: LayerInternals): LayerInternals[] {
  return (container.layers ?? []).flatMap((layer) => [layer, ...nestedLayers(layer)]);
}

/**
 * Freezes every layer of the model but the targeted ones, and puts the flags it found back.
 *
 * Layers are frozen by their own `trainable` flag: tfjs-layers' Sequential sets every weight's flag
 * back to the model's on each compile, but leaves the layers' flags alone. BatchNormalization
 * updates its moving statistics in `fit` whatever its flags say, so a frozen one runs in inference
 * mode, as Keras does with a BatchNormalization whose `trainable` is false.
 */
class FrozenBase {
  private readonly savedFlags: { layer: LayerInternals; trainable: boolean; weights: [LayerVariable, boolean][] }[];
  private readonly batchNormCalls: [LayerInternals, LayerCall][] = [];

  constructor(model: LayerInternals, targets: ReadonlySet<LayerInternals>) {
    const all = [model, ...nestedLayers(model)];
    this.savedFlags = all.map((layer) => ({
      layer,
      trainable: layer.trainable,
      weights: layer._trainableWeights.map((weight): [LayerVariable, boolean] => [weight, weight.trainable]),
    }));
    // A model frozen as a whole trains nothing, its LoRA weights included.
    model.trainable = true;
    for (const layer of model.layers ?? []) if (!targets.has(layer)) layer.trainable = false;
    for (const layer of all.filter((l) => l.getClassName() === 'BatchNormalization')) {
      const call = layer.call;
      this.batchNormCalls.push([layer, call]);
      layer.call = (inputs, kwargs) => call.call(layer, inputs, { ...kwargs, training: false });
    }
  }

  restore(): void {
    for (const [layer, call] of this.batchNormCalls) layer.call = call;
    // Parents first: a model's `trainable` setter rewrites the weight flags of all its layers.
    for (const { layer, trainable } of this.savedFlags) layer.trainable = trainable;
    for (const { weights } of this.savedFlags) for (const [weight, trainable] of weights) weight.trainable = trainable;
  }
}

class LayersLoraLayer {
  readonly down: LayerVariable; // Aᵀ [in, r]
  readonly up: LayerVariable; // Bᵀ [r, out]
  merged = false;
  enabled = true;
  private readonly originalCall: LayerCall;
  private readonly originalTrainableWeights: LayerVariable[];
  private readonly originalNonTrainableWeights: LayerVariable[];

  constructor(
    readonly dense: DenseInternals,
    readonly r: number,
    readonly scale: number,
    readonly dropout: number,
    init: boolean,
    seed: number,
  ) {
    this.originalTrainableWeights = [...dense._trainableWeights];
    this.originalNonTrainableWeights = [...dense._nonTrainableWeights];
    // Kernel and bias frozen by moving them to the layer's non-trainable weights, which leaves the
    // layer itself trainable for A and B.
    const frozen = [dense.kernel, dense.bias].filter((weight) => weight !== null);
    dense._trainableWeights = dense._trainableWeights.filter((weight) => !frozen.includes(weight));
    dense._nonTrainableWeights = [...dense._nonTrainableWeights, ...frozen];
    const inFeatures = dense.kernel.shape[0]!;
    const bound = 1 / Math.sqrt(inFeatures);
    this.down = dense.addWeight(
      `${dense.name}/lora_A`,
      [inFeatures, r],
      'float32',
      initializers.randomUniform({ minval: -bound, maxval: bound, seed }),
      null,
      true,
    );
    this.up = dense.addWeight(
      `${dense.name}/lora_B`,
      [r, dense.units],
      'float32',
      init
        ? initializers.zeros()
        : initializers.randomUniform({ minval: -1 / Math.sqrt(r), maxval: 1 / Math.sqrt(r), seed: seed + 1 }),
      null,
      true,
    );
    // A targeted layer the user had frozen still trains its A and B (FrozenBase puts the flag back).
    dense.trainable = true;
    this.originalCall = dense.call;
    dense.call = (inputs, kwargs) => this.call(inputs, kwargs);
  }

  private call(inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>): tf.Tensor {
    return tf.tidy(() => {
      const input = Array.isArray(inputs) ? inputs[0]! : inputs;
      const inFeatures = input.shape.at(-1)!;
      const flat = tf.reshape(input, [-1, inFeatures]) as tf.Tensor2D;
      let y: tf.Tensor = tf.matMul(flat, this.dense.kernel.read() as tf.Tensor2D);
      if (this.dense.bias) y = tf.add(y, this.dense.bias.read());
      if (this.enabled && !this.merged) {
        const lora = kwargs.training && this.dropout > 0 ? tf.dropout(flat, this.dropout) : flat;
        y = tf.add(
          y,
          tf.mul(
            tf.matMul(tf.matMul(lora, this.down.read() as tf.Tensor2D), this.up.read() as tf.Tensor2D),
            this.scale,
          ),
        );
      }
      y = tf.reshape(y, [...input.shape.slice(0, -1), this.dense.units]);
      return this.dense.activation ? this.dense.activation.apply(y) : y;
    });
  }

  deltaWeight(): tf.Tensor2D {
    return tf.tidy(
      () =>
        tf.mul(tf.matMul(this.down.read() as tf.Tensor2D, this.up.read() as tf.Tensor2D), this.scale) as tf.Tensor2D,
    );
  }

  merge(sign: 1 | -1): void {
    const delta = this.deltaWeight();
    const finite = tf.tidy(() => tf.all(tf.isFinite(delta)).dataSync()[0] === 1);
    if (!finite) {
      delta.dispose();
      throw new Error(`${this.dense.name}: ΔW holds NaN or Inf; refusing to merge it into the kernel`);
    }
    const updated = tf.tidy(() => tf.add(this.dense.kernel.read(), tf.mul(delta, sign)));
    this.dense.kernel.write(updated);
    tf.dispose([delta, updated]);
    this.merged = sign === 1;
  }

  /** The Dense layer's own call and weights again; A and B are disposed. */
  remove(): void {
    this.dense.call = this.originalCall;
    this.dense._trainableWeights = this.originalTrainableWeights;
    this.dense._nonTrainableWeights = this.originalNonTrainableWeights;
    this.down.dispose();
    this.up.dispose();
  }
}

/** LoRA attached to the Dense layers of a tf.LayersModel. */
export class LayersLora {
  readonly layers: LayersLoraLayer[];
  private removed = false;

  constructor(
    readonly model: LayersModel,
    readonly options: Required<Omit<LayersLoraOptions, 'targetLayers'>> & {
      targetLayers: LayersLoraOptions['targetLayers'];
    },
    layers: LayersLoraLayer[],
    private readonly frozenBase: FrozenBase,
  ) {
    this.layers = layers;
  }

  /** The LoRA weights, by peft's key names (what model.fit trains once the model is compiled). */
  variables(): Map<string, LayerVariable> {
    this.assertAttached('variables');
    const out = new Map<string, LayerVariable>();
    for (const layer of this.layers) {
      out.set(`${STATE_DICT_PREFIX}${layer.dense.name}.lora_A.weight`, layer.down);
      out.set(`${STATE_DICT_PREFIX}${layer.dense.name}.lora_B.weight`, layer.up);
    }
    return out;
  }

  /** Runs `fn` on the model without the LoRA updates. */
  withAdapterDisabled<T>(fn: () => T): T {
    this.assertAttached('withAdapterDisabled');
    for (const layer of this.layers) layer.enabled = false;
    try {
      return fn();
    } finally {
      for (const layer of this.layers) layer.enabled = true;
    }
  }

  /** Adds every update into its kernel (no extra cost at inference); all layers or none. */
  merge(): void {
    this.assertAttached('merge');
    for (const layer of this.layers.filter((l) => !l.merged)) {
      const delta = layer.deltaWeight();
      const finite = tf.tidy(() => tf.all(tf.isFinite(delta)).dataSync()[0] === 1);
      delta.dispose();
      if (!finite) throw new Error(`${layer.dense.name}: ΔW holds NaN or Inf; refusing to merge it into the kernel`);
    }
    for (const layer of this.layers) if (!layer.merged) layer.merge(1);
  }

  unmerge(): void {
    this.assertAttached('unmerge');
    for (const layer of this.layers) if (layer.merged) layer.merge(-1);
  }

  /**
   * Merges the updates into the kernels and removes LoRA: the same model object, now a plain
   * tf.LayersModel (its own Dense layers and weights, the trainable flags it had before applyLora)
   * that `model.save` and `tf.loadLayersModel` round-trip. Compile it again before training it.
   */
  mergeAndUnload(): LayersModel {
    this.merge();
    return this.remove();
  }

  /**
   * Removes LoRA without merging: the base model as it was before applyLora. Unlike peft's
   * `unload`, merged updates are taken out of the kernels first, so the result is the base model
   * even after `merge()`. Compile it again before training it.
   */
  unload(): LayersModel {
    this.unmerge();
    return this.remove();
  }

  /** adapter_config.json + adapter_model.safetensors, in peft's LoRA layout. */
  async saveAdapter(destination: StoreSource): Promise<void> {
    this.assertAttached('saveAdapter');
    const store = await resolveStore(destination);
    const tensors: Record<string, TensorToWrite> = {};
    for (const layer of this.layers) {
      const [a, b] = tf.tidy(() => [tf.transpose(layer.down.read()), tf.transpose(layer.up.read())]);
      tensors[`${STATE_DICT_PREFIX}${layer.dense.name}.lora_A.weight`] = {
        shape: a!.shape,
        values: a!.dataSync() as Float32Array,
      };
      tensors[`${STATE_DICT_PREFIX}${layer.dense.name}.lora_B.weight`] = {
        shape: b!.shape,
        values: b!.dataSync() as Float32Array,
      };
      tf.dispose([a!, b!]);
    }
    const config = {
      bias: 'none',
      fan_in_fan_out: false,
      inference_mode: true,
      init_lora_weights: this.options.initLoraWeights,
      lora_alpha: this.options.loraAlpha,
      lora_dropout: this.options.loraDropout,
      peft_type: 'LORA',
      r: this.options.r,
      target_modules: this.targetNames(),
      task_type: null,
    };
    // as one change where the store can (a Node folder is swapped in whole), the config last otherwise
    await writeTogether(
      store,
      new Map([
        ['adapter_model.safetensors', serializeSafetensors(tensors, { format: 'pt' })],
        ['adapter_config.json', new TextEncoder().encode(`${JSON.stringify(config, null, 2)}\n`)],
      ]),
    );
  }

  /** Loads A and B saved by saveAdapter (same layer names, rank and alpha). */
  async loadAdapter(source: StoreSource): Promise<void> {
    this.assertAttached('loadAdapter');
    const store = await resolveStore(source);
    const configFile = describeFile(store, 'adapter_config.json');
    const config = await readJson<{ r?: number; lora_alpha?: number; target_modules?: string[] }>(
      store,
      'adapter_config.json',
    );
    if (config.r !== this.options.r)
      throw new Error(`${configFile}: r ${config.r}, this adapter has r ${this.options.r}`);
    if (config.lora_alpha !== this.options.loraAlpha) {
      throw new Error(
        `${configFile}: lora_alpha ${config.lora_alpha}, this adapter has loraAlpha ${this.options.loraAlpha}`,
      );
    }
    const saved = [...(config.target_modules ?? [])].sort();
    if (saved.join() !== this.targetNames().join()) {
      throw new Error(
        `${configFile}: target_modules [${saved.join(', ')}], this adapter targets [${this.targetNames().join(', ')}]`,
      );
    }
    const file = parseSafetensors(
      await store.read('adapter_model.safetensors'),
      describeFile(store, 'adapter_model.safetensors'),
    );
    for (const layer of this.layers) {
      for (const [matrix, variable] of [
        ['lora_A', layer.down],
        ['lora_B', layer.up],
      ] as const) {
        const key = `${STATE_DICT_PREFIX}${layer.dense.name}.${matrix}.weight`;
        const data = file.tensor(key);
        const expected = [variable.shape[1]!, variable.shape[0]!];
        if (data.shape.join() !== expected.join())
          throw new Error(`${file.source}: tensor "${key}" has shape [${data.shape}], expected [${expected}]`);
        const value = tf.tidy(() =>
          tf.transpose(tf.tensor2d(data.values as Float32Array, expected as [number, number])),
        );
        variable.write(value);
        value.dispose();
      }
    }
  }

  private targetNames(): string[] {
    return this.layers.map((l) => l.dense.name).sort();
  }

  private remove(): LayersModel {
    for (const layer of this.layers) layer.remove();
    this.frozenBase.restore();
    this.removed = true;
    return this.model;
  }

  private assertAttached(operation: string): void {
    if (this.removed)
      throw new Error(
        `LayersLora.${operation}: LoRA was already removed from model "${this.model.name}" (mergeAndUnload or unload)`,
      );
  }
}

/**
 * Attaches LoRA to the Dense layers of a built tf.LayersModel and freezes everything else in it, so
 * that only A and B train. Compile (or re-compile) the model afterwards, so that its optimizer sees
 * the LoRA weights as its trainable weights.
 *
 * ```ts
 * const lora = applyLora(model, { r: 4, targetLayers: ['hidden'] });
 * model.compile({ optimizer: 'adam', loss: 'meanSquaredError' });
 * await model.fit(xs, ys, { epochs: 10 });                  // trains hidden/lora_A and hidden/lora_B only
 * const plain = lora.mergeAndUnload();
 * ```
 */
export function applyLora(model: LayersModel, options: LayersLoraOptions = {}): LayersLora {
  const resolved = {
    r: options.r ?? 8,
    loraAlpha: options.loraAlpha ?? 8,
    loraDropout: options.loraDropout ?? 0,
    initLoraWeights: options.initLoraWeights ?? true,
    seed: options.seed ?? 0,
    targetLayers: options.targetLayers ?? 'all-dense',
  };
  if (!(Number.isInteger(resolved.r) && resolved.r > 0))
    throw new Error(`applyLora: r must be a positive integer, got ${resolved.r}`);
  const host = model as unknown as LayerInternals;
  const dense = (host.layers ?? []).filter((layer): layer is DenseInternals => layer.getClassName() === 'Dense');
  const target = resolved.targetLayers;
  const selected = dense.filter((layer) =>
    target === 'all-dense' ? true : target instanceof RegExp ? target.test(layer.name) : target.includes(layer.name),
  );
  if (selected.length === 0) {
    throw new Error(
      `applyLora: targetLayers ${String(target)} matches no Dense layer; Dense layers: ${dense.map((l) => l.name).join(', ') || 'none'}`,
    );
  }
  const unbuilt = selected.filter((layer) => !layer.built);
  if (unbuilt.length)
    throw new Error(`applyLora: build the model first (layers not built: ${unbuilt.map((l) => l.name).join(', ')})`);
  const frozenBase = new FrozenBase(host, new Set(selected));
  const layers = selected.map(
    (layer, i) =>
      new LayersLoraLayer(
        layer,
        resolved.r,
        resolved.loraAlpha / resolved.r,
        resolved.loraDropout,
        resolved.initLoraWeights,
        resolved.seed + 2 * i,
      ),
  );
  return new LayersLora(model, resolved, layers, frozenBase);
}
