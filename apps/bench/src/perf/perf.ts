// `pnpm bench perf`: speed and memory beside Python peft + torch, side by side on this machine.
// Same shapes, random weights, thread count; every workload in its own process (ours, then theirs,
// then theirs first on the next repetition), medians; ratios printed and written to perf.json and
// perf.md. Without the oracle's Python our side runs alone, and the report says so.
import { existsSync } from 'node:fs';
import os from 'node:os';

import { cpuDescription } from '@peft/backend';
import path from 'node:path';

import {
  DEFAULT_PERF_MODELS,
  PERF_METHODS,
  PERF_MODELS,
  PERF_VIRTUAL_TOKENS,
  dropoutFields,
  forwardMatmuls,
  matmulCeiling,
  perfConfig,
  trainingFlops,
  type PerfMethod,
  type PerfModel,
} from './workloads.js';
import { namedItemsFlag, prepareOutFolder, parsePerfArgs, perfUsage, positiveIntegerFlag, rateFlag } from '../cli.js';
import { replaceFile } from '../files.js';
import { jsonLineProcess } from '../processes.js';

import type { WorkerRequest, WorkerResult } from './worker.js';

const root = path.resolve(import.meta.dirname, '../../../..');

type Side = 'ours' | 'python';

const CEILING_REPETITIONS = 10;

interface Measured {
  ours: WorkerResult[];
  python: WorkerResult[];
}

interface Row {
  model: string;
  method: string;
  label: string;
  kind: 'train' | 'infer' | 'ceiling' | 'public';
  ours: WorkerResult | null;
  python: WorkerResult | null;
  /** Python's missing side, or a failure, in words. */
  note?: string;
}

const machine = (): Record<string, unknown> => ({
  cpus: os.availableParallelism(),
  cpu: cpuDescription(),
  memoryGb: os.totalmem() / 2 ** 30,
  node: process.version,
});

/** The middle value; for an even count the mean of the two middle ones. */
export const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};

/**
 * Per field, the median over repetitions (numbers) or the first value (text). Tokens/s is derived
 * from the median step time, so that the throughput and the achieved FLOP/s of a row describe the
 * same step (two separate medians of an even count came from different repetitions).
 */
export function medianResult(results: readonly WorkerResult[]): WorkerResult | null {
  if (results.length === 0) return null;
  const merged: WorkerResult = { ...results[0]! };
  for (const key of Object.keys(merged)) {
    const values = results.map((r) => r[key]);
    if (values.every((v) => typeof v === 'number')) merged[key] = median(values as number[]);
    else if (values.every(Array.isArray))
      merged[key] = (values[0] as number[]).map((_, i) => median(values.map((v) => (v as number[])[i]!)));
  }
  const first = results[0]!;
  if (first.step_seconds && first.tokens_per_second && merged.step_seconds) {
    merged.tokens_per_second = (first.tokens_per_second * first.step_seconds) / merged.step_seconds;
  }
  return merged;
}

/** The oracle's virtual environment of each Python library: AdapterHub's `adapters` pins its own transformers. */
const VENVS: Record<PerfMethod['counterpart'], string> = { peft: 'oracle/.venv', adapters: 'oracle/.venv-adapters' };

function pythonFor(counterpart: PerfMethod['counterpart']): string | null {
  const interpreter = path.join(root, VENVS[counterpart], 'bin/python');
  return existsSync(interpreter) ? interpreter : null;
}

/** The method a row measured (none for the matmul ceiling). */
const methodOf = (row: Row): PerfMethod | undefined => PERF_METHODS.find((m) => m.name === row.method);

/** One workload's process: its result, or an error with the end of its stderr. */
function runProcess(command: string, args: string[]): Promise<WorkerResult> {
  return jsonLineProcess<WorkerResult>(
    command,
    args,
    { TF_CPP_MIN_LOG_LEVEL: '3' },
    (status, lines) => new Error(lines.slice(-2).join(' | ') || `exit ${status}`),
  );
}

