#!/usr/bin/env node
// The packages as a user gets them: packed (as they would be published), checked with publint and
// @arethetypeswrong/cli, installed with npm into fresh projects in a temporary folder, nothing taken
// from this repository's sources or node_modules.
//   1. A Node project: core + models + lora + backend and @tensorflow/tfjs-core. The train / save /
//      load / generate example of packages/lora/README.md is typechecked under moduleResolution
//      nodenext and bundler, compiled and run on brown-gpt; the backend must be the native one.
//   2. A Node project: core + models + ptuning + backend. The masked-LM example of
//      packages/ptuning/README.md (P-tuning v1 in a template, a verbalizer at [MASK]), the same way,
//      on brown-bert.
//   3. A Vite project: core + models + lora + backend through @peft/backend/browser, built (not run).
// Expects built packages (dist/); `pnpm test` builds them first. Exits non-zero on any failure.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const started = Date.now();
const LIBRARIES = ['core', 'models', 'lora', 'adapter', 'prefix', 'prompt', 'ptuning', 'backend'];
const INSTALLED = ['core', 'models', 'lora', 'backend'];
const METHODS = ['lora', 'adapter', 'prefix', 'prompt', 'ptuning'];
const EXAMPLE_MARKER = '<!-- downstream-example';

function log(message) {
  console.log(`[downstream +${((Date.now() - started) / 1000).toFixed(0)}s] ${message}`);
}

/** Runs a command; its output is shown on failure (and always with `show`). */
function run(command, args, { cwd, show = false, env = process.env } = {}) {
  const result = spawnSync(command, args, { cwd, env, encoding: 'utf8', maxBuffer: 256 << 20 });
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}`;
  if (result.error || result.status !== 0) {
    throw new Error(
      `\`${command} ${args.join(' ')}\` in ${cwd} failed (${result.error?.message ?? `exit ${result.status}`}):\n${output.trim()}`,
    );
  }
  if (show) console.log(output.trim().replace(/^/gm, '    '));
  return output;
}

function catalogVersion(name) {
  const workspace = fs.readFileSync(path.join(root, 'pnpm-workspace.yaml'), 'utf8');
  const match = new RegExp(`^  ['"]?${name.replace('/', '\\/')}['"]?: (\\S+)$`, 'm').exec(workspace);
  if (!match) throw new Error(`pnpm-workspace.yaml: no catalog version for ${name}`);
  return match[1];
}

/** A package README's example: the first ts block after the marker. */
function readmeExample(name) {
  const readme = path.join(root, 'packages', name, 'README.md');
  const text = fs.readFileSync(readme, 'utf8');
  const at = text.indexOf(EXAMPLE_MARKER);
  const block = at < 0 ? null : /```ts\n([\s\S]*?)```/.exec(text.slice(at));
  if (!block) throw new Error(`${readme}: no \`\`\`ts block after "${EXAMPLE_MARKER}"`);
  return block[1];
}

function pack(into) {
  const tarballs = {};
  for (const name of LIBRARIES) {
    const dir = path.join(root, 'packages', name);
    if (!fs.existsSync(path.join(dir, 'dist')))
      throw new Error(`${dir}/dist is missing: build the packages first (pnpm build)`);
    const before = new Set(fs.readdirSync(into));
    run('pnpm', ['pack', '--pack-destination', into], { cwd: dir });
    const file = fs.readdirSync(into).find((f) => !before.has(f));
    tarballs[name] = path.join(into, file);
  }
  return tarballs;
}

/**
 * What npm shows of a package: its README starts with an install section, and links resolve
 * there (no relative path into this repository); the LICENSE ships.
 */
