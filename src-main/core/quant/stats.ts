/**
 * Streaming activation statistics: per (site, half, step) min/max/absmax and a histogram. Nothing here holds
 * activations.
 *
 * Histograms from calibration lie on power-of-two grids: HIST_BINS bins of width w = 2^e starting at a multiple
 * of w (hist.lo = j0 w, hist.hi = lo + HIST_BINS w). Two such histograms merge exactly: the merged width is the least
 * power of two >= both widths at which [min, max] of the union spans at most HIST_BINS bins, and each bin k w..(k+1) w
 * of a finer grid lies inside bin floor(k / 2^d) of the coarser one, so its count moves whole. The merge is then
 * associative and commutative: statistics merged row by row, batch by batch, or in any order are identical (a
 * calibration record does not depend on the batch size). Other histograms (hand-made, or not on such a grid) are
 * re-binned approximately, each bin's mass to the bin of its centre.
 */
import { histQuantile as quantile } from '../../../kernels/stats.js';

/** Bins of a calibration histogram. */
export const HIST_BINS = 256;

export interface Hist {
  lo: number;
  hi: number;
  counts: number[];
}

export interface Stat {
  min: number;
  max: number;
  absmax: number;
  hist: Hist;
  /** Tensor rows (images, or an image's heads) merged into this statistic. */
  n: number;
}

/** Re-bins `h` onto [lo, hi] with the same bin count (each source bin's mass goes to the bin of its centre). */
export function rebin(h: Hist, lo: number, hi: number): number[] {
  const bins = h.counts.length;
  const out = new Array<number>(bins).fill(0);
  const w = (h.hi - h.lo) / bins;
  const k = hi > lo ? bins / (hi - lo) : 0;
  for (let i = 0; i < bins; i++) {
    const c = h.counts[i]!;
    if (!c) continue;
    const centre = h.lo + (i + 0.5) * w;
    const j = Math.min(bins - 1, Math.max(0, Math.floor((centre - lo) * k)));
    out[j]! += c;
  }
  return out;
}

const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer);

/** Whether w is a positive normal power of two (mantissa bits zero). */
function isPow2(w: number): boolean {
  if (!(w > 0) || !Number.isFinite(w)) return false;
  f64[0] = w;
  // little-endian: u32[0] low mantissa bits, u32[1] sign, exponent and high mantissa bits
  return u32[0] === 0 && (u32[1]! & 0xfffff) === 0 && (u32[1]! & 0x7ff00000) !== 0;
}

/** The grid of a histogram on a power-of-two grid (width w, first bin j0 w), or null when it is not on one. */
export function histGrid(h: Hist): { w: number; j0: number } | null {
  const w = (h.hi - h.lo) / h.counts.length;
  if (!isPow2(w)) return null;
  const j0 = h.lo / w;
  return Number.isInteger(j0) && j0 * w === h.lo ? { w, j0 } : null;
}

/** A histogram on a power-of-two grid: width w, first bin j0, its `bins` counts at counts[off ..]. */
export interface GridPart {
  w: number;
  j0: number;
  counts: ArrayLike<number>;
  off: number;
}

/**
 * Histograms on power-of-two grids moved whole onto the least such grid, at least as wide as each, on which [min, max]
 * spans at most `bins` bins: what merging them one by one gives, in one pass.
 */
export function mergeOnGrid(parts: GridPart[], min: number, max: number, bins: number): Hist {
  let w = parts.reduce((m, p) => Math.max(m, p.w), 0);
  while (Math.floor(max / w) - Math.floor(min / w) > bins - 1) w *= 2;
  const j0 = Math.floor(min / w);
  const counts = new Array<number>(bins).fill(0);
  for (const p of parts) {
    const f = w / p.w; // a power of two >= 1: (p.j0 + i) / f is exact
    for (let i = 0; i < bins; i++) {
      const c = Number(p.counts[p.off + i]);
      if (!c) continue;
      const j = Math.floor((p.j0 + i) / f) - j0;
      counts[j < 0 ? 0 : j > bins - 1 ? bins - 1 : j]! += c;
    }
  }
  return { lo: j0 * w, hi: (j0 + bins) * w, counts };
}

/** Merges two statistics; exact (associative, commutative) for histograms on power-of-two grids, see above. */
export function mergeStat(a: Stat | undefined, b: Stat): Stat {
  if (!a) return { ...b, hist: { ...b.hist, counts: [...b.hist.counts] } };
  const min = Math.min(a.min, b.min);
  const max = Math.max(a.max, b.max);
  const head = { min, max, absmax: Math.max(a.absmax, b.absmax), n: a.n + b.n };
  const bins = b.hist.counts.length;
  const ga = histGrid(a.hist);
  const gb = histGrid(b.hist);
  if (ga && gb && a.hist.counts.length === bins && Number.isFinite(min) && Number.isFinite(max)) {
    return { ...head, hist: mergeOnGrid([{ ...ga, counts: a.hist.counts, off: 0 }, { ...gb, counts: b.hist.counts, off: 0 }], min, max, bins) };
  }
  const lo = Math.min(a.hist.lo, b.hist.lo);
  const hi = Math.max(a.hist.hi, b.hist.hi);
  if (!Number.isFinite(lo) || !Number.isFinite(hi) || a.hist.counts.length !== bins) {
    // a non-finite range (a NaN or infinite activation, which quantization refuses): keep the mass, not the shape
    const counts = b.hist.counts.map((c, i) => c + (a.hist.counts[i] ?? 0));
    return { ...head, hist: { lo, hi, counts } };
  }
  const ca = rebin(a.hist, lo, hi);
  const cb = rebin(b.hist, lo, hi);
  return { ...head, hist: { lo, hi, counts: ca.map((c, i) => c + cb[i]!) } };
}

/** Value below which `q` (0..1) of the histogram's mass lies (linear within the bin); 0 when empty. */
export function histQuantile(h: Hist, q: number): number {
  return quantile(h, q) ?? 0;
}

/** Expected squared error of quantizing the histogram's mass with `q` (evaluated at bin centres). */
export function histError(h: Hist, q: (v: number) => number): number {
  const w = (h.hi - h.lo) / h.counts.length;
  let e = 0;
  for (let i = 0; i < h.counts.length; i++) {
    const c = h.counts[i]!;
    if (!c) continue;
    const v = h.lo + (i + 0.5) * w;
    e += c * (v - q(v)) ** 2;
  }
  return e;
}
