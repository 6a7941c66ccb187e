// The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian
// header length N, N bytes of JSON `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?}`,
// then the tensor bytes, little-endian, offsets relative to the end of the header. Every field of a
// file is checked before a byte of it is used: files may be truncated, or lie.
import type { RangeFile } from './files.js';
import { bfloat16ToFloat32, float16ToFloat32, float32ToBfloat16, float32ToFloat16 } from './float16.js';

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

function isDtype(value: unknown): value is SafetensorsDtype {
  return typeof value === 'string' && Object.hasOwn(SAFETENSORS_DTYPES, value);
}

function parseEntry(source: string, name: string, raw: unknown, dataLength: number): TensorEntry {
  const where = `tensor "${name}"`;
  if (typeof raw !== 'object' || raw === null) fail(source, `${where}: header entry is not an object`);
  const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
  if (!isDtype(dtype)) {
    fail(
      source,
      `${where}: unknown dtype ${JSON.stringify(dtype)} (supported: ${Object.keys(SAFETENSORS_DTYPES).join(', ')})`,
    );
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    fail(source, `${where}: shape must be a list of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
    offsets[0] > offsets[1]
  ) {
    fail(source, `${where}: data_offsets must be [begin, end] with 0 <= begin <= end, got ${JSON.stringify(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  if (end > dataLength) {
    fail(
      source,
      `${where}: data_offsets [${begin}, ${end}] run past the end of the data (${dataLength} bytes; file truncated?)`,
    );
  }
  const elements = (shape as number[]).reduce((a, b) => a * b, 1);
  const expected = elements * SAFETENSORS_DTYPES[dtype];
  if (end - begin !== expected) {
    fail(
      source,
      `${where}: ${dtype} ${JSON.stringify(shape)} needs ${expected} bytes, data_offsets give ${end - begin}`,
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
      const entry = entries.get(name);
      if (!entry) fail(source, `no tensor "${name}"`);
      return decode(source, entry, data.subarray(entry.begin, entry.end), into);
    },
    bytes(name) {
      const entry = entries.get(name);
      if (!entry) fail(source, `no tensor "${name}"`);
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
  // reused: no fresh pages per tensor.
  let staging = new Uint8Array(0);
  const stage = (entry: TensorEntry): Uint8Array => {
    const length = entry.end - entry.begin;
    if (length > MAX_STAGING_BYTES) return file.read(headerEnd + entry.begin, length);
    if (staging.byteLength < length) staging = new Uint8Array(length);
    return file.read(headerEnd + entry.begin, length, staging);
  };
  return {
    source,
    metadata,
    entries,
    tensor(name, into) {
      const entry = entries.get(name);
      if (!entry) fail(source, `no tensor "${name}"`);
      if (!into || !FLOAT_DTYPES.has(entry.dtype))
        return decode(source, entry, file.read(headerEnd + entry.begin, entry.end - entry.begin));
      return decode(source, entry, stage(entry), into);
    },
    bytes(name) {
      const entry = entries.get(name);
      if (!entry) fail(source, `no tensor "${name}"`);
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

/** The header's entries, each checked against a data section of `dataLength` bytes, which they must tile. */
function parseHeader(
  source: string,
  headerBytes: Uint8Array,
  dataLength: number,
): { metadata: Record<string, string>; entries: Map<string, TensorEntry> } {
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (error) {
    fail(source, `header is not valid UTF-8 JSON (${(error as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header))
    fail(source, 'header is not a JSON object');

  const entries = new Map<string, TensorEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null || !Object.values(raw).every((v) => typeof v === 'string')) {
        fail(source, '__metadata__ must map strings to strings');
      }
      metadata = raw as Record<string, string>;
      continue;
    }
    entries.set(name, parseEntry(source, name, raw, dataLength));
  }
  // The data section must be covered exactly: no overlaps, no holes, nothing after the last tensor.
  const sorted = [...entries.values()].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  for (const entry of sorted) {
    if (entry.begin < covered) {
      const other = sorted.find((e) => e !== entry && e.begin < entry.end && entry.begin < e.end);
      fail(source, `tensor "${entry.name}" overlaps tensor "${other?.name ?? '?'}" in the data section`);
    }
    if (entry.begin > covered) fail(source, `bytes ${covered}..${entry.begin} of the data section belong to no tensor`);
    covered = entry.end;
  }
  if (covered !== dataLength) fail(source, `the data section has ${dataLength - covered} bytes after the last tensor`);
  return { metadata, entries };
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
