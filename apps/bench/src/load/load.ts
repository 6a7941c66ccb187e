// `pnpm bench load`: loading real-size checkpoints, ours beside transformers' from_pretrained, on
// this machine: the Qwen2.5-0.5B- and Qwen3-0.6B-shaped bf16 sharded checkpoints that
// oracle/make_real_size_checkpoints.py writes (random weights at the published configs). Each load
// in its own process, alternating sides; medians of the load time, peak RSS over the process before
// the load, and a logits probe that both sides must agree on. Written to load.json and load.md.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import os from 'node:os';

import { cpuDescription } from '@peft/backend';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { namedItemsFlag, prepareOutFolder, positiveIntegerFlag } from '../cli.js';
import { replaceFile } from '../files.js';
import { median } from '../perf/perf.js';

import type { LoadResult } from './worker.js';

const root = path.resolve(import.meta.dirname, '../../../..');
const PYTHON = path.join(root, 'oracle/.venv/bin/python');
const GENERATOR = 'oracle/make_real_size_checkpoints.py';

export const LOAD_MODELS = [
  { name: 'qwen2.5-0.5b', label: 'Qwen2.5-0.5B shape (qwen2, 494M parameters, tied)' },
  { name: 'qwen3-0.6b', label: 'Qwen3-0.6B shape (qwen3, 596M parameters, tied)' },
] as const;

export const loadUsage = `usage: pnpm bench load [options]
  --models a,b          default ${LOAD_MODELS.map((m) => m.name).join(',')}
  --reps N              loads per side and model, alternating (default 3)
  --dir DIR             the checkpoints (default ~/.cache/peft/real-size; made there by
                        ${GENERATOR} when absent)
  --no-python           our side only
  --out DIR             default bench-results/load`;

function runJson(command: string, args: string[]): LoadResult {
  const result = spawnSync(command, args, {
    encoding: 'utf8',
    env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '3' },
    maxBuffer: 1 << 26,
  });
  const line = result.stdout?.trim().split('\n').at(-1) ?? '';
  if (result.status !== 0 || !line.startsWith('{')) {
    const why =
      (result.stderr ?? '').trim().split('\n').filter(Boolean).slice(-3).join(' | ') || `exit ${result.status}`;
    throw new Error(`${path.basename(args[0]!)}: ${why}`);
  }
  return JSON.parse(line) as LoadResult;
}

/** Bytes of the safetensors files in `directory`, and the fp32 size of its weights. */
function checkpointSize(directory: string, parameters: number): { files: number; fp32: number } {
  const files = readdirSync(directory)
    .filter((name) => name.endsWith('.safetensors'))
    .reduce((n, name) => n + statSync(path.join(directory, name)).size, 0);
  return { files, fp32: parameters * 4 };
}

function ensureCheckpoints(directory: string, names: readonly string[]): void {
  const missing = names.filter((name) => !existsSync(path.join(directory, name, 'config.json')));
  if (missing.length === 0) return;
  if (!existsSync(PYTHON)) {
    throw new Error(
      `${missing.map((m) => path.join(directory, m)).join(', ')}: not there, and the oracle's Python is absent to make them ` +
        `(python3 -m venv oracle/.venv && oracle/.venv/bin/pip install -r oracle/requirements.txt, then ` +
        `oracle/.venv/bin/python ${GENERATOR} ${directory})`,
    );
  }
  console.log(`making ${missing.join(', ')} in ${directory} (${GENERATOR}; about 30 s each)`);
  const made = spawnSync(PYTHON, [path.join(root, GENERATOR), directory, '--models', missing.join(',')], {
    stdio: 'inherit',
  });
  if (made.status !== 0) throw new Error(`${GENERATOR} failed (exit ${made.status})`);
}

const fmt = (value: number | undefined, digits: number): string => (value === undefined ? '-' : value.toFixed(digits));

