// Logits as plain arrays: one forward pass, read back, its tensors freed.
import type { HostForwardOutput, PeftForwardInput } from '@peft/core';

/** A host or a PeftModel: whatever runs a forward pass. */
export interface Forwarding {
  forward(input: PeftForwardInput): HostForwardOutput;
}

/** The logits of one forward pass with their shape and the virtual tokens in front. */
export function readLogits(
  model: Forwarding,
  input: PeftForwardInput,
): { values: Float32Array; shape: number[]; prepended: number } {
  const { logits, prepended } = model.forward(input);
  const values = logits.dataSync() as Float32Array;
  const shape = logits.shape;
  logits.dispose();
  return { values, shape, prepended };
}

/** The logits of one forward pass, flattened. */
export function logits(model: Forwarding, input: PeftForwardInput): Float32Array {
  return readLogits(model, input).values;
}
