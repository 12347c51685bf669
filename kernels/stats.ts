/**
 * Calibration statistics, reference side: min / max / absmax (per tensor or per channel), a histogram over a
 * given range, and the Gram matrix X^T X of a layer input (for GPTQ). ./onnx/stats.ts computes the same in-graph.
 */
import { groupReduce, normAxis, numel, type Granularity } from './layout.js';

const f32 = Math.fround;

export interface MinMax {
  min: Float32Array;
  max: Float32Array;
  absmax: Float32Array;
}

/** Per tensor (axis undefined: arrays of length 1) or per channel along `axis`. NaNs are ignored. */
export function minMax(x: Float32Array, dims: readonly number[], axis?: number): MinMax {
  const g: Granularity = axis === undefined ? { kind: 'tensor' } : { kind: 'channel', axis };
  return { min: groupReduce(x, dims, g, 'min'), max: groupReduce(x, dims, g, 'max'), absmax: groupReduce(x, dims, g, 'absmax') };
}

export interface HistogramSpec {
  lo: number;
  hi: number;
  bins: number;
}

/** The float32 factor bins / (hi - lo) both sides use. */
export function histogramFactor(h: HistogramSpec): number {
  if (!(h.hi > h.lo) || !Number.isInteger(h.bins) || h.bins < 1) throw new RangeError('a histogram needs hi > lo and bins >= 1');
  return f32(h.bins / (f32(h.hi) - f32(h.lo)));
}

/**
 * Counts per bin: bin = clamp(floor((x - lo) * factor), 0, bins - 1) in float32, so values below lo (and -Inf)
 * land in the first bin and values at or above hi (and +Inf) in the last. NaNs are not counted.
 */
export function histogram(x: Float32Array, h: HistogramSpec): Float64Array {
  const k = histogramFactor(h);
  const lo = f32(h.lo);
  const counts = new Float64Array(h.bins);
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (v !== v) continue;
    const t = Math.floor(f32(f32(v - lo) * k));
    counts[t < 0 ? 0 : t > h.bins - 1 ? h.bins - 1 : t]!++;
  }
  return counts;
}

/**
 * The value below which a fraction q (0..1) of a histogram's mass lies (linear within the bin), for counts over
 * equal bins on [lo, hi]; null when the histogram is empty.
 */
export function histQuantile(h: { lo: number; hi: number; counts: ArrayLike<number> }, q: number): number | null {
  let total = 0;
  for (let i = 0; i < h.counts.length; i++) total += h.counts[i]!;
  if (!total) return null;
  const w = (h.hi - h.lo) / h.counts.length;
  const target = q * total;
  let acc = 0;
  for (let i = 0; i < h.counts.length; i++) {
    const c = h.counts[i]!;
    if (acc + c >= target) return h.lo + (i + (c ? (target - acc) / c : 0)) * w;
    acc += c;
  }
  return h.hi;
}

/**
 * X^T X where X is the input viewed as rows of `featureAxis`-features (all other axes are rows), accumulated in
 * double and rounded to float32 once (onnxruntime's MatMul accumulates in float32 in its own order, so the two
 * agree exactly only when every partial sum is exact, e.g. for small integers).
 */
export function gram(x: Float32Array, dims: readonly number[], featureAxis = -1): { k: number; data: Float32Array } {
  const a = normAxis(featureAxis, dims.length);
  const k = dims[a]!;
  const inner = numel(dims.slice(a + 1));
  const outer = numel(dims.slice(0, a));
  const acc = new Float64Array(k * k);
  const row = new Float64Array(k);
  for (let o = 0; o < outer; o++)
    for (let r = 0; r < inner; r++) {
      for (let c = 0; c < k; c++) row[c] = x[(o * k + c) * inner + r]!;
      for (let i = 0; i < k; i++) {
        const ri = row[i]!;
        if (ri === 0) continue;
        for (let j = 0; j < k; j++) acc[i * k + j]! += ri * row[j]!;
      }
    }
  return { k, data: Float32Array.from(acc) };
}
