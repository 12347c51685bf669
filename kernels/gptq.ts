/**
 * GPTQ (Frantar et al. 2022, "OPTQ"): rounds a weight column by column, compensating each column's rounding error
 * on the columns not yet rounded through the inverse of H = sum x x^T, the Gram matrix of the layer's inputs.
 *
 * The weight is rows [R, K] (R output channels, K input features, row-major), H is [K, K]. Every value produced
 * is made by the formats' reference arithmetic (./quant.ts) from the parameters returned, so it lies exactly on the
 * format's grid: fakeQuantInt / fakeQuantFloat of the values with the returned scales (and zero points) is the
 * identity, as are fakeQuantMx and fakeQuantNvfp4 (with the returned tensor scale).
 *
 * The algorithm follows the reference implementation (IST-DASLab/gptq, fasterquant):
 * - dead inputs (H[j][j] = 0): H[j][j] = 1 and W[:, j] = 0 (their row and column of H are zeroed as well);
 * - dampening: H += percdamp * mean(diag H) * I; if H is still not (numerically) positive definite the dampening
 *   is retried at 10x, up to 5 times; `dampening` in the result is the relative dampening finally used;
 * - U = the upper Cholesky factor of H^-1 (H^-1 = U^T U), in Float64;
 * - per column j (in order, or by decreasing H[j][j] with actOrder): q_j = Q(w_j), err = (w_j - q_j) / U[j][j],
 *   W[:, j+1:] -= err * U[j, j+1:], with lazy batch updates in blocks of `blockSize` columns;
 * - loss = sum over columns and rows of (w - q)^2 / U[j][j]^2 / 2 (the paper's proxy loss). It equals half the
 *   damped quadratic error sum_r (w_r - q_r)^T H_damped (w_r - q_r).
 *
 * Scale groups:
 * - 'tensor' / 'channel': parameters from the whole weight / each row, fixed at the start from the original W;
 * - a group size g along K (g divides K): the parameters of W[:, j:j+g] are fixed when column j is reached, from
 *   the current (error-updated) weights, as the reference with static_groups=false. With actOrder, all groups are
 *   fixed up front from the original W (static groups), and a column keeps the group of its original index;
 * - MX (blocks of 32) and NVFP4 (blocks of 16) always use their blocks along K; NVFP4's per-tensor scale is fixed
 *   once from the original W's max |w| (nvfp4TensorScale).
 * INT/FP parameters are max calibration (maxCalibrate), or with clipping 'mse' the shrink factor a in
 * {1, 0.95, ..., 0.5} with the least squared error over the group's current weights (the grid of quantizeWeight's
 * MSE clipping in src-main/core/quant/weights.ts).
 *
 * Deviations from the reference, and why:
 * - group parameters (static_groups=false) use the fully updated weights of the group; the reference reads
 *   W[:, j:j+g], which misses the updates from the current block's earlier columns. Here the blocked and the
 *   unblocked forms agree (up to float rounding) for every blockSize;
 * - parameters are computed after zeroing dead columns (the reference calibrates per-channel scales before): a dead
 *   input contributes nothing to the output, and its column stays exactly 0;
 * - U is computed as the inverse of the "reversed" Cholesky factor V of H (H = V V^T, V upper): U = V^-1 is the
 *   unique upper factor with U^T U = H^-1, in half the flops of Cholesky(H) -> H^-1 -> Cholesky(H^-1), without
 *   forming H^-1;
 * - keepGroupMax (default true): the exporter (src-main/core/export/recover.ts) recovers codes and scales from the
 *   values alone, which needs each group's largest value to sit on the format's top code, as round-to-nearest
 *   guarantees. After compensation the element that set a group's scale (its max |w| when the parameters were
 *   fixed, the "anchor") may round below it, so the anchor is rounded to the nearest value of top magnitude
 *   instead (INT symmetric: +-qmax; FP: +-max; MX: at least 2^emax_elem, so the block keeps its binade; NVFP4: +-6),
 *   and GPTQ compensates that error like any other. For NVFP4, the block holding the tensor's max |w| also keeps
 *   the E4M3 scale 448, so the values still carry the tensor scale. Asymmetric INT (no exporter) is left alone.
 *   With a diagonal H there is no compensation, and the result is exactly round-to-nearest.
 */
