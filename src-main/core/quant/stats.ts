/**
 * Streaming activation statistics: per (site, half, step) running min/max/absmax and a histogram that is
 * re-binned when a new batch widens its range. Nothing here holds activations.
 */
import { histQuantile as quantile } from '../../../kernels/stats.js';

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
  /** Batches merged into this statistic. */
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

export function mergeStat(a: Stat | undefined, b: Stat): Stat {
  if (!a) return { ...b, hist: { ...b.hist, counts: [...b.hist.counts] } };
  const lo = Math.min(a.hist.lo, b.hist.lo);
  const hi = Math.max(a.hist.hi, b.hist.hi);
  const ca = rebin(a.hist, lo, hi);
  const cb = rebin(b.hist, lo, hi);
  return {
    min: Math.min(a.min, b.min),
    max: Math.max(a.max, b.max),
    absmax: Math.max(a.absmax, b.absmax),
    hist: { lo, hi, counts: ca.map((c, i) => c + cb[i]!) },
    n: a.n + b.n,
  };
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
