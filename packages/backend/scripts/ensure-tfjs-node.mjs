#!/usr/bin/env node
// Makes @tensorflow/tfjs-node loadable, so that the fast `tensorflow` backend is there after an
// install, even where tfjs-node's own installer cannot reach its download host. One script, three
// callers:
//   - @peft/backend's `preinstall` in a user's project (npm, pnpm with its script allowance, yarn):
//     the tfjs-node that resolves from @peft/backend. npm runs every package's preinstall before
//     any package's install script, so tfjs-node's own installer then finds its library and addon
//     in place and succeeds without a download; pnpm and yarn run tfjs-node's script (or skip it)
//     first, and this one after it. tfjs-node is an optional dependency: when everything fails,
//     the user's install still succeeds.
//   - `--workspace DIR`: the @peft monorepo's root postinstall, every copy pnpm installed there.
//   - `--package DIR`: one tfjs-node folder (`peft-doctor --fix`).
//
// Routes, in order (the first that yields a loading addon wins):
//   dir       LIBTENSORFLOW_DIR=/path (lib/ + include/ of a TensorFlow C library). Only when set,
//             and then first: a library the user points at is never skipped in favour of another.
//   official  tfjs-node's own scripts/install.js (downloads libtensorflow and a prebuilt addon).
//   wheel     the C library inside the tensorflow-cpu wheel from PyPI (pip download), only the
//             2 libraries and ~60 headers extracted, the addon built from source (node-pre-gyp).
// A route's result (libraries + built addon) is kept in a cache outside the repository
// (PEFT_TFJS_CACHE, default ~/.cache/peft/tfjs-node), so a fresh clone or `rm -rf node_modules`
// reuses it: a second install checks (~1 s) and does nothing else.
//
// Never fails the install: when every route fails it prints why, loudly, and exits 0; the apps
// then say at start-up that they run on a slow backend (see @peft/backend). Each result is also
// written to status.json in the cache, where `peft-doctor` reads it (npm shows no output of a
// dependency's script that succeeds, so the box alone could go unseen).
//
// Env: LIBTENSORFLOW_DIR, PEFT_TFJS_ROUTES (e.g. "wheel"), PEFT_TFJS_CACHE, PEFT_TFJS_FORCE=1
// (rebuild even when the addon loads), PEFT_TFJS_SKIP=1 (do nothing),
// PEFT_TF_WHEEL_VERSION (default 2.21.0), PEFT_TF_WHEEL=/path/to/local.whl.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const started = Date.now();
const scriptDir = path.dirname(fileURLToPath(import.meta.url));
const env = process.env;
const WHEEL_VERSION = env.PEFT_TF_WHEEL_VERSION ?? '2.21.0';
const CACHE_ROOT = path.resolve(
  env.PEFT_TFJS_CACHE ?? path.join(env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'peft', 'tfjs-node'),
);
const FORCE = env.PEFT_TFJS_FORCE === '1';
const OFFICIAL_TIMEOUT_MS = 10 * 60 * 1000;

function log(message) {
  console.log(`[ensure-tfjs-node +${((Date.now() - started) / 1000).toFixed(1)}s] ${message}`);
}

/**
 * Runs a command with its output captured (the compiler and downloader chatter is noise when it
 * works); on failure the error carries the output's last lines.
 */
function run(command, args, options = {}) {
  const result = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...options });
  if (result.error) throw new Error(`${command}: ${result.error.message}`);
  if (result.status !== 0) {
    const lines = `${result.stdout}${result.stderr}`.trim().split('\n');
    const errors = lines.filter((line) => /(^|\s)(\w*Error|ERROR|error):/.test(line));
    const shown = (errors.length > 0 ? errors : lines).slice(-4).map((line) => line.trim().slice(0, 300));
    const status = result.status ?? result.signal;
    throw new Error(
      `\`${path.basename(command)} ${args.join(' ')}\` exited with ${status}:\n!!       ${shown.join('\n!!       ')}`,
    );
  }
}