import type { Granularity } from './layout.js';
import { FORMATS, quantizeValue } from './minifloat.js';
import {
  E2M1_MAX,
  E4M3_MAX,
  MX_BLOCK,
  NVFP4_BLOCK,
  blockAmax,
  dequantizeInt,
  fakeQuantFloat,
  fakeQuantInt,
  intParams,
  intRange,
  maxCalibrate,
  mxElementEmax,
  mxElementValue,
  mxScaleExponent,
  nvfp4BlockScale,
  nvfp4TensorScale,
  quantizeInt,
  type MxElement,
  type QuantFormat,
} from './quant.js';

const f32 = Math.fround;

export interface GptqOptions {
  /** INT/FP scale groups: 'channel' (default), 'tensor', or a group size along K. Ignored for MX and NVFP4. */
  group?: number | 'channel' | 'tensor';
  /** Columns per lazy batch update (default 128). */
  blockSize?: number;
  /** Dampening relative to mean(diag H) (default 0.01). */
  percdamp?: number;
  /** Quantize columns by decreasing H[j][j] (static groups when grouped). */
  actOrder?: boolean;
  /** INT/FP parameters: max calibration (default) or the MSE-best shrink of the range. */
  clipping?: 'minmax' | 'mse';
  /** Keep each group's anchor on the format's top code, so the values alone give back the scales (default true). */
  keepGroupMax?: boolean;
  /** INT/FP: maps every scale before use, e.g. float16Floor for scales stored in float16 (default: as computed). */
  roundScale?: (s: number) => number;
}

export interface GptqResult {
  /** The fake-quantized weight [R, K], on the format's grid. */
  values: Float32Array;
  /** The layout of scale / zeroPoint / blockScale over [R, K]: tensor, channel (axis 0) or block (axis 1). */
  granularity: Granularity;
  /** INT/FP scales (1, R or R x K/g values, as `granularity` lays them out). */
  scale?: Float32Array;
  /** Asymmetric INT zero points, laid out like scale. */
  zeroPoint?: Int32Array;
  /** MX: the blocks' scale exponents; NVFP4: the blocks' E4M3 scales ([R, K / block], as fakeQuantMx/Nvfp4 give). */
  blockScale?: Float32Array;
  /** NVFP4: the float32 per-tensor scale. */
  tensorScale?: number;
  /** The proxy loss: sum of (w - q)^2 / U[j][j]^2 / 2. */
  loss: number;
  /** The dampening used, relative to mean(diag H) (percdamp, or more after retries). */
  dampening: number;
}

/** Default dampening, relative to mean(diag H) (the reference's percdamp). */
export const GPTQ_PERCDAMP = 0.01;
const DAMP_RETRIES = 5;

/** Columns (rows) per block of the blocked factorization and inversion: their rows stay in cache. */
const NB = 64;

/**
 * In place: A (K x K, row-major, upper triangle read) becomes U, upper triangular, with U^T U = A^-1 (the lower
 * triangle is zeroed). Returns false when A is not numerically positive definite (a pivot <= tol).
 *
 * 1. V upper with A = V V^T: the Cholesky factor of A with its index order reversed, V[i][j] = (A[i][j] -
 *    sum_{k>j} V[i][k] V[j][k]) / V[j][j], by blocks of NB columns from the last one (the sum over the finished
 *    columns is a matrix product whose block rows stay in cache, then the block itself);
 * 2. U = V^-1, by blocks of NB rows from the bottom: U[i, :] = (e_i - sum_{k>i} V[i][k] U[k, :]) / V[i][i].
 */
