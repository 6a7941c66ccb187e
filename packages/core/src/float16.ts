// Conversions between float32 and the two 16-bit float formats of checkpoints. Typed-array loops
// rather than tensor ops: they run once at load or save time, on any backend.

const float32 = new Float32Array(1);
const bits32 = new Uint32Array(float32.buffer);

/** IEEE 754 half precision -> float32, exact; into `out` when given (at least as long). */
export function float16ToFloat32(half: Uint16Array, out: Float32Array = new Float32Array(half.length)): Float32Array {
  for (let i = 0; i < half.length; i++) {
    const h = half[i]!;
    const sign = (h & 0x8000) << 16;
    const exponent = (h >> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    if (exponent === 0) {
      // zero or subnormal: mantissa * 2^-24
      out[i] = (sign ? -1 : 1) * mantissa * 2 ** -24;
    } else if (exponent === 0x1f) {
      bits32[0] = sign | 0x7f800000 | (mantissa << 13);
      out[i] = float32[0]!;
    } else {
      bits32[0] = sign | ((exponent + 112) << 23) | (mantissa << 13);
      out[i] = float32[0]!;
    }
  }
  return out;
}

/** float32 -> half precision, rounding to nearest even; overflow gives infinity, NaN stays NaN. */
export function float32ToFloat16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    float32[0] = values[i]!;
    const x = bits32[0]!;
    const sign = (x >>> 16) & 0x8000;
    const exponent = (x >>> 23) & 0xff;
    let mantissa = x & 0x7fffff;
    if (exponent === 0xff) {
      out[i] = sign | 0x7c00 | (mantissa ? 0x200 : 0);
      continue;
    }
    const e = exponent - 127 + 15;
    if (e >= 0x1f) {
      out[i] = sign | 0x7c00;
    } else if (e <= 0) {
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      // subnormal half: shift the mantissa (with its hidden bit) right, round to nearest even
      mantissa |= 0x800000;
      const shift = 14 - e;
      let half = mantissa >> shift;
      const remainder = mantissa & ((1 << shift) - 1);
      const midpoint = 1 << (shift - 1);
      if (remainder > midpoint || (remainder === midpoint && half & 1)) half += 1;
      out[i] = sign | half;
    } else {
      let half = (e << 10) | (mantissa >> 13);
      const remainder = mantissa & 0x1fff;
      if (remainder > 0x1000 || (remainder === 0x1000 && half & 1)) half += 1; // may carry into the exponent: correct
      out[i] = sign | half;
    }
  }
  return out;
}

/** bfloat16 -> float32, exact (bfloat16 is the top half of a float32); into `out` when given. */
export function bfloat16ToFloat32(bf16: Uint16Array, out: Float32Array = new Float32Array(bf16.length)): Float32Array {
  const outBits = new Uint32Array(out.buffer, out.byteOffset, bf16.length);
  const n = bf16.length;
  for (let i = 0; i < n; i++) outBits[i] = bf16[i]! << 16;
  return out;
}

/** float32 -> bfloat16, rounding to nearest even; NaN stays NaN. */
export function float32ToBfloat16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < values.length; i++) {
    const x = bits[i]!;
    if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) {
      out[i] = (x >>> 16) | 0x40;
      continue;
    }
    out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}
