import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The native backend's set-up as `peft-doctor` reports it: where tfjs-node is, what the last run
 * of the provisioning script (scripts/ensure-tfjs-node.mjs, @peft/backend's preinstall) found for
 * it, and the one command that finishes the set-up with the user's package manager.
 */

export type PackageManager = 'npm' | 'pnpm' | 'yarn';

export interface ProvisioningStatus {
  time: string;
  ok: boolean;
  /** What loaded, when ok. */
  detail?: string;
  /** Why each route failed, when not. */
  failures?: string[];
}

export interface NativeSetup {
  /** The tfjs-node folder @peft/backend loads, or null when none is installed. */
  tfjsNode: string | null;
  /**
   * The provisioning script's last result for that folder, or, when none is installed, for where
   * it was (null: it never ran there).
   */
  status: ProvisioningStatus | null;
  packageManager: PackageManager;
  /** Inside the @peft monorepo (this package is a workspace folder, not under node_modules). */
  workspace: boolean;
}

const here = path.dirname(fileURLToPath(import.meta.url));
/** Beside dist/ in the published package, beside src/ in the workspace. */
export const PROVISIONING_SCRIPT = path.join(here, '..', 'scripts', 'ensure-tfjs-node.mjs');

/** The same folder as the script's cache (PEFT_TFJS_CACHE, else the XDG cache). */
function cacheRoot(env: NodeJS.ProcessEnv): string {
  return path.resolve(
    env.PEFT_TFJS_CACHE ?? path.join(env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'peft', 'tfjs-node'),
  );
}

function locateTfjsNode(): string | null {
  try {
    return realpathSync(path.dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-node/package.json')));
  } catch {
    return null;
  }
}

/**
 * Where tfjs-node would resolve from this package: `@tensorflow/tfjs-node` in each node_modules
 * above it. npm removes an optional dependency whose install failed, and the record of that
 * failure is kept under the path it had.
 */
function tfjsNodeCandidates(): string[] {
  const candidates: string[] = [];
  for (let dir = here; path.dirname(dir) !== dir; dir = path.dirname(dir)) {
    if (path.basename(dir) === 'node_modules') candidates.push(path.join(dir, '@tensorflow', 'tfjs-node'));
  }
  return candidates;
}

function readStatus(tfjsNode: string | null, env: NodeJS.ProcessEnv): ProvisioningStatus | null {
  let all: Record<string, ProvisioningStatus>;
  try {
    all = JSON.parse(readFileSync(path.join(cacheRoot(env), 'status.json'), 'utf8')) as Record<
      string,
      ProvisioningStatus
    >;
  } catch {
    return null; // never ran with this cache
  }
  for (const candidate of tfjsNode === null ? tfjsNodeCandidates() : [tfjsNode]) {
    const status = all[candidate];
    if (status) return status;
  }
  return null;
}

/**
 * The package manager that runs this process (npm_config_user_agent, set by `npx`, `pnpm exec`,
 * `yarn`), else the one whose lockfile is nearest above `cwd`; npm when nothing says.
 */
export function detectPackageManager(cwd: string, userAgent: string | undefined): PackageManager {
  const fromAgent = /^(npm|pnpm|yarn)\//.exec(userAgent ?? '')?.[1];
  if (fromAgent) return fromAgent as PackageManager;
  const lockfiles: [string, PackageManager][] = [
    ['pnpm-lock.yaml', 'pnpm'],
    ['yarn.lock', 'yarn'],
    ['package-lock.json', 'npm'],
  ];
  for (let dir = path.resolve(cwd); ; dir = path.dirname(dir)) {
    for (const [file, manager] of lockfiles) {
      if (existsSync(path.join(dir, file))) return manager;
    }
    if (path.dirname(dir) === dir) return 'npm';
  }
}

export function inspectNativeSetup(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): NativeSetup {
  const tfjsNode = locateTfjsNode();
  return {
    tfjsNode,
    status: readStatus(tfjsNode, env),
    packageManager: detectPackageManager(cwd, env.npm_config_user_agent),
    workspace: !here.split(path.sep).includes('node_modules'),
  };
}

const RUN_BIN: Record<PackageManager, string> = { npm: 'npx', pnpm: 'pnpm exec', yarn: 'yarn' };
/**
 * A reinstall that runs @peft/backend's preinstall again and brings back an optional dependency.
 * None for yarn 1: it runs tfjs-node's own script first and removes tfjs-node when that fails,
 * before @peft/backend's script can set it up, every time.
 */
const REINSTALL: Record<PackageManager, string | null> = { npm: 'npm ci', pnpm: 'pnpm install --force', yarn: null };

/**
 * The one command that sets the native backend up, for this project's package manager, or null
 * when there is none. With tfjs-node installed, `peft-doctor --fix` runs the provisioning on it;
 * without it (npm removes an optional dependency whose install script failed), a reinstall brings
 * it back with the provisioning before its script.
 */
export function nativeFixCommand(setup: Pick<NativeSetup, 'tfjsNode' | 'packageManager' | 'workspace'>): string | null {
  if (setup.workspace) return 'pnpm peft:doctor --fix';
  if (setup.tfjsNode === null) return REINSTALL[setup.packageManager];
  return `${RUN_BIN[setup.packageManager]} peft-doctor --fix`;
}

/**
 * Runs the provisioning script on the installed tfjs-node (its output goes to this process's), so
 * that a process started afterwards loads the native backend. Throws when there is no tfjs-node to
 * provision; a failed provisioning is reported by the script and by the next doctor report.
 */
export function provisionNativeBackend(setup: NativeSetup): void {
  if (setup.tfjsNode === null) {
    throw new Error(
      `@tensorflow/tfjs-node is not installed next to @peft/backend (an optional dependency that was skipped or removed): ${fixAdvice(setup)}`,
    );
  }
  const result = spawnSync(process.execPath, [PROVISIONING_SCRIPT, '--package', setup.tfjsNode], { stdio: 'inherit' });
  if (result.error) throw new Error(`${PROVISIONING_SCRIPT}: ${result.error.message}`);
}

/** The fix as a sentence: the command to run, or why there is none. */
export function fixAdvice(setup: Pick<NativeSetup, 'tfjsNode' | 'packageManager' | 'workspace'>): string {
  const command = nativeFixCommand(setup);
  if (command !== null) return `run \`${command}\``;
  return "yarn 1 removes tfjs-node when its own install script fails, before @peft/backend's can set it up: install with npm or pnpm (see @peft/backend's README)";
}