function inverseUpperInPlace(A: Float64Array, K: number, tol: number): boolean {
  for (let j1 = K; j1 > 0; j1 -= NB) {
    const j0 = Math.max(0, j1 - NB);
    // 1a. the block's columns j0..j1-1, every row above: subtract the finished columns k >= j1
    if (j1 < K) {
      let i = 0;
      // rows above the block, two at a time against four columns: 8 products per 6 loads
      for (; i + 1 < j0; i += 2) {
        const r0 = i * K;
        const r1 = r0 + K;
        let j = j0;
        for (; j + 3 < j1; j += 4) {
          const a0 = j * K;
          const a1 = a0 + K;
          const a2 = a1 + K;
          const a3 = a2 + K;
          let s0 = 0;
          let s1 = 0;
          let s2 = 0;
          let s3 = 0;
          let t0 = 0;
          let t1 = 0;
          let t2 = 0;
          let t3 = 0;
          for (let k = j1; k < K; k++) {
            const x = A[r0 + k]!;
            const y = A[r1 + k]!;
            const c0 = A[a0 + k]!;
            const c1 = A[a1 + k]!;
            const c2 = A[a2 + k]!;
            const c3 = A[a3 + k]!;
            s0 += x * c0;
            s1 += x * c1;
            s2 += x * c2;
            s3 += x * c3;
            t0 += y * c0;
            t1 += y * c1;
            t2 += y * c2;
            t3 += y * c3;
          }
          A[r0 + j] -= s0;
          A[r0 + j + 1] -= s1;
          A[r0 + j + 2] -= s2;
          A[r0 + j + 3] -= s3;
          A[r1 + j] -= t0;
          A[r1 + j + 1] -= t1;
          A[r1 + j + 2] -= t2;
          A[r1 + j + 3] -= t3;
        }
        for (; j < j1; j++) {
          const rj = j * K;
          let s0 = 0;
          let t0 = 0;
          for (let k = j1; k < K; k++) {
            const c = A[rj + k]!;
            s0 += A[r0 + k]! * c;
            t0 += A[r1 + k]! * c;
          }
          A[r0 + j] -= s0;
          A[r1 + j] -= t0;
        }
      }
      for (; i < j1; i++) {
        const ri = i * K;
        let j = Math.max(j0, i);
        for (; j + 3 < j1; j += 4) {
          const a0 = j * K;
          const a1 = a0 + K;
          const a2 = a1 + K;
          const a3 = a2 + K;
          let t0 = 0;
          let t1 = 0;
          let t2 = 0;
          let t3 = 0;
          for (let k = j1; k < K; k++) {
            const x = A[ri + k]!;
            t0 += x * A[a0 + k]!;
            t1 += x * A[a1 + k]!;
            t2 += x * A[a2 + k]!;
            t3 += x * A[a3 + k]!;
          }
          A[ri + j] -= t0;
          A[ri + j + 1] -= t1;
          A[ri + j + 2] -= t2;
          A[ri + j + 3] -= t3;
        }
        for (; j < j1; j++) {
          const rj = j * K;
          let t = 0;
          for (let k = j1; k < K; k++) t += A[ri + k]! * A[rj + k]!;
          A[ri + j] -= t;
        }
      }
    }
    // 1b. the diagonal block
    for (let j = j1 - 1; j >= j0; j--) {
      const rj = j * K;
      let s = A[rj + j]!;
      for (let k = j + 1; k < j1; k++) s -= A[rj + k]! * A[rj + k]!;
      if (!(s > tol) || !Number.isFinite(s)) return false;
      const vjj = Math.sqrt(s);
      A[rj + j] = vjj;
      for (let i = j0; i < j; i++) {
        const ri = i * K;
        let t = A[ri + j]!;
        for (let k = j + 1; k < j1; k++) t -= A[ri + k]! * A[rj + k]!;
        A[ri + j] = t / vjj;
      }
    }
    // 1c. the rows above the block: a triangular solve each
    for (let i = 0; i < j0; i++) {
      const ri = i * K;
      for (let j = j1 - 1; j >= j0; j--) {
        const rj = j * K;
        let t = A[ri + j]!;
        for (let k = j + 1; k < j1; k++) t -= A[ri + k]! * A[rj + k]!;
        A[ri + j] = t / A[rj + j]!;
      }
    }
  }
  // 2. U = V^-1; T accumulates sum_{k>i} V[i][k] U[k, :] for the block's rows
  const T = new Float64Array(Math.min(NB, K) * K);
  for (let i1 = K; i1 > 0; i1 -= NB) {
    const i0 = Math.max(0, i1 - NB);
    T.fill(0, 0, (i1 - i0) * K);
    // 2a. the finished rows k >= i1 (their lower triangles are zero)
    let k = i1;
    for (; k + 3 < K; k += 4) {
      const b0 = k * K;
      const b1 = b0 + K;
      const b2 = b1 + K;
      const b3 = b2 + K;
      let i = i0;
      for (; i + 1 < i1; i += 2) {
        const ri = i * K;
        const rj = ri + K;
        const rt = (i - i0) * K;
        const rs = rt + K;
        const v0 = A[ri + k]!;
        const v1 = A[ri + k + 1]!;
        const v2 = A[ri + k + 2]!;
        const v3 = A[ri + k + 3]!;
        const w0 = A[rj + k]!;
        const w1 = A[rj + k + 1]!;
        const w2 = A[rj + k + 2]!;
        const w3 = A[rj + k + 3]!;
        for (let c = k; c < K; c++) {
          const u0 = A[b0 + c]!;
          const u1 = A[b1 + c]!;
          const u2 = A[b2 + c]!;
          const u3 = A[b3 + c]!;
          T[rt + c] += v0 * u0 + v1 * u1 + v2 * u2 + v3 * u3;
          T[rs + c] += w0 * u0 + w1 * u1 + w2 * u2 + w3 * u3;
        }
      }
      for (; i < i1; i++) {
        const ri = i * K;
        const rt = (i - i0) * K;
        const v0 = A[ri + k]!;
        const v1 = A[ri + k + 1]!;
        const v2 = A[ri + k + 2]!;
        const v3 = A[ri + k + 3]!;
        for (let c = k; c < K; c++) T[rt + c] += v0 * A[b0 + c]! + v1 * A[b1 + c]! + v2 * A[b2 + c]! + v3 * A[b3 + c]!;
      }
    }
    for (; k < K; k++) {
      const b = k * K;
      for (let i = i0; i < i1; i++) {
        const v = A[i * K + k]!;
        const rt = (i - i0) * K;
        for (let c = k; c < K; c++) T[rt + c] += v * A[b + c]!;
      }
    }
    // 2b. the block's rows, from the bottom
    for (let i = i1 - 1; i >= i0; i--) {
      const ri = i * K;
      const rt = (i - i0) * K;
      for (let kk = i + 1; kk < i1; kk++) {
        const v = A[ri + kk]!;
        if (v === 0) continue;
        const b = kk * K;
        for (let c = kk; c < K; c++) T[rt + c] += v * A[b + c]!;
      }
      const vii = A[ri + i]!;
      A.fill(0, ri, ri + i);
      A[ri + i] = 1 / vii;
      for (let c = i + 1; c < K; c++) A[ri + c] = -T[rt + c]! / vii;
    }
  }
  return true;
}