function checkPublished(name, tarball) {
  const listing = execFileSync('tar', ['tzf', tarball], { encoding: 'utf8' }).split('\n');
  for (const file of ['package/LICENSE', 'package/README.md', 'package/package.json']) {
    if (!listing.includes(file)) throw new Error(`@peft/${name}: ${file.slice(8)} is not in the package`);
  }
  const readme = execFileSync('tar', ['xzf', tarball, '-O', 'package/README.md'], { encoding: 'utf8' });
  const firstSection = /^## (.+)$/m.exec(readme)?.[1];
  if (firstSection !== 'Install')
    throw new Error(`@peft/${name}: README's first section is "${firstSection}", not "Install"`);
  const relative = /\]\((?!https?:|#)([^)]+)\)/.exec(readme);
  if (relative)
    throw new Error(`@peft/${name}: README links to "${relative[1]}", which does not resolve on the registry's page`);
  const manifest = JSON.parse(
    execFileSync('tar', ['xzf', tarball, '-O', 'package/package.json'], { encoding: 'utf8' }),
  );
  for (const field of ['license', 'engines', 'repository', 'homepage']) {
    if (!manifest[field]) throw new Error(`@peft/${name}: package.json has no "${field}"`);
  }
  for (const [peer, range] of Object.entries(manifest.peerDependencies ?? {})) {
    if (!range.startsWith('^'))
      throw new Error(`@peft/${name}: peer ${peer} is pinned to "${range}", not a caret range`);
  }
}

/** publint and attw on each tarball, as published. */
function lint(tarballs) {
  const bin = path.join(root, 'node_modules', '.bin');
  for (const [name, tarball] of Object.entries(tarballs)) {
    checkPublished(name, tarball);
    log(`publint + attw: @peft/${name}`);
    const publint = run(path.join(bin, 'publint'), ['run', tarball, '--strict'], { cwd: root });
    // ESM only, by design: the CommonJS resolution modes have nothing to find.
    const attw = run(path.join(bin, 'attw'), [tarball, '--profile', 'esm-only', '--format', 'ascii', '--no-color'], {
      cwd: root,
    });
    const verdict = attw.split('\n').filter((line) => /^("@peft|node16 \(from ESM\)|bundler)/.test(line.trim()));
    console.log(
      `    publint: ${publint.trim().split('\n').pop()}; attw: ${verdict.map((l) => l.trim().replace(/\s+/g, ' ')).join('; ')}`,
    );
  }
}

function npmProject(dir, dependencies) {
  fs.mkdirSync(dir, { recursive: true });
  const manifest = { name: path.basename(dir), version: '1.0.0', private: true, type: 'module', dependencies };
  fs.writeFileSync(path.join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  // npm runs @peft/backend's install script (npm 11 warns that it is not yet in allowScripts).
  run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: dir });
}

function tsconfig(dir, name, resolution) {
  const compilerOptions = {
    target: 'es2022',
    module: resolution === 'nodenext' ? 'nodenext' : 'esnext',
    moduleResolution: resolution,
    strict: true,
    skipLibCheck: true,
    types: ['node'],
    outDir: 'out',
    ...(resolution === 'bundler' ? { noEmit: true } : {}),
  };
  fs.writeFileSync(path.join(dir, name), JSON.stringify({ compilerOptions, files: ['example.ts'] }, null, 2));
}

/** The peer range a packed package asks for. */
function peerRange(tarball, peer) {
  const manifest = JSON.parse(
    execFileSync('tar', ['xzf', tarball, '-O', 'package/package.json'], { encoding: 'utf8' }),
  );
  const range = manifest.peerDependencies?.[peer];
  if (!range?.startsWith('^')) throw new Error(`${tarball}: peer ${peer} is "${range}", expected a caret range`);
  return range;
}

function installedVersion(dir, name) {
  return JSON.parse(fs.readFileSync(path.join(dir, 'node_modules', name, 'package.json'), 'utf8')).version;
}

/**
 * A Node project with `installed` (and no other method), the README example of the `method` package
 * typechecked under nodenext and bundler, compiled and run on `model`; `check` reads its output.
 */
function nodeProject(work, tarballs, { method, installed, model, check }) {
  const dir = path.join(work, `node-${method}`);
  log(`npm project ${dir}: ${installed.map((n) => `@peft/${n}`).join(', ')}`);
  const deps = Object.fromEntries(installed.map((n) => [`@peft/${n}`, `file:${tarballs[n]}`]));
  // The highest tfjs-core the peer range allows (what npm picks for the range itself); the Vite
  // project takes the lowest.
  npmProject(dir, {
    ...deps,
    '@tensorflow/tfjs-core': peerRange(tarballs.core, '@tensorflow/tfjs-core'),
    typescript: catalogVersion('typescript'),
    '@types/node': catalogVersion('@types/node'),
  });
  log(
    `tfjs-core ${installedVersion(dir, '@tensorflow/tfjs-core')} (the highest that ${peerRange(tarballs.core, '@tensorflow/tfjs-core')} allows)`,
  );
  for (const forbidden of METHODS.filter((m) => !installed.includes(m)).map((m) => `@peft/${m}`)) {
    if (fs.existsSync(path.join(dir, 'node_modules', forbidden)))
      throw new Error(`${forbidden} was installed but not asked for`);
  }
  fs.writeFileSync(path.join(dir, 'example.ts'), readmeExample(method));
  for (const resolution of ['nodenext', 'bundler']) {
    tsconfig(dir, `tsconfig.${resolution}.json`, resolution);
    run(path.join(dir, 'node_modules', '.bin', 'tsc'), ['-p', `tsconfig.${resolution}.json`], { cwd: dir });
    log(`typecheck (moduleResolution ${resolution}): ok`);
  }
  log(`node out/example.js ${model}`);
  const output = run(process.execPath, ['out/example.js', model], {
    cwd: dir,
    env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2' },
  });
  const shown = output.split('\n').filter((line) => /^(backend|generated|trainable|accuracy|probing)/.test(line));
  console.log(shown.map((line) => `    ${line}`).join('\n'));
  const backend = /^backend (\w+): (\d+) steps/m.exec(output);
  if (!backend) throw new Error(`the example printed no training line:\n${output}`);
  if (backend[1] !== 'tensorflow')
    throw new Error(`the example ran on the '${backend[1]}' backend, not the native 'tensorflow':\n${output}`);
  if (backend[2] !== '4') throw new Error(`expected 4 training steps, got ${backend[2]}`);
  check(output, dir);
}

/** The files an example saved. */
function saved(dir, folder, files) {
  for (const file of files) {
    if (!fs.existsSync(path.join(dir, folder, file))) throw new Error(`the example saved no ${folder}/${file}`);
  }
}

function loraProject(work, tarballs) {
  nodeProject(work, tarballs, {
    method: 'lora',
    installed: INSTALLED,
    model: path.join(root, 'apps', 'bench', 'models', 'brown-gpt'),
    check(output, dir) {
      if (!/^generated: .+/m.test(output)) throw new Error(`the example generated nothing:\n${output}`);
      saved(dir, 'my-lora', ['adapter_config.json', 'adapter_model.safetensors']);
    },
  });
}

function ptuningProject(work, tarballs) {
  nodeProject(work, tarballs, {
    method: 'ptuning',
    installed: ['core', 'models', 'ptuning', 'backend'],
    model: path.join(root, 'apps', 'bench', 'models', 'brown-bert'),
    check(output, dir) {
      if (!/^accuracy [\d.]+ on the training reviews$/m.test(output))
        throw new Error(`the example printed no accuracy:\n${output}`);
      if (!/^probing example: \d+ tokens, [1-9]\d* masked$/m.test(output))
        throw new Error(`the example made no probing example:\n${output}`);
      saved(dir, 'my-ptuning', ['adapter_config.json', 'adapter_model.safetensors']);
      const config = JSON.parse(fs.readFileSync(path.join(dir, 'my-ptuning', 'adapter_config.json'), 'utf8'));
      if (config.peft_type !== 'P_TUNING' || !Number.isInteger(config.placeholder_token_id))
        throw new Error(`the saved adapter_config.json is not a templated P-tuning: ${JSON.stringify(config)}`);
    },
  });
}

function viteProject(work, tarballs) {
  const dir = path.join(work, 'vite-project');
  log(`vite project ${dir}`);
  const deps = Object.fromEntries(INSTALLED.map((n) => [`@peft/${n}`, `file:${tarballs[n]}`]));
  const lowest = peerRange(tarballs.backend, '@tensorflow/tfjs-core').slice(1);
  const tfjs = Object.fromEntries(
    ['core', 'backend-cpu', 'backend-wasm', 'backend-webgl', 'backend-webgpu'].map((p) => [
      `@tensorflow/tfjs-${p}`,
      lowest,
    ]),
  );
  npmProject(dir, { ...deps, ...tfjs, vite: catalogVersion('vite'), typescript: catalogVersion('typescript') });
  log(`tfjs-core ${installedVersion(dir, '@tensorflow/tfjs-core')} (the lowest the peer range allows)`);
  for (const file of ['index.html', 'main.ts'])
    fs.copyFileSync(path.join(root, 'downstream', 'vite', file), path.join(dir, file));
  fs.writeFileSync(
    path.join(dir, 'vite.config.js'),
    "export default { build: { target: 'es2022' }, optimizeDeps: { exclude: ['@tensorflow/tfjs-backend-wasm'] } };\n",
  );
  run(path.join(dir, 'node_modules', '.bin', 'vite'), ['build'], { cwd: dir, show: false });
  const assets = path.join(dir, 'dist', 'assets');
  const bundle = fs
    .readdirSync(assets)
    .filter((f) => f.endsWith('.js'))
    .map((f) => fs.readFileSync(path.join(assets, f), 'utf8'))
    .join('\n');
  // Imports only: @peft/core's error messages name tfjs-node in prose.
  const nodeImport = /(?:from\s*|import\(\s*|require\(\s*)["'](@tensorflow\/tfjs-node|node:[a-z_]+)["']/.exec(bundle);
  if (nodeImport) throw new Error(`the browser bundle imports ${nodeImport[1]}`);
  const size = fs.readdirSync(assets).reduce((sum, f) => sum + fs.statSync(path.join(assets, f)).size, 0);
  log(`vite build: ok (${(size / 1e6).toFixed(1)} MB in dist/assets, no Node modules in the bundle)`);
}

function main() {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'peft-downstream-'));
  try {
    const packs = path.join(work, 'packs');
    fs.mkdirSync(packs);
    const tarballs = pack(packs);
    log(
      `packed ${Object.keys(tarballs).length} packages (npm ${execFileSync('npm', ['--version'], { encoding: 'utf8' }).trim()})`,
    );
    lint(tarballs);
    loraProject(work, tarballs);
    ptuningProject(work, tarballs);
    viteProject(work, tarballs);
    log('passed');
  } finally {
    if (process.env.PEFT_DOWNSTREAM_KEEP === '1') log(`kept ${work}`);
    else fs.rmSync(work, { recursive: true, force: true });
  }
}

try {
  main();
} catch (error) {
  console.error(`[downstream] FAILED: ${error.message}`);
  process.exit(1);
}
