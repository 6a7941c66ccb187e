import { defineConfig } from 'tsup';

export default defineConfig({
  // `@peft/lora/layers` (package.json exports) is built from src/tfjs-layers.ts
  entry: { index: 'src/index.ts', layers: 'src/tfjs-layers.ts' },
  format: ['esm'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'es2022',
});