/** The upper Cholesky factor U of H^-1 (H^-1 = U^T U) for a symmetric positive definite H (K x K, row-major). */
export function choleskyInverseUpper(H: Float64Array, K: number): Float64Array {
  if (H.length !== K * K) throw new RangeError(`H has ${H.length} elements, expected ${K} x ${K}`);
  const A = Float64Array.from(H);
  if (!inverseUpperInPlace(A, K, 0)) throw new RangeError('choleskyInverseUpper: H is not positive definite');
  return A;
}

type IntFmt = Extract<QuantFormat, { kind: 'int' }>;
type IntOrFloat = Extract<QuantFormat, { kind: 'int' | 'float' }>;

/**
 * INT/FP parameters of x [rows, cols] per row (perRow) or for the whole: max calibration, or the MSE shrink search
 * of quantizeWeight's clipping (the same grid and the same arithmetic).
 */
function chooseParams(x: Float32Array, rows: number, cols: number, fmt: IntOrFloat, clipping: 'minmax' | 'mse', perRow: boolean, fit: (s: number) => number): { scale: Float32Array; zeroPoint?: Int32Array } {
  const dims = [rows, cols];
  const g: Granularity = perRow ? { kind: 'channel', axis: 0 } : { kind: 'tensor' };
  const calibrated = maxCalibrate(x, dims, g, fmt);
  const base = { scale: calibrated.scale.map(fit), zeroPoint: calibrated.zeroPoint };
  if (clipping === 'minmax') return base.zeroPoint ? base : { scale: base.scale };
  const run = (scale: Float32Array, zp?: Int32Array) => (fmt.kind === 'int' ? fakeQuantInt(x, dims, g, fmt, scale, zp) : fakeQuantFloat(x, dims, g, fmt.element, scale));
  const groups = base.scale.length;
  const groupOf = (i: number) => (perRow ? Math.floor(i / cols) : 0);
  const errors = (q: Float32Array) => {
    const e = new Float64Array(groups);
    for (let i = 0; i < x.length; i++) e[groupOf(i)]! += (x[i]! - q[i]!) ** 2;
    return e;
  };
  const bestScale = base.scale.slice();
  const bestZp = base.zeroPoint?.slice();
  const bestErr = errors(run(base.scale, base.zeroPoint));
  let mins: Float32Array | null = null;
  let maxs: Float32Array | null = null;
  if (fmt.kind === 'int' && !fmt.symmetric) {
    mins = new Float32Array(groups).fill(Infinity);
    maxs = new Float32Array(groups).fill(-Infinity);
    for (let i = 0; i < x.length; i++) {
      const j = groupOf(i);
      mins[j] = Math.min(mins[j]!, x[i]!);
      maxs[j] = Math.max(maxs[j]!, x[i]!);
    }
  }
  for (let a = 0.95; a >= 0.5 - 1e-9; a -= 0.05) {
    let scale: Float32Array;
    let zp: Int32Array | undefined;
    if (mins && maxs) {
      scale = new Float32Array(groups);
      zp = new Int32Array(groups);
      for (let j = 0; j < groups; j++) {
        const p = intParams(mins[j]! * a, maxs[j]! * a, (fmt as IntFmt).bits, false);
        scale[j] = fit(p.scale);
        zp[j] = p.zeroPoint;
      }
    } else {
      scale = calibrated.scale.map((s) => fit(f32(s * a)));
    }
    const err = errors(run(scale, zp));
    for (let j = 0; j < groups; j++) {
      if (err[j]! < bestErr[j]!) {
        bestErr[j] = err[j]!;
        bestScale[j] = scale[j]!;
        if (bestZp && zp) bestZp[j] = zp[j]!;
      }
    }
  }
  return bestZp ? { scale: bestScale, zeroPoint: bestZp } : { scale: bestScale };
}

