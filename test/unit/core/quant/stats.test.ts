import { describe, expect, it } from 'vitest';
import { histError, histQuantile, mergeStat, rebin, type Stat } from '../../../../src-main/core/quant/stats';
import { selectSteps } from '../../../../src-main/core/quant/calibrate';

const stat = (lo: number, hi: number, counts: number[]): Stat => ({ min: lo, max: hi, absmax: Math.max(-lo, hi), hist: { lo, hi, counts }, n: 1 });

describe('streaming statistics', () => {
  it('re-binning keeps the mass and moves it to the bin of its centre', () => {
    const r = rebin({ lo: 0, hi: 4, counts: [1, 2, 3, 4] }, -4, 4);
    expect(r.reduce((a, b) => a + b, 0)).toBe(10);
    // 4 bins of width 2 on [-4, 4]: centres 0.5 and 1.5 fall in [0, 2), 2.5 and 3.5 in [2, 4)
    expect(r).toEqual([0, 0, 3, 7]);
  });
  it('merging widens the range and adds the counts', () => {
    const m = mergeStat(stat(0, 4, [1, 1, 1, 1]), stat(-4, 0, [2, 0, 0, 2]));
    expect([m.min, m.max, m.absmax, m.n]).toEqual([-4, 4, 4, 2]);
    expect(m.hist.counts.reduce((a, b) => a + b, 0)).toBe(8);
    expect([m.hist.lo, m.hist.hi]).toEqual([-4, 4]);
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
