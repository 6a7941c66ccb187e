// Gradients of a scalar loss with respect to variables, as tf.variableGrads computes them, with the
// memory released as the backward pass goes. tfjs keeps every gradient it computes (the gradient of
// each intermediate tensor) and every tensor saved for a gradient until the whole backward pass has
// ended, so a training step held all of them at once; torch frees each as soon as its node is done.
// Here a node's output gradients are disposed once the node has consumed them, and its saved tensors
// once its gradient has run. Same tape, same gradient functions, same order: the same values.
import * as tf from '@tensorflow/tfjs-core';

/** A recorded kernel call on tfjs's gradient tape (tfjs-core's TapeNode). */
interface TapeNode {
  id: number;
  kernelName: string;
  outputs: tf.Tensor[];
  inputs: Record<string, tf.Tensor>;
  gradient?: (dys: (tf.Tensor | null)[], wanted?: readonly string[]) => Record<string, () => tf.Tensor>;
  saved?: tf.Tensor[];
}

/** The parts of tfjs-core's Engine (4.22) that tf.variableGrads drives. */
interface EngineInternals {
  state: {
    activeTape: TapeNode[] | null;
    gradientDepth: number;
    nextTapeNodeId: number;
    scopeStack: { id: number; track: tf.Tensor[] }[];
  };
  startTape(): void;
  endTape(): void;
  tidy<T extends tf.TensorContainer>(name: string, fn: () => T): T;
}

function engineInternals(): EngineInternals {
  const engine = tf.engine() as unknown as Partial<EngineInternals>;
  if (
    typeof engine.startTape !== 'function' ||
    typeof engine.endTape !== 'function' ||
    typeof engine.state?.gradientDepth !== 'number'
  ) {
    throw new Error(
      `@peft/core: this @tensorflow/tfjs-core (${tf.version_core}) has no gradient tape where 4.22 has it; install @tensorflow/tfjs-core 4.22`,
    );
  }
  return engine as EngineInternals;
}

/**
 * Whether a gradient tape is recording (inside tf.variableGrads, tf.grads, variableGradients): ops
 * whose only purpose is a leaner backward pass take the plain op otherwise (inference).
 */
export function recordingGradients(): boolean {
  const state = (tf.engine() as unknown as Partial<EngineInternals>).state;
  return typeof state?.gradientDepth !== 'number' || state.gradientDepth > 0;
}

/**
 * The nodes on a path from `xs` to `y`, each with only the inputs that depend on `xs` (tfjs's
 * getFilteredNodesXToY: gradients are computed for those inputs only).
 */
function nodesFromXsToY(tape: readonly TapeNode[], xs: readonly tf.Tensor[], y: tf.Tensor): TapeNode[] {
  const fromXs = new Set<number>(xs.map((x) => x.id));
  const nodeFromXs = new Set<number>();
  for (const node of tape) {
    if (Object.values(node.inputs).some((input) => fromXs.has(input.id))) {
      nodeFromXs.add(node.id);
      for (const output of node.outputs) fromXs.add(output.id);
    }
  }
  const leadsToY = new Set<number>([y.id]);
  const nodeToY = new Set<number>();
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i]!;
    if (node.outputs.some((output) => leadsToY.has(output.id))) {
      nodeToY.add(node.id);
      for (const input of Object.values(node.inputs)) leadsToY.add(input.id);
    }
  }
  return tape
    .filter((node) => nodeFromXs.has(node.id) && nodeToY.has(node.id))
    .map((node) => ({
      ...node,
      inputs: Object.fromEntries(Object.entries(node.inputs).filter(([, input]) => fromXs.has(input.id))),
    }));
}

/**
 * Walks the nodes backward from y (gradient `seed`, default one), as tfjs's backpropagateGradients
 * does, disposing each output gradient once its producer has run and (release) the producer's saved
 * tensors. The gradients of `xs` that y reaches, by tensor id.
 */
