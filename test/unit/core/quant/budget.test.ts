/**
 * Mixed precision under a budget (quant/budget.ts) and the sensitivity measure's error split (quant/sensitivity.ts).
 */
import { describe, expect, it } from 'vitest';
import { allocateBits, type BudgetCandidate } from '../../../../src-main/core/quant/budget';
import { imageError, stepRanges } from '../../../../src-main/core/quant/sensitivity';

function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

/** The best gain of any subset within the allowance (exhaustive). */
function bruteForce(c: BudgetCandidate[], allowance: number): number {
  let best = 0;
  for (let mask = 0; mask < 1 << c.length; mask++) {
    let bits = 0;
    let gain = 0;
    c.forEach((x, i) => {
      if (mask & (1 << i) && x.gain > 0) {
        bits += x.extraBits;
        gain += x.gain;
      }
    });
    if (bits <= allowance && gain > best) best = gain;
  }
  return best;
}

describe('allocateBits: a 0/1 knapsack over the layers', () => {
  it('never exceeds the allowance, and finds the exhaustive optimum when costs are whole units', () => {
    const r = rng(7);
    for (let trial = 0; trial < 40; trial++) {
      const n = 3 + Math.floor(r() * 10);
      const cands = Array.from({ length: n }, (_, i) => ({ name: `l${i}`, extraBits: 100 * (1 + Math.floor(r() * 20)), gain: r() - 0.1 }));
      const allowance = 100 * Math.floor(r() * 60);
      const a = allocateBits(cands, allowance, Math.max(1, allowance / 100));
      expect(a.extraBits).toBeLessThanOrEqual(allowance);
      const chosen = new Set(a.chosen);
      expect(a.extraBits).toBe(cands.filter((c) => chosen.has(c.name)).reduce((s, c) => s + c.extraBits, 0));
      expect(a.gain).toBeCloseTo(bruteForce(cands, allowance), 9);
      expect(cands.filter((c) => chosen.has(c.name)).every((c) => c.gain > 0)).toBe(true);
    }
  });

  it('with fractional costs stays within the allowance and within one unit of the optimum', () => {
    const r = rng(11);
    for (let trial = 0; trial < 20; trial++) {
      const cands = Array.from({ length: 12 }, (_, i) => ({ name: `l${i}`, extraBits: 1 + r() * 1000, gain: r() }));
      const allowance = 500 + r() * 3000;
      const a = allocateBits(cands, allowance);
      expect(a.extraBits).toBeLessThanOrEqual(allowance);
      // the optimum of a slightly smaller allowance (by the rounding: one unit per item) is reached
      expect(a.gain).toBeGreaterThanOrEqual(bruteForce(cands, allowance * (1 - 12 / 4000)) - 1e-12);
    }
  });

  it('takes nothing when nothing fits or nothing gains', () => {
    expect(allocateBits([{ name: 'a', extraBits: 10, gain: 1 }], 5).chosen).toEqual([]);
    expect(allocateBits([{ name: 'a', extraBits: 10, gain: -1 }], 50).chosen).toEqual([]);
    expect(allocateBits([{ name: 'a', extraBits: 10, gain: 1 }], 0).chosen).toEqual([]);
  });
});

describe('imageError: content (block means) + detail = MSE', () => {
  const shape = [1, 16, 16] as const;
  const img = (f: (y: number, x: number) => number) => Float32Array.from({ length: 256 }, (_, i) => f(Math.floor(i / 16), i % 16));
  it('a constant offset is all content; a checkerboard inside each 2x2 block all detail', () => {
    const zero = [img(() => 0)];
    const off = imageError([img(() => 0.5)], zero, shape);
    expect(off.mse).toBeCloseTo(0.25, 12);
    expect(off.content).toBeCloseTo(0.25, 12);
    expect(off.detail).toBeCloseTo(0, 12);
    const check = imageError([img((y, x) => ((x + y) % 2 ? 0.5 : -0.5))], zero, shape);
    expect(check.content).toBeCloseTo(0, 12);
    expect(check.detail).toBeCloseTo(0.25, 12);
  });
  it('splits any difference exactly', () => {
    const r = rng(3);
    const a = [img(() => r()), img(() => r())];
    const b = [img(() => r()), img(() => r())];
    const e = imageError(a, b, shape);
    let s = 0;
    a.forEach((x, i) => x.forEach((v, j) => (s += (v - b[i]![j]!) ** 2)));
    expect(e.mse).toBeCloseTo(s / 512, 12);
    expect(e.content + e.detail).toBeCloseTo(e.mse, 12);
    expect(e.content).toBeGreaterThan(0);
  });
});

describe('stepRanges', () => {
  it('covers every step once, in order, in near-equal ranges', () => {
    expect(stepRanges(25, 4)).toEqual([[0, 5], [6, 11], [12, 17], [18, 24]]);
    expect(stepRanges(3, 5)).toEqual([[0, 0], [1, 1], [2, 2]]);
    expect(stepRanges(10, 1)).toEqual([[0, 9]]);
  });
});
