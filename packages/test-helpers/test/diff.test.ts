import { describe, expect, it } from 'vitest';

import { maxDiff, maxDiffAtRealTokens } from '../src/index.js';

describe('maxDiff', () => {
  it('is the largest absolute difference, and NaN when a value is NaN (a check against it fails)', () => {
    expect(maxDiff([1, 2, 3], [1, 2.5, 1])).toBe(2);
    expect(maxDiff(new Float32Array([1, 2]), new Float32Array([1, 2]))).toBe(0);
    expect(maxDiff([1, Number.NaN], [1, 2])).toBeNaN();
  });
});

describe('maxDiffAtRealTokens', () => {
  // [B 2, T 3, width 2]: row 1's last position is padding
  const shape = [2, 3, 2];
  const mask = [
    [1, 1, 1],
    [1, 1, 0],
  ];
  const a = new Float32Array(12);
  it('skips padded positions of per-token logits only', () => {
    const b = new Float32Array(12);
    b[10] = 9; // row 1, position 2: padding
    expect(maxDiffAtRealTokens(a, b, shape, mask)).toBe(0);
    expect(maxDiffAtRealTokens(a, b, shape, null)).toBe(9);
    b[4] = 3; // row 0, position 2: a real token
    expect(maxDiffAtRealTokens(a, b, shape, mask)).toBe(3);
    expect(maxDiffAtRealTokens(a.subarray(0, 4), b.subarray(0, 4), [2, 2], mask)).toBe(0);
  });

  it('always compares the virtual tokens in front, the mask covering the real ones after them', () => {
    // with one virtual token, the 3 positions are [virtual, real 0, real 1]: mask [1, 0] pads position 2
    const b = new Float32Array(12);
    b[6] = 5; // row 1, position 0: virtual
    b[10] = 7; // row 1, position 2: real 1, padding
    const padded = [
      [1, 1],
      [1, 0],
    ];
    expect(maxDiffAtRealTokens(a, b, shape, padded, 1)).toBe(5);
    b[6] = 0;
    expect(maxDiffAtRealTokens(a, b, shape, padded, 1)).toBe(0);
  });
});
