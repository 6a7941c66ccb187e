// libtensorflow's CPU allocator, chosen before tfjs-node loads it.
import { isMainThread } from 'node:worker_threads';

import * as tf from '@tensorflow/tfjs-core';

/**
 * libtensorflow reads this once, when tfjs-node creates its context: `true` keeps freed tensor memory
 * in a best-fit pool (BFC) for the next tensors; otherwise each tensor is malloc'ed and freed, and
 * glibc maps the large ones fresh each time: a GPT-2 small LoRA step (4 x 128) took ~92k minor page
 * faults and ~400 ms of system time, with the pool ~1-3k and ~60 ms; peak RSS 2,602-2,624 ->
 * 2,338-2,484 MB (AMD EPYC, 2 cores, alternating processes). The pool keeps the memory it reached.
 */
export const ALLOCATOR_ENV = 'TF_CPU_ALLOCATOR_USE_BFC';

/** What chooseAllocator does: whether to set ALLOCATOR_ENV, and peft-doctor's line. */
export function allocatorDecision(
  own: string | undefined,
  tfjsNodeLoaded: boolean,
  mainThread: boolean,
): { set: boolean; line: string } {
  if (tfjsNodeLoaded)
    return {
      set: false,
      line: `as libtensorflow chose it: tfjs-node was loaded before selectBackend (${ALLOCATOR_ENV}=true before loading it gives the pool)`,
    };
  if (own !== undefined)
    return {
      set: false,
      line: `${/^(1|true)$/i.test(own) ? 'BFC pool' : 'malloc'}, from your ${ALLOCATOR_ENV}=${own}`,
    };
  if (!mainThread)
    return {
      set: false,
      line: `malloc (process.env of a worker thread does not reach native code: set ${ALLOCATOR_ENV} before starting Node)`,
    };
  return {
    set: true,
    line: `BFC pool (${ALLOCATOR_ENV}=true set by @peft/backend: fewer page faults, lower peak RSS; false keeps malloc)`,
  };
}

let choice: string | null = null;

/**
 * Asks libtensorflow for its pooling allocator unless the user set ALLOCATOR_ENV (their value stands),
 * tfjs-node is already loaded (too late) or this is a worker thread. Call before importing
 * `@tensorflow/tfjs-node`; the first call decides.
 */
export function chooseAllocator(): void {
  if (choice !== null) return;
  const decision = allocatorDecision(
    process.env[ALLOCATOR_ENV],
    tf.findBackendFactory('tensorflow') !== null,
    isMainThread,
  );
  if (decision.set) process.env[ALLOCATOR_ENV] = 'true';
  choice = decision.line;
}

/** The allocator line of peft-doctor; null until selectBackend loaded the tensorflow backend. */
export const allocatorChoice = (): string | null => choice;