/** Every tfjs-node copy pnpm installed in a workspace (one per version and peer set). */
function workspacePackages(workspace) {
  const store = path.join(workspace, 'node_modules', '.pnpm');
  if (!fs.existsSync(store)) return [];
  return fs
    .readdirSync(store)
    .filter((name) => name.startsWith('@tensorflow+tfjs-node@'))
    .map((name) => path.join(store, name, 'node_modules', '@tensorflow', 'tfjs-node'))
    .filter((dir) => fs.existsSync(path.join(dir, 'binding.gyp')));
}

/** The tfjs-node that resolves from @peft/backend's own folder (its optional dependency), if any. */
function dependencyPackage() {
  const backendManifest = path.join(scriptDir, '..', 'package.json');
  try {
    return [path.dirname(createRequire(backendManifest).resolve('@tensorflow/tfjs-node/package.json'))];
  } catch {
    return [];
  }
}

/** Where tfjs-node would sit beside @peft/backend: node_modules/@peft/backend -> node_modules/@tensorflow/tfjs-node. */
function expectedDependencyPath() {
  return path.join(scriptDir, '..', '..', '..', '@tensorflow', 'tfjs-node');
}

/** What to provision, from the command line; null when there is nothing to do here. */
function targets(argv) {
  const [flag, value] = argv;
  if (flag === '--workspace' || flag === '--package') {
    if (!value) throw new Error(`${flag} needs a folder`);
    const dir = path.resolve(value);
    if (flag === '--workspace') return { packages: workspacePackages(dir), where: `the workspace ${dir}` };
    if (!fs.existsSync(path.join(dir, 'binding.gyp'))) {
      throw new Error(`--package ${dir}: not a @tensorflow/tfjs-node folder (no binding.gyp)`);
    }
    return { packages: [dir], where: dir };
  }
  if (flag !== undefined) throw new Error(`unknown argument "${flag}"; expected --workspace DIR or --package DIR`);
  // As @peft/backend's own preinstall inside the monorepo (a workspace package, not under
  // node_modules) there is nothing to do: the root postinstall provisions every copy there.
  if (!scriptDir.split(path.sep).includes('node_modules')) return null;
  return { packages: dependencyPackage(), where: 'the packages that depend on @peft/backend' };
}

const LOAD_CHECK = `
  const tf = require(process.argv[1]);
  const a = tf.tensor2d([[1, 2], [3, 4]]);
  const v = tf.matMul(a, a).dataSync();
  if (tf.getBackend() !== 'tensorflow' || v[0] !== 7 || v[3] !== 22) {
    console.error('backend ' + tf.getBackend() + ' computed ' + Array.from(v));
    process.exit(2);
  }
  console.log('tfjs-node ' + tf.version['tfjs-node'] + ', backend tensorflow, libtensorflow ' +
              tf.backend().binding.TF_Version);`;

/** Loads the package in a child process; returns { ok, output }. */
function checkLoads(pkg) {
  const result = spawnSync(process.execPath, ['-e', LOAD_CHECK, pkg], {
    cwd: pkg,
    encoding: 'utf8',
    env: { ...env, TF_CPP_MIN_LOG_LEVEL: '2' },
  });
  // On success only our own line (stderr carries TensorFlow's start-up notices).
  const output = (result.status === 0 ? result.stdout : `${result.stdout}${result.stderr}`).trim();
  return { ok: result.status === 0, output };
}

function addonPaths(pkg) {
  const manifest = path.join(pkg, 'package.json');
  const binding = createRequire(manifest)('@mapbox/node-pre-gyp').find(manifest);
  return { binding, relative: path.relative(pkg, binding) }; // lib/napi-v8/tfjs_binding.node
}

function cacheEntry(pkg, route) {
  const { version } = JSON.parse(fs.readFileSync(path.join(pkg, 'package.json'), 'utf8'));
  return path.join(CACHE_ROOT, `tfjs-node-${version}-${process.platform}-${process.arch}`, route);
}

function isComplete(entry) {
  return fs.existsSync(path.join(entry, 'complete.json'));
}

/**
 * Point pkg/deps at the entry's libraries and copy its addon into place. tfjs-node's own install
 * script (which npm runs after this, as @peft/backend's preinstall) skips its download when
 * `deps/lib/libtensorflow.so.<its version>` exists, and node-pre-gyp then finds the addon
 * installed: the link name it looks for is added beside the libraries.
 */
