// Ctrl-C during a bench run. A terminal sends SIGINT to the whole process group, and a parent that
// relays signals (tsx's CLI, a process manager) sends it again: one Ctrl-C can arrive several times.
// And it is seen only between optimizer steps, which run synchronously: every copy that arrived
// during a step is handled in the same turn of the event loop, after the step.

export interface InterruptOptions {
  /** On the first SIGINT, as `signal` aborts. */
  onFirst: () => void;
  /** On a deliberate second Ctrl-C; it ends the process (`process.exit`). */
  onSecond: () => never;
  /** SIGINTs within this many milliseconds of the first are copies of it. Default 1000. */
  graceMs?: number;
}

/**
 * The first SIGINT aborts `signal` (the run stops after its current optimizer step and writes its
 * partial report); its copies are ignored; a SIGINT more than `graceMs` after the first is a second
 * Ctrl-C, and `onSecond` ends the process at once.
 *
 * ```ts
 * const interrupts = new Interrupts({ onFirst: () => console.log('finishing...'), onSecond: () => process.exit(130) });
 * try { await runBench({ ...options, signal: interrupts.signal }); } finally { interrupts.dispose(); }
 * ```
 */
export class Interrupts {
  private readonly controller = new AbortController();
  private firstAt: number | null = null;
  private readonly listener = (): void => this.received();

  constructor(private readonly options: InterruptOptions) {
    process.on('SIGINT', this.listener);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Stops listening: SIGINT ends the process again. */
  dispose(): void {
    process.removeListener('SIGINT', this.listener);
  }

  private received(): void {
    const now = performance.now();
    if (this.firstAt === null) {
      this.firstAt = now;
      this.controller.abort();
      this.options.onFirst();
    } else if (now - this.firstAt > (this.options.graceMs ?? 1000)) {
      this.options.onSecond();
    }
  }
}
