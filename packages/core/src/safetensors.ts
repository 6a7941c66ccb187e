// The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian
// header length N, N bytes of JSON `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?}`,
// then the tensor bytes, little-endian, offsets relative to the end of the header. Every field of a
// file is checked before a byte of it is used: files may be truncated, or lie.
import type { RangeFile } from './files.js';
import { bfloat16ToFloat32, float16ToFloat32, float32ToBfloat16, float32ToFloat16 } from './float16.js';
import { releasableBytes, releaseBytes } from './buffers.js';
import { preview } from './preview.js';

/** The dtypes @peft reads. Floats become float32; integers become int32 (range-checked). */
export const SAFETENSORS_DTYPES = {
  F32: 4,
  F16: 2,
  BF16: 2,
  F64: 8,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
} as const;
export type SafetensorsDtype = keyof typeof SAFETENSORS_DTYPES;
/** What a tensor can be written as. */
export type SafetensorsFloatDtype = 'F32' | 'F16' | 'BF16';

/** A header larger than this is refused before it is read (real ones are well under 10 MB). */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface TensorEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Byte range in the data section. */
  begin: number;
  end: number;
}

/**
 * Decoded tensor data: float32 for floats, int32 for integers and booleans. F32 and I32 values may
 * view the file's own bytes (no copy): copy them before changing them.
 */
export interface TensorData {
  dtype: 'float32' | 'int32';
  shape: number[];
  values: Float32Array | Int32Array;
}

export interface SafetensorsFile {
  /** For messages: the file the bytes came from. */
  readonly source: string;
  readonly metadata: Record<string, string>;
  readonly entries: ReadonlyMap<string, TensorEntry>;
  /**
   * Decodes one tensor; throws naming the file and the tensor when it is not there. A float tensor's
   * values go to the start of `into` when it is given (long enough), and then never view the file.
   */
  tensor(name: string, into?: Float32Array): TensorData;
  /**
   * One tensor's bytes as stored (little-endian), undecoded: a view that may be reused by the next
   * call (copy what you keep).
   */
  bytes(name: string): StoredTensor;
}

/** A tensor as the file stores it. */
export interface StoredTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  bytes: Uint8Array;
}

function fail(source: string, message: string): never {
  throw new Error(`${source}: ${message}`);
}

function entryOf(source: string, entries: ReadonlyMap<string, TensorEntry>, name: string): TensorEntry {
  return entries.get(name) ?? fail(source, `no tensor "${name}"`);
}

function isDtype(value: unknown): value is SafetensorsDtype {
  return typeof value === 'string' && Object.hasOwn(SAFETENSORS_DTYPES, value);
}

/** A list of non-negative safe integers (a loop, not `every`: this runs once per header entry). */
function isCountList(value: unknown): value is number[] {
  if (!Array.isArray(value)) return false;
  for (const item of value) if (!Number.isSafeInteger(item) || item < 0) return false;
  return true;
}