function installFromCache(pkg, entry) {
  const { binding, relative } = addonPaths(pkg);
  const deps = path.join(pkg, 'deps');
  fs.rmSync(deps, { recursive: true, force: true });
  fs.symlinkSync(path.join(entry, 'deps'), deps, 'dir');
  const expected = createRequire(path.join(pkg, 'package.json'))('./scripts/deps-constants.js').depsLibTensorFlowPath;
  if (!fs.existsSync(expected) && fs.existsSync(path.join(deps, 'lib', 'libtensorflow.so'))) {
    fs.symlinkSync('libtensorflow.so', path.join(deps, 'lib', path.basename(expected)));
  }
  fs.mkdirSync(path.dirname(binding), { recursive: true });
  fs.copyFileSync(path.join(entry, 'addon', relative), binding);
}

/** Moves a directory, across file systems if it must. */
function moveDir(from, to) {
  try {
    fs.renameSync(from, to);
  } catch (error) {
    if (error.code !== 'EXDEV') throw error;
    fs.cpSync(from, to, { recursive: true, verbatimSymlinks: true });
    fs.rmSync(from, { recursive: true, force: true });
  }
}

/** Builds a staging folder with `fill(staging)`, then renames it into place as the entry. */
function writeEntry(entry, describe, fill) {
  const staging = `${entry}.tmp-${process.pid}`;
  fs.rmSync(staging, { recursive: true, force: true });
  fs.mkdirSync(staging, { recursive: true });
  try {
    fill(staging);
    fs.writeFileSync(path.join(staging, 'complete.json'), `${JSON.stringify(describe, null, 2)}\n`);
    fs.rmSync(entry, { recursive: true, force: true });
    fs.renameSync(staging, entry);
  } catch (error) {
    fs.rmSync(staging, { recursive: true, force: true });
    throw error;
  }
}

/** The names binding.gyp links against (-ltensorflow -ltensorflow_framework). */
function addLinkNames(libDir) {
  const links = [
    ['libtensorflow.so', 'libtensorflow_cc.so.2'],
    ['libtensorflow_framework.so', 'libtensorflow_framework.so.2'],
  ];
  for (const [name, target] of links) {
    if (!fs.existsSync(path.join(libDir, name)) && fs.existsSync(path.join(libDir, target))) {
      fs.symlinkSync(target, path.join(libDir, name));
    }
  }
}

function buildAddon(pkg, depsDir, addonDir) {
  const deps = path.join(pkg, 'deps');
  fs.rmSync(deps, { recursive: true, force: true });
  fs.symlinkSync(depsDir, deps, 'dir');
  const buildEnv = { ...env };
  // node-gyp would download Node's headers; the distribution's copy is used when present.
  if (!buildEnv.npm_config_nodedir && fs.existsSync('/usr/include/node/node_api.h')) {
    buildEnv.npm_config_nodedir = '/usr';
  }
  log('building the addon: node-pre-gyp install --build-from-source');
  // By its path, not node_modules/.bin: npm links bins only after the preinstall scripts have run.
  const nodePreGyp = createRequire(path.join(pkg, 'package.json')).resolve('@mapbox/node-pre-gyp/bin/node-pre-gyp');
  run(process.execPath, [nodePreGyp, 'install', '--build-from-source'], { cwd: pkg, env: buildEnv });
  const { binding, relative } = addonPaths(pkg);
  fs.mkdirSync(path.dirname(path.join(addonDir, relative)), { recursive: true });
  fs.copyFileSync(binding, path.join(addonDir, relative));
}

