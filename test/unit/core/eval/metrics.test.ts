/** Metrics against independent computations and closed forms. */
import { describe, expect, it } from 'vitest';
import { fitGaussian, frechetDistance, psnr, sqrtPsd, ssim, symmetricEigen, type Gaussian } from '../../../../src-main/core/eval/metrics';
import { Rng } from '../../../../src-main/core/pipeline/noise';

describe('PSNR', () => {
  it('matches 10 log10(range^2 / MSE) for a known pair', () => {
    const a = [0, 0.5, -0.5, 1];
    const b = [0.1, 0.5, -0.5, 0.9]; // MSE = (0.01 + 0.01) / 4 = 0.005
    expect(psnr(a, b, 2)).toBeCloseTo(10 * Math.log10(4 / 0.005), 12);
    expect(psnr(a, a)).toBe(Infinity);
  });
});

describe('SSIM', () => {
  const H = 16;
  const img = Float64Array.from({ length: H * H }, (_, i) => Math.sin(i * 0.7) * 0.8);
  it('is 1 for identical images', () => expect(ssim(img, img, [1, H, H])).toBeCloseTo(1, 12));
  it('equals the closed form for constant images (luminance term only)', () => {
    // constant a, b: variances and covariance are 0, so SSIM = (2ab + c1) / (a^2 + b^2 + c1)
    const a = new Float64Array(H * H).fill(0.2);
    const b = new Float64Array(H * H).fill(-0.3);
    const c1 = (0.01 * 2) ** 2;
    expect(ssim(a, b, [1, H, H])).toBeCloseTo((2 * 0.2 * -0.3 + c1) / (0.04 + 0.09 + c1), 12);
  });
  it('equals a direct per-window computation with a 2-D Gaussian window', () => {
    const r = new Rng(5);
    const other = img.map((v, i) => 0.6 * v + 0.1 * Math.cos(i) + 0.05 * (r.uniform() - 0.5));
    const w = Array.from({ length: 11 }, (_, i) => Math.exp(-((i - 5) ** 2) / (2 * 1.5 * 1.5)));
    const W2 = w.flatMap((a) => w.map((b) => a * b));
    const sum = W2.reduce((x, y) => x + y, 0);
    const c1 = 0.02 ** 2;
    const c2 = 0.06 ** 2;
    let total = 0;
    let count = 0;
    for (let y = 0; y + 11 <= H; y++) for (let x = 0; x + 11 <= H; x++) {
      let ma = 0, mb = 0, saa = 0, sbb = 0, sab = 0;
      for (let j = 0; j < 11; j++) for (let i = 0; i < 11; i++) {
        const k = W2[j * 11 + i]! / sum;
        const a = img[(y + j) * H + x + i]!;
        const b = other[(y + j) * H + x + i]!;
        ma += k * a; mb += k * b; saa += k * a * a; sbb += k * b * b; sab += k * a * b;
      }
      const va = saa - ma * ma, vb = sbb - mb * mb, cov = sab - ma * mb;
      total += ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2));
      count++;
    }
    expect(ssim(img, other, [1, H, H])).toBeCloseTo(total / count, 10);
  });
  it('decreases with noise and is symmetric', () => {
    const r = new Rng(1);
    const noisy = img.map((v) => v + 0.2 * (r.uniform() - 0.5));
    const s = ssim(img, noisy, [1, H, H]);
    expect(s).toBeLessThan(1);
    expect(s).toBeGreaterThan(0.5);
    expect(ssim(noisy, img, [1, H, H])).toBeCloseTo(s, 12);
  });
});

describe('matrix square root', () => {
  it('squares back to the matrix and finds known eigenvalues', () => {
    const m = Float64Array.from([4, 1, 0, 1, 3, 1, 0, 1, 2]);
    const r = sqrtPsd(m, 3);
    for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) {
      let s = 0;
      for (let k = 0; k < 3; k++) s += r[i * 3 + k]! * r[k * 3 + j]!;
      expect(s).toBeCloseTo(m[i * 3 + j]!, 10);
    }
    const ev = [...symmetricEigen(Float64Array.from([2, 1, 1, 2]), 2).values].sort();
    expect(ev[0]).toBeCloseTo(1, 12);
    expect(ev[1]).toBeCloseTo(3, 12);
  });
});

describe('Frechet distance', () => {
  const sample = (n: number, d: number, seed: number, f: (z: Float64Array) => number[]) => {
    const r = new Rng(seed);
    return Array.from({ length: n }, () => f(r.normal(new Float64Array(d)) as Float64Array));
  };
  it('of a set with itself is 0', () => {
    const xs = sample(300, 16, 3, (z) => [...z].map((v, i) => v * (1 + i / 8) + i));
    const g = fitGaussian(xs);
    expect(frechetDistance(g, g)).toBeLessThan(1e-9);
  });
  it('between two Gaussians matches the closed form', () => {
    // diagonal covariances: FD = |m1 - m2|^2 + sum (s1 - s2)^2 with s = standard deviations
    const d = 6;
    const g1: Gaussian = { dim: d, n: 0, mean: Float64Array.from({ length: d }, (_, i) => i * 0.5), cov: new Float64Array(d * d) };
    const g2: Gaussian = { dim: d, n: 0, mean: Float64Array.from({ length: d }, (_, i) => 1 - i * 0.25), cov: new Float64Array(d * d) };
    let expected = 0;
    for (let i = 0; i < d; i++) {
      const v1 = 1 + i;
      const v2 = 0.5 + i * i;
      g1.cov[i * d + i] = v1;
      g2.cov[i * d + i] = v2;
      expected += (g1.mean[i]! - g2.mean[i]!) ** 2 + (Math.sqrt(v1) - Math.sqrt(v2)) ** 2;
    }
    expect(frechetDistance(g1, g2)).toBeCloseTo(expected, 9);
  });
  it('is invariant to a shared rotation and agrees with the commuting-case formula', () => {
    // rotate both diagonal Gaussians by the same orthogonal matrix: the distance must not change
    const d = 3;
    const c = Math.cos(0.7);
    const s = Math.sin(0.7);
    const R = [c, -s, 0, s, c, 0, 0, 0, 1];
    const rot = (diag: number[]) => {
      const out = new Float64Array(9);
      for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) for (let k = 0; k < 3; k++) out[i * 3 + j]! += R[i * 3 + k]! * diag[k]! * R[j * 3 + k]!;
      return out;
    };
    const g1: Gaussian = { dim: d, n: 0, mean: new Float64Array(3), cov: rot([1, 4, 9]) };
    const g2: Gaussian = { dim: d, n: 0, mean: new Float64Array(3), cov: rot([4, 1, 16]) };
    expect(frechetDistance(g1, g2)).toBeCloseTo((1 - 2) ** 2 + (2 - 1) ** 2 + (3 - 4) ** 2, 9);
  });
});
