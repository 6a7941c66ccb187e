// A child process whose last line of standard output is its result, as JSON: the perf harness's
// workloads and the comparison's Python side.
import { spawn } from 'node:child_process';

/**
 * Runs `command`, awaited without blocking this process's event loop (a test runner's worker, a
 * Ctrl-C handler keep running meanwhile), and parses its last stdout line. A failed run (a non-zero
 * exit, or no JSON line) rejects with `failure(status, lines)`, lines being the last non-empty lines
 * of its stderr (64 KiB of it kept).
 */
export function jsonLineProcess<T>(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  failure: (status: number | null, stderrLines: string[]) => Error,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-1 << 16);
    });
    child.on('error', reject);
    child.on('close', (status) => {
      const line = stdout.trim().split('\n').at(-1) ?? '';
      if (status !== 0 || !line.startsWith('{')) {
        reject(failure(status, stderr.trim().split('\n').filter(Boolean)));
        return;
      }
      resolve(JSON.parse(line) as T);
    });
  });
}
