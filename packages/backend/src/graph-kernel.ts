// @peft/core's graph kernel (`GRAPH_KERNEL`; no dependency on core) on the tensorflow backend: the
// GraphSpec is written as a SavedModel into a temporary folder, loaded into a libtensorflow session
// (tfjs-node's SavedModel loader; the folder is removed once loaded) and run with the inputs fed by
// handle, no copies. One session per GraphSpec object, closed when the spec is garbage collected.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type * as tf from '@tensorflow/tfjs-core';

import { type GraphSpec, savedModelProto } from './graph-def.js';

export const GRAPH_KERNEL = 'PeftGraph';

interface SessionBackend {
  loadSavedModelMetaGraph(path: string, tags: string): number;
  runSavedModel(
    id: number,
    inputs: tf.TensorInfo[],
    inputInfos: { name: string; tfDtype: string }[],
    outputs: string[],
  ): tf.Tensor[];
  binding: { deleteSavedModel(id: number): void };
}

interface Session {
  id: number;
  inputInfos: { name: string; tfDtype: string }[];
}

const TF_DTYPE = { float32: 'DT_FLOAT', int32: 'DT_INT32', bool: 'DT_BOOL' } as const;

const sessions = new WeakMap<GraphSpec, Session>();
const closer = new FinalizationRegistry<{ backend: SessionBackend; id: number }>(({ backend, id }) => {
  try {
    backend.binding.deleteSavedModel(id);
  } catch {
    // the backend is gone with its sessions (process exit, backend removed)
  }
});

function open(backend: SessionBackend, spec: GraphSpec): Session {
  const known = sessions.get(spec);
  if (known) return known;
  const folder = mkdtempSync(join(tmpdir(), 'peft-graph-'));
  let id: number;
  try {
    writeFileSync(join(folder, 'saved_model.pb'), savedModelProto(spec));
    try {
      id = backend.loadSavedModelMetaGraph(`${folder}/`, 'serve');
    } catch (error) {
      throw new Error(
        `${GRAPH_KERNEL}: libtensorflow refused the graph (${spec.nodes.length} nodes): ${String(error)}`,
      );
    }
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
  const session = {
    id,
    inputInfos: spec.inputs.map(({ name, dtype }) => ({ name: `${name}:0`, tfDtype: TF_DTYPE[dtype] })),
  };
  sessions.set(spec, session);
  closer.register(spec, { backend, id });
  return session;
}

export function graphKernel(args: Parameters<tf.KernelFunc>[0]): tf.TensorInfo[] {
  const backend = args.backend as unknown as SessionBackend;
  const { graph } = args.attrs as unknown as { graph: GraphSpec };
  const inputs = args.inputs as Record<string, tf.TensorInfo>;
  const session = open(backend, graph);
  const fed = graph.inputs.map(({ name, dtype }) => {
    const input = inputs[name];
    if (!input) throw new Error(`${GRAPH_KERNEL}: no tensor for the graph's input "${name}"`);
    if (input.dtype !== dtype) throw new Error(`${GRAPH_KERNEL}: input "${name}" is ${input.dtype}, expected ${dtype}`);
    return input;
  });
  const outputs = graph.outputs.map((name) => (name.includes(':') ? name : `${name}:0`));
  try {
    return backend.runSavedModel(session.id, fed, session.inputInfos, outputs);
  } catch (error) {
    throw new Error(`${GRAPH_KERNEL}: the graph failed: ${String(error)}`);
  }
}
