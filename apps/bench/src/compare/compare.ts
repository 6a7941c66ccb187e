// `pnpm bench compare`: the bench's methods trained here and in Python (peft; AdapterHub's `adapters`
// for the bottleneck adapters) with the same everything but the implementation, reported side by
// side. Python gets, in files: the base model as our loader holds it (its new head included), the
// tokenised splits, each run's method config and trainable weights as they start, the examples of every
// optimizer step in order, and the optimizer, schedule, clipping and learning rate of the run.
// Dropout runs on both sides as the model's config says, each with its own random numbers: with the
// same start and the same batches, that and float rounding are what is left to differ.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import path from 'node:path';

import { cpuDescription, selectBackend } from '@peft/backend';
import {
  arrayDataset,
  batchExamples,
  countParameters,
  epochBatching,
  serializeSafetensors,
  train,
  type Example,
  type TrainableModel,
} from '@peft/core';
import { loadPretrained, savePretrained } from '@peft/models';
import * as tf from '@tensorflow/tfjs-core';

import { benchPlan, parseBenchArgs, prepareOutFolder } from '../cli.js';
import { replaceFile } from '../files.js';
import { jsonLineProcess } from '../processes.js';
import { METHODS, isPeftModel, ptuningV2, type MethodSpec } from '../methods.js';
import { modelSetup, runTrainOptions, testMetric, type ModelSetup } from '../run.js';
import { taskFor } from '../tasks/task-for.js';
import type { TaskSplits } from '../tasks/tasks.js';

export const compareUsage = `usage: pnpm bench compare [options]   the bench's methods here and in Python peft / AdapterHub
  Same model, splits, tokenisation, initial weights, batches in order, optimizer (AdamW, weight decay
  0.01), schedule (linear, 6% warm-up), clipping (1.0), learning rate, steps and dropout on both sides.
  Needs the oracle's virtual environments (oracle/requirements.txt; AdapterHub: oracle/.venv-adapters).
  --model DIR|minilm   as pnpm bench (default brown-gpt)
  --task spam|pos|genre
  --methods a,b,...    default all
  --seeds N            default 3
  --budget N           optimizer steps per run (default 100; a time budget would differ by side)
  --batch N, --limit N, --max-length N, --lr method=rate,...   as pnpm bench
  --no-dropout         dropout off on both sides (then only rounding differs)
  --quick              a few steps, one seed, small data
  --out DIR            default bench-results/compare/<model>/<task>
  --fresh              run the methods asked for again, and start over where --out holds a comparison
                       of other settings (by default the methods a compare.json in --out holds
                       finished, from a run of the same settings, are kept and not run again, and
                       so are the seeds finished on either side of a method that stopped part-way)`;

/** Which Python library trains a method, and how its trainable weights are chosen there. */
type Kind = 'peft' | 'adapters' | 'full' | 'head-only' | 'frozen';

const KINDS: Readonly<Record<string, Kind>> = {
  lora: 'peft',
  prefix: 'peft',
  prompt: 'peft',
  'ptuning-v1': 'peft',
  'ptuning-v2': 'peft',
  houlsby: 'adapters',
  pfeiffer: 'adapters',
  full: 'full',
  'head-only': 'head-only',
  frozen: 'frozen',
};

/** The oracle's virtual environment of each library: AdapterHub's `adapters` pins its own transformers. */
const VENVS: Readonly<Record<'peft' | 'adapters', string>> = {
  peft: '.venv',
  adapters: '.venv-adapters',
};

/**
 * Where the comparison's methods are not the bench's (the same on both sides), by method: what runs
 * instead, and why. P-tuning v2's dropout on the prefix has no counterpart in peft, whose P-tuning v2
 * is prefix tuning without the reparameterisation.
 */
const ADJUSTMENTS: Readonly<Record<string, { make: MethodSpec['make']; note: string }>> = {
  'ptuning-v2': {
    make: ptuningV2(0),
    note: "P-tuning v2 without its prefix dropout (the bench's 0.1): peft's prefix tuning has none",
  },
};