const ROUTES = {
  /** A TensorFlow C library the user points at. */
  dir(pkg, entry) {
    const userDir = path.resolve(env.LIBTENSORFLOW_DIR);
    const libDir = path.join(userDir, 'lib');
    const header = path.join(userDir, 'include', 'tensorflow', 'c', 'c_api.h');
    if (!fs.existsSync(libDir) || !fs.existsSync(header)) {
      throw new Error(`LIBTENSORFLOW_DIR=${userDir} must hold lib/libtensorflow*.so* and include/tensorflow/c/c_api.h`);
    }
    writeEntry(entry, { route: 'dir', source: userDir }, (staging) => {
      const deps = path.join(staging, 'deps');
      fs.mkdirSync(path.join(deps, 'lib'), { recursive: true });
      for (const name of fs.readdirSync(libDir)) {
        fs.symlinkSync(path.join(libDir, name), path.join(deps, 'lib', name));
      }
      addLinkNames(path.join(deps, 'lib'));
      fs.symlinkSync(path.join(userDir, 'include'), path.join(deps, 'include'), 'dir');
      buildAddon(pkg, deps, path.join(staging, 'addon'));
    });
  },

  /** tfjs-node's own installer; its result is moved into the cache like the others. */
  official(pkg, entry) {
    log("trying tfjs-node's own installer (downloads libtensorflow; minutes on a slow network)");
    const binDir = path.join(pkg, 'node_modules', '.bin');
    // A symlink left by another route must not be taken for a downloaded library (or emptied).
    fs.rmSync(path.join(pkg, 'deps'), { recursive: true, force: true });
    run(process.execPath, ['scripts/install.js'], {
      cwd: pkg,
      timeout: OFFICIAL_TIMEOUT_MS,
      env: { ...env, PATH: `${binDir}${path.delimiter}${env.PATH}` },
    });
    const { binding, relative } = addonPaths(pkg);
    writeEntry(entry, { route: 'official' }, (staging) => {
      fs.mkdirSync(path.join(staging, 'addon', path.dirname(relative)), { recursive: true });
      fs.copyFileSync(binding, path.join(staging, 'addon', relative));
      moveDir(path.join(pkg, 'deps'), path.join(staging, 'deps'));
    });
  },

  /** The C library inside the tensorflow-cpu wheel. */
  wheel(pkg, entry) {
    const download = fs.mkdtempSync(path.join(os.tmpdir(), 'peft-tf-wheel-'));
    try {
      let wheel = env.PEFT_TF_WHEEL;
      if (!wheel) {
        log(`pip download tensorflow-cpu==${WHEEL_VERSION} (the C library inside it, ~275 MB)`);
        // PIP_RETRIES=0: an unreachable index fails over at once instead of retrying for seconds.
        run(
          'python3',
          [
            '-m',
            'pip',
            'download',
            `tensorflow-cpu==${WHEEL_VERSION}`,
            '--no-deps',
            '--only-binary=:all:',
            '--quiet',
            '--dest',
            download,
          ],
          { env: { PIP_RETRIES: '0', ...env } },
        );
        const file = fs.readdirSync(download).find((name) => name.endsWith('.whl'));
        if (!file) throw new Error('pip download produced no wheel');
        wheel = path.join(download, file);
      }
      writeEntry(entry, { route: 'wheel', wheel: path.basename(wheel) }, (staging) => {
        log(`extracting the C library and headers from ${path.basename(wheel)}`);
        run('python3', [path.join(scriptDir, 'extract-tf-wheel.py'), wheel, path.join(staging, 'deps')]);
        addLinkNames(path.join(staging, 'deps', 'lib'));
        buildAddon(pkg, path.join(staging, 'deps'), path.join(staging, 'addon'));
      });
    } finally {
      fs.rmSync(download, { recursive: true, force: true });
    }
  },
};

function routeOrder() {
  const requested = env.PEFT_TFJS_ROUTES?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const order = requested ?? [...(env.LIBTENSORFLOW_DIR ? ['dir'] : []), 'official', 'wheel'];
  for (const route of order) {
    if (!(route in ROUTES)) {
      throw new Error(`PEFT_TFJS_ROUTES: unknown route "${route}"; expected some of ${Object.keys(ROUTES).join(', ')}`);
    }
  }
  if (order.includes('dir') && !env.LIBTENSORFLOW_DIR) {
    throw new Error('PEFT_TFJS_ROUTES names "dir" but LIBTENSORFLOW_DIR is not set');
  }
  return order;
}

function routeKey(route) {
  if (route === 'wheel') return `wheel-tensorflow-cpu-${WHEEL_VERSION}`;
  if (route === 'dir') {
    return `dir-${createHash('sha256').update(path.resolve(env.LIBTENSORFLOW_DIR)).digest('hex').slice(0, 12)}`;
  }
  return route;
}

