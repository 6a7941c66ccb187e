// GPT-2 models with random weights, made in memory: benchmarks of any size need no download.
import { memoryStore, serializeSafetensors, type Checkpoint, type FileStore, type TensorToWrite } from '@peft/core';

import { ConfigReader } from './config.js';
import { Gpt2Model, parseGpt2Config } from './gpt2.js';

export interface Gpt2Shape {
  layers: number;
  hidden: number;
  heads: number;
  vocab: number;
  positions: number;
}

export const GPT2_SMALL: Gpt2Shape = { layers: 12, hidden: 768, heads: 12, vocab: 50257, positions: 1024 };

interface TensorSpec {
  name: string;
  shape: number[];
  /** LayerNorm weights start at 1; everything else small and uniform. */
  ones: boolean;
}

function tensorSpecs({ layers, hidden: d, vocab, positions }: Gpt2Shape): TensorSpec[] {
  const specs: TensorSpec[] = [
    { name: 'transformer.wte.weight', shape: [vocab, d], ones: false },
    { name: 'transformer.wpe.weight', shape: [positions, d], ones: false },
    { name: 'transformer.ln_f.weight', shape: [d], ones: true },
    { name: 'transformer.ln_f.bias', shape: [d], ones: false },
  ];
  for (let i = 0; i < layers; i++) {
    const p = `transformer.h.${i}`;
    specs.push(
      { name: `${p}.ln_1.weight`, shape: [d], ones: true },
      { name: `${p}.ln_1.bias`, shape: [d], ones: false },
      { name: `${p}.attn.c_attn.weight`, shape: [d, 3 * d], ones: false },
      { name: `${p}.attn.c_attn.bias`, shape: [3 * d], ones: false },
      { name: `${p}.attn.c_proj.weight`, shape: [d, d], ones: false },
      { name: `${p}.attn.c_proj.bias`, shape: [d], ones: false },
      { name: `${p}.ln_2.weight`, shape: [d], ones: true },
      { name: `${p}.ln_2.bias`, shape: [d], ones: false },
      { name: `${p}.mlp.c_fc.weight`, shape: [d, 4 * d], ones: false },
      { name: `${p}.mlp.c_fc.bias`, shape: [4 * d], ones: false },
      { name: `${p}.mlp.c_proj.weight`, shape: [4 * d, d], ones: false },
      { name: `${p}.mlp.c_proj.bias`, shape: [d], ones: false },
    );
  }
  return specs;
}

/** Deterministic values of one tensor (a linear congruential stream seeded by its index). */
function values(spec: TensorSpec, index: number, scale = 0.02): Float32Array {
  const out = new Float32Array(spec.shape.reduce((a, b) => a * b, 1));
  if (spec.ones) return out.fill(1);
  let state = (12345 + index * 7919) >>> 0;
  for (let i = 0; i < out.length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = (state / 4294967296 - 0.5) * 2 * scale;
  }
  return out;
}

function configJson(shape: Gpt2Shape): Record<string, unknown> {
  return { model_type: 'gpt2', vocab_size: shape.vocab, n_positions: shape.positions, n_embd: shape.hidden, n_layer: shape.layers, n_head: shape.heads };
}

/** The checkpoint as a model directory in memory (config.json + model.safetensors), for loadPretrained. */
export function randomGpt2Store(shape: Gpt2Shape): FileStore {
  const tensors: Record<string, TensorToWrite> = {};
  tensorSpecs(shape).forEach((spec, i) => (tensors[spec.name] = { shape: spec.shape, values: values(spec, i) }));
  return memoryStore({
    'config.json': new TextEncoder().encode(JSON.stringify(configJson(shape))),
    'model.safetensors': serializeSafetensors(tensors, { format: 'pt' }),
  });
}

/**
 * A GPT-2 host with random weights, each tensor generated when the model reads it: no file in
 * memory, so a 124M-parameter model costs its weights and nothing more.
 */
export function randomGpt2(shape: Gpt2Shape): Gpt2Model {
  const specs = new Map(tensorSpecs(shape).map((spec, i) => [spec.name, { spec, index: i }]));
  const checkpoint: Checkpoint = {
    location: 'random GPT-2',
    names: () => [...specs.keys()],
    has: (name) => specs.has(name),
    tensor(name, expectedShape) {
      const found = specs.get(name);
      if (!found) throw new Error(`random GPT-2: no tensor "${name}"`);
      if (expectedShape && expectedShape.join() !== found.spec.shape.join()) {
        throw new Error(`random GPT-2: tensor "${name}" has shape [${found.spec.shape}], expected [${expectedShape}]`);
      }
      return { dtype: 'float32', shape: found.spec.shape, values: values(found.spec, found.index) };
    },
  };
  return new Gpt2Model(parseGpt2Config(new ConfigReader(configJson(shape), 'random GPT-2 config')), checkpoint);
}