function parseEntry(source: string, name: string, raw: unknown, dataLength: number): TensorEntry {
  if (typeof raw !== 'object' || raw === null) fail(source, `tensor "${name}": header entry is not an object`);
  const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
  if (!isDtype(dtype)) {
    fail(
      source,
      `tensor "${name}": unknown dtype ${preview(dtype)} (supported: ${Object.keys(SAFETENSORS_DTYPES).join(', ')})`,
    );
  }
  if (!isCountList(shape)) {
    fail(source, `tensor "${name}": shape must be a list of non-negative integers, got ${preview(shape)}`);
  }
  if (!isCountList(offsets) || offsets.length !== 2 || offsets[0]! > offsets[1]!) {
    fail(source, `tensor "${name}": data_offsets must be [begin, end] with 0 <= begin <= end, got ${preview(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  if (end > dataLength) {
    fail(
      source,
      `tensor "${name}": data_offsets [${begin}, ${end}] run past the end of the data (${dataLength} bytes; file truncated?)`,
    );
  }
  const elements = (shape as number[]).reduce((a, b) => a * b, 1);
  const expected = elements * SAFETENSORS_DTYPES[dtype];
  if (end - begin !== expected) {
    fail(
      source,
      `tensor "${name}": ${dtype} ${preview(shape)} needs ${expected} bytes, data_offsets give ${end - begin}`,
    );
  }
  return { name, dtype, shape: shape as number[], begin, end };
}

/** Parses and validates the header; the returned file decodes tensors lazily from `bytes`. */
export function parseSafetensors(bytes: Uint8Array, source = 'safetensors'): SafetensorsFile {
  if (bytes.byteLength < 8) fail(source, `file is ${bytes.byteLength} bytes, shorter than the 8-byte header length`);
  const headerEnd = headerEndOf(source, bytes.subarray(0, 8), bytes.byteLength);
  const { metadata, entries } = parseHeader(source, bytes.subarray(8, headerEnd), bytes.byteLength - headerEnd);
  const data = bytes.subarray(headerEnd);
  return {
    source,
    metadata,
    entries,
    tensor(name, into) {
      const entry = entryOf(source, entries, name);
      return decode(source, entry, data.subarray(entry.begin, entry.end), into);
    },
    bytes(name) {
      const entry = entryOf(source, entries, name);
      return { dtype: entry.dtype, shape: entry.shape, bytes: data.subarray(entry.begin, entry.end) };
    },
  };
}

/**
 * A safetensors file read by ranges: the header now (validated as `parseSafetensors` does), each
 * tensor's bytes when it is decoded, so a checkpoint is never held whole in memory.
 */
export function openSafetensors(file: RangeFile, source = 'safetensors'): SafetensorsFile {
  if (file.size < 8) fail(source, `file is ${file.size} bytes, shorter than the 8-byte header length`);
  const headerEnd = headerEndOf(source, file.read(0, 8), file.size);
  const { metadata, entries } = parseHeader(source, file.read(8, headerEnd - 8), file.size - headerEnd);
  // Bytes that are not kept (decoded into a caller's buffer, or lent) are read into this one,
  // reused: no fresh pages per tensor. A larger tensor gets a buffer of its own, given back when
  // the next tensor is staged rather than left to the collector, which may not run before a load
  // ends (a 0.6B model's 311 MB embedding, kept to the end: +12% on the load's peak RSS).
  let staging = new Uint8Array(0);
  let large: Uint8Array | null = null;
  const stage = (entry: TensorEntry): Uint8Array => {
    if (large) releaseBytes(large);
    large = null;
    const length = entry.end - entry.begin;
    if (length > MAX_STAGING_BYTES) {
      large = file.read(headerEnd + entry.begin, length, releasableBytes(length));
      return large;
    }
    if (staging.byteLength < length) staging = new Uint8Array(length);
    return file.read(headerEnd + entry.begin, length, staging);
  };
  return {
    source,
    metadata,
    entries,
    tensor(name, into) {
      const entry = entryOf(source, entries, name);
      if (!into || !FLOAT_DTYPES.has(entry.dtype))
        return decode(source, entry, file.read(headerEnd + entry.begin, entry.end - entry.begin));
      return decode(source, entry, stage(entry), into);
    },
    bytes(name) {
      const entry = entryOf(source, entries, name);
      return { dtype: entry.dtype, shape: entry.shape, bytes: stage(entry) };
    },
  };
}

/** Tensors larger than this are read into a buffer of their own, not kept for the next one. */
const MAX_STAGING_BYTES = 64 * 1024 * 1024;

/** Where the header ends, from the 8-byte length that starts a file of `fileLength` bytes. */
function headerEndOf(source: string, lengthBytes: Uint8Array, fileLength: number): number {
  const headerLength = new DataView(lengthBytes.buffer, lengthBytes.byteOffset, 8).getBigUint64(0, true);
  if (headerLength > BigInt(MAX_HEADER_BYTES)) {
    fail(source, `header length ${headerLength} exceeds the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file?)`);
  }
  const headerEnd = 8 + Number(headerLength);
  if (headerEnd > fileLength) {
    fail(source, `header length ${headerLength} runs past the end of the ${fileLength}-byte file (truncated?)`);
  }
  return headerEnd;
}

/** Deeper nesting than this in a header is refused (a real one nests three levels). */
const MAX_HEADER_DEPTH = 64;

/**
 * Reads a header's JSON one character at a time, keeping only what a safetensors file needs. Not
 * JSON.parse: a header of a million entries is an object of a million keys, which V8 turns into a
 * dictionary of internalised strings (6 s and 450 MB for 97 MB of header, before a single entry is
 * checked); here each entry is checked as it is read, so a bad one fails at once, and nothing but
 * the entries is kept. The grammar is JSON's (RFC 8259), as strict as JSON.parse.
 */
class HeaderReader {
  private position = 0;

  constructor(
    private readonly text: string,
    private readonly source: string,
  ) {}

  syntaxError(expected: string): never {
    const found = this.position < this.text.length ? JSON.stringify(this.text[this.position]) : 'the end';
    fail(
      this.source,
      `header is not valid UTF-8 JSON (expected ${expected} at character ${this.position}, found ${found})`,
    );
  }

  /** The next character code after whitespace (-1 at the end). */
  peek(): number {
    const { text } = this;
    let c = text.charCodeAt(this.position);
    while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = text.charCodeAt(++this.position);
    return Number.isNaN(c) ? -1 : c;
  }

  /** Only whitespace is left. */
  end(): void {
    if (this.peek() !== -1) this.syntaxError('the end of the header');
  }

  /**
   * Enters the object that starts here and reads its first key, the reader then at its value; null
   * for an empty object. No callbacks: a header may have a million members.
   */
  firstKey(): string | null {
    if (this.peek() !== 0x7b) this.syntaxError('"{"');
    this.position++;
    if (this.peek() === 0x7d) {
      this.position++;
      return null;
    }
    return this.key();
  }

  /** The object's next key after a value, or null at its end. */
  nextKey(): string | null {
    const c = this.peek();
    if (c === 0x7d) {
      this.position++;
      return null;
    }
    if (c !== 0x2c) this.syntaxError('"," or "}"');
    this.position++;
    return this.key();
  }

  private key(): string {
    if (this.peek() !== 0x22) this.syntaxError('a string key');
    const key = this.string();
    if (this.peek() !== 0x3a) this.syntaxError('":"');
    this.position++;
    return key;
  }

  /** Any JSON value; objects come back without a prototype (a key "__proto__" is just a key). */
  value(depth: number): unknown {
    if (depth > MAX_HEADER_DEPTH) fail(this.source, `header nests deeper than ${MAX_HEADER_DEPTH} levels`);
    const c = this.peek();
    if (c === 0x22) return this.string();
    if (c === 0x7b) {
      const result: Record<string, unknown> = Object.create(null);
      for (let key = this.firstKey(); key !== null; key = this.nextKey()) result[key] = this.value(depth + 1);
      return result;
    }
    if (c === 0x5b) {
      this.position++;
      const items: unknown[] = [];
      if (this.peek() === 0x5d) {
        this.position++;
        return items;
      }
      for (;;) {
        items.push(this.value(depth + 1));
        const next = this.peek();
        this.position++;
        if (next === 0x5d) return items;
        if (next !== 0x2c) {
          this.position--;
          this.syntaxError('"," or "]"');
        }
      }
    }
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.number();
    for (const [word, value] of LITERALS) {
      if (this.text.startsWith(word, this.position)) {
        this.position += word.length;
        return value;
      }
    }
    return this.syntaxError('a value');
  }

  private string(): string {
    const { text } = this;
    const start = ++this.position;
    let escaped = false;
    for (;;) {
      const c = text.charCodeAt(this.position);
      if (c === 0x22) break;
      if (Number.isNaN(c)) this.syntaxError("a closing '\"'");
      if (c < 0x20) this.syntaxError('no control character in a string');
      if (c === 0x5c) {
        escaped = true;
        this.position++;
      }
      this.position++;
    }
    const end = this.position++;
    if (!escaped) return text.slice(start, end);
    try {
      return JSON.parse(text.slice(start - 1, end + 1)) as string;
    } catch {
      this.position = start;
      return this.syntaxError('a string with valid escapes');
    }
  }

  private number(): number {
    const { text } = this;
    const start = this.position;
    if (text.charCodeAt(this.position) === 0x2d) this.position++;
    const first = text.charCodeAt(this.position);
    const integer = this.digits();
    if (integer === 0 || (first === 0x30 && integer > 1)) {
      this.position = start;
      this.syntaxError('a number');
    }
    if (text.charCodeAt(this.position) === 0x2e) {
      this.position++;
      if (this.digits() === 0) this.syntaxError('a digit');
    }
    const exponent = text.charCodeAt(this.position);
    if (exponent === 0x65 || exponent === 0x45) {
      this.position++;
      const sign = text.charCodeAt(this.position);
      if (sign === 0x2b || sign === 0x2d) this.position++;
      if (this.digits() === 0) this.syntaxError('a digit');
    }
    return Number(text.slice(start, this.position));
  }

  /** Skips decimal digits; how many. */
  private digits(): number {
    const from = this.position;
    let c = this.text.charCodeAt(this.position);
    while (c >= 0x30 && c <= 0x39) c = this.text.charCodeAt(++this.position);
    return this.position - from;
  }
}

const LITERALS: readonly [string, unknown][] = [
  ['true', true],
  ['false', false],
  ['null', null],
];

/**
 * The header's entries, each checked against a data section of `dataLength` bytes, which together
 * they must tile. Read twice: first every entry is checked keeping only its offsets (16 bytes each,
 * in typed arrays), so that a bad header fails fast and small; then the entries are built. Kept
 * objects are what cost: a header of 1.4M entries with a bad last one failed after 9 s of CPU at
 * 560 MB with them, after 1.3 s at 100 MB without.
 */
function parseHeader(
  source: string,
  headerBytes: Uint8Array,
  dataLength: number,
): { metadata: Record<string, string>; entries: Map<string, TensorEntry> } {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch (error) {
    fail(source, `header is not valid UTF-8 JSON (${(error as Error).message})`);
  }
  const spans = new Spans();
  scanHeader(source, text, dataLength, (entry) => {
    spans.push(entry.begin, entry.end);
    // several tensors in the same bytes: said now, not after the rest of the header is read
    if (spans.claimed > dataLength) spans.check(source, text, dataLength, false);
    return false;
  });
  spans.check(source, text, dataLength, true);

  const entries = new Map<string, TensorEntry>();
  const metadata = scanHeader(source, text, dataLength, (entry) => {
    if (entries.has(entry.name)) fail(source, `tensor "${entry.name}" is listed twice in the header`);
    entries.set(entry.name, entry);
    return false;
  });
  return { metadata, entries };
}

/** Reads the header's JSON, checking each entry and handing it to `visit` in order; the metadata. */
function scanHeader(
  source: string,
  text: string,
  dataLength: number,
  /** Returns true to stop reading (the rest of the header is then not checked). */
  visit: (entry: TensorEntry, ordinal: number) => boolean,
): Record<string, string> {
  const reader = new HeaderReader(text, source);
  if (reader.peek() !== 0x7b) {
    reader.value(0);
    reader.end();
    fail(source, 'header is not a JSON object');
  }
  let metadata: Record<string, string> | null = null;
  let ordinal = 0;
  for (let name = reader.firstKey(); name !== null; name = reader.nextKey()) {
    if (name === '__metadata__') {
      if (metadata) fail(source, '__metadata__ is given twice');
      metadata = readMetadata(reader, source);
    } else if (visit(parseEntry(source, name, readEntry(reader, source, name), dataLength), ordinal++)) {
      return metadata ?? {};
    }
  }
  reader.end();
  return metadata ?? {};
}

/** An entry's fields, the reader at its value. */
function readEntry(reader: HeaderReader, source: string, name: string): Record<string, unknown> {
  if (reader.peek() !== 0x7b) {
    reader.value(2);
    fail(source, `tensor "${name}": header entry is not an object`);
  }
  const fields: Record<string, unknown> = { dtype: undefined, shape: undefined, data_offsets: undefined };
  for (let key = reader.firstKey(); key !== null; key = reader.nextKey()) {
    const value = reader.value(2);
    if (key === 'dtype' || key === 'shape' || key === 'data_offsets') fields[key] = value;
  }
  return fields;
}

function readMetadata(reader: HeaderReader, source: string): Record<string, string> {
  const bad = (): never => fail(source, '__metadata__ must map strings to strings');
  if (reader.peek() !== 0x7b) {
    reader.value(2);
    bad();
  }
  const pairs: [string, string][] = [];
  for (let key = reader.firstKey(); key !== null; key = reader.nextKey()) {
    const value = reader.value(2);
    if (typeof value !== 'string') bad();
    pairs.push([key, value as string]);
  }
  return Object.fromEntries(pairs);
}

/** The entries' byte ranges in header order, and how they tile the data section. */
class Spans {
  private begins = new Float64Array(1024);
  private ends = new Float64Array(1024);
  count = 0;
  /** Bytes the ranges claim: tiling the data section, never more than it has. */
  claimed = 0;
  private ordered = true;

  push(begin: number, end: number): void {
    if (this.count === this.begins.length) {
      const grow = (from: Float64Array) => {
        const to = new Float64Array(from.length * 2);
        to.set(from);
        return to;
      };
      this.begins = grow(this.begins);
      this.ends = grow(this.ends);
    }
    const previous = this.count - 1;
    if (
      previous >= 0 &&
      (begin < this.begins[previous]! || (begin === this.begins[previous] && end < this.ends[previous]!))
    )
      this.ordered = false;
    this.begins[this.count] = begin;
    this.ends[this.count] = end;
    this.count++;
    this.claimed += end - begin;
  }

  /**
   * The data section must be covered exactly: no overlaps, no holes, nothing after the last tensor.
   * Before the header is read to its end (`complete` false), only overlaps are looked for: the rest
   * may fill a hole. The names in a message are read from the header again (`text`).
   */
  check(source: string, text: string, dataLength: number, complete: boolean): void {
    const { begins, ends, count } = this;
    let order: Uint32Array | null = null;
    if (!this.ordered) {
      order = new Uint32Array(count);
      for (let i = 0; i < count; i++) order[i] = i;
      order.sort((x, y) => begins[x]! - begins[y]! || ends[x]! - ends[y]!);
    }
    let covered = 0;
    for (let k = 0; k < count; k++) {
      const i = order ? order[k]! : k;
      if (begins[i]! < covered) {
        let other = 0;
        while (other < count && (other === i || !(begins[other]! < ends[i]! && begins[i]! < ends[other]!))) other++;
        const [name, otherName] = namesAt(source, text, dataLength, [i, other]);
        if (name === otherName) fail(source, `tensor "${name}" is listed twice in the header`);
        fail(source, `tensor "${name}" overlaps tensor "${otherName}" in the data section`);
      }
      if (complete && begins[i]! > covered)
        fail(source, `bytes ${covered}..${begins[i]} of the data section belong to no tensor`);
      covered = ends[i]!;
    }
    if (complete && covered !== dataLength)
      fail(source, `the data section has ${dataLength - covered} bytes after the last tensor`);
  }
}

/** The names of the entries at these places in the header (for messages); read up to the last of them. */
function namesAt(source: string, text: string, dataLength: number, ordinals: readonly number[]): string[] {
  const names = ordinals.map(() => '?');
  const last = Math.max(...ordinals);
  scanHeader(source, text, dataLength, (entry, ordinal) => {
    ordinals.forEach((wanted, i) => {
      if (wanted === ordinal) names[i] = entry.name;
    });
    return ordinal === last;
  });
  return names;
}

/**
 * The bytes as a buffer range a typed array can view: `bytes` itself when its offset is aligned for
 * the type (no copy: a checkpoint is not held twice), else an aligned copy.
 */
function aligned(bytes: Uint8Array, elementBytes: number): [ArrayBuffer, number, number] {
  const length = bytes.byteLength / elementBytes;
  if (bytes.byteOffset % elementBytes === 0) return [bytes.buffer as ArrayBuffer, bytes.byteOffset, length];
  return [bytes.slice().buffer as ArrayBuffer, 0, length];
}

function toInt32(source: string, entry: TensorEntry, values: ArrayLike<number | bigint>): Int32Array {
  const out = new Int32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = Number(values[i]);
    if (v > 2147483647 || v < -2147483648) {
      fail(source, `tensor "${entry.name}": ${entry.dtype} value ${values[i]} at index ${i} does not fit in int32`);
    }
    out[i] = v;
  }
  return out;
}

const FLOAT_DTYPES: ReadonlySet<SafetensorsDtype> = new Set(['F32', 'F16', 'BF16', 'F64']);

function decode(source: string, entry: TensorEntry, bytes: Uint8Array, into?: Float32Array): TensorData {
  const shape = entry.shape;
  if (into && FLOAT_DTYPES.has(entry.dtype)) {
    const count = bytes.byteLength / SAFETENSORS_DTYPES[entry.dtype];
    if (into.length < count)
      fail(source, `tensor "${entry.name}": ${count} values do not fit a ${into.length}-value buffer`);
    const out = into.subarray(0, count);
    if (entry.dtype === 'F32') out.set(new Float32Array(...aligned(bytes, 4)));
    else if (entry.dtype === 'BF16') bfloat16ToFloat32(new Uint16Array(...aligned(bytes, 2)), out);
    else if (entry.dtype === 'F16') float16ToFloat32(new Uint16Array(...aligned(bytes, 2)), out);
    else out.set(new Float64Array(...aligned(bytes, 8)));
    return { dtype: 'float32', shape, values: out };
  }
  switch (entry.dtype) {
    case 'F32':
      return { dtype: 'float32', shape, values: new Float32Array(...aligned(bytes, 4)) };
    case 'F16':
      return { dtype: 'float32', shape, values: float16ToFloat32(new Uint16Array(...aligned(bytes, 2))) };
    case 'BF16':
      return { dtype: 'float32', shape, values: bfloat16ToFloat32(new Uint16Array(...aligned(bytes, 2))) };
    case 'F64':
      return { dtype: 'float32', shape, values: Float32Array.from(new Float64Array(...aligned(bytes, 8))) };
    case 'I64':
      return { dtype: 'int32', shape, values: toInt32(source, entry, new BigInt64Array(...aligned(bytes, 8))) };
    case 'I32':
      return { dtype: 'int32', shape, values: new Int32Array(...aligned(bytes, 4)) };
    case 'I16':
      return { dtype: 'int32', shape, values: Int32Array.from(new Int16Array(...aligned(bytes, 2))) };
    case 'I8':
      return { dtype: 'int32', shape, values: Int32Array.from(new Int8Array(...aligned(bytes, 1))) };
    case 'U8':
    case 'BOOL':
      return { dtype: 'int32', shape, values: Int32Array.from(bytes) };
  }
}

export interface TensorToWrite {
  shape: readonly number[];
  values: Float32Array;
  /** Default F32. */
  dtype?: SafetensorsFloatDtype;
}

/**
 * Serialises float tensors, in the layout the Python `safetensors` library writes: tensors sorted
 * by name, packed in that order, header padded with spaces to a multiple of 8 bytes.
 */
export function serializeSafetensors(
  tensors: Record<string, TensorToWrite>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  const payloads: Uint8Array[] = [];
  let offset = 0;
  for (const name of names) {
    const tensor = tensors[name]!;
    const elements = tensor.shape.reduce((a, b) => a * b, 1);
    if (elements !== tensor.values.length) {
      throw new Error(
        `tensor "${name}": shape ${JSON.stringify(tensor.shape)} has ${elements} elements, values ${tensor.values.length}`,
      );
    }
    const dtype = tensor.dtype ?? 'F32';
    const encoded =
      dtype === 'F32'
        ? tensor.values
        : dtype === 'F16'
          ? float32ToFloat16(tensor.values)
          : float32ToBfloat16(tensor.values);
    const payload = new Uint8Array(encoded.buffer, encoded.byteOffset, encoded.byteLength);
    header[name] = { dtype, shape: [...tensor.shape], data_offsets: [offset, offset + payload.byteLength] };
    payloads.push(payload);
    offset += payload.byteLength;
  }
  let json = JSON.stringify(header);
  const encoder = new TextEncoder();
  const padding = (8 - (encoder.encode(json).byteLength % 8)) % 8;
  json += ' '.repeat(padding);
  const headerBytes = encoder.encode(json);
  const out = new Uint8Array(8 + headerBytes.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true);
  out.set(headerBytes, 8);
  let position = 8 + headerBytes.byteLength;
  for (const payload of payloads) {
    out.set(payload, position);
    position += payload.byteLength;
  }
  return out;
}
