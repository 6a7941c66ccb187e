// GPT-2 checkpoints with random weights, in memory, for benchmarks of any size.
import { memoryStore, serializeSafetensors, type FileStore, type TensorToWrite } from '@peft/core';

export interface Gpt2Shape {
  layers: number;
  hidden: number;
  heads: number;
  vocab: number;
  positions: number;
}

export const GPT2_SMALL: Gpt2Shape = { layers: 12, hidden: 768, heads: 12, vocab: 50257, positions: 1024 };

/** A GPT2LMHeadModel checkpoint with small uniform random weights (LayerNorm weights 1). */
export function randomGpt2(shape: Gpt2Shape): { config: object; weights: Uint8Array } {
  const { layers, hidden: d, vocab, positions } = shape;
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
  const config = { model_type: 'gpt2', vocab_size: vocab, n_positions: positions, n_embd: d, n_layer: layers, n_head: shape.heads };
  return { config, weights: serializeSafetensors(tensors, { format: 'pt' }) };
}


/** The checkpoint as a model directory in memory, for loadPretrained. */
export function randomGpt2Store(shape: Gpt2Shape): FileStore {
  const { config, weights } = randomGpt2(shape);
  return memoryStore({ 'config.json': new TextEncoder().encode(JSON.stringify(config)), 'model.safetensors': weights });
}
