import os from 'node:os';

import * as tf from '@tensorflow/tfjs-core';

import { measureMatMul, type MatMulMeasurement } from './measure.js';
import { BACKEND_NAMES, loadBackend, selectBackend, type BackendName, type BackendSelection } from './select-backend.js';

export interface BackendReport {
  name: BackendName;
  available: boolean;
  /** Description when available, the reason it is not otherwise. */
  detail: string;
  matMul?: MatMulMeasurement;
}

export interface DoctorReport {
  node: string;
  platform: string;
  cpus: number;
  tfjsCore: string;
  /** What an app gets with PEFT_BACKEND as set now (auto when unset). */
  selection: BackendSelection;
  backends: BackendReport[];
}

export interface DoctorOptions {
  /** Side of the square matMul timed on each backend (default 512). */
  matMulSize?: number;
}

/** Selects the backend as an app would, then loads and times every backend in turn. */
export async function runDoctor(options: DoctorOptions = {}): Promise<DoctorReport> {
  const selection = await selectBackend({ warnIfSlow: false });
  const backends: BackendReport[] = [];
  for (const name of BACKEND_NAMES) {
    try {
      const detail = await loadBackend(name);
      backends.push({ name, available: true, detail, matMul: measureMatMul(options.matMulSize ?? 512) });
    } catch (error) {
      backends.push({ name, available: false, detail: (error as Error).message });
    }
  }
  await loadBackend(selection.name);
  return {
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    cpus: os.availableParallelism(),
    tfjsCore: tf.version_core,
    selection,
    backends,
  };
}

export function formatDoctorReport(report: DoctorReport): string {
  const { selection } = report;
  const size = report.backends.find((b) => b.matMul)?.matMul?.size ?? 512;
  const lines = [
    '@peft doctor',
    `  node        ${report.node} (${report.platform}, ${report.cpus} CPUs)`,
    `  tfjs-core   ${report.tfjsCore}`,
    `  backend     ${selection.name} (${selection.detail}); requested ${selection.requested}` +
      (selection.source === 'default' ? '' : ` by ${selection.source}`),
    '',
    `  ${'backend'.padEnd(12)}${'status'.padEnd(13)}${`matMul ${size}^3`.padStart(15)}  detail`,
  ];
  for (const backend of report.backends) {
    const speed = backend.matMul ? `${backend.matMul.gflops.toFixed(1)} GFLOPS` : '-';
    const status = backend.available ? 'available' : 'unavailable';
    lines.push(`  ${backend.name.padEnd(12)}${status.padEnd(13)}${speed.padStart(15)}  ${backend.detail}`);
  }
  if (selection.name !== 'tensorflow') {
    lines.push('', `  !! not on the native backend: ${selection.unavailable.map((u) => u.reason).join('; ') || 'by request'}`);
  }
  return lines.join('\n');
}
