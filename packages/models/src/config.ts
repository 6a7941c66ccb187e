// Reading config.json fields with errors that name the file and the field.
import { preview } from '@peft/core';

export type RawConfig = Record<string, unknown>;

/** What the checkpoint a config is read for holds, for `ConfigReader.fits`. */
export interface CheckpointSize {
  /** Values of all its tensors together. */
  values: number;
  /** For messages: where the checkpoint is. */
  location: string;
}

export class ConfigReader {
  constructor(
    readonly raw: RawConfig,
    /** For messages: the config file. */
    readonly source: string,
    /** The checkpoint the model is built on, where its size is known (not for random weights). */
    readonly checkpoint: CheckpointSize | null = null,
  ) {}

  private fail(field: string, expected: string): never {
    // preview: 1e999 reads as Infinity (JSON.stringify would say null), and a value nested too deep
    // for JSON.stringify is named rather than made a RangeError
    throw new Error(`${this.source}: field "${field}" must be ${expected}, got ${preview(this.raw[field])}`);
  }

  has(field: string): boolean {
    return this.raw[field] !== undefined && this.raw[field] !== null;
  }

  positiveInteger(field: string, fallback?: number): number {
    const value = this.raw[field] ?? fallback;
    if (!Number.isSafeInteger(value) || (value as number) <= 0) this.fail(field, 'a positive integer');
    return value as number;
  }

  number(field: string, fallback?: number): number {
    const value = this.raw[field] ?? fallback;
    if (typeof value !== 'number' || !Number.isFinite(value)) this.fail(field, 'a finite number');
    return value;
  }

  boolean(field: string, fallback?: boolean): boolean {
    const value = this.raw[field] ?? fallback;
    if (typeof value !== 'boolean') this.fail(field, 'true or false');
    return value;
  }

  string(field: string, fallback?: string): string {
    const value = this.raw[field] ?? fallback;
    if (typeof value !== 'string') this.fail(field, 'a string');
    return value;
  }

  /** A finite number above zero: norm epsilons, rotary bases, scales. */
  positiveNumber(field: string, fallback?: number): number {
    const value = this.raw[field] ?? fallback;
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) this.fail(field, 'a finite number above 0');
    return value;
  }

  /** A dropout rate: a finite number in [0, 1). */
  probability(field: string, fallback?: number): number {
    const value = this.raw[field] ?? fallback;
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value >= 1)
      this.fail(field, 'a dropout rate in [0, 1)');
    return value;
  }

  nonNegativeInteger(field: string, fallback?: number): number {
    const value = this.raw[field] ?? fallback;
    if (!Number.isSafeInteger(value) || (value as number) < 0) this.fail(field, 'a non-negative integer');
    return value as number;
  }

  /** Classes of a classification head: len(id2label), else num_labels, else 2 (transformers' default). */
  numLabels(): number {
    const id2label = this.raw.id2label;
    if (typeof id2label === 'object' && id2label !== null) {
      const labels = Object.keys(id2label).length;
      if (labels === 0) this.fail('id2label', 'a map of at least one label');
      return labels;
    }
    return this.positiveInteger('num_labels', 2);
  }

  /** config.json `architectures[0]` (the transformers class), or `fallback`. */
  architecture(fallback: string): string {
    const list = this.raw.architectures;
    return Array.isArray(list) && typeof list[0] === 'string' ? list[0] : fallback;
  }

  /** An integer field whose value must divide another (head counts). */
  divisor(field: string, of: number, ofField: string, fallback?: number): number {
    const value = this.positiveInteger(field, fallback);
    if (of % value !== 0) {
      throw new Error(`${this.source}: "${ofField}" (${of}) must be divisible by "${field}" (${value})`);
    }
    return value;
  }

  /**
   * Refuses sizes whose product (one tensor, or one per layer) is more values than the whole
   * checkpoint holds: such a config cannot describe these weights, and is said so before anything
   * of that size is allocated (1e9 layers, a vocabulary of 1e12), not at the first tensor read or
   * after gigabytes. Each product is a lower bound of what a checkpoint that fits the config holds,
   * so no real checkpoint is refused. Nothing is checked where the size is unknown.
   */
  fits(what: string, fields: string, sizes: readonly number[]): void {
    if (!this.checkpoint) return;
    const values = sizes.reduce((product, value) => product * value, 1);
    if (values <= this.checkpoint.values) return;
    throw new Error(
      `${this.source}: ${fields} = ${sizes.join(' x ')} = ${values} values (${what}), more than the ` +
        `${this.checkpoint.values} values of the whole checkpoint (${this.checkpoint.location})`,
    );
  }
}
