/** SVDQuant's low-rank branch (kernels/lowrank.ts): the randomized truncated SVD against the exact one. */
import { describe, expect, it } from 'vitest';
import { symmetricEigen } from '../../../kernels/linalg';
import { lowRank } from '../../../kernels/lowrank';

function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32) - 0.5;
}

/** ||M - L1 L2||_F^2 */
function residual(M: Float64Array, m: number, n: number, l1: Float64Array, l2: Float64Array, r: number): number {
  let e = 0;
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let v = 0;
      for (let t = 0; t < r; t++) v += l1[i * r + t]! * l2[t * n + j]!;
      e += (M[i * n + j]! - v) ** 2;
    }
  }
  return e;
}

describe('lowRank', () => {
  it('recovers an exactly low-rank matrix', () => {
    const g = rng(1);
    const m = 24;
    const n = 40;
    const a = Float64Array.from({ length: m * 3 }, g);
    const b = Float64Array.from({ length: 3 * n }, g);
    const M = new Float64Array(m * n);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) for (let t = 0; t < 3; t++) M[i * n + j]! += a[i * 3 + t]! * b[t * n + j]!;
    const lr = lowRank(M, m, n, 3);
    expect(residual(M, m, n, lr.l1, lr.l2, 3) / M.reduce((s, v) => s + v * v, 0)).toBeLessThan(1e-20);
  });

  it('leaves what the exact truncated SVD leaves: the sum of the discarded squared singular values', () => {
    const g = rng(2);
    const m = 32;
    const n = 48;
    // a weight-like spectrum: a few strong directions over noise
    const M = Float64Array.from({ length: m * n }, g);
    const u = Float64Array.from({ length: m }, g);
    const v = Float64Array.from({ length: n }, g);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) M[i * n + j]! += 8 * u[i]! * v[j]!;
    // exact singular values from the eigenvalues of M M^T
    const S = new Float64Array(m * m);
    for (let i = 0; i < m; i++) for (let j = 0; j < m; j++) for (let c = 0; c < n; c++) S[i * m + j]! += M[i * n + c]! * M[j * n + c]!;
    const ev = Float64Array.from(symmetricEigen(S, m).values).sort().reverse();
    for (const r of [1, 4, 8]) {
      const lr = lowRank(M, m, n, r);
      const optimal = ev.slice(r).reduce((s, x) => s + Math.max(0, x), 0);
      const got = residual(M, m, n, lr.l1, lr.l2, r);
      expect(got).toBeGreaterThanOrEqual(optimal * (1 - 1e-9));
      expect(got).toBeLessThan(optimal * 1.02);
      for (let j = 0; j < r; j++) expect(lr.singular[j]).toBeCloseTo(Math.sqrt(ev[j]!), 1);
    }
  });

  it('symmetricEigen: A V = V diag(values)', () => {
    const g = rng(3);
    const k = 7;
    const A = new Float64Array(k * k);
    for (let i = 0; i < k; i++) for (let j = i; j < k; j++) A[i * k + j] = A[j * k + i] = g();
    const { values, vectors } = symmetricEigen(A, k);
    for (let c = 0; c < k; c++) {
      for (let i = 0; i < k; i++) {
        let av = 0;
        for (let t = 0; t < k; t++) av += A[i * k + t]! * vectors[t * k + c]!;
        expect(av).toBeCloseTo(values[c]! * vectors[i * k + c]!, 10);
      }
    }
  });
});
