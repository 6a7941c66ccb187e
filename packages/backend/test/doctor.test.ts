import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { formatDoctorReport, measureMatMul, runDoctor } from '../src/index.js';

describe('measureMatMul', () => {
  it('times a square product and leaks no tensor', () => {
    const before = tf.memory().numTensors;
    const result = measureMatMul(64, 10);
    expect(result.size).toBe(64);
    expect(result.repetitions).toBeGreaterThanOrEqual(2);
    expect(result.gflops).toBeCloseTo((2 * 64 ** 3) / (result.milliseconds * 1e6), 6);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('runDoctor', () => {
  it('reports every backend with a speed for each available one, and restores the selection', async () => {
    const report = await runDoctor({ matMulSize: 32 });
    expect(report.backends.map((b) => b.name)).toEqual(['tensorflow', 'wasm', 'cpu']);
    for (const backend of report.backends.filter((b) => b.available)) {
      expect(backend.matMul?.gflops).toBeGreaterThan(0);
    }
    expect(tf.getBackend()).toBe(report.selection.name);
    const text = formatDoctorReport(report);
    expect(text).toContain(`backend     ${report.selection.name}`);
    expect(text).toMatch(/cpu +available +[\d.]+ GFLOPS/);
  });
});