export async function runLoad(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      models: { type: 'string', default: LOAD_MODELS.map((m) => m.name).join(',') },
      reps: { type: 'string', default: '3' },
      dir: { type: 'string', default: path.join(os.homedir(), '.cache', 'peft', 'real-size') },
      'no-python': { type: 'boolean', default: false },
      out: { type: 'string', default: path.join('bench-results', 'load') },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(loadUsage);
    return 0;
  }
  const models = namedItemsFlag('models', values.models!, LOAD_MODELS);
  const reps = positiveIntegerFlag('reps', values.reps!);
  const directory = path.resolve(values.dir!);
  const withPython = !values['no-python'] && existsSync(PYTHON);
  const out = path.resolve(values.out!);
  prepareOutFolder('--out', out);
  ensureCheckpoints(
    directory,
    models.map((m) => m.name),
  );
  const results: Record<string, { ours: LoadResult[]; python: LoadResult[] }> = {};
  for (const model of models) {
    const folder = path.join(directory, model.name);
    const measured = { ours: [] as LoadResult[], python: [] as LoadResult[] };
    results[model.name] = measured;
    for (let rep = 0; rep < reps; rep++) {
      // alternate who goes first: the page cache and the machine's state favour neither side
      const order: ('ours' | 'python')[] = rep % 2 === 0 ? ['ours', 'python'] : ['python', 'ours'];
      for (const side of order) {
        if (side === 'python' && !withPython) continue;
        const result =
          side === 'ours'
            ? runJson(path.join(root, 'node_modules/.bin/tsx'), [path.join(import.meta.dirname, 'worker.ts'), folder])
            : runJson(PYTHON, [path.join(root, 'oracle/bench_load.py'), folder]);
        measured[side].push(result);
        console.log(
          `${model.name} ${side} #${rep + 1}: ${result.load_seconds.toFixed(2)} s, peak RSS ${result.peak_rss_mb.toFixed(0)} MB ` +
            `(${result.rss_before_mb.toFixed(0)} before)`,
        );
      }
    }
  }
  const report = loadReport(results, directory, withPython);
  replaceFile(path.join(out, 'load.md'), report);
  replaceFile(
    path.join(out, 'load.json'),
    JSON.stringify({ cpu: cpuDescription(), cpus: os.availableParallelism(), results }, null, 2),
  );
  console.log(`\n${report}\nreports in ${out}`);
  return 0;
}

function loadReport(
  results: Record<string, { ours: LoadResult[]; python: LoadResult[] }>,
  directory: string,
  withPython: boolean,
): string {
  const lines: string[] = ['# Loading real-size checkpoints, beside transformers\n'];
  lines.push(
    `${os.availableParallelism()} CPUs (${cpuDescription()}). Checkpoints in ${directory}: bf16, ` +
      `sharded, random weights at the published configs (${GENERATOR}). Both sides load into float32 ` +
      '(transformers: `from_pretrained(dir, dtype=torch.float32)`); each load in its own process, sides alternating; medians. ' +
      '"Peak over before" is the peak RSS of the process less its RSS just before the load; "after forward" the RSS after ' +
      `one forward pass of 8 tokens (what a load leaves to be copied or collected shows there).${withPython ? '' : ' **Python not run: our side alone.**'}\n`,
  );
  const header = [
    'model',
    'fp32 weights MB',
    'files MB',
    'ours load s',
    'transformers load s',
    'time ours / transformers',
    'ours peak over before MB (x fp32)',
    'transformers peak over before MB (x fp32)',
    'ours after forward MB',
    'transformers after forward MB',
    'probe logits max |diff|',
  ];
  lines.push(`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`);
  for (const [name, { ours, python }] of Object.entries(results)) {
    const med = (list: LoadResult[], key: 'load_seconds' | 'peak_rss_mb' | 'rss_after_forward_mb' | 'rss_before_mb') =>
      list.length ? median(list.map((r) => r[key])) : undefined;
    const parameters = ours[0]?.parameters ?? python[0]?.parameters ?? 0;
    const size = checkpointSize(path.join(directory, name), parameters);
    const fp32 = size.fp32 / 2 ** 20;
    const over = (list: LoadResult[]) =>
      list.length ? median(list.map((r) => r.peak_rss_mb - r.rss_before_mb)) : undefined;
    const oursOver = over(ours);
    const pythonOver = over(python);
    const oursTime = med(ours, 'load_seconds');
    const pythonTime = med(python, 'load_seconds');
    const diff =
      ours[0] && python[0] ? Math.max(...ours[0].logits.map((v, i) => Math.abs(v - python[0]!.logits[i]!))) : undefined;
    lines.push(
      `| ${[
        name,
        fmt(fp32, 0),
        fmt(size.files / 2 ** 20, 0),
        fmt(oursTime, 2),
        fmt(pythonTime, 2),
        oursTime !== undefined && pythonTime !== undefined ? `${(oursTime / pythonTime).toFixed(2)}x` : '-',
        oursOver === undefined ? '-' : `${oursOver.toFixed(0)} (${(oursOver / fp32).toFixed(2)}x)`,
        pythonOver === undefined ? '-' : `${pythonOver.toFixed(0)} (${(pythonOver / fp32).toFixed(2)}x)`,
        fmt(med(ours, 'rss_after_forward_mb'), 0),
        fmt(med(python, 'rss_after_forward_mb'), 0),
        diff === undefined ? '-' : diff.toExponential(1),
      ].join(' | ')} |`,
    );
  }
  const runtimes = [...new Set(Object.values(results).flatMap((r) => [...r.ours, ...r.python].map((x) => x.runtime)))];
  lines.push(`\nRuntimes: ${runtimes.join('; ')}.`);
  return `${lines.join('\n')}\n`;
}
