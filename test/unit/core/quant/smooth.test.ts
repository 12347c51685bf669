/**
 * SmoothQuant's alpha searched on sampled activations (quant/smooth.ts): an outlier input channel makes per-token
 * 4-bit activations lose the other channels, and the search balances it away; when a weight row carries the outlier,
 * an alpha between the ends splits the difficulty (SmoothQuant's premise), and the search finds one.
 */
import { describe, expect, it } from 'vitest';
import type { QuantizableLayer } from '../../../../src-main/core/onnx/analysis';
import { ALPHA_GRID, searchAlpha, type Candidate } from '../../../../src-main/core/quant/smooth';
import { parseRecipe } from '../../../../src-main/core/quant/recipe';

function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
}

const R = 128;
const C = 32;
const OUT = 24;
const weights = parseRecipe({ name: 'w4', weights: { format: { kind: 'int', bits: 4, symmetric: true }, granularity: 'channel' }, activations: null }, 'test').weights;
const layer = { name: 'l', op: 'MatMul', weight: 'w', weightShape: [C, OUT], input: 'x' } as unknown as QuantizableLayer;

/** Scales s_j = a_j^alpha / w_j^(1 - alpha) from the rows' RMS and the weight rows' max, as quantize.ts does. */
function scales(X: Float32Array, W: Float32Array) {
  const a = new Float64Array(C);
  const w = new Float64Array(C);
  for (let r = 0; r < R; r++) for (let j = 0; j < C; j++) a[j] += X[r * C + j]! ** 2 / R;
  for (let j = 0; j < C; j++) for (let o = 0; o < OUT; o++) w[j] = Math.max(w[j]!, Math.abs(W[j * OUT + o]!));
  return (alpha: number) => Float32Array.from({ length: C }, (_, j) => Math.sqrt(a[j]!) ** alpha / w[j]! ** (1 - alpha));
}

/** W' = diag(s) W (no rotation). */
const weightOf = (l: { w: Float32Array }, c: Candidate) => Float32Array.from(l.w, (v, i) => v * (c.scale ? c.scale[Math.floor(i / OUT)]! : 1));

describe('searchAlpha', () => {
  it('balances an outlier input channel away', () => {
    const r = rng(1);
    const X = Float32Array.from({ length: R * C }, (_, i) => r() * (i % C === 5 ? 60 : 1));
    const W = Float32Array.from({ length: C * OUT }, () => r());
    const res = searchAlpha({ data: X, rows: R, dim: C }, [{ layer, w: W, transB: false }], { rotate: 0, rotateFirst: false }, scales(X, W), weightOf, weights, 4);
    expect(res.errors).toHaveLength(ALPHA_GRID.length + 1);
    expect(res.alpha).not.toBeNull();
    expect(res.alpha!).toBeGreaterThanOrEqual(0.3);
    // half the error of leaving the outlier in, or of the weights taking all of it (alpha 1)
    const chosen = res.errors[ALPHA_GRID.indexOf(res.alpha!)]!;
    expect(chosen).toBeLessThan(res.errors.at(-1)! / 2);
    expect(chosen).toBeLessThan(res.errors[ALPHA_GRID.length - 1]! / 2);
  });

  it('splits the difficulty when the weights carry the outlier: an alpha inside (0, 1) beats both ends and no balance', () => {
    const r = rng(2);
    const X = Float32Array.from({ length: R * C }, () => r());
    // one weight row 40x the others: every output channel's 4-bit scale is set by it
    const W = Float32Array.from({ length: C * OUT }, (_, i) => r() * (Math.floor(i / OUT) === 7 ? 40 : 1));
    const res = searchAlpha({ data: X, rows: R, dim: C }, [{ layer, w: W, transB: false }], { rotate: 0, rotateFirst: false }, scales(X, W), weightOf, weights, 4);
    expect(res.alpha).not.toBeNull();
    expect(res.alpha!).toBeGreaterThan(0);
    expect(res.alpha!).toBeLessThan(1);
    const chosen = res.errors[ALPHA_GRID.indexOf(res.alpha!)]!;
    for (const other of [res.errors[0]!, res.errors[ALPHA_GRID.length - 1]!, res.errors.at(-1)!]) expect(chosen).toBeLessThan(0.75 * other);
  });
});