function backward(
  engine: EngineInternals,
  nodes: readonly TapeNode[],
  xs: readonly tf.Tensor[],
  y: tf.Tensor,
  release: boolean,
  seed?: tf.Tensor,
): Map<number, tf.Tensor> {
  const result = engine.tidy('backward', () => {
    const gradients = new Map<number, tf.Tensor>([[y.id, seed ? tf.clone(seed) : tf.onesLike(y)]]);
    // a gradient function may pass a tensor through (dy as an input's gradient): dispose only what
    // no entry holds any more
    const held = (tensor: tf.Tensor): boolean => [...gradients.values()].includes(tensor);
    for (let i = nodes.length - 1; i >= 0; i--) {
      const node = nodes[i]!;
      if (!node.gradient)
        throw new Error(`Cannot compute gradient: gradient function not found for ${node.kernelName}.`);
      const dys = node.outputs.map((output) => gradients.get(output.id) ?? null);
      const inputGradients = node.gradient(dys, Object.keys(node.inputs));
      const spent: tf.Tensor[] = [];
      for (const [name, input] of Object.entries(node.inputs)) {
        const compute = inputGradients[name];
        if (!compute) throw new Error(`Cannot backprop through input ${name} of ${node.kernelName}.`);
        const dx = tf.tidy(compute);
        if (dx.dtype !== 'float32')
          throw new Error(
            `Error in gradient for op ${node.kernelName}: the gradient of input ${name} has dtype ${dx.dtype}`,
          );
        if (!tf.util.arraysEqual(dx.shape, input.shape)) {
          throw new Error(
            `Error in gradient for op ${node.kernelName}: the gradient of input ${name} has shape [${dx.shape}], the input [${input.shape}]`,
          );
        }
        const previous = gradients.get(input.id);
        gradients.set(input.id, previous ? tf.add(previous, dx) : dx);
        if (previous) spent.push(previous, dx);
      }
      // a tensor has one producer: its gradient is complete and this node was its only consumer
      for (const output of node.outputs) {
        const dy = gradients.get(output.id);
        if (!dy) continue;
        gradients.delete(output.id);
        spent.push(dy);
      }
      for (const tensor of spent) if (!held(tensor)) tensor.dispose();
      if (release) for (const tensor of node.saved ?? []) tensor.dispose();
    }
    const grads: Record<string, tf.Tensor> = {};
    for (const x of xs) {
      const gradient = gradients.get(x.id);
      if (gradient) grads[String(x.id)] = gradient;
    }
    return grads;
  });
  return new Map(Object.entries(result).map(([id, gradient]) => [Number(id), gradient]));
}

/**
 * tf.variableGrads(f, variables) releasing memory during the backward pass: `value` is f's scalar,
 * `grads` maps each trainable variable's name to its gradient (variables the loss does not reach
 * are absent). Throws where tf.variableGrads would: no trainable variable, no connection, a loss
 * that is not a scalar.
 */
export function variableGradients(
  f: () => tf.Scalar,
  variables: readonly tf.Variable[],
): { value: tf.Scalar; grads: Record<string, tf.Tensor> } {
  const xs = variables.filter((variable) => variable.trainable);
  if (xs.length === 0) throw new Error(`variableGradients: none of the ${variables.length} variables is trainable`);
  const engine = engineInternals();
  engine.startTape();
  let y: tf.Tensor;
  const floor = forwardScopes;
  forwardScopes = engine.state.scopeStack.length;
  try {
    y = engine.tidy('forward', f);
  } catch (error) {
    // the forward pass failed: what its nodes saved for a backward pass that never runs goes now
    engine.endTape();
    forwardScopes = floor;
    if (engine.state.gradientDepth === 0) releaseTape(engine, engine.state.activeTape ?? []);
    throw error;
  }
  engine.endTape();
  forwardScopes = floor;
  // nested in another gradient computation, the outer tape still needs the saved tensors
  const release = engine.state.gradientDepth === 0;
  const tape = engine.state.activeTape ?? [];
  let result: Record<string, tf.Tensor>;
  try {
    if (!(y instanceof tf.Tensor) || y.rank !== 0) {
      throw new Error(
        `variableGradients: the loss function must return a scalar tensor${y instanceof tf.Tensor ? `, not rank ${y.rank}` : ''}`,
      );
    }
    const byId = backward(engine, nodesFromXsToY(tape, xs, y), xs, y, release);
    result = {};
    for (const x of xs) {
      const gradient = byId.get(x.id);
      if (gradient) result[x.name] = gradient;
    }
  } catch (error) {
    tf.dispose(y);
    throw error;
  } finally {
    if (release) releaseTape(engine, tape);
  }
  if (Object.keys(result).length === 0) {
    tf.dispose(y);
    throw new Error('variableGradients: no trainable variable reaches the loss (are the ops that use them inside f?)');
  }
  return { value: y as tf.Scalar, grads: result };
}

/** The outermost tape is done: its nodes' saved tensors, and what checkpointed blocks held, go. */
function releaseTape(engine: EngineInternals, tape: readonly TapeNode[]): void {
  for (const node of tape) for (const tensor of node.saved ?? []) tensor.dispose();
  engine.state.activeTape = null;
  // what checkpointed blocks kept for a recomputation that never ran (no path to the loss, an error)
  for (const tensor of [...heldForRecompute.keys()]) tensor.dispose();
  heldForRecompute.clear();
}

/** Where the scopes of variableGradients' forward pass start on the engine's scope stack (null: outside one). */
let forwardScopes: number | null = null;

/** Tensors that checkpointed blocks keep alive for their recomputation, with how many blocks still need each. */
const heldForRecompute = new Map<tf.Tensor, number>();

function releaseHeld(tensor: tf.Tensor): void {
  const users = heldForRecompute.get(tensor);
  if (users === undefined) return;
  if (users > 1) heldForRecompute.set(tensor, users - 1);
  else {
    heldForRecompute.delete(tensor);
    tensor.dispose();
  }
}

