import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { defineConfig, type Connect, type Plugin } from 'vite';

import { workspaceAliases } from '../../vitest.shared';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The bench's shipped model, served at /models/brown-gpt/ and copied into the build. */
const BROWN_GPT = path.resolve(here, '../bench/models/brown-gpt');
const MODEL_FILES = ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'];
const MODEL_URL = '/models/brown-gpt/';

function serveModel(): Connect.NextHandleFunction {
  return (request, response, next) => {
    const pathname = request.url?.split('?')[0] ?? '';
    if (!pathname.startsWith(MODEL_URL)) return next();
    const name = pathname.slice(MODEL_URL.length);
    // a 404, not the page: the loader probes for optional files (model.safetensors.index.json)
    if (!MODEL_FILES.includes(name)) {
      response.statusCode = 404;
      response.end(`${pathname}: no such file`);
      return;
    }
    fs.readFile(path.join(BROWN_GPT, name)).then(
      (bytes) => {
        response.setHeader('Content-Type', name.endsWith('.json') ? 'application/json' : 'application/octet-stream');
        response.end(bytes);
      },
      (error: Error) => next(error),
    );
  };
}

function brownGpt(): Plugin {
  return {
    name: 'peft-brown-gpt',
    configureServer: (server) => void server.middlewares.use(serveModel()),
    configurePreviewServer: (server) => void server.middlewares.use(serveModel()),
    async generateBundle() {
      for (const name of MODEL_FILES) {
        this.emitFile({
          type: 'asset',
          fileName: `models/brown-gpt/${name}`,
          source: await fs.readFile(path.join(BROWN_GPT, name)),
        });
      }
    },
  };
}

// Cross-origin isolation lets the wasm backend run threads (SharedArrayBuffer).
const isolation = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };

export default defineConfig({
  // the libraries from their sources, as the tests use them: the page never runs stale builds
  resolve: { alias: workspaceAliases },
  plugins: [brownGpt()],
  server: { headers: isolation },
  preview: { headers: isolation },
  build: { target: 'es2022', chunkSizeWarningLimit: 4096 },
});
