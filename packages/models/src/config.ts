// Reading config.json fields with errors that name the file and the field.

export type RawConfig = Record<string, unknown>;

export class ConfigReader {
  constructor(
    readonly raw: RawConfig,
    /** For messages: the config file. */
    readonly source: string,
  ) {}

  private fail(field: string, expected: string): never {
    throw new Error(`${this.source}: field "${field}" must be ${expected}, got ${JSON.stringify(this.raw[field])}`);
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

  nonNegativeInteger(field: string, fallback?: number): number {
    const value = this.raw[field] ?? fallback;
    if (!Number.isSafeInteger(value) || (value as number) < 0) this.fail(field, 'a non-negative integer');
    return value as number;
  }

  /** Classes of a classification head: len(id2label), else num_labels, else 2 (transformers' default). */
  numLabels(): number {
    const id2label = this.raw.id2label;
    if (typeof id2label === 'object' && id2label !== null) return Object.keys(id2label).length;
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
}