function runSide(
  side: Side,
  request: WorkerRequest,
  model: PerfModel,
  counterpart: PerfMethod['counterpart'],
  shapes: string,
): Promise<WorkerResult> {
  if (side === 'ours') {
    return runProcess(path.join(root, 'node_modules/.bin/tsx'), [
      '--expose-gc', // the worker collects the random weights' arrays before it measures
      path.join(import.meta.dirname, 'worker.ts'),
      JSON.stringify(request),
    ]);
  }
  const python = pythonFor(counterpart)!;
  return runProcess(python, [
    path.join(root, 'oracle/bench_perf.py'),
    '--config',
    JSON.stringify(perfConfig(model, request.dropout ?? 0)),
    '--method',
    request.method,
    '--mode',
    request.mode,
    '--lora-targets',
    model.loraTargets.join(','),
    '--virtual',
    String(PERF_VIRTUAL_TOKENS),
    '--batch',
    String(request.batch),
    ...(request.checkpointing ? ['--gradient-checkpointing'] : []),
    '--sequence',
    String(request.sequence),
    '--warmup',
    String(request.warmup),
    '--steps',
    String(request.steps),
    '--rounds',
    String(request.rounds),
    '--new-tokens',
    String(request.newTokens),
    '--shapes',
    shapes,
    '--threads',
    String(os.availableParallelism()),
  ]);
}

const fmt = (value: number | undefined | null, digits = 1): string =>
  value === undefined || value === null || !Number.isFinite(value) ? '-' : value.toFixed(digits);
const ratio = (a: number | undefined, b: number | undefined): string => (a && b ? `${(a / b).toFixed(2)}x` : '-');
const overhead = (adapted: number | undefined, base: number | undefined): string =>
  adapted && base ? `${adapted >= base ? '+' : ''}${((100 * (adapted - base)) / base).toFixed(1)}%` : '-';

