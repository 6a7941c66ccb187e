// The CPU that speed figures were taken on, named as the reports need it: model and the vector
// extensions libtensorflow and torch choose kernels by (AVX2, FMA, AVX-512, VNNI, AMX).
import { readFileSync } from 'node:fs';
import os from 'node:os';

/** /proc/cpuinfo flag -> name in reports, in the order printed. */
const VECTOR_FLAGS: readonly [string, string][] = [
  ['avx2', 'AVX2'],
  ['fma', 'FMA'],
  ['avx512f', 'AVX-512'],
  ['avx512_vnni', 'VNNI'],
  ['avx512_bf16', 'BF16'],
  ['amx_tile', 'AMX'],
  ['asimd', 'NEON'],
  ['sve', 'SVE'],
];

/** The vector extensions named by a /proc/cpuinfo text (its first processor's flags). */
export function vectorExtensions(cpuinfo: string): string[] {
  const line = /^(?:flags|Features)\s*:(.*)$/m.exec(cpuinfo)?.[1] ?? '';
  const flags = new Set(line.trim().split(/\s+/));
  return VECTOR_FLAGS.filter(([flag]) => flags.has(flag)).map(([, name]) => name);
}

/** `AMD EPYC (AVX2, FMA)`: the model and, on Linux, its vector extensions; `unknown CPU` when unnamed. */
export function cpuDescription(): string {
  const model = os.cpus()[0]?.model.trim() || 'unknown CPU';
  let extensions: string[] = [];
  try {
    extensions = vectorExtensions(readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    // not Linux: the model alone
  }
  return extensions.length > 0 ? `${model} (${extensions.join(', ')})` : model;
}
