import * as tf from '@tensorflow/tfjs-core';

import { chooseAllocator } from './allocator.js';
import { firstLine } from './first-line.js';
import { fixAdvice, inspectNativeSetup } from './native-setup.js';
import { registerTensorflowKernels } from './tensorflow-kernels.js';
import { registerWasmKernels } from './wasm-kernels.js';

/** The TensorFlow.js backends a Node process can use, fastest first. */
export const BACKEND_NAMES = ['tensorflow', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];
/** `auto` takes the first of BACKEND_NAMES that loads. */
export type BackendRequest = BackendName | 'auto';

export const BACKEND_ENV = 'PEFT_BACKEND';

export interface BackendSelection {
  /** The backend tfjs now runs on. */
  name: BackendName;
  requested: BackendRequest;
  /** Where the request came from. */
  source: 'option' | typeof BACKEND_ENV | 'default';
  /** e.g. `libtensorflow 2.21.0`. */
  detail: string;
  /** Faster backends that were tried first and why each could not be used. */
  unavailable: { name: BackendName; reason: string }[];
}

export interface SelectBackendOptions {
  /** Default: the PEFT_BACKEND environment variable, else `auto`. */
  backend?: BackendRequest;
  /**
   * Print one loud line to stderr when the result is a slow backend (default true). Entry points
   * that train keep it on; tests that choose `cpu` on purpose turn it off.
   */
  warnIfSlow?: boolean;
}

type Loader = () => Promise<string>;

interface TensorflowBackend {
  binding: { TF_Version: string };
}

const LOADERS: Record<BackendName, Loader> = {
  async tensorflow() {
    chooseAllocator(); // read by libtensorflow as tfjs-node loads
    await import('@tensorflow/tfjs-node');
    await activate('tensorflow');
    registerTensorflowKernels();
    return `libtensorflow ${(tf.backend() as unknown as TensorflowBackend).binding.TF_Version}`;
  },
  async wasm() {
    await import('@tensorflow/tfjs-backend-wasm');
    await activate('wasm');
    registerWasmKernels(); // after activate: the gradient bundle it loads would replace our matMul gradient
    // Node cannot start wasm worker threads (ERR_WORKER_PATH): one thread, SIMD kernels.
    return 'XNNPACK, SIMD, 1 thread';
  },
  async cpu() {
    await import('@tensorflow/tfjs-backend-cpu');
    await activate('cpu');
    // The cpu backend's first tensor prints a banner asking Node users to install tfjs-node;
    // selectBackend says that itself, once, with the reason, so the banner is switched off.
    const backend = tf.backend() as unknown as { firstUse?: boolean };
    if ('firstUse' in backend) backend.firstUse = false;
    return 'pure JavaScript';
  },
};

async function activate(name: BackendName): Promise<void> {
  if (!(await tf.setBackend(name))) {
    throw new Error(`tf.setBackend('${name}') failed to initialise the backend`);
  }
  await tf.ready();
  await ensureGradients();
}

/**
 * tfjs-core alone registers no gradient functions, so nothing trains; the `@tensorflow/tfjs` bundle
 * registers them all (tfjs-node loads it itself). Loaded once, only when they are missing.
 */
async function ensureGradients(): Promise<void> {
  if (tf.getGradient('Mean')) return;
  try {
    await import('@tensorflow/tfjs');
  } catch (error) {
    throw new Error(
      `gradients are not registered and @tensorflow/tfjs cannot be loaded to register them: ${(error as Error).message}`,
    );
  }
}

/**
 * Loads one backend and makes it tfjs's current backend. Returns a short description, or throws
 * with the reason it cannot be used.
 */
export async function loadBackend(name: BackendName): Promise<string> {
  try {
    return await LOADERS[name]();
  } catch (error) {
    throw new Error(`the ${name} backend cannot be used: ${firstLine(error)}`);
  }
}

export function parseBackendRequest(value: string, where: string): BackendRequest {
  const allowed: readonly string[] = ['auto', ...BACKEND_NAMES];
  if (!allowed.includes(value)) {
    throw new Error(`${where}: expected one of ${allowed.join(', ')}, got "${value}"`);
  }
  return value as BackendRequest;
}

/**
 * Chooses the tfjs backend for a Node process, in one place for every app and test: `auto` takes
 * tensorflow (native libtensorflow) > wasm > cpu; a named backend is used or the call throws,
 * never replaced silently. Landing on a slow backend prints one loud line saying why.
 *
 * ```ts
 * const backend = await selectBackend();          // PEFT_BACKEND=cpu node app.js forces cpu
 * console.log(`backend: ${backend.name} (${backend.detail})`);
 * ```
 */
export async function selectBackend(options: SelectBackendOptions = {}): Promise<BackendSelection> {
  const fromEnv = process.env[BACKEND_ENV];
  const source = options.backend ? 'option' : fromEnv ? BACKEND_ENV : 'default';
  const requested =
    options.backend ?? (fromEnv ? parseBackendRequest(fromEnv, `environment variable ${BACKEND_ENV}`) : 'auto');
  const candidates = requested === 'auto' ? BACKEND_NAMES : [requested];
  const unavailable: BackendSelection['unavailable'] = [];
  for (const name of candidates) {
    try {
      const detail = await loadBackend(name);
      const selection: BackendSelection = { name, requested, source, detail, unavailable };
      if (options.warnIfSlow !== false && name !== 'tensorflow') {
        console.warn(slowBackendWarning(selection));
      }
      return selection;
    } catch (error) {
      if (requested !== 'auto') {
        const origin = source === BACKEND_ENV ? `${BACKEND_ENV}=${requested}` : `backend '${requested}'`;
        throw new Error(`${origin} was requested, but ${firstLine(error)}`);
      }
      unavailable.push({ name, reason: firstLine(error) });
    }
  }
  throw new Error(
    `no TensorFlow.js backend could be loaded: ${unavailable.map((u) => `${u.name}: ${u.reason}`).join('; ')}`,
  );
}

/**
 * The backends that load in this process, fastest first; the current backend is kept. Parity
 * tests run once on each.
 */
export async function availableBackends(): Promise<BackendName[]> {
  const current = tf.getBackend();
  const available: BackendName[] = [];
  for (const name of BACKEND_NAMES) {
    try {
      await loadBackend(name);
      available.push(name);
    } catch {
      // Not available here: the caller only asked which ones are.
    }
  }
  if (current) await tf.setBackend(current);
  return available;
}

/** The one line an entry point prints when it runs on wasm or cpu. */
export function slowBackendWarning(selection: BackendSelection): string {
  const why =
    selection.requested === 'auto'
      ? selection.unavailable.map((u) => u.reason).join('; ')
      : `chosen by ${selection.source === BACKEND_ENV ? `${BACKEND_ENV}=${selection.requested}` : 'the caller'}`;
  return (
    `!! @peft: running on the SLOW '${selection.name}' TensorFlow.js backend (${why}). ` +
    `The native 'tensorflow' backend is 5-100x faster: ${fixAdvice(inspectNativeSetup())} ` +
    `(\`peft-doctor\` says why it is missing).`
  );
}
