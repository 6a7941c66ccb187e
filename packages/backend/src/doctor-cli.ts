#!/usr/bin/env node
import { parseArgs } from 'node:util';

import { formatDoctorReport, runDoctor } from './doctor.js';
import { inspectNativeSetup, provisionNativeBackend } from './native-setup.js';

const usage = `usage: peft-doctor [--fix] [--json] [--strict] [--size N]
  Prints the TensorFlow.js backend an app gets here, and a measured matMul GFLOPS for each backend.
  --fix      first set up the native backend on the installed @tensorflow/tfjs-node (the same step
             as @peft/backend's install script: a TensorFlow C library, the addon built against it)
  --json     machine-readable report
  --strict   exit 1 unless the selected backend is the native 'tensorflow'
  --size N   side of the timed square matMul (default 512)`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      fix: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      strict: { type: 'boolean', default: false },
      size: { type: 'string', default: '512' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const size = Number(values.size);
  if (!Number.isInteger(size) || size < 1) throw new Error(`--size: expected a positive integer, got "${values.size}"`);
  // Before anything loads tfjs-node: a failed load is not retried within a process.
  if (values.fix) provisionNativeBackend(inspectNativeSetup());
  const report = await runDoctor({ matMulSize: size });
  console.log(values.json ? JSON.stringify(report, null, 2) : formatDoctorReport(report));
  return values.strict && report.selection.name !== 'tensorflow' ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`peft-doctor: ${error instanceof Error ? error.message : String(error)}\n${usage}`);
    process.exit(2);
  },
);
