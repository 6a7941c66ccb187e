// Large byte buffers whose memory goes back at once, not when a collector runs: a load stages tensors
// of hundreds of MB one after another, and the collector may not run before it ends.

/** ES2024's resizable ArrayBuffer (Node 20; browsers since 2023-24), typed here: the lib is ES2022. */
type ResizableBuffer = ArrayBuffer & { resize(length: number): void; readonly resizable: boolean };
const resizable = typeof (ArrayBuffer.prototype as Partial<ResizableBuffer>).resize === 'function';

/** `length` bytes whose memory `releaseBytes` gives back at once (where the platform has resizable buffers). */
export function releasableBytes(length: number): Uint8Array {
  if (!resizable) return new Uint8Array(length);
  const Resizable = ArrayBuffer as unknown as new (length: number, options: { maxByteLength: number }) => ArrayBuffer;
  return new Uint8Array(new Resizable(length, { maxByteLength: length }));
}

/** Gives back the memory of bytes from `releasableBytes`; any other buffer is left as it is. */
export function releaseBytes(bytes: Uint8Array): void {
  if ((bytes.buffer as Partial<ResizableBuffer>).resizable) (bytes.buffer as ResizableBuffer).resize(0);
}
