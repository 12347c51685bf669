/**
 * The low-rank branch of SVDQuant (Li et al. 2024): a weight M [m x n] (rows = outputs) split into L1 L2 (rank r,
 * L1 [m x r], L2 [r x n], kept in 16-bit float) and the residual M - L1 L2, which is what gets quantized. L1 L2 is the
 * truncated SVD (the best rank-r approximation in the Frobenius norm), computed by randomized subspace iteration
 * (Halko, Martinsson, Tropp 2011): Y = (M M^T)^q M G for a Gaussian G [n x (r + p)], Q = orth(Y), B = Q^T M, then the
 * small B's SVD from the eigen decomposition of B B^T (cyclic Jacobi, kernels/linalg.ts). With q = 2 power steps
 * and p = 8 extra columns, the error is within a hair of the exact truncated SVD's for the weights we quantize (the
 * tests compare against the exact one).
 */
import { symmetricEigen } from './linalg.js';

export interface LowRank {
  /** [m x r], row-major: U_r diag(S_r). */
  l1: Float64Array;
  /** [r x n], row-major: V_r^T. */
  l2: Float64Array;
  rank: number;
  /** The r singular values, largest first. */
  singular: Float64Array;
}

/** Deterministic standard normals (xorshift32 + Box-Muller). */
function gaussian(n: number, seed: number): Float64Array {
  let s = seed >>> 0 || 1;
  const u = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
  const out = new Float64Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(u()));
    const t = 2 * Math.PI * u();
    out[i] = r * Math.cos(t);
    if (i + 1 < n) out[i + 1] = r * Math.sin(t);
  }
  return out;
}

/** In place: the k columns of Y [m x k] made orthonormal (modified Gram-Schmidt, twice); a null column stays 0. */
function orthonormalize(Y: Float64Array, m: number, k: number): void {
  for (let pass = 0; pass < 2; pass++) {
    for (let j = 0; j < k; j++) {
      for (let i = 0; i < j; i++) {
        let d = 0;
        for (let r = 0; r < m; r++) d += Y[r * k + i]! * Y[r * k + j]!;
        for (let r = 0; r < m; r++) Y[r * k + j]! -= d * Y[r * k + i]!;
      }
      let nrm = 0;
      for (let r = 0; r < m; r++) nrm += Y[r * k + j]! ** 2;
      nrm = Math.sqrt(nrm);
      for (let r = 0; r < m; r++) Y[r * k + j] = nrm > 1e-300 ? Y[r * k + j]! / nrm : 0;
    }
  }
}

/** C [a x c] = A [a x b] B [b x c] (row-major), or with A transposed (A stored [b x a]). */
function matmul(A: Float64Array, B: ArrayLike<number>, a: number, b: number, c: number, transA = false): Float64Array {
  const C = new Float64Array(a * c);
  for (let i = 0; i < a; i++) {
    const ci = i * c;
    for (let k = 0; k < b; k++) {
      const v = transA ? A[k * a + i]! : A[i * b + k]!;
      if (v === 0) continue;
      const bk = k * c;
      for (let j = 0; j < c; j++) C[ci + j]! += v * (B[bk + j] as number);
    }
  }
  return C;
}

/**
 * The rank-r truncated SVD of M [m x n] (row-major) as L1 [m x r] = U_r S_r and L2 [r x n] = V_r^T. r is capped at
 * min(m, n).
 */
export function lowRank(M: ArrayLike<number>, m: number, n: number, rank: number, opts: { oversample?: number; power?: number; seed?: number } = {}): LowRank {
  const r = Math.max(0, Math.min(rank, m, n));
  const k = Math.min(m, n, r + (opts.oversample ?? 8));
  const Mf = Float64Array.from(M as ArrayLike<number>);
  // Y = M G, then power steps Y = M (M^T Y), orthonormalized between them
  let Y = matmul(Mf, gaussian(n * k, opts.seed ?? 12345), m, n, k);
  orthonormalize(Y, m, k);
  for (let q = 0; q < (opts.power ?? 2); q++) {
    const Z = matmul(Mf, Y, n, m, k, true); // M^T Y: [n x k]
    orthonormalize(Z, n, k);
    Y = matmul(Mf, Z, m, n, k);
    orthonormalize(Y, m, k);
  }
  // B = Q^T M [k x n]; B B^T = W diag(s^2) W^T; U = Q W; V^T = diag(1/s) W^T B
  const B = matmul(Y, Mf, k, m, n, true);
  const BBt = new Float64Array(k * k);
  for (let i = 0; i < k; i++) {
    for (let j = i; j < k; j++) {
      let d = 0;
      for (let c = 0; c < n; c++) d += B[i * n + c]! * B[j * n + c]!;
      BBt[i * k + j] = d;
      BBt[j * k + i] = d;
    }
  }
  // eigenpairs of B B^T, largest first
  const eig = symmetricEigen(BBt, k);
  const order = Array.from({ length: k }, (_, i) => i).sort((x, y) => eig.values[y]! - eig.values[x]!);
  const values = Float64Array.from(order, (i) => eig.values[i]!);
  const vectors = new Float64Array(k * k);
  order.forEach((src, dst) => {
    for (let r = 0; r < k; r++) vectors[r * k + dst] = eig.vectors[r * k + src]!;
  });
  const l1 = new Float64Array(m * r);
  const l2 = new Float64Array(r * n);
  const singular = new Float64Array(r);
  for (let j = 0; j < r; j++) {
    const s = Math.sqrt(Math.max(0, values[j]!));
    singular[j] = s;
    // u_j = Q w_j; l1[:, j] = s u_j; l2[j, :] = w_j^T B / s (= v_j^T)
    for (let i = 0; i < m; i++) {
      let d = 0;
      for (let t = 0; t < k; t++) d += Y[i * k + t]! * vectors[t * k + j]!;
      l1[i * r + j] = s * d;
    }
    if (s > 0) {
      for (let c = 0; c < n; c++) {
        let d = 0;
        for (let t = 0; t < k; t++) d += vectors[t * k + j]! * B[t * n + c]!;
        l2[j * n + c] = d / s;
      }
    }
  }
  return { l1, l2, rank: r, singular };
}
