import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';

import { vectorExtensions } from '../src/cpu.js';
import { formatDoctorReport, hugePageAdvice, measureMatMul, runDoctor } from '../src/index.js';

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
    expect(text).toContain(`  cpu         ${report.cpu}`);
    // on the native backend, the kernels chosen for this machine; none elsewhere
    if (report.selection.name === 'tensorflow') {
      expect(report.kernels).toHaveLength(5);
      // the test processes inherit TF_CPU_ALLOCATOR_USE_BFC=true from vitest's global set-up, whose selectBackend set it
      expect(text).toMatch(/kernels +memory: BFC pool/);
      expect(text).toMatch(process.arch === 'x64' ? /kernels +matmul: oneDNN/ : /kernels +matmul: /);
      expect(text).toMatch(/kernels +library: the tensorflow-cpu 2\.21 wheel's \(.*measured no faster/);
    } else expect(report.kernels).toEqual([]);
  });
});

describe('vectorExtensions', () => {
  it('names the extensions in /proc/cpuinfo that kernels are chosen by, in a fixed order', () => {
    const epyc = 'processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx fma avx2 bmi2\n\nprocessor\t: 1\n';
    expect(vectorExtensions(epyc)).toEqual(['AVX2', 'FMA']);
    const xeon = 'flags\t\t: avx2 fma avx512f avx512_vnni avx512_bf16 amx_tile amx_bf16\n';
    expect(vectorExtensions(xeon)).toEqual(['AVX2', 'FMA', 'AVX-512', 'VNNI', 'BF16', 'AMX']);
    expect(vectorExtensions('Features\t: fp asimd evtstrm sve\n')).toEqual(['NEON', 'SVE']);
    expect(vectorExtensions('')).toEqual([]);
  });
});

describe('hugePageAdvice', () => {
  const linux = { platform: 'linux', glibc: '2.36', transparentHugePages: 'madvise', tunables: '' };

  it('advises the glibc tunable where it would take effect, and says when it is on', () => {
    expect(hugePageAdvice(linux)).toMatch(
      /^off: start Node with GLIBC_TUNABLES=glibc\.malloc\.hugetlb=1 \(glibc 2\.36, transparent huge pages: madvise\)/,
    );
    expect(hugePageAdvice({ ...linux, tunables: 'glibc.malloc.hugetlb=1' })).toBe(
      'on (GLIBC_TUNABLES=glibc.malloc.hugetlb=1; transparent huge pages: madvise)',
    );
  });

  it('gives no advice that cannot work: old glibc, huge pages disabled, musl or another system', () => {
    expect(hugePageAdvice({ ...linux, glibc: '2.31' })).toBe('off (glibc 2.31 predates glibc.malloc.hugetlb, 2.35)');
    expect(hugePageAdvice({ ...linux, transparentHugePages: 'never' })).toBe(
      'off (transparent huge pages are disabled on this machine)',
    );
    expect(hugePageAdvice({ ...linux, glibc: null })).toBeNull();
    expect(hugePageAdvice({ ...linux, platform: 'darwin' })).toBeNull();
  });
});