/** Makes one package load; returns null on success, else the reasons every route failed. */
function provision(pkg, order) {
  const failures = [];
  // First whatever a previous install already cached, in route order: no network, no build.
  for (const route of FORCE ? [] : order) {
    const entry = cacheEntry(pkg, routeKey(route));
    if (!isComplete(entry)) continue;
    installFromCache(pkg, entry);
    const check = checkLoads(pkg);
    if (check.ok) {
      log(`from cache (${route}): ${check.output}`);
      return null;
    }
    failures.push(`cached ${route} result at ${entry} does not load: ${check.output}`);
  }
  for (const route of order) {
    const entry = cacheEntry(pkg, routeKey(route));
    try {
      ROUTES[route](pkg, entry);
      installFromCache(pkg, entry);
      const check = checkLoads(pkg);
      if (check.ok) {
        log(`${route} route: ${check.output}`);
        return null;
      }
      fs.rmSync(entry, { recursive: true, force: true });
      failures.push(`${route}: built but does not load: ${check.output}`);
    } catch (error) {
      failures.push(`${route}: ${error.message}`);
    }
    log(`${route} route failed`);
  }
  return failures;
}

/** Where `peft-doctor` reads the last result for each tfjs-node folder. */
function recordStatus(pkg, result) {
  const file = path.join(CACHE_ROOT, 'status.json');
  let status = {};
  try {
    status = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    // first run, or an unreadable file that this one replaces
  }
  // By real path (pnpm's folders are links); a missing folder by its nearest existing parent's.
  let existing = pkg;
  while (!fs.existsSync(existing)) existing = path.dirname(existing);
  const key = path.join(fs.realpathSync(existing), path.relative(existing, pkg));
  status[key] = { time: new Date().toISOString(), ...result };
  fs.mkdirSync(CACHE_ROOT, { recursive: true });
  const staging = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(staging, `${JSON.stringify(status, null, 2)}\n`);
  fs.renameSync(staging, file);
}

function main() {
  if (env.PEFT_TFJS_SKIP === '1') {
    log('PEFT_TFJS_SKIP=1: not provisioning the native backend');
    return;
  }
  const target = targets(process.argv.slice(2));
  if (target === null) return;
  if (target.packages.length === 0) {
    log(`@tensorflow/tfjs-node is not installed in ${target.where}; nothing to do`);
    // As a dependency, its absence is worth a record for peft-doctor: yarn 1 removes it when its own
    // install script fails, before this script runs; `--omit=optional` skips it.
    if (process.argv.length === 2) {
      recordStatus(expectedDependencyPath(), {
        ok: false,
        failures: [
          "@tensorflow/tfjs-node was not installed when @peft/backend's install script ran (skipped as optional, or removed after its own install script failed)",
        ],
      });
    }
    return;
  }
  const order = routeOrder();
  for (const pkg of target.packages) {
    if (!FORCE) {
      const check = checkLoads(pkg);
      if (check.ok) {
        log(`ready: ${check.output}`);
        recordStatus(pkg, { ok: true, detail: check.output });
        continue;
      }
    }
    log(`provisioning ${pkg} (routes: ${order.join(' > ')}; cache ${CACHE_ROOT})`);
    const failures = provision(pkg, order);
    recordStatus(pkg, failures ? { ok: false, failures } : { ok: true, detail: checkLoads(pkg).output });
    if (failures) {
      const bar = '!'.repeat(100);
      console.log(
        `\n${bar}\n!! The native TensorFlow backend (tfjs-node) could NOT be set up. Training will run on the`,
      );
      console.log('!! slow wasm/cpu backends (10-100x slower), and every entry point will say so.');
      for (const failure of failures) console.log(`!!   - ${failure}`);
      console.log('!! Fix: install python3 with pip, make and g++ (or point LIBTENSORFLOW_DIR at a TensorFlow C');
      console.log('!! library: lib/ + include/), then run `npx peft-doctor`: it says the one command that');
      console.log('!! finishes the set-up for your package manager.');
      console.log(`${bar}\n`);
    }
  }
}

try {
  main();
} catch (error) {
  // A broken provisioning step must not break the install; it is reported like a failed route.
  console.log(`[ensure-tfjs-node] ERROR: ${error.message}; the native backend is not available`);
}
