import { describe, expect, it } from 'vitest';
import { histError, histQuantile, mergeStat, rebin, type Stat } from '../../../../src-main/core/quant/stats';
import { selectSteps } from '../../../../src-main/core/quant/calibrate';
import { Rng } from '../../../../src-main/core/pipeline/noise';

const stat = (min: number, max: number, counts: number[], lo = min, hi = max): Stat => ({ min, max, absmax: Math.max(-min, max), hist: { lo, hi, counts }, n: 1 });

describe('streaming statistics', () => {
  it('re-binning keeps the mass and moves it to the bin of its centre', () => {
    const r = rebin({ lo: 0, hi: 4, counts: [1, 2, 3, 4] }, -4, 4);
    expect(r.reduce((a, b) => a + b, 0)).toBe(10);
    // 4 bins of width 2 on [-4, 4]: centres 0.5 and 1.5 fall in [0, 2), 2.5 and 3.5 in [2, 4)
    expect(r).toEqual([0, 0, 3, 7]);
  });
  it('merging histograms off a power-of-two grid widens the range and re-bins (approximately)', () => {
    // bins of width 0.75 and 1.25: not powers of two
    const m = mergeStat(stat(0, 3, [1, 1, 1, 1]), stat(-5, 0, [2, 0, 0, 2]));
    expect([m.min, m.max, m.absmax, m.n]).toEqual([-5, 3, 5, 2]);
    expect(m.hist.counts.reduce((a, b) => a + b, 0)).toBe(8);
    expect([m.hist.lo, m.hist.hi]).toEqual([-5, 3]);
  });
  it('merging histograms on power-of-two grids is exact: fine bins move whole into the coarse bin that holds them', () => {
    // [0, 4) in bins of 1 and [-4, 4) in bins of 2: the union [-4, 3.5] fits 4 bins of 2
    const m = mergeStat(stat(0, 3.5, [1, 2, 3, 4], 0, 4), stat(-4, 3, [5, 6, 7, 8], -4, 4));
    expect([m.min, m.max, m.n]).toEqual([-4, 3.5, 2]);
    expect(m.hist).toEqual({ lo: -4, hi: 4, counts: [5, 6, 7 + 1 + 2, 8 + 3 + 4] });
    // with 8 beyond it, bins of 4: [-4, 0), [0, 4), [4, 8), [8, 12)
    const wide = mergeStat(m, stat(8, 8, [1, 0, 0, 0], 8, 12));
    expect(wide.hist).toEqual({ lo: -4, hi: 12, counts: [11, 25, 0, 1] });
  });
  it('merging on power-of-two grids is associative and commutative (any batching gives the same statistic)', () => {
    const rng = new Rng(7);
    const bins = 16;
    // random rows: a range, its least power-of-two width holding it in bins - 2 bins, counts inside [min, max]
    const rows: Stat[] = Array.from({ length: 24 }, () => {
      const a = (rng.uniform() - 0.5) * 2 ** Math.floor(rng.uniform() * 12 - 4);
      const b = a + rng.uniform() * 2 ** Math.floor(rng.uniform() * 10 - 3);
      let w = 2 ** -30;
      while (w < (b - a) / (bins - 2)) w *= 2;
      const j0 = Math.floor(a / w);
      const counts = new Array<number>(bins).fill(0);
      for (let k = 0; k < 50; k++) counts[Math.floor((a + rng.uniform() * (b - a)) / w) - j0]! += 1 + Math.floor(rng.uniform() * 5);
      return { min: a, max: b, absmax: Math.max(-a, b), hist: { lo: j0 * w, hi: (j0 + bins) * w, counts }, n: 1 };
    });
    const fold = (xs: Stat[]) => xs.reduce<Stat | undefined>((acc, x) => mergeStat(acc, x), undefined)!;
    const seq = fold(rows);
    expect(seq.hist.counts.reduce((a, b) => a + b, 0)).toBe(rows.reduce((a, r) => a + r.hist.counts.reduce((x, y) => x + y, 0), 0));
    for (const size of [2, 3, 5, 8]) {
      const groups: Stat[] = [];
      for (let i = 0; i < rows.length; i += size) groups.push(fold(rows.slice(i, i + size)));
      expect(fold(groups)).toEqual(seq);
    }
    expect(fold([...rows].reverse())).toEqual(seq);
    // the grid is the finest that holds the union: one step finer would not
    const w = (seq.hist.hi - seq.hist.lo) / bins;
    expect(Math.floor(seq.max / (w / 2)) - Math.floor(seq.min / (w / 2))).toBeGreaterThan(bins - 1);
  });
  it('a non-finite range (NaN activations) keeps the mass and does not hang', () => {
    const m = mergeStat(stat(0, 4, [1, 1, 1, 1]), { ...stat(0, 4, [2, 0, 0, 2]), min: NaN, hist: { lo: NaN, hi: 4, counts: [2, 0, 0, 2] } });
    expect(m.min).toBeNaN();
    expect(m.hist.counts).toEqual([3, 1, 1, 3]);
  });
  it('quantiles of a uniform histogram are linear', () => {
    const h = { lo: 0, hi: 10, counts: new Array(10).fill(5) };
    expect(histQuantile(h, 0.5)).toBeCloseTo(5, 12);
    expect(histQuantile(h, 0.95)).toBeCloseTo(9.5, 12);
  });
  it('quantization error over a histogram is 0 for the identity and grows with a coarser grid', () => {
    const h = { lo: -1, hi: 1, counts: new Array(64).fill(1) };
    expect(histError(h, (v) => v)).toBe(0);
    expect(histError(h, (v) => Math.round(v * 4) / 4)).toBeLessThan(histError(h, (v) => Math.round(v)));
  });
});

describe('calibration timestep selection', () => {
  it('all, uniform (Q-Diffusion spacing) and normal (PTQ4DM, deterministic)', () => {
    expect(selectSteps(5, 'all', 0, 0)).toEqual([0, 1, 2, 3, 4]);
    expect(selectSteps(25, 'uniform', 5, 0)).toEqual([0, 5, 10, 15, 20]);
    const n = selectSteps(25, 'normal', 8, 3);
    expect(n).toEqual(selectSteps(25, 'normal', 8, 3));
    expect(n.length).toBeGreaterThan(3);
    for (const s of n) expect(s >= 0 && s < 25).toBe(true);
  });
});