/** Index (within its row) of each row's largest |x| over x [rows, cols], -1 where the row is all zero. */
function rowArgmax(x: Float32Array, rows: number, cols: number): Int32Array {
  const out = new Int32Array(rows).fill(-1);
  for (let r = 0; r < rows; r++) {
    let m = 0;
    for (let c = 0; c < cols; c++) {
      const a = Math.abs(x[r * cols + c]!);
      if (a > m) {
        m = a;
        out[r] = c;
      }
    }
  }
  return out;
}

/** Indices of H's diagonal in decreasing order (stable: ties keep the lower index first). */
function decreasingOrder(diag: Float64Array): Uint32Array {
  const idx = Array.from({ length: diag.length }, (_, i) => i);
  idx.sort((a, b) => diag[b]! - diag[a]! || a - b);
  return Uint32Array.from(idx);
}

/** GPTQ-rounds w [R, K] against H [K, K] to the format (see the file header). */
export function gptq(w: Float32Array, R: number, K: number, H: ArrayLike<number>, fmt: QuantFormat, opts: GptqOptions = {}): GptqResult {
  if (!Number.isInteger(R) || !Number.isInteger(K) || R < 1 || K < 1) throw new RangeError(`GPTQ: bad weight shape [${R}, ${K}]`);
  if (w.length !== R * K) throw new RangeError(`GPTQ: the weight has ${w.length} elements, expected ${R} x ${K}`);
  if (H.length !== K * K) throw new RangeError(`GPTQ: H has ${H.length} elements, expected ${K} x ${K}`);
  const blockSize = opts.blockSize ?? 128;
  if (!Number.isInteger(blockSize) || blockSize < 1) throw new RangeError(`GPTQ: blockSize must be a positive integer, not ${blockSize}`);
  const percdamp0 = opts.percdamp ?? GPTQ_PERCDAMP;
  if (!(percdamp0 >= 0) || !Number.isFinite(percdamp0)) throw new RangeError(`GPTQ: percdamp must be >= 0, not ${percdamp0}`);
  const actOrder = opts.actOrder ?? false;
  const clipping = opts.clipping ?? 'minmax';
  const fit = opts.roundScale ?? ((s: number) => s);
  for (let i = 0; i < w.length; i++) if (!Number.isFinite(w[i]!)) throw new RangeError('GPTQ: the weight holds NaN or Inf');
  for (let i = 0; i < H.length; i++) if (!Number.isFinite(H[i]!)) throw new RangeError('GPTQ: H holds NaN or Inf');
  if (fmt.kind === 'int') intRange(fmt.bits, fmt.symmetric); // validates bits

  // layout: G columns per group, NG groups (1 for tensor/channel)
  let mode: 'tensor' | 'channel' | 'group';
  let G: number;
  if (fmt.kind === 'mx' || fmt.kind === 'nvfp4') {
    mode = 'group';
    G = fmt.kind === 'mx' ? MX_BLOCK : NVFP4_BLOCK;
  } else {
    const gr = opts.group ?? 'channel';
    if (gr === 'tensor' || gr === 'channel') {
      mode = gr;
      G = K;
    } else {
      if (!Number.isInteger(gr) || gr < 1) throw new RangeError(`GPTQ: group must be a positive integer, 'channel' or 'tensor', not ${gr}`);
      mode = 'group';
      G = gr;
    }
  }
  if (K % G !== 0) throw new RangeError(`GPTQ: ${fmt.kind === 'mx' || fmt.kind === 'nvfp4' ? `${fmt.kind} blocks of` : 'groups of'} ${G} do not divide K = ${K}`);
  const NG = K / G;
  const granularity: Granularity = mode === 'tensor' ? { kind: 'tensor' } : mode === 'channel' ? { kind: 'channel', axis: 0 } : { kind: 'block', axis: 1, size: G };
  const keep = (opts.keepGroupMax ?? true) && !(fmt.kind === 'int' && !fmt.symmetric);

  // dead inputs; W0 = the original weight with their columns zeroed
  const diag = new Float64Array(K);
  const dead = new Uint8Array(K);
  for (let j = 0; j < K; j++) {
    const d = Number(H[j * K + j]!);
    dead[j] = d === 0 ? 1 : 0;
    diag[j] = d === 0 ? 1 : d;
  }
  const W0 = Float32Array.from(w);
  for (let r = 0; r < R; r++) for (let j = 0; j < K; j++) if (dead[j]) W0[r * K + j] = 0;

  // processing order
  const perm = actOrder ? decreasingOrder(diag) : Uint32Array.from({ length: K }, (_, i) => i);

  // U: the upper Cholesky factor of the damped H^-1, in processing order
  let meanDiag = 0;
  let maxDiag = 0;
  for (let j = 0; j < K; j++) {
    meanDiag += diag[j]!;
    maxDiag = Math.max(maxDiag, Math.abs(diag[j]!));
  }
  meanDiag /= K;
  const tol = 4 * K * Number.EPSILON * maxDiag;
  const U = new Float64Array(K * K);
  let percdamp = percdamp0;
  for (let attempt = 0; ; attempt++) {
    const damp = percdamp * meanDiag;
    for (let i = 0; i < K; i++) {
      const a = perm[i]!;
      for (let j = i; j < K; j++) {
        const b = perm[j]!;
        U[i * K + j] = i === j ? diag[a]! + damp : dead[a] || dead[b] ? 0 : (Number(H[a * K + b]!) + Number(H[b * K + a]!)) / 2;
      }
    }
    if (inverseUpperInPlace(U, K, tol)) break;
    if (attempt >= DAMP_RETRIES) {
      throw new RangeError(`GPTQ: H is not positive definite, even with a dampening of ${percdamp} x mean(diag H)`);
    }
    percdamp = percdamp > 0 ? percdamp * 10 : 0.01;
  }

  // parameters, per (row, group): r * NG + g
  const nP = R * NG;
  const scale = fmt.kind === 'int' || fmt.kind === 'float' ? new Float32Array(nP) : null;
  const zeroPoint = fmt.kind === 'int' && !fmt.symmetric ? new Int32Array(nP) : null;
  const blockScale = fmt.kind === 'mx' || fmt.kind === 'nvfp4' ? new Float32Array(nP) : null;
  /** The anchor's original column per (row, group), -1 for none. */
  const anchor = new Int32Array(nP).fill(-1);
  let tensorScale = 1;
  // NVFP4: the (row, group) holding the tensor's max |w| keeps the block scale 448
  let topRow = -1;
  let topGroup = -1;
  if (fmt.kind === 'nvfp4') {
    let m = 0;
    for (let i = 0; i < W0.length; i++) {
      const a = Math.abs(W0[i]!);
      if (a > m) {
        m = a;
        topRow = Math.floor(i / K);
        topGroup = Math.floor((i % K) / G);
      }
    }
    tensorScale = nvfp4TensorScale(m);
  }

  /** Fixes the parameters of group g from its weights src [R, G] (original columns g*G ..). */
  const fixGroup = (g: number, src: Float32Array) => {
    const am = rowArgmax(src, R, G);
    if (fmt.kind === 'int' || fmt.kind === 'float') {
      const p = chooseParams(src, R, G, fmt, clipping, true, fit);
      for (let r = 0; r < R; r++) {
        scale![r * NG + g] = p.scale[r]!;
        if (zeroPoint) zeroPoint[r * NG + g] = p.zeroPoint![r]!;
      }
    } else {
      const amax = blockAmax(src, [R, G], 1, G);
      for (let r = 0; r < R; r++) {
        if (fmt.kind === 'mx') blockScale![r * NG + g] = mxScaleExponent(amax[r]!, fmt.element);
        else blockScale![r * NG + g] = keep && r === topRow && g === topGroup ? E4M3_MAX : nvfp4BlockScale(amax[r]!, tensorScale);
      }
    }
    if (keep) for (let r = 0; r < R; r++) anchor[r * NG + g] = am[r]! < 0 ? -1 : g * G + am[r]!;
  };

  if (mode !== 'group') {
    const p = chooseParams(W0, R, K, fmt as IntOrFloat, clipping, mode === 'channel', fit);
    for (let r = 0; r < R; r++) {
      const j = mode === 'channel' ? r : 0;
      scale![r] = p.scale[j]!;
      if (zeroPoint) zeroPoint[r] = p.zeroPoint![j]!;
    }
    if (keep) {
      const am = rowArgmax(W0, R, K);
      if (mode === 'channel') anchor.set(am);
      else {
        let best = -1;
        let m = 0;
        for (let r = 0; r < R; r++) {
          const a = am[r]! < 0 ? 0 : Math.abs(W0[r * K + am[r]!]!);
          if (a > m) {
            m = a;
            best = r;
          }
        }
        if (best >= 0) anchor[best] = am[best]!;
      }
    }
  }
  const staticGroups = mode === 'group' && actOrder;
  const src = new Float32Array(R * G);
  if (staticGroups) {
    for (let g = 0; g < NG; g++) {
      for (let r = 0; r < R; r++) src.set(W0.subarray(r * K + g * G, r * K + g * G + G), r * G);
      fixGroup(g, src);
    }
  }

  // the working weight in processing order, Float64
  const Wk = new Float64Array(R * K);
  for (let r = 0; r < R; r++) for (let i = 0; i < K; i++) Wk[r * K + i] = W0[r * K + perm[i]!]!;
  const Q = new Float32Array(R * K);
  const B = Math.min(blockSize, K);
  const Err = new Float64Array(R * B);
  const col = new Float32Array(R);
  const sCol = new Float32Array(R);
  const zCol = zeroPoint ? new Int32Array(R) : undefined;
  const CH0: Granularity = { kind: 'channel', axis: 0 };
  const qmax = fmt.kind === 'int' ? intRange(fmt.bits, fmt.symmetric).qmax : 0;
  const mxTop = fmt.kind === 'mx' ? 2 ** mxElementEmax(fmt.element) : 0;
  const e2m1 = FORMATS.e2m1;
  let loss = 0;

  /** Rounds col (column at processing position i, original column c0, group g) into q. */
  const quantizeColumn = (c0: number, g: number): Float32Array => {
    if (fmt.kind === 'int') {
      for (let r = 0; r < R; r++) {
        sCol[r] = scale![r * NG + g]!;
        if (zCol) zCol[r] = zeroPoint![r * NG + g]!;
      }
      const codes = quantizeInt(col, [R, 1], CH0, fmt, sCol, zCol);
      if (keep) {
        for (let r = 0; r < R; r++) {
          if (anchor[r * NG + g] !== c0) continue;
          const c = codes[r]!;
          if (c > -qmax && c < qmax) codes[r] = col[r]! < 0 ? -qmax : qmax;
        }
      }
      return dequantizeInt(codes, [R, 1], CH0, sCol, zCol);
    }
    if (fmt.kind === 'float') {
      for (let r = 0; r < R; r++) {
        sCol[r] = scale![r * NG + g]!;
        // the format's saturation turns +-Inf into +-max: the anchor's top code
        if (keep && anchor[r * NG + g] === c0) col[r] = col[r]! < 0 ? -Infinity : Infinity;
      }
      return fakeQuantFloat(col, [R, 1], CH0, fmt.element, sCol);
    }
    const q = new Float32Array(R);
    if (fmt.kind === 'mx') {
      const el: MxElement = fmt.element;
      for (let r = 0; r < R; r++) {
        const X = 2 ** blockScale![r * NG + g]!;
        let v = mxElementValue(el, f32(col[r]! / X)); // fakeQuantMx's element, with the block's fixed exponent
        if (keep && anchor[r * NG + g] === c0 && Math.abs(v) < mxTop) v = col[r]! < 0 ? -mxTop : mxTop;
        q[r] = f32(v * X);
      }
      return q;
    }
    for (let r = 0; r < R; r++) {
      const S = f32(blockScale![r * NG + g]! * tensorScale); // fakeQuantNvfp4's element, with the block's fixed scale
      const safe = S === 0 ? 1 : S;
      let v = quantizeValue(e2m1, f32(col[r]! / safe));
      if (keep && S !== 0 && anchor[r * NG + g] === c0 && Math.abs(v) < E2M1_MAX) v = col[r]! < 0 ? -E2M1_MAX : E2M1_MAX;
      q[r] = f32(v * S);
    }
    return q;
  };

  /** Applies the pending errors of columns t0..t1-1 (block starting at i1) to the columns from c0 on. */
  const flush = (i1: number, t0: number, t1: number, c0: number) => {
    if (c0 >= K) return;
    let r = 0;
    // two rows at a time against four columns' errors: 8 products per 6 loads
    for (; r + 1 < R; r += 2) {
      const rw = r * K;
      const rv = rw + K;
      const re = r * B - i1;
      const rf = re + B;
      let t = t0;
      for (; t + 3 < t1; t += 4) {
        const e0 = Err[re + t]!;
        const e1 = Err[re + t + 1]!;
        const e2 = Err[re + t + 2]!;
        const e3 = Err[re + t + 3]!;
        const f0 = Err[rf + t]!;
        const f1 = Err[rf + t + 1]!;
        const f2 = Err[rf + t + 2]!;
        const f3 = Err[rf + t + 3]!;
        const u0 = t * K;
        const u1 = u0 + K;
        const u2 = u1 + K;
        const u3 = u2 + K;
        for (let c = c0; c < K; c++) {
          const a0 = U[u0 + c]!;
          const a1 = U[u1 + c]!;
          const a2 = U[u2 + c]!;
          const a3 = U[u3 + c]!;
          Wk[rw + c] -= e0 * a0 + e1 * a1 + e2 * a2 + e3 * a3;
          Wk[rv + c] -= f0 * a0 + f1 * a1 + f2 * a2 + f3 * a3;
        }
      }
      for (; t < t1; t++) {
        const e = Err[re + t]!;
        const f = Err[rf + t]!;
        const u = t * K;
        for (let c = c0; c < K; c++) {
          const a = U[u + c]!;
          Wk[rw + c] -= e * a;
          Wk[rv + c] -= f * a;
        }
      }
    }
    for (; r < R; r++) {
      const rw = r * K;
      const re = r * B - i1;
      let t = t0;
      for (; t + 3 < t1; t += 4) {
        const e0 = Err[re + t]!;
        const e1 = Err[re + t + 1]!;
        const e2 = Err[re + t + 2]!;
        const e3 = Err[re + t + 3]!;
        if (e0 === 0 && e1 === 0 && e2 === 0 && e3 === 0) continue;
        const u0 = t * K;
        const u1 = u0 + K;
        const u2 = u1 + K;
        const u3 = u2 + K;
        for (let c = c0; c < K; c++) Wk[rw + c] -= e0 * U[u0 + c]! + e1 * U[u1 + c]! + e2 * U[u2 + c]! + e3 * U[u3 + c]!;
      }
      for (; t < t1; t++) {
        const e = Err[re + t]!;
        if (e === 0) continue;
        const u = t * K;
        for (let c = c0; c < K; c++) Wk[rw + c] -= e * U[u + c]!;
      }
    }
  };

  for (let i1 = 0; i1 < K; i1 += B) {
    const i2 = Math.min(i1 + B, K);
    let pending = i1; // errors of columns pending..i-1 are not yet applied to the columns from i2 on
    for (let i = i1; i < i2; i++) {
      const c0 = perm[i]!;
      const g = mode === 'group' ? Math.floor(c0 / G) : 0;
      if (mode === 'group' && !staticGroups && i % G === 0) {
        // the group's current weights: columns i..i+G-1 (identity order), brought up to date first
        if (i + G > i2 && pending < i) {
          flush(i1, pending, i, i2);
          pending = i;
        }
        for (let r = 0; r < R; r++) for (let t = 0; t < G; t++) src[r * G + t] = Wk[r * K + i + t]!;
        fixGroup(g, src);
      }
      for (let r = 0; r < R; r++) col[r] = Wk[r * K + i]!;
      const q = quantizeColumn(c0, g);
      const d = U[i * K + i]!;
      const ui = i * K;
      for (let r = 0; r < R; r++) {
        const rw = r * K;
        const e = (Wk[rw + i]! - q[r]!) / d;
        loss += (e * e) / 2;
        Err[r * B + i - i1] = e;
        Q[rw + i] = q[r]!;
        if (e === 0) continue;
        for (let c = i + 1; c < i2; c++) Wk[rw + c] -= e * U[ui + c]!;
      }
    }
    flush(i1, pending, i2, i2);
  }

  const values = new Float32Array(R * K);
  for (let r = 0; r < R; r++) for (let i = 0; i < K; i++) values[r * K + perm[i]!] = Q[r * K + i]!;
  const res: GptqResult = { values, granularity, loss, dampening: percdamp };
  if (scale) res.scale = mode === 'tensor' ? scale.slice(0, 1) : scale;
  if (zeroPoint) res.zeroPoint = mode === 'tensor' ? zeroPoint.slice(0, 1) : zeroPoint;
  if (blockScale) res.blockScale = blockScale;
  if (fmt.kind === 'nvfp4') res.tensorScale = tensorScale;
  return res;
}
