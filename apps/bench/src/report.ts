// The bench's outputs: a console table, report.md, and a self-contained report.html (inline SVG
// charts, no network).
import { mkdirSync } from 'node:fs';
import path from 'node:path';

import { replaceFile } from './files.js';
import type { BenchResults, MethodSummary, RunResult } from './run.js';

/**
 * results.json, report.md and report.html in `out`, each replaced whole (rewritten after every run:
 * a partial report survives Ctrl-C, and a kill while writing leaves the previous one).
 */
export async function writeReports(out: string, results: BenchResults): Promise<void> {
  mkdirSync(out, { recursive: true });
  replaceFile(path.join(out, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  replaceFile(path.join(out, 'report.md'), markdownReport(results));
  replaceFile(path.join(out, 'report.html'), htmlReport(results));
}

/** `ok`, `failed: reason`, `interrupted after step 12 of 100`. */
export function runStatus(run: RunResult): string {
  if (run.status === 'interrupted') {
    return run.losses.length
      ? `interrupted after step ${run.losses.length} of ${run.steps}`
      : 'interrupted before training';
  }
  return `${run.status}${run.error ? `: ${run.error}` : ''}`;
}

const pairs = (record: Record<string, number> | undefined): string =>
  Object.entries(record ?? {})
    .map(([k, v]) => `${k} ${count(v)}`)
    .join(', ');
const fmt = (value: number | null | undefined, digits = 3): string =>
  value === null || value === undefined ? '-' : value.toFixed(digits);
const count = (value: number): string => value.toLocaleString('en-US');
const bytes = (value: number | null): string =>
  value === null ? '-' : value > 1e6 ? `${(value / 1e6).toFixed(1)} MB` : `${(value / 1e3).toFixed(1)} kB`;

function metricCell(results: BenchResults, row: MethodSummary): string {
  if (row.metricMean === null) return row.failed ? 'failed' : row.interrupted ? 'interrupted' : '-';
  const digits = results.task.metric === 'perplexity' ? 2 : 3;
  return `${row.metricMean.toFixed(digits)} ± ${fmt(row.metricStd, digits)}`;
}

const COLUMNS = [
  'method',
  'metric',
  'F1',
  'trainable',
  'share',
  'steps',
  'train s',
  'tok/s',
  'peak RSS',
  'peak tf',
  'latency ms',
  'overhead',
  'virtual tokens',
  'adapter',
] as const;

function rows(results: BenchResults): string[][] {
  return results.summary.map((row) => [
    row.label,
    metricCell(results, row),
    fmt(row.f1Mean, 3),
    count(row.trainableParameters),
    `${(100 * row.trainableShare).toFixed(2)}%`,
    String(row.steps),
    fmt(row.trainSeconds, 1),
    fmt(row.tokensPerSecond, 0),
    `${row.peakRssMb.toFixed(0)} MB`,
    `${row.peakTensorMb.toFixed(0)} MB`,
    fmt(row.latencyMs, 1),
    row.latencyOverheadPct === null
      ? '-'
      : `${row.latencyOverheadPct >= 0 ? '+' : ''}${row.latencyOverheadPct.toFixed(1)}%${row.mergedLatencyOverheadPct !== undefined && row.mergedLatencyOverheadPct !== null ? ` (merged ${row.mergedLatencyOverheadPct >= 0 ? '+' : ''}${row.mergedLatencyOverheadPct.toFixed(1)}%)` : ''}`,
    String(row.virtualTokens),
    bytes(row.adapterBytes),
  ]);
}

export function consoleTable(results: BenchResults): string {
  const table = [[...COLUMNS], ...rows(results)];
  const widths = COLUMNS.map((_, c) => Math.max(...table.map((r) => r[c]!.length)));
  const line = (r: string[]): string =>
    r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  const failures = results.runs
    .filter((r) => r.status === 'failed')
    .map((r) => `  ${r.method} seed ${r.seed}: failed: ${r.error}`);
  const baselines = results.baselines.map(
    (b) =>
      `  baseline ${b.name}: accuracy ${b.accuracy.toFixed(3)}${b.f1 !== undefined ? `, F1 ${b.f1.toFixed(3)}` : ''}`,
  );
  return [line(table[0]!), ...table.slice(1).map(line), ...baselines, ...failures].join('\n');
}

export function markdownReport(results: BenchResults): string {
  const header = `| ${COLUMNS.join(' | ')} |\n|${COLUMNS.map(() => '---').join('|')}|`;
  const body = rows(results)
    .map((r) => `| ${r.join(' | ')} |`)
    .join('\n');
  const task = results.task as { name?: string; sizes?: Record<string, number>; labels?: Record<string, number> };
  return `# @peft bench: ${task.name ?? 'task'}

${results.complete ? '' : '**Partial report: the run was interrupted.**\n\n'}Model \`${results.model.directory}\` (${count(results.model.parameters)} parameters), backend ${results.machine.backend} (${results.machine.backendDetail}), ${results.machine.cpus} CPUs, Node ${results.machine.node}.
Task metric: ${results.task.metric} (test split); splits ${pairs(task.sizes)}${task.labels ? `; training labels ${pairs(task.labels)}` : ''}.
Budget: ${results.budget.seconds ? `${results.budget.seconds} s of training per run (steps calibrated per method)` : `${results.budget.steps} optimizer steps`}, batches of ${results.budget.batchSize} examples, ${results.budget.seeds} seeds; mean ± standard deviation over seeds.

${header}
${body}

Baselines: ${results.baselines.map((b) => `${b.name} ${b.accuracy.toFixed(3)}${b.f1 !== undefined ? ` (F1 ${b.f1.toFixed(3)})` : ''}`).join('; ') || 'none for this task'}.
Latency: one test example (batch 1), median of interleaved timings; overhead against the same model with the adapter disabled (full, head-only, frozen: the base architecture, overhead = noise).
${results.runs
  .filter((r) => r.status !== 'ok')
  .map((r) => `- ${r.method} seed ${r.seed}: ${runStatus(r)}`)
  .join('\n')}
`;
}

const escapeHtml = (text: string): string =>
  text.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
const COLORS = [
  '#4e79a7',
  '#f28e2b',
  '#e15759',
  '#76b7b2',
  '#59a14f',
  '#edc948',
  '#b07aa1',
  '#ff9da7',
  '#9c755f',
  '#bab0ac',
];

function scatter(results: BenchResults): string {
  const points = results.summary.filter((r) => r.metricMean !== null && r.trainableParameters > 0);
  if (points.length === 0) return '<p>No metric to plot.</p>';
  const [w, h, m] = [560, 300, 50];
  const xs = points.map((p) => Math.log10(p.trainableParameters));
  const ys = points.map((p) => p.metricMean!);
  // accuracy baselines as dashed lines (perplexity tasks have none)
  const baselines = results.task.metric === 'perplexity' ? [] : results.baselines;
  const span = [...ys, ...baselines.map((b) => b.accuracy)];
  const [x0, x1] = [Math.min(...xs) - 0.3, Math.max(...xs) + 0.3];
  const [y0, y1] = [
    Math.min(...span) - 0.05 * Math.abs(Math.min(...span)) - 0.01,
    Math.max(...span) + 0.05 * Math.abs(Math.max(...span)) + 0.01,
  ];
  const sx = (x: number): number => m + ((x - x0) / (x1 - x0)) * (w - 2 * m);
  const sy = (y: number): number => h - m - ((y - y0) / (y1 - y0)) * (h - 2 * m);
  const ticks = Array.from({ length: Math.floor(x1) - Math.ceil(x0) + 1 }, (_, i) => Math.ceil(x0) + i);
  return `<svg width="${w}" height="${h}" role="img" aria-label="metric vs trainable parameters">
<line x1="${m}" y1="${h - m}" x2="${w - m}" y2="${h - m}" stroke="#333"/><line x1="${m}" y1="${m}" x2="${m}" y2="${h - m}" stroke="#333"/>
${ticks.map((t) => `<text x="${sx(t)}" y="${h - m + 16}" font-size="11" text-anchor="middle">1e${t}</text>`).join('')}
<text x="${w / 2}" y="${h - 8}" font-size="12" text-anchor="middle">trainable parameters (log)</text>
<text x="14" y="${h / 2}" font-size="12" transform="rotate(-90 14 ${h / 2})" text-anchor="middle">${escapeHtml(results.task.metric)}</text>
<text x="${m - 6}" y="${sy(y0) + 4}" font-size="10" text-anchor="end">${y0.toFixed(2)}</text><text x="${m - 6}" y="${sy(y1) + 4}" font-size="10" text-anchor="end">${y1.toFixed(2)}</text>
${baselines.map((b) => `<line x1="${m}" x2="${w - m}" y1="${sy(b.accuracy)}" y2="${sy(b.accuracy)}" stroke="#999" stroke-dasharray="4 3"/><text x="${w - m}" y="${sy(b.accuracy) - 4}" font-size="10" text-anchor="end" fill="#666">${escapeHtml(b.name)} ${b.accuracy.toFixed(3)}</text>`).join('\n')}
${points.map((p, i) => `<line x1="${sx(xs[i]!)}" x2="${sx(xs[i]!)}" y1="${sy(ys[i]! - (p.metricStd ?? 0))}" y2="${sy(ys[i]! + (p.metricStd ?? 0))}" stroke="${COLORS[i % COLORS.length]}"/>`).join('')}
${points.map((p, i) => `<circle cx="${sx(xs[i]!)}" cy="${sy(ys[i]!)}" r="5" fill="${COLORS[i % COLORS.length]}"/><text x="${sx(xs[i]!) + 7}" y="${sy(ys[i]!) - 6}" font-size="11">${escapeHtml(p.method)}</text>`).join('\n')}
</svg>`;
}

const SMOOTHING = 10;

/** Trailing mean over SMOOTHING steps (non-finite losses left out). */
function smooth(losses: readonly number[]): number[] {
  return losses.map((_, i) => {
    const window = losses.slice(Math.max(0, i - SMOOTHING + 1), i + 1).filter(Number.isFinite);
    return window.length ? window.reduce((a, b) => a + b, 0) / window.length : NaN;
  });
}

function lossCurves(results: BenchResults): string {
  const curves = results.summary
    .map((s, i) => ({
      method: s.method,
      color: COLORS[i % COLORS.length]!,
      losses: smooth(results.runs.find((r) => r.method === s.method && r.seed === 0)?.losses ?? []),
    }))
    .filter((c) => c.losses.length > 1);
  if (curves.length === 0) return '<p>No training curves.</p>';
  const [w, h, m] = [560, 300, 40];
  const steps = Math.max(...curves.map((c) => c.losses.length));
  const all = curves.flatMap((c) => c.losses).filter(Number.isFinite);
  const [y0, y1] = [Math.min(...all), Math.max(...all)];
  const sx = (i: number): number => m + (i / Math.max(1, steps - 1)) * (w - 2 * m);
  const sy = (y: number): number => h - m - ((y - y0) / Math.max(1e-9, y1 - y0)) * (h - 2 * m);
  return `<svg width="${w}" height="${h}" role="img" aria-label="loss curves">
<line x1="${m}" y1="${h - m}" x2="${w - m}" y2="${h - m}" stroke="#333"/><line x1="${m}" y1="${m}" x2="${m}" y2="${h - m}" stroke="#333"/>
<text x="${w / 2}" y="${h - 8}" font-size="12" text-anchor="middle">step (seed 0; mean of the last ${SMOOTHING} steps)</text>
<text x="${m - 4}" y="${sy(y1) + 4}" font-size="10" text-anchor="end">${y1.toFixed(2)}</text><text x="${m - 4}" y="${sy(y0) + 4}" font-size="10" text-anchor="end">${y0.toFixed(2)}</text>
${curves.map((c) => `<polyline fill="none" stroke="${c.color}" stroke-width="1.5" points="${c.losses.map((l, i) => `${sx(i).toFixed(1)},${sy(Number.isFinite(l) ? l : y1).toFixed(1)}`).join(' ')}"/>`).join('\n')}
${curves.map((c, i) => `<rect x="${w - m - 120}" y="${m + i * 14 - 8}" width="10" height="10" fill="${c.color}"/><text x="${w - m - 105}" y="${m + i * 14 + 1}" font-size="11">${escapeHtml(c.method)}</text>`).join('\n')}
</svg>`;
}

function bars(
  results: BenchResults,
  value: (r: MethodSummary) => number | null,
  label: string,
  unit: string,
  digits = 1,
  extra?: (r: MethodSummary) => number | null | undefined,
): string {
  // colours follow the method, as in the other charts; the extra (merged) bar is its lighter shade
  const items = results.summary
    .flatMap((r, k) => [
      { name: r.method, value: value(r), color: k, opacity: 1 },
      ...(extra ? [{ name: `${r.method} (merged)`, value: extra(r) ?? null, color: k, opacity: 0.5 }] : []),
    ])
    .filter((r): r is { name: string; value: number; color: number; opacity: number } => r.value !== null);
  if (items.length === 0) return '';
  const [w, rowHeight, left, right] = [560, 20, 110, 100];
  const extent = Math.max(...items.map((i) => Math.abs(i.value)), 1e-9);
  const zero = items.some((i) => i.value < 0) ? left + (w - left - right) / 2 : left;
  const scale = (w - left - right) / (zero === left ? extent : 2 * extent);
  return `<svg width="${w}" height="${items.length * rowHeight + 30}" role="img" aria-label="${escapeHtml(label)}">
<text x="0" y="14" font-size="12">${escapeHtml(label)}</text>
${items
  .map((item, i) => {
    const y = 24 + i * rowHeight;
    const length = Math.abs(item.value) * scale;
    const x = item.value >= 0 ? zero : zero - length;
    return `<text x="${left - 6}" y="${y + 12}" font-size="11" text-anchor="end">${escapeHtml(item.name)}</text><rect x="${x}" y="${y}" width="${Math.max(1, length)}" height="14" fill="${COLORS[item.color % COLORS.length]}" fill-opacity="${item.opacity}"/><text x="${Math.max(x + length, zero) + 4}" y="${y + 12}" font-size="11">${item.value.toFixed(digits)}${unit}</text>`;
  })
  .join('\n')}
</svg>`;
}

export function htmlReport(results: BenchResults): string {
  const table = `<table><thead><tr>${COLUMNS.map((c) => `<th>${escapeHtml(c)}</th>`).join('')}</tr></thead><tbody>${rows(
    results,
  )
    .map((r) => `<tr>${r.map((cell) => `<td>${escapeHtml(cell)}</td>`).join('')}</tr>`)
    .join('')}</tbody></table>`;
  const markdown = escapeHtml(markdownReport(results).split('\n').slice(2, 5).join(' ').replace(/`/g, ''));
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>@peft bench</title>
<style>body{font-family:system-ui,sans-serif;margin:24px;color:#222}p{max-width:1200px}table{border-collapse:collapse;font-size:12px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}.charts{display:flex;flex-wrap:wrap;gap:24px}figure{margin:0}figcaption{font-size:13px;color:#555}</style>
</head><body>
<h1>@peft bench: ${escapeHtml(String((results.task as { name?: string }).name ?? ''))}</h1>
<p>${markdown}</p>
${table}
<div class="charts">
<figure>${scatter(results)}<figcaption>Task metric against trainable parameters</figcaption></figure>
<figure>${lossCurves(results)}<figcaption>Training loss</figcaption></figure>
<figure>${bars(
    results,
    (r) => r.latencyOverheadPct,
    'Inference latency overhead over the base model (batch 1)',
    '%',
    1,
    (r) => r.mergedLatencyOverheadPct,
  )}</figure>
<figure>${bars(results, (r) => r.virtualTokens, 'Context consumed by virtual tokens', ' tokens', 0)}</figure>
</div>
<p>Baselines: ${results.baselines.map((b) => `${escapeHtml(b.name)} ${b.accuracy.toFixed(3)}`).join('; ') || 'none'}</p>
</body></html>
`;
}