/** The repository's oracle folder: bench_compare.py and the virtual environments. */
const ORACLE = path.resolve(import.meta.dirname, '../../../../oracle');

function interpreter(oracle: string, kind: 'peft' | 'adapters'): string {
  return path.join(oracle, VENVS[kind], 'bin/python');
}

/** The examples of each of `steps` optimizer steps of a run with `seed`, by their index in `train`. */
export async function stepBatches(
  train: readonly Example[],
  batchSize: number,
  seed: number,
  steps: number,
): Promise<number[][]> {
  const index = new Map<Example, number>(train.map((example, i) => [example, i]));
  const batches: number[][] = [];
  for (let epoch = 0; batches.length < steps; epoch++) {
    for await (const batch of batchExamples(
      arrayDataset(train),
      epochBatching({ batchSize, seed, bucketByLength: true }, epoch),
    )) {
      batches.push(batch.map((example) => index.get(example)!));
      if (batches.length === steps) break;
    }
  }
  return batches;
}

/** One run's figures, either side. */
export interface SideRun {
  seed: number;
  metric: number;
  f1?: number | null;
  trainable: number;
  seconds: number;
  tokens: number;
  tokensPerSecond: number | null;
  losses: number[];
}

export interface ComparedMethod {
  method: string;
  label: string;
  kind: Kind;
  ours: SideRun[];
  theirs: SideRun[];
  /** What ran on the Python side (library and version), or why it did not. */
  theirLibrary: string;
  error?: string;
  /** The CPU both sides of this method ran on (cpuDescription), and when the method finished. */
  machine?: string;
  finishedAt?: string;
}

export interface CompareResults {
  schema: 'peft-bench-compare/1';
  createdAt: string;
  complete: boolean;
  machine: { cpu: string; cpus: number; backend: string; node: string };
  model: string;
  /** `maxLength`: tokens per example at most (the rest cut). */
  task: { name: string; task: string; train: number; test: number; metric: string; maxLength: number };
  budget: { steps: number; batchSize: number; seeds: number; learningRates: Record<string, number>; dropout: boolean };
  adjustments: readonly string[];
  methods: ComparedMethod[];
}

/** The Python side of one method: its result, or an error naming it with the end of its stderr. */
function runPython(
  oracle: string,
  python: string,
  exportDir: string,
  method: string,
): Promise<{ library: string; runs: SideRun[] }> {
  return jsonLineProcess(
    python,
    [path.join(oracle, 'bench_compare.py'), exportDir, method],
    { TOKENIZERS_PARALLELISM: 'false' },
    (status, lines) =>
      new Error(`${path.basename(python)} bench_compare.py ${method}: exit ${status}: ${lines.slice(-3).join(' | ')}`),
  );
}

const meanStd = (values: readonly number[]): [number, number] => {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const variance = values.length > 1 ? values.reduce((a, b) => a + (b - mean) ** 2, 0) / (values.length - 1) : 0;
  return [mean, Math.sqrt(variance)];
};

const fmt = (runs: readonly SideRun[], pick: (run: SideRun) => number | null | undefined, digits = 3): string => {
  const values = runs.map(pick).filter((v): v is number => typeof v === 'number');
  if (values.length === 0) return '-';
  const [mean, std] = meanStd(values);
  return values.length > 1 ? `${mean.toFixed(digits)} ± ${std.toFixed(digits)}` : mean.toFixed(digits);
};

/**
 * Whether two sides' metrics differ by more than their seeds' spread: the means further apart than
 * twice the larger standard deviation (with one seed: any difference above 0.01).
 */
