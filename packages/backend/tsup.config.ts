import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/index.ts', 'src/browser.ts', 'src/doctor-cli.ts'],
  format: ['esm'],
  dts: { entry: ['src/index.ts', 'src/browser.ts'] },
  sourcemap: true,
  clean: true,
  target: 'node20',
  // An optional dependency, which tsup (unlike dependencies and peers) would bundle.
  external: ['@tensorflow/tfjs-node'],
});
