// Models with random weights, made in memory: benchmarks of any size need no download.
import { memoryStore, serializeSafetensors, type Checkpoint, type FileStore, type TensorToWrite } from '@peft/core';

import { hostFromCheckpoint } from './load-pretrained.js';

import type { Gpt2Model } from './gpt2.js';
import type { TransformerHost } from './transformer-host.js';

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
  return {
    model_type: 'gpt2',
    vocab_size: shape.vocab,
    n_positions: shape.positions,
    n_embd: shape.hidden,
    n_layer: shape.layers,
    n_head: shape.heads,
  };
}

/** The checkpoint as a model directory in memory (config.json + model.safetensors), for loadPretrained. */
export function randomGpt2Store(shape: Gpt2Shape): FileStore {
  const tensors: Record<string, TensorToWrite> = {};
  for (const [i, spec] of tensorSpecs(shape).entries())
    tensors[spec.name] = { shape: spec.shape, values: values(spec, i) };
  return memoryStore({
    'config.json': new TextEncoder().encode(JSON.stringify(configJson(shape))),
    'model.safetensors': serializeSafetensors(tensors, { format: 'pt' }),
  });
}

/** Weights that start at one: the scales of GPT-2's, Llama's and BERT's norms. */
const NORM_WEIGHT = /(norm|ln_\d+|ln_f|LayerNorm)\.weight$/i;

/** FNV-1a of a tensor's name: each tensor its own stream, whatever order the model reads them in. */
function nameSeed(name: string): number {
  let hash = 2166136261;
  for (let i = 0; i < name.length; i++) hash = Math.imul(hash ^ name.charCodeAt(i), 16777619) >>> 0;
  return hash;
}

/**
 * A host of any supported architecture with random weights: `config` is what config.json would
 * hold, and each tensor is generated at the shape the model asks for when it reads it (norm weights
 * one, everything else uniform in +-0.02). Nothing is kept in memory but the model's own weights.
 *
 * ```ts
 * const llama = randomModel({ model_type: 'llama', vocab_size: 32000, hidden_size: 768, ... });
 * ```
 */
export function randomModel(
  config: Record<string, unknown>,
  location = `random ${String(config.model_type)}`,
): TransformerHost {
  const checkpoint: Checkpoint = {
    location,
    names: () => [],
    has: () => true,
    tensor(name, expectedShape) {
      if (!expectedShape) throw new Error(`${location}: tensor "${name}" asked for without a shape`);
      const spec = { name, shape: [...expectedShape], ones: NORM_WEIGHT.test(name) };
      return { dtype: 'float32', shape: spec.shape, values: values(spec, nameSeed(name)) };
    },
  };
  return hostFromCheckpoint(config, checkpoint);
}

/** A GPT-2 host with random weights (see randomModel). */
export function randomGpt2(shape: Gpt2Shape): Gpt2Model {
  return randomModel(configJson(shape), 'random GPT-2') as Gpt2Model;
}