export function differs(ours: readonly number[], theirs: readonly number[]): boolean {
  if (ours.length === 0 || theirs.length === 0) return false;
  const [a, sa] = meanStd(ours);
  const [b, sb] = meanStd(theirs);
  const spread = ours.length > 1 && theirs.length > 1 ? 2 * Math.max(sa, sb) : 0.01;
  return Math.abs(a - b) > Math.max(spread, 1e-9);
}

export function compareTable(results: CompareResults): string {
  const lines = [
    `| method | ours (${results.task.metric}) | peft / AdapterHub | differ? | first loss ours / theirs | trainable ours / theirs | tokens/s ours / theirs (ratio) |`,
    '|---|---|---|---|---|---|---|',
  ];
  for (const m of results.methods) {
    const metric = (run: SideRun) => run.metric;
    const ours = m.ours.map(metric);
    const theirs = m.theirs.map(metric);
    const speed = (runs: SideRun[]) => {
      const values = runs.map((r) => r.tokensPerSecond).filter((v): v is number => typeof v === 'number');
      return values.length ? meanStd(values)[0] : null;
    };
    const [so, st] = [speed(m.ours), speed(m.theirs)];
    const trainable = `${m.ours[0]?.trainable.toLocaleString('en-US') ?? '-'} / ${m.theirs[0]?.trainable.toLocaleString('en-US') ?? '-'}`;
    const same = m.ours[0] && m.theirs[0] && m.ours[0].trainable !== m.theirs[0].trainable ? ' NOT THE SAME' : '';
    // the same start and the same first batch: the first losses differ by dropout's draws and rounding only
    const first = (run: SideRun) => run.losses[0];
    lines.push(
      `| ${m.label} | ${fmt(m.ours, metric)} | ${m.error ? `failed: ${m.error.slice(0, 120)}` : fmt(m.theirs, metric)} | ${differs(ours, theirs) ? 'yes' : m.theirs.length ? 'no' : '-'} | ${fmt(m.ours, first, 4)} / ${fmt(m.theirs, first, 4)} | ${trainable}${same} | ${so === null ? '-' : so.toFixed(0)} / ${st === null ? '-' : st.toFixed(0)}${so !== null && st ? ` (${(so / st).toFixed(2)}x)` : ''} |`,
    );
  }
  return lines.join('\n');
}

/**
 * The earlier run's finished methods that the report keeps, placed before anything runs so that an
 * interrupted run's report still has them: every one, asked for this time or not; with --fresh only
 * those not asked for (the rest run again).
 */
export function keptInReport(
  earlier: ReadonlyMap<string, ComparedMethod>,
  asked: readonly string[],
  fresh: boolean,
): ComparedMethod[] {
  return [...earlier].filter(([method]) => !fresh || !asked.includes(method)).map(([, entry]) => entry);
}

/**
 * The methods that an earlier run of this comparison into `out` finished (both sides, every seed, no
 * error), by name: a run cut short (a session's end, a crash) goes on from there. A compare.json of
 * other settings is refused rather than replaced (its work would be lost), unless `fresh`: then none.
 */
export function finishedEarlier(
  out: string,
  results: CompareResults,
  seedsOf: (method: string) => number,
  fresh = false,
): Map<string, ComparedMethod> {
  const file = path.join(out, 'compare.json');
  if (!existsSync(file)) return new Map();
  const refuse = (why: string): Error =>
    new Error(`${file}: ${why}; pass --fresh to run the methods asked for again, or choose another --out`);
  let earlier: CompareResults;
  try {
    earlier = JSON.parse(readFileSync(file, 'utf8')) as CompareResults;
  } catch (error) {
    if (fresh) return new Map();
    throw refuse(`not an earlier comparison (${(error as Error).message})`);
  }
  const differences = (['schema', 'model', 'task', 'budget'] as const).filter(
    (key) => JSON.stringify(earlier?.[key]) !== JSON.stringify(results[key]),
  );
  if (differences.length > 0 || !Array.isArray(earlier.methods)) {
    if (fresh) return new Map();
    throw refuse(`holds a comparison of other settings (${differences.join(', ') || 'methods'} differ)`);
  }
  return new Map(
    earlier.methods
      .filter((m) => !m.error && m.ours.length === seedsOf(m.method) && m.theirs.length === seedsOf(m.method))
      .map((m) => [m.method, m]),
  );
}

