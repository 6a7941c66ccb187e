// Training data any fixture model learns in a few steps.
import type { Example } from '@peft/core';

/**
 * `count` causal-LM examples of `length` tokens with a pattern to learn: token t of example i is
 * 2 + (3t + i) mod `period` (ids 0 and 1 stay free for padding and placeholders); labels are the ids.
 */
export function patternExamples(count: number, { length = 8, period = 7 } = {}): Example[] {
  return Array.from({ length: count }, (_, i) => {
    const ids = Array.from({ length }, (_, t) => 2 + ((t * 3 + i) % period));
    return { inputIds: ids, labels: ids };
  });
}