function table(header: string[], rows: string[][]): string {
  return [
    `| ${header.join(' | ')} |`,
    `|${header.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
}

interface ReportMeta {
  batch: number;
  sequence: number;
  /** Why Python did not run, or null when it did. */
  pythonAbsent: string | null;
  runtimes: string[];
  /** Training with gradient checkpointing on both sides. */
  checkpointing?: boolean;
  /** Every dropout rate of the models, on both sides. */
  dropout: number;
}

/** What the report says of dropout: the config fields both sides set, and to what. */
function dropoutNote(rate: number): string {
  const fields = [...new Set(PERF_MODELS.flatMap((model) => dropoutFields(model)))].join(', ');
  return rate === 0
    ? `dropout off on both sides (${fields} = 0 in the configs both build)`
    : `dropout ${rate} on both sides (${fields} = ${rate} in the configs both build; ours draws other masks than torch)`;
}

export function perfReport(rows: readonly Row[], meta: ReportMeta): string {
  const out: string[] = [];
  const { sequence } = meta;
  out.push(`# @peft speed and memory beside Python peft + torch\n`);
  out.push(
    `${os.availableParallelism()} CPUs (${cpuDescription()}), both runtimes on ${os.availableParallelism()} threads; random weights; ` +
      `training batch ${meta.batch} x ${sequence} tokens unless a model says otherwise, AdamW, gradient clipping 1.0${meta.checkpointing ? ', gradient checkpointing on both sides (each layer recomputed in the backward pass)' : ''}, ${dropoutNote(meta.dropout)}; inference batch 1 x ${sequence}, decoding after a ${sequence}-token prompt. ` +
      `Runtimes: ${meta.runtimes.join('; ')}.${meta.pythonAbsent ? ` **${meta.pythonAbsent}: our side alone.**` : ''}` +
      // glibc.malloc.hugetlb changes both runtimes' steps with tensors over 32 MB (full fine-tuning)
      `${process.env.GLIBC_TUNABLES ? ` Both sides ran with GLIBC_TUNABLES=${process.env.GLIBC_TUNABLES}.` : ''}\n`,
  );
  for (const model of PERF_MODELS) {
    const mine = rows.filter((r) => r.model === model.name);
    if (mine.length === 0) continue;
    const batch = model.batch ?? meta.batch;
    out.push(`## ${model.label}\n`);
    if (model.batch !== undefined) out.push(`Training batch ${batch} x ${sequence} tokens.\n`);
    const ceilingRow = mine.find((r) => r.kind === 'ceiling');
    const shapes = forwardMatmuls(model, batch * sequence);
    const oursSeconds = ceilingRow?.ours?.matmul_seconds;
    const pythonSeconds = ceilingRow?.python?.matmul_seconds;
    // the machine's ceiling: per product, the faster of the two runtimes
    const best = oursSeconds ? oursSeconds.map((t, i) => Math.min(t, pythonSeconds?.[i] ?? Infinity)) : pythonSeconds;
    const ceiling = best ? matmulCeiling(shapes, best) : undefined;
    const ceilingOurs = oursSeconds ? matmulCeiling(shapes, oursSeconds) : undefined;
    const ceilingPython = pythonSeconds ? matmulCeiling(shapes, pythonSeconds) : undefined;
    out.push(
      `Matmul ceiling at the workload's shapes (${shapes.map((s) => `${s.shape.join('x')} x${s.count}`).join(', ')}; ` +
        `fastest of ${CEILING_REPETITIONS} repetitions, each product the faster runtime's): **${fmt(ceiling && ceiling / 1e9)} GFLOPS** ` +
        `(tfjs alone ${fmt(ceilingOurs && ceilingOurs / 1e9)}, torch alone ${fmt(ceilingPython && ceilingPython / 1e9)}).\n`,
    );
    const training = mine.filter((r) => r.kind === 'train');
    out.push(
      table(
        [
          'training',
          'trainable',
          'ours tok/s',
          'peft tok/s',
          'ratio',
          'ours GFLOP/s (share of the ceiling)',
          'torch GFLOP/s (share)',
          'ours peak RSS MB',
          'peft peak RSS MB',
        ],
        training.map((r) => {
          const method = methodOf(r)!;
          const flops = trainingFlops(model, method, batch, sequence, PERF_VIRTUAL_TOKENS);
          const achieved = (w: WorkerResult | null, c: number | undefined): string => {
            if (!w?.step_seconds) return '-';
            const perSecond = flops / w.step_seconds;
            return `${fmt(perSecond / 1e9)}${c ? ` (${((100 * perSecond) / c).toFixed(0)}%)` : ''}`;
          };
          return [
            r.label + (r.note ? ` (${r.note})` : ''),
            r.ours?.trainable?.toLocaleString('en-US') ?? '-',
            fmt(r.ours?.tokens_per_second),
            fmt(r.python?.tokens_per_second),
            ratio(r.ours?.tokens_per_second, r.python?.tokens_per_second),
            achieved(r.ours, ceiling),
            achieved(r.python, ceiling),
            fmt(r.ours?.peak_rss_mb, 0),
            fmt(r.python?.peak_rss_mb, 0),
          ];
        }),
      ),
    );
    const check = mine.find((r) => r.kind === 'public');
    const worker = training.find((r) => r.method === 'lora');
    if (check?.ours?.tokens_per_second && worker?.ours?.tokens_per_second) {
      out.push(
        `\nIndependent check: LoRA trained as the README does (getPeftModel + \`train\` with its defaults: linear ` +
          `schedule, length bucketing, clipping 1.0; wall clock around the call) ran at ${fmt(check.ours.tokens_per_second)} tok/s, ` +
          `the worker's LoRA row ${fmt(worker.ours.tokens_per_second)} (${ratio(check.ours.tokens_per_second, worker.ours.tokens_per_second)}).`,
      );
    }
    const full = training.find((r) => methodOf(r)?.full);
    if (full?.ours) {
      const shares = training
        .filter((r) => r !== full && r.ours)
        .map((r) => `${r.method} ${((100 * r.ours!.peak_rss_mb) / full.ours!.peak_rss_mb).toFixed(0)}%`);
      if (shares.length > 0) out.push(`\nPeak RSS as a share of full fine-tuning (ours): ${shares.join(', ')}.`);
    }
    const inference = mine.filter((r) => r.kind === 'infer');
    if (inference.length > 0) {
      out.push('');
      const cells = (w: WorkerResult | null, variant: string, what: 'forward' | 'decode'): number | undefined =>
        w?.[`${variant}_${what}_ms`] as number | undefined;
      const lines: string[][] = [];
      const first = inference.find((r) => r.ours) ?? inference[0]!;
      lines.push([
        'base model',
        fmt(cells(first.ours, 'base', 'forward')),
        fmt(cells(first.python, 'base', 'forward')),
        ratio(cells(first.python, 'base', 'forward'), cells(first.ours, 'base', 'forward')),
        '',
        fmt(cells(first.ours, 'base', 'decode'), 2),
        fmt(cells(first.python, 'base', 'decode'), 2),
        ratio(cells(first.python, 'base', 'decode'), cells(first.ours, 'base', 'decode')),
        '',
      ]);
      for (const r of inference) {
        const mergeable = methodOf(r)?.mergeable ?? false;
        for (const variant of mergeable ? ['adapted', 'merged'] : ['adapted']) {
          const f = (w: WorkerResult | null): number | undefined => cells(w, variant, 'forward');
          const d = (w: WorkerResult | null): number | undefined => cells(w, variant, 'decode');
          lines.push([
            `${r.label}${variant === 'merged' ? ', merged' : mergeable ? ', unmerged' : ''}${r.note ? ` (${r.note})` : ''}`,
            fmt(f(r.ours)),
            fmt(f(r.python)),
            ratio(f(r.python), f(r.ours)),
            `${overhead(f(r.ours), cells(r.ours, 'base', 'forward'))} / ${overhead(f(r.python), cells(r.python, 'base', 'forward'))}`,
            fmt(d(r.ours), 2),
            fmt(d(r.python), 2),
            ratio(d(r.python), d(r.ours)),
            `${overhead(d(r.ours), cells(r.ours, 'base', 'decode'))} / ${overhead(d(r.python), cells(r.python, 'base', 'decode'))}`,
          ]);
        }
      }
      out.push(
        table(
          [
            'inference',
            'ours forward ms',
            'peft forward ms',
            'speed ratio',
            'overhead vs base (ours / peft)',
            'ours ms/token',
            'peft ms/token',
            'speed ratio',
            'overhead (ours / peft)',
          ],
          lines,
        ),
      );
    }
    out.push('');
  }
  out.push(
    `Ratios: training is our tokens/s over peft's; inference is peft's time over ours (above 1: we are faster). ` +
      `Achieved GFLOP/s counts the matmul work of a step (forward; backward input gradients; weight gradients for full fine-tuning), the same count for both runtimes. ` +
      `Each workload ran in its own process, so each peak RSS is its own.`,
  );
  return out.join('\n');
}

export async function runPerf(argv: string[]): Promise<number> {
  const values = parsePerfArgs(argv);
  if (values.help) {
    console.log(perfUsage);
    return 0;
  }
  const quick = values.quick!;
  const models = namedItemsFlag(
    'models',
    values.models ?? (quick ? 'gpt2' : DEFAULT_PERF_MODELS.join(',')),
    PERF_MODELS,
  );
  const methods: PerfMethod[] = namedItemsFlag('methods', values.methods!, PERF_METHODS);
  const reps = quick ? 1 : positiveIntegerFlag('reps', values.reps!);
  const kinds = namedItemsFlag('kinds', values.kinds!, [{ name: 'train' }, { name: 'infer' }]).map((k) => k.name);
  const base: WorkerRequest = {
    model: '',
    method: 'base',
    mode: 'train',
    batch: 4,
    sequence: 128,
    warmup: quick ? 2 : positiveIntegerFlag('warmup', values.warmup!),
    steps: quick ? 2 : positiveIntegerFlag('steps', values.steps!),
    rounds: quick ? 2 : positiveIntegerFlag('rounds', values.rounds!),
    newTokens: 16,
    backend: 'tensorflow',
    checkpointing: values['gradient-checkpointing'] === true,
    dropout: rateFlag('dropout', values.dropout!),
  };
  const pythonAbsent = values['no-python']
    ? 'Python not run (--no-python)'
    : pythonFor('peft') === null
      ? 'Python peft not found (oracle/.venv, see oracle/requirements.txt)'
      : null;
  const withPython = pythonAbsent === null;
  const out = path.resolve(values.out!);
  prepareOutFolder('--out', out);
  const rows: Row[] = [];
  const runtimes = new Set<string>();
  const meta = (): ReportMeta => ({
    batch: base.batch,
    sequence: base.sequence,
    checkpointing: base.checkpointing === true,
    dropout: base.dropout ?? 0,
    pythonAbsent,
    runtimes: [...runtimes],
  });
  let report = '';
  const started = performance.now();
  const jobs: { model: PerfModel; method: PerfMethod | null; kind: Row['kind'] }[] = [];
  for (const model of models) {
    jobs.push({ model, method: null, kind: 'ceiling' });
    if (kinds.includes('train')) for (const method of methods) jobs.push({ model, method, kind: 'train' });
    // the independent check of the worker's LoRA figure: ours only, through the public API
    const lora = methods.find((m) => m.name === 'lora');
    if (kinds.includes('train') && lora) jobs.push({ model, method: lora, kind: 'public' });
    if (kinds.includes('infer'))
      for (const method of methods) if (!method.full) jobs.push({ model, method, kind: 'infer' });
  }
  for (const [index, job] of jobs.entries()) {
    const label = job.method?.label ?? 'matmul ceiling';
    const request: WorkerRequest = {
      ...base,
      model: job.model.name,
      method: job.method?.name ?? 'base',
      mode: job.kind,
      batch: job.model.batch ?? base.batch,
    };
    // each product alone is quick: more repetitions, the first ones (allocation, caches) left out
    if (job.kind === 'ceiling') Object.assign(request, { warmup: 3, steps: CEILING_REPETITIONS });
    const shapes = forwardMatmuls(job.model, (job.model.batch ?? base.batch) * base.sequence)
      .map((s) => s.shape.join(','))
      .join(';');
    const counterpart = job.method?.counterpart ?? 'peft';
    const python = withPython && pythonFor(counterpart) !== null && job.kind !== 'public';
    const measured: Measured = { ours: [], python: [] };
    const notes: string[] = [];
    if (withPython && !python && job.kind !== 'public') notes.push(`Python counterpart absent: ${VENVS[counterpart]}`);
    const repetitions = job.kind === 'train' || job.kind === 'public' ? reps : 1;
    for (let rep = 0; rep < repetitions; rep++) {
      const order: Side[] = python ? (rep % 2 === 0 ? ['ours', 'python'] : ['python', 'ours']) : ['ours'];
      for (const side of order) {
        const elapsed = ((performance.now() - started) / 60000).toFixed(1);
        process.stdout.write(
          `[${index + 1}/${jobs.length}, ${elapsed} min] ${job.model.name} ${job.kind} ${label}: ${side === 'ours' ? '@peft' : 'peft'} (${rep + 1}/${repetitions})\n`,
        );
        try {
          const result = await runSide(side, request, job.model, counterpart, shapes);
          runtimes.add(`${side === 'ours' ? '@peft' : 'Python'}: ${result.runtime}`);
          measured[side].push(result);
        } catch (error) {
          notes.push(`${side === 'ours' ? '@peft' : 'peft'} failed: ${(error as Error).message}`);
          process.stdout.write(`  failed: ${(error as Error).message}\n`);
        }
      }
    }
    rows.push({
      model: job.model.name,
      method: request.method,
      label,
      kind: job.kind,
      ours: medianResult(measured.ours),
      python: medianResult(measured.python),
      ...(notes.length ? { note: [...new Set(notes)].join('; ') } : {}),
    });
    replaceFile(
      path.join(out, 'perf.json'),
      `${JSON.stringify({ schema: 'peft-perf/1', complete: index === jobs.length - 1, machine: machine(), ...meta(), rows }, null, 2)}\n`,
    );
    report = perfReport(rows, meta());
    replaceFile(path.join(out, 'perf.md'), `${report}\n`);
  }
  console.log(`\n${report}`);
  console.log(`\n${((performance.now() - started) / 60000).toFixed(1)} minutes; perf.json and perf.md in ${out}`);
  return rows.some((r) => r.note?.includes('@peft failed')) ? 1 : 0;
}