function writeCompare(out: string, results: CompareResults): void {
  replaceFile(path.join(out, 'compare.json'), `${JSON.stringify(results, null, 2)}\n`);
  const md = [
    `# ${results.task.name} on ${path.basename(results.model)}: ours beside Python`,
    '',
    `${results.machine.cpu}, ${results.machine.cpus} CPUs; ours: ${results.machine.backend}, Node ${results.machine.node}. ` +
      `${results.budget.steps} steps of ${results.budget.batchSize} examples, ${results.budget.seeds} seed(s); train ${results.task.train}, test ${results.task.test}, examples cut at ${results.task.maxLength} tokens.`,
    '',
    `Same on both sides: the base model (ours saved, theirs loaded from it), the splits and their tokens, each run's method config and trainable weights as they start, the examples of every step in order, AdamW (0.9, 0.999, 1e-8, weight decay 0.01 on every trained weight), linear schedule with 6% warm-up, clipping at 1.0, the learning rate, ${results.budget.dropout ? "the model's dropout (each side its own random numbers)" : 'no dropout (--no-dropout: the runs differ by rounding only)'}. Tokens/s: the training loop's wall time, one side after the other, method by method.`,
    '',
    ...(results.adjustments.length ? ['Adjusted on both sides:', ...results.adjustments.map((a) => `- ${a}`), ''] : []),
    compareTable(results),
    '',
    ...machinesNote(results),
    `differ?: the means further apart than twice the larger standard deviation over seeds (one seed: more than 0.01).${results.complete ? '' : ' PARTIAL: interrupted or failed before the end.'}`,
    '',
  ];
  replaceFile(path.join(out, 'compare.md'), md.join('\n'));
}

/** Where methods ran on another CPU than the report's (kept from an earlier run), which. */
function machinesNote(results: CompareResults): string[] {
  const other = results.methods.filter((m) => m.machine && m.machine !== results.machine.cpu);
  if (other.length === 0) return [];
  return [
    `Kept from earlier runs on another CPU (both sides of a method always run on one machine, one after the other): ${other.map((m) => `${m.method} (${m.machine}, ${m.finishedAt?.slice(0, 10) ?? '?'})`).join(', ')}.`,
    '',
  ];
}

/** Our side of one run, as the bench trains it; the initial adapter saved first for Python. */
async function ourRun(
  spec: MethodSpec,
  seed: number,
  steps: number,
  task: TaskSplits,
  setup: ModelSetup,
  modelDirectory: string,
  batchSize: number,
  learningRates: Record<string, number>,
  initDir: string,
): Promise<SideRun> {
  const host = await loadPretrained(modelDirectory, setup.load);
  let model: TrainableModel | null = null;
  try {
    model = spec.make(host, task.task, seed);
    const trainable = spec.frozen ? 0 : countParameters(model.trainableVariables().values());
    // the method's config (peft's or AdapterHub's format), and every trainable weight as it starts,
    // projections [in, out] (the host's, held [out, in], transposed); Python builds the method from
    // the one, copies the other in
    if (isPeftModel(model)) await model.saveAdapter(initDir);
    mkdirSync(initDir, { recursive: true });
    const hostProjections = new Set<tf.Variable>([...host.linears.values()].map((linear) => linear.weight));
    const start: Record<string, { shape: number[]; values: Float32Array }> = {};
    for (const [name, variable] of model.trainableVariables()) {
      const value = hostProjections.has(variable) ? tf.transpose(variable) : variable;
      start[name] = { shape: value.shape, values: value.dataSync() as Float32Array };
      if (value !== variable) value.dispose();
    }
    writeFileSync(path.join(initDir, 'init.safetensors'), serializeSafetensors(start));
    const options = runTrainOptions(spec, { task, batchSize, learningRates }, setup.padTokenId, steps, seed);
    let seconds = 0;
    let tokens = 0;
    let losses: number[] = [];
    if (!spec.frozen) {
      const trained = await train(model, options);
      ({ seconds, tokens, losses } = trained);
    }
    const measured = await testMetric(model, task, { ...options, batchSize: 16 });
    return {
      seed,
      metric: measured.metric,
      ...(measured.f1 !== undefined ? { f1: measured.f1 } : {}),
      trainable,
      seconds,
      tokens,
      tokensPerSecond: spec.frozen ? null : tokens / seconds,
      losses,
    };
  } finally {
    if (model && isPeftModel(model)) model.dispose();
    host.dispose();
  }
}

