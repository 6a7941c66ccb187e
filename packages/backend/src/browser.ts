// `@peft/backend/browser`: the backend choice for a web page, kept apart from the Node entry so a
// bundler never meets tfjs-node. webgpu > webgl > wasm > cpu; a named backend is used or the call
// throws, never replaced silently.
import * as tf from '@tensorflow/tfjs-core';

import { firstLine } from './first-line.js';
import { registerWasmKernels } from './wasm-kernels.js';

export const BROWSER_BACKEND_NAMES = ['webgpu', 'webgl', 'wasm', 'cpu'] as const;
export type BrowserBackendName = (typeof BROWSER_BACKEND_NAMES)[number];

export interface BrowserBackendOptions {
  /** Default `auto`: the first of BROWSER_BACKEND_NAMES that loads. */
  backend?: BrowserBackendName | 'auto';
  /**
   * Where the wasm backend finds its `.wasm` files: a folder URL, or one URL per file name
   * (`tfjs-backend-wasm.wasm`, `tfjs-backend-wasm-simd.wasm`, `tfjs-backend-wasm-threaded-simd.wasm`).
   * Bundlers move these files, so pass what the bundler gives (Vite: `import url from '…wasm?url'`).
   */
  wasmPaths?: string | Record<string, string>;
  /**
   * wasm threads; used only on a cross-origin isolated page. Default: the logical cores, at most 4.
   * tfjs-backend-wasm itself caps the pool at half of navigator.hardwareConcurrency (it assumes two
   * hardware threads per core): the detail says how many it took.
   */
  wasmThreads?: number;
}

export interface BrowserBackendSelection {
  name: BrowserBackendName;
  requested: BrowserBackendName | 'auto';
  /** e.g. `WebGL 2, ANGLE (NVIDIA …), float32 textures` or `XNNPACK, 2 threads`. */
  detail: string;
  /** Faster backends that were tried first and why each could not be used. */
  unavailable: { name: BrowserBackendName; reason: string }[];
}

interface BrowserGlobals {
  navigator?: { gpu?: { requestAdapter(): Promise<unknown> }; hardwareConcurrency?: number };
  crossOriginIsolated?: boolean;
}

const browser = globalThis as BrowserGlobals;

/** tfjs-core alone registers no gradient functions: without them nothing trains. */
async function ensureGradients(): Promise<void> {
  if (!tf.getGradient('Mean')) await import('@tensorflow/tfjs-core/dist/register_all_gradients');
}

async function activate(name: BrowserBackendName): Promise<void> {
  if (!(await tf.setBackend(name))) throw new Error(`tf.setBackend('${name}') failed to initialise the backend`);
  await tf.ready();
  await ensureGradients();
}

type Loader = (options: BrowserBackendOptions, auto: boolean) => Promise<string>;

const SOFTWARE_RENDERERS = /swiftshader|llvmpipe|lavapipe|software/i;

/** The GPU behind WebGL as the driver names it, where the browser tells. */
function webglRenderer(): string {
  const gl = (tf.backend() as unknown as { gpgpu?: { gl?: WebGLRenderingContext } }).gpgpu?.gl;
  const info = gl?.getExtension('WEBGL_debug_renderer_info');
  return gl && info ? String(gl.getParameter(info.UNMASKED_RENDERER_WEBGL)) : 'unknown renderer';
}

const LOADERS: Record<BrowserBackendName, Loader> = {
  async webgpu() {
    const gpu = browser.navigator?.gpu;
    if (!gpu) throw new Error('this browser has no WebGPU (navigator.gpu is absent)');
    if (!(await gpu.requestAdapter())) throw new Error('WebGPU is present but offers no adapter');
    await import('@tensorflow/tfjs-backend-webgpu');
    await activate('webgpu');
    return 'WebGPU';
  },
  async webgl(_options, auto) {
    await import('@tensorflow/tfjs-backend-webgl');
    await activate('webgl');
    // Half-float textures lose the small updates training is made of: refuse rather than train badly.
    if (!tf.env().getBool('WEBGL_RENDER_FLOAT32_CAPABLE')) {
      throw new Error('WebGL cannot render to float32 textures here (half floats are too coarse to train)');
    }
    const renderer = webglRenderer();
    // A GPU emulated on the CPU (headless browsers, no GPU driver) is slower than wasm: auto skips it.
    if (auto && SOFTWARE_RENDERERS.test(renderer))
      throw new Error(`WebGL is rendered in software here (${renderer}): wasm is faster`);
    return `WebGL ${tf.env().getNumber('WEBGL_VERSION')}, ${renderer}, float32 textures`;
  },
  async wasm(options) {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    if (options.wasmPaths !== undefined) {
      wasm.setWasmPaths(options.wasmPaths as Parameters<typeof wasm.setWasmPaths>[0]);
    }
    const threads = browser.crossOriginIsolated
      ? (options.wasmThreads ?? Math.min(4, browser.navigator?.hardwareConcurrency ?? 1))
      : 1;
    wasm.setThreadsCount(threads);
    await activate('wasm');
    registerWasmKernels(); // after the gradients: they would replace our matMul gradient
    const isolation = browser.crossOriginIsolated ? '' : ' (page not cross-origin isolated: no threads)';
    return `XNNPACK, ${wasm.getThreadsCount()} thread${wasm.getThreadsCount() === 1 ? '' : 's'}${isolation}`;
  },
  async cpu() {
    await import('@tensorflow/tfjs-backend-cpu');
    await activate('cpu');
    return 'pure JavaScript';
  },
};

/**
 * Makes the fastest backend this page can train on tfjs's current one.
 *
 * ```ts
 * import wasmSimd from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm?url';
 * const backend = await selectBrowserBackend({ wasmPaths: { 'tfjs-backend-wasm-simd.wasm': wasmSimd } });
 * status.textContent = `${backend.name}: ${backend.detail}`;
 * ```
 */
export async function selectBrowserBackend(options: BrowserBackendOptions = {}): Promise<BrowserBackendSelection> {
  const requested = options.backend ?? 'auto';
  if (requested !== 'auto' && !BROWSER_BACKEND_NAMES.includes(requested)) {
    throw new Error(`backend: expected one of auto, ${BROWSER_BACKEND_NAMES.join(', ')}, got "${String(requested)}"`);
  }
  const candidates = requested === 'auto' ? BROWSER_BACKEND_NAMES : [requested];
  const unavailable: BrowserBackendSelection['unavailable'] = [];
  for (const name of candidates) {
    try {
      const detail = await LOADERS[name](options, requested === 'auto');
      return { name, requested, detail, unavailable };
    } catch (error) {
      if (requested !== 'auto')
        throw new Error(`backend '${name}' was requested, but it cannot be used: ${firstLine(error)}`);
      unavailable.push({ name, reason: firstLine(error) });
    }
  }
  throw new Error(
    `no TensorFlow.js backend could be loaded: ${unavailable.map((u) => `${u.name}: ${u.reason}`).join('; ')}`,
  );
}