/** The tensors the nodes read that none of them made, each once (a block's inputs from outside). */
function externalInputs(nodes: readonly TapeNode[]): tf.Tensor[] {
  const made = new Set<number>();
  for (const node of nodes) for (const output of node.outputs) made.add(output.id);
  const external = new Map<number, tf.Tensor>();
  for (const node of nodes) {
    for (const input of Object.values(node.inputs)) {
      // constants made inside the block are gone with its scope: the recomputation makes them again
      if (!made.has(input.id) && !input.isDisposed) external.set(input.id, input);
    }
  }
  return [...external.values()];
}

/**
 * `block()` under gradient checkpointing. Inside variableGradients, the gradient tape keeps only the
 * block's output and what it reads from outside (its input, masks, weights): the activations inside
 * are freed as soon as it returns, and the backward pass runs the block again, recording, for the
 * gradients of those inputs. Activation memory of one block at a time instead of all of them, for a
 * second forward pass of each block. Elsewhere, plain `block()`.
 *
 * `block` must compute the same on both runs (randomness seeded, as ForwardContext.seed gives it)
 * and keep nothing it makes for later (a per-pass cache is filled before the first block). The
 * backward pass must be variableGradients' (tf.variableGrads refuses the node: no gradient for it).
 */
export function checkpoint<T extends tf.Tensor>(block: () => T): T {
  const engine = engineInternals();
  const outer = engine.state.activeTape;
  if (engine.state.gradientDepth === 0 || outer === null) return block();
  // run once on a tape of its own, to learn what the block reads from outside
  engine.state.activeTape = [];
  let output: T;
  let own: TapeNode[];
  try {
    output = engine.tidy('checkpoint', block);
  } finally {
    own = engine.state.activeTape ?? [];
    engine.state.activeTape = outer;
    for (const node of own) for (const tensor of node.saved ?? []) tensor.dispose();
  }
  const inputs = externalInputs(own);
  // Kept for the recomputation: the block's inputs, and whatever else the forward pass has made so
  // far and still holds (ops may read tensors their closures capture, which no tape node lists: a
  // mask, rotary tables). Tensors of scopes outside variableGradients belong to the caller.
  const held = new Set<tf.Tensor>(inputs);
  for (const scope of engine.state.scopeStack.slice(forwardScopes ?? engine.state.scopeStack.length)) {
    for (const tensor of scope.track) if (!tensor.isDisposed) held.add(tensor);
  }
  const active = new Set(engine.state.scopeStack.slice(forwardScopes ?? Infinity).map((scope) => scope.id));
  const kept: tf.Tensor[] = [];
  for (const tensor of held) {
    const users = heldForRecompute.get(tensor);
    if (users !== undefined) heldForRecompute.set(tensor, users + 1);
    else if (!(tensor instanceof tf.Variable) && !tensor.kept && active.has((tensor as unknown as Scoped).scopeId)) {
      tf.keep(tensor);
      heldForRecompute.set(tensor, 1);
    } else continue;
    kept.push(tensor);
  }
  const named = Object.fromEntries(inputs.map((tensor, i) => [String(i), tensor]));
  outer.push({
    id: engine.state.nextTapeNodeId++,
    kernelName: 'checkpoint',
    inputs: named,
    outputs: [output],
    saved: [],
    gradient: (dys, wanted) => {
      if (!wanted)
        throw new Error('checkpoint: a gradient checkpointed block needs variableGradients (not tf.variableGrads)');
      const targets = wanted.map((name) => named[name]!);
      const dy = dys[0] ?? tf.zeros(output.shape, output.dtype);
      const grads = recompute(engine, block, targets, dy);
      for (const tensor of kept) releaseHeld(tensor);
      return Object.fromEntries(
        wanted.map((name) => [name, () => grads.get(named[name]!.id) ?? tf.zerosLike(named[name]!)]),
      );
    },
  });
  return output;
}

interface Scoped {
  scopeId: number;
}

/** The gradients of `targets` (by id) of `block()`'s output with output gradient `dy`, recording it again. */
function recompute(
  engine: EngineInternals,
  block: () => tf.Tensor,
  targets: readonly tf.Tensor[],
  dy: tf.Tensor,
): Map<number, tf.Tensor> {
  const outer = engine.state.activeTape;
  const depth = engine.state.gradientDepth;
  engine.state.activeTape = [];
  engine.state.gradientDepth = depth + 1;
  let y: tf.Tensor;
  let tape: TapeNode[];
  try {
    y = engine.tidy('recompute', block);
  } finally {
    tape = engine.state.activeTape ?? [];
    engine.state.gradientDepth = depth;
    engine.state.activeTape = outer;
  }
  try {
    // kept: the caller's backward pass takes them out of the tidy its gradient functions run in
    const grads = backward(engine, nodesFromXsToY(tape, targets, y), targets, y, true, dy);
    for (const gradient of grads.values()) tf.keep(gradient);
    return grads;
  } finally {
    for (const node of tape) for (const tensor of node.saved ?? []) tensor.dispose();
    y.dispose();
  }
}
