// Largest absolute differences, the measure every parity and conformance check reports.

type Values = ArrayLike<number>;

/** Largest |a - b| over all positions (a's length). */
export function maxDiff(a: Values, b: Values): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

/**
 * Largest |a - b| at real tokens: per-token logits ([B, T, width], `shape` of both) skip the
 * positions whose mask is 0; the first `virtualTokens` positions of each row are prompt tokens the
 * mask does not cover and are always compared. Sequence logits ([B, labels]) compare everything.
 */
export function maxDiffAtRealTokens(
  a: Values,
  b: Values,
  shape: readonly number[],
  mask: readonly (readonly number[])[] | null,
  virtualTokens = 0,
): number {
  if (shape.length !== 3 || !mask) return maxDiff(a, b);
  const [, length, width] = shape as [number, number, number];
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const row = Math.floor(i / width);
    const position = row % length;
    if (position >= virtualTokens && mask[Math.floor(row / length)]![position - virtualTokens] === 0) continue;
    worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  }
  return worst;
}