/**
 * What a seed's result depends on: a seed finished under the same fingerprint (written beside its
 * start, `ours.json` / `theirs.json`) is kept when a method runs again, so that a run stopped
 * part-way through a method loses only the seed in progress. The CPU is in it: both sides of a
 * method run on one machine.
 */
function seedFingerprint(results: CompareResults, method: string): string {
  const { model, task, budget, machine } = results;
  return JSON.stringify({ method, model, task, budget, cpu: machine.cpu, cpus: machine.cpus });
}

/** A side's result of one seed as an earlier run left it, if it was made under `fingerprint`. */
function finishedSeed(file: string, fingerprint: string): { run: SideRun; library?: string } | null {
  if (!existsSync(file)) return null;
  try {
    const saved = JSON.parse(readFileSync(file, 'utf8')) as { fingerprint?: string; run?: SideRun; library?: string };
    return saved.fingerprint === fingerprint && saved.run ? { run: saved.run, library: saved.library } : null;
  } catch {
    return null; // a file cut short by a crash: run the seed again
  }
}

export async function runCompare(args: string[], options: { oracle?: string } = {}): Promise<number> {
  const oracle = options.oracle ?? ORACLE;
  // dropout off on both sides: with the same start and batches, the runs then differ by rounding only
  const dropout = !args.includes('--no-dropout');
  const fresh = args.includes('--fresh');
  const values = parseBenchArgs(args.filter((arg) => arg !== '--no-dropout' && arg !== '--fresh'));
  if (values.help) {
    console.log(compareUsage);
    return 0;
  }
  if (values.suite) throw new Error('--suite: compare runs one task at a time');
  const plan = benchPlan(values);
  if (plan.seconds) throw new Error('--budget: compare needs a number of steps (a time budget would differ by side)');
  if (plan.tasks[0]!.name === 'email-lm')
    throw new Error('--task: compare runs the classification tasks (spam, genre, pos), not email-lm');
  const specs = METHODS.filter((m) => plan.methods.includes(m.name)).map((spec) =>
    Object.hasOwn(ADJUSTMENTS, spec.name) ? { ...spec, make: ADJUSTMENTS[spec.name]!.make } : spec,
  );
  const kinds = new Set(specs.map((spec) => KINDS[spec.name]!));
  for (const venv of ['peft', 'adapters'] as const) {
    const needed = venv === 'peft' ? [...kinds].some((k) => k !== 'adapters') : kinds.has('adapters');
    if (needed && !existsSync(interpreter(oracle, venv)))
      throw new Error(
        venv === 'peft'
          ? `Python peft not found (${interpreter(oracle, venv)}): python3 -m venv oracle/.venv && oracle/.venv/bin/pip install -r oracle/requirements.txt`
          : `AdapterHub not found (${interpreter(oracle, venv)}): python3 -m venv oracle/.venv-adapters && oracle/.venv-adapters/bin/pip install torch==2.13.0 adapters==1.3.0 safetensors (or leave houlsby and pfeiffer out of --methods)`,
      );
  }
  const taskName = plan.tasks[0]!.name;
  // a model the bench names (minilm) by its name, as pnpm bench's folders; a folder by its own
  const modelLabel = existsSync(values.model!) ? path.basename(plan.model) : values.model!;
  const out = path.resolve(values.out ?? path.join('bench-results', 'compare', modelLabel, taskName));
  prepareOutFolder('--out', out);
  const backend = await selectBackend({ backend: plan.backend });
  const task = await taskFor(taskName, plan.data, plan.model, plan.limit, plan.maxLength);
  if (task.task === 'causal-lm')
    throw new Error(`--data: compare runs classification tasks; ${task.name} is causal-lm`);
  const bench = await modelSetup(plan.model, task);
  const setup: ModelSetup = dropout ? bench : { ...bench, load: { ...bench.load, dropout: false } };
  const { padTokenId } = setup;
  const exportDir = path.join(out, 'export');
  mkdirSync(exportDir, { recursive: true });
  console.log(`task ${task.name} (${task.task}): train ${task.train.length}, test ${task.test.length}; output ${out}`);

  const results: CompareResults = {
    schema: 'peft-bench-compare/1',
    createdAt: new Date().toISOString(),
    complete: false,
    machine: {
      cpu: cpuDescription(),
      cpus: cpus().length,
      backend: backend.detail,
      node: process.version,
    },
    model: plan.model,
    task: {
      name: task.name,
      task: task.task,
      train: task.train.length,
      test: task.test.length,
      metric: task.metric,
      maxLength: task.maxLength,
    },
    budget: {
      steps: plan.steps,
      batchSize: plan.batchSize,
      seeds: plan.seeds,
      learningRates: plan.learningRates,
      dropout,
    },
    adjustments: [], // those of the methods in the report (place)
    methods: [],
  };
  const seedsOf = (method: string): number => (METHODS.find((spec) => spec.name === method)?.frozen ? 1 : plan.seeds);
  const earlier = finishedEarlier(out, results, seedsOf, fresh);

  // the base model as every run loads it (a new head from its seed where the checkpoint has none)
  const base = await loadPretrained(plan.model, setup.load);
  await savePretrained(base, path.join(exportDir, 'base'));
  base.dispose();
  writeFileSync(
    path.join(exportDir, 'task.json'),
    JSON.stringify({
      name: task.name,
      task: task.task,
      labels: task.labels,
      padTokenId,
      train: task.train.map(({ inputIds, labels, tokenTypeIds }) => ({ inputIds, labels, tokenTypeIds })),
      test: task.test.map(({ inputIds, labels, tokenTypeIds }) => ({ inputIds, labels, tokenTypeIds })),
    }),
  );

  const order = (method: string): number => METHODS.findIndex((spec) => spec.name === method);
  const place = (entry: ComparedMethod): void => {
    results.methods.push(entry);
    results.methods.sort((a, b) => order(a.method) - order(b.method));
    results.adjustments = results.methods.flatMap((m) => ADJUSTMENTS[m.method]?.note ?? []);
  };
  for (const entry of keptInReport(
    earlier,
    specs.map((spec) => spec.name),
    fresh,
  ))
    place(entry);
  let failed = false;
  for (const spec of specs) {
    const kind = KINDS[spec.name]!;
    const kept = fresh ? undefined : earlier.get(spec.name);
    if (kept) {
      console.log(
        `${spec.name}: kept from the run of ${kept.finishedAt ?? results.createdAt} in ${out} (--fresh runs it again)`,
      );
      continue;
    }
    const entry: ComparedMethod = {
      method: spec.name,
      label: spec.label,
      kind,
      ours: [],
      theirs: [],
      theirLibrary: '',
    };
    place(entry);
    const methodDir = path.join(exportDir, spec.name);
    mkdirSync(methodDir, { recursive: true });
    const seeds = spec.frozen ? 1 : plan.seeds;
    const steps = spec.frozen ? 0 : plan.steps;
    const fingerprint = seedFingerprint(results, spec.name);
    const seedDir = (seed: number) => path.join(methodDir, `seed-${seed}`);
    const planned: { seed: number; trainable: number; batches: number[][] }[] = [];
    const keptTheirs: SideRun[] = [];
    let keptLibrary = '';
    for (let seed = 0; seed < seeds; seed++) {
      const kept = fresh ? null : finishedSeed(path.join(seedDir(seed), 'ours.json'), fingerprint);
      if (kept) console.log(`${spec.name} seed ${seed}: ours kept from an earlier run`);
      else console.log(`${spec.name} seed ${seed}: ours`);
      const mine =
        kept?.run ??
        (await ourRun(spec, seed, steps, task, setup, plan.model, plan.batchSize, plan.learningRates, seedDir(seed)));
      if (!kept) {
        replaceFile(path.join(seedDir(seed), 'ours.json'), JSON.stringify({ fingerprint, run: mine }));
        rmSync(path.join(seedDir(seed), 'theirs.json'), { force: true }); // an earlier run's Python result goes with it
      }
      entry.ours.push(mine);
      console.log(
        `  ${results.task.metric} ${mine.metric.toFixed(4)}${mine.tokensPerSecond ? `, ${mine.tokensPerSecond.toFixed(0)} tokens/s` : ''}`,
      );
      // a seed whose ours was run again is run again in Python too (its start was written anew)
      const theirs = kept ? finishedSeed(path.join(seedDir(seed), 'theirs.json'), fingerprint) : null;
      if (theirs) {
        keptTheirs.push(theirs.run);
        keptLibrary = theirs.library ?? keptLibrary;
        console.log(`${spec.name} seed ${seed}: Python's kept from an earlier run`);
        continue;
      }
      planned.push({
        seed,
        trainable: mine.trainable,
        batches: await stepBatches(task.train, plan.batchSize, seed, steps),
      });
    }
    const options = runTrainOptions(
      spec,
      { task, batchSize: plan.batchSize, learningRates: plan.learningRates },
      padTokenId,
      Math.max(steps, 1),
      0,
    );
    writeFileSync(
      path.join(methodDir, 'plan.json'),
      JSON.stringify({
        method: spec.name,
        kind,
        steps,
        batchSize: plan.batchSize,
        learningRate: options.learningRate,
        weightDecay: options.weightDecay,
        warmupSteps: options.warmupSteps,
        schedule: options.schedule,
        maxGradNorm: options.maxGradNorm,
        dropout,
        betas: [0.9, 0.999],
        epsilon: 1e-8,
        threads: cpus().length,
        // bench_compare.py writes each seed's result with it (theirs.json), kept by a later run
        fingerprint,
        runs: planned,
      }),
    );
    entry.theirs = keptTheirs;
    entry.theirLibrary = keptLibrary;
    if (planned.length > 0) {
      console.log(`${spec.name}: Python (${kind === 'adapters' ? 'AdapterHub' : 'peft'})`);
      try {
        const python = interpreter(oracle, kind === 'adapters' ? 'adapters' : 'peft');
        const theirs = await runPython(oracle, python, exportDir, spec.name);
        entry.theirs = [...keptTheirs, ...theirs.runs].sort((a, b) => a.seed - b.seed);
        entry.theirLibrary = theirs.library;
      } catch (error) {
        entry.error = (error as Error).message;
        failed = true;
      }
    }
    entry.machine = results.machine.cpu;
    entry.finishedAt = new Date().toISOString();
    writeCompare(out, results);
    console.log(
      compareTable({ ...results, methods: [entry] })
        .split('\n')
        .at(-1),
    );
  }
  results.complete = !failed;
  writeCompare(out, results);
  console.log(`\n${compareTable(results)}\n\nreport: ${path.join(out, 'compare.md')}`);
  return failed ? 1 : 0;
}
