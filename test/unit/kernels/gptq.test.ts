/**
 * GPTQ (kernels/gptq.ts): round-to-nearest when H is diagonal, a clearly lower output error than round-to-nearest
 * on correlated inputs, blocked == unblocked, values exactly on the formats' grids (and recoverable by the exporter
 * from the values alone), act-order, dead inputs and dampening, and the inverse Cholesky factor.
 */
import { describe, expect, it } from 'vitest';
import { choleskyInverseUpper, gptq, type GptqOptions, type GptqResult } from '../../../kernels/gptq';
import type { Granularity } from '../../../kernels/layout';
import {
  fakeQuantFloat,
  fakeQuantInt,
  fakeQuantMx,
  fakeQuantNvfp4,
  maxCalibrate,
  nvfp4TensorScale,
  type QuantFormat,
} from '../../../kernels/quant';
import { recoverFloat, recoverInt, recoverMx, recoverNvfp4 } from '../../../src-main/core/export/recover';
import { quantizeWeight } from '../../../src-main/core/quant/weights';
import type { QuantizableLayer } from '../../../src-main/core/onnx/analysis';

/* ------------------------------------------------------------------ helpers -- */

/** mulberry32, and standard normals by Box-Muller. */
function rng(seed: number): { u: () => number; n: () => number } {
  let a = seed >>> 0;
  const u = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const n = () => Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
  return { u, n };
}

function randomWeight(R: number, K: number, seed: number): Float32Array {
  const g = rng(seed);
  return Float32Array.from({ length: R * K }, () => g.n() * 0.1);
}

/** X = Z A (N x K, a random mixing A: strongly correlated features), and H = X^T X. */
function correlatedGram(N: number, K: number, seed: number, deadCols: number[] = []): { X: Float64Array; H: Float64Array } {
  const g = rng(seed);
  const A = Float64Array.from({ length: K * K }, () => g.n());
  const X = new Float64Array(N * K);
  const z = new Float64Array(K);
  for (let s = 0; s < N; s++) {
    for (let k = 0; k < K; k++) z[k] = g.n();
    for (let j = 0; j < K; j++) {
      let v = 0;
      for (let k = 0; k < K; k++) v += z[k]! * A[k * K + j]!;
      X[s * K + j] = v;
    }
    for (const d of deadCols) X[s * K + d] = 0;
  }
  return { X, H: gram(X, N, K) };
}

function gram(X: Float64Array, N: number, K: number): Float64Array {
  const H = new Float64Array(K * K);
  for (let s = 0; s < N; s++)
    for (let i = 0; i < K; i++) {
      const xi = X[s * K + i]!;
      if (xi === 0) continue;
      for (let j = 0; j < K; j++) H[i * K + j] += xi * X[s * K + j]!;
    }
  return H;
}

function identity(K: number, scale = 1): Float64Array {
  const H = new Float64Array(K * K);
  for (let i = 0; i < K; i++) H[i * K + i] = scale;
  return H;
}

/** sum_r (w_r - q_r)^T H (w_r - q_r) = ||X W^T - X Q^T||^2 for H = X^T X. */
function outputError(w: Float32Array, q: Float32Array, R: number, K: number, H: Float64Array): number {
  let total = 0;
  const d = new Float64Array(K);
  for (let r = 0; r < R; r++) {
    for (let k = 0; k < K; k++) d[k] = w[r * K + k]! - q[r * K + k]!;
    for (let i = 0; i < K; i++) {
      if (d[i] === 0) continue;
      let s = 0;
      for (let j = 0; j < K; j++) s += H[i * K + j]! * d[j]!;
      total += d[i]! * s;
    }
  }
  return total;
}

/** Elements whose float32 bits differ (-0 vs +0 counts). */
function bitMismatches(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  let bad = 0;
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) bad++;
  return bad;
}

const CH0: Granularity = { kind: 'channel', axis: 0 };
const groups = (size: number): Granularity => ({ kind: 'block', axis: 1, size });
const int4: QuantFormat = { kind: 'int', bits: 4, symmetric: true };
const int3: QuantFormat = { kind: 'int', bits: 3, symmetric: true };
const uint4: QuantFormat = { kind: 'int', bits: 4, symmetric: false };
const fp4: QuantFormat = { kind: 'float', element: 'e2m1' };
const fp8: QuantFormat = { kind: 'float', element: 'e4m3fn' };
const mxfp4: QuantFormat = { kind: 'mx', element: 'e2m1' };
const mxfp8: QuantFormat = { kind: 'mx', element: 'e4m3fn' };
const mxint8: QuantFormat = { kind: 'mx', element: 'int8' };
const nvfp4: QuantFormat = { kind: 'nvfp4' };

/** Round-to-nearest with max calibration (the studio's 'nearest' rounding). */
function rtn(w: Float32Array, R: number, K: number, fmt: QuantFormat, g: Granularity): Float32Array {
  const dims = [R, K];
  switch (fmt.kind) {
    case 'int': {
      const p = maxCalibrate(w, dims, g, fmt);
      return fakeQuantInt(w, dims, g, fmt, p.scale, p.zeroPoint);
    }
    case 'float':
      return fakeQuantFloat(w, dims, g, fmt.element, maxCalibrate(w, dims, g, fmt).scale);
    case 'mx':
      return fakeQuantMx(w, dims, 1, fmt.element).y;
    case 'nvfp4': {
      let m = 0;
      for (const v of w) m = Math.max(m, Math.abs(v));
      return fakeQuantNvfp4(w, dims, 1, nvfp4TensorScale(m)).y;
    }
  }
}

function optsFor(g: Granularity): GptqOptions {
  return { group: g.kind === 'tensor' ? 'tensor' : g.kind === 'channel' ? 'channel' : g.size };
}

/** Re-applies the reference fake quantization with the returned parameters: the number of values that change. */
function offGrid(res: GptqResult, R: number, K: number, fmt: QuantFormat): number {
  const dims = [R, K];
  const v = res.values;
  switch (fmt.kind) {
    case 'int':
      return bitMismatches(fakeQuantInt(v, dims, res.granularity, fmt, res.scale!, res.zeroPoint), v);
    case 'float':
      return bitMismatches(fakeQuantFloat(v, dims, res.granularity, fmt.element, res.scale!), v);
    case 'mx': {
      const mx = fakeQuantMx(v, dims, 1, fmt.element);
      expect(Array.from(mx.scaleExp)).toEqual(Array.from(res.blockScale!));
      return bitMismatches(mx.y, v);
    }
    case 'nvfp4': {
      const nv = fakeQuantNvfp4(v, dims, 1, res.tensorScale!);
      expect(Array.from(nv.blockScale)).toEqual(Array.from(res.blockScale!));
      return bitMismatches(nv.y, v);
    }
  }
}

/* ------------------------------------------------------------------- tests -- */

describe('GPTQ with a diagonal H is round-to-nearest', () => {
  const R = 12;
  const K = 64;
  const w = randomWeight(R, K, 1);
  const cases: [string, QuantFormat, Granularity][] = [
    ['int4 per channel', int4, CH0],
    ['int4 groups of 16', int4, groups(16)],
    ['uint4 per tensor', uint4, { kind: 'tensor' }],
    ['fp4 e2m1 per channel', fp4, CH0],
    ['fp8 e4m3fn groups of 32', fp8, groups(32)],
    ['mxfp4', mxfp4, groups(32)],
    ['mxint8', mxint8, groups(32)],
    ['nvfp4', nvfp4, groups(16)],
  ];
  for (const [name, fmt, g] of cases) {
    it(`${name}: bit for bit, identity H and a random diagonal H (act order too)`, () => {
      const ref = rtn(w, R, K, fmt, g);
      expect(bitMismatches(gptq(w, R, K, identity(K), fmt, optsFor(g)).values, ref)).toBe(0);
      const gen = rng(2);
      const D = new Float64Array(K * K);
      for (let i = 0; i < K; i++) D[i * K + i] = 0.1 + 10 * gen.u();
      expect(bitMismatches(gptq(w, R, K, D, fmt, { ...optsFor(g), actOrder: true, blockSize: 16 }).values, ref)).toBe(0);
    });
  }

  it('MSE clipping per channel matches quantizeWeight (the studio round-to-nearest) bit for bit', () => {
    const layer = { name: 'l', op: 'Gemm', weight: 'w', weightShape: [R, K], input: 'x', output: 'y', weightIndex: 1 } as QuantizableLayer;
    for (const fmt of [int4, uint4, fp4] as const) {
      const ref = quantizeWeight(w, layer, { format: fmt, granularity: 'channel', rounding: 'nearest', clipping: 'mse', scale: 'float32' }, true, null).values;
      const res = gptq(w, R, K, identity(K), fmt, { clipping: 'mse' });
      expect(bitMismatches(res.values, ref)).toBe(0);
      // and it clipped something: the MSE scales are not all the max-calibrated ones
      const base = maxCalibrate(w, [R, K], CH0, fmt).scale;
      expect(Array.from(res.scale!).some((s, i) => s < base[i]!)).toBe(true);
    }
  });

  it('the proxy loss is sum (w - q)^2 / U_jj^2 / 2 (U_jj^2 = 1 / (1 + 0.01) for H = I)', () => {
    const res = gptq(w, R, K, identity(K), int4, {});
    let sse = 0;
    for (let i = 0; i < w.length; i++) sse += (w[i]! - res.values[i]!) ** 2;
    expect(res.loss).toBeCloseTo((sse * 1.01) / 2, 12);
    expect(res.dampening).toBe(0.01);
  });
});

describe('GPTQ on correlated inputs', () => {
  const N = 512;
  const K = 64;
  const R = 32;
  const { H } = correlatedGram(N, K, 7);
  const w = randomWeight(R, K, 8);
  const cases: [string, QuantFormat, Granularity][] = [
    ['int4 per channel', int4, CH0],
    ['int3 groups of 16', int3, groups(16)],
    ['uint4 groups of 32', uint4, groups(32)],
    ['fp4 e2m1 per channel', fp4, CH0],
    ['mxfp4', mxfp4, groups(32)],
    ['nvfp4', nvfp4, groups(16)],
  ];
  for (const [name, fmt, g] of cases) {
    it(`${name}: ||X W^T - X Q^T||^2 well below round-to-nearest's, with and without act order`, () => {
      const eRtn = outputError(w, rtn(w, R, K, fmt, g), R, K, H);
      const eG = outputError(w, gptq(w, R, K, H, fmt, optsFor(g)).values, R, K, H);
      const eA = outputError(w, gptq(w, R, K, H, fmt, { ...optsFor(g), actOrder: true }).values, R, K, H);
      expect(eG).toBeLessThan(0.7 * eRtn);
      expect(eA).toBeLessThan(0.7 * eRtn);
    });
  }

  it('2 x the proxy loss equals the damped quadratic error sum_r (w_r - q_r)^T H_damped (w_r - q_r)', () => {
    let mean = 0;
    for (let i = 0; i < K; i++) mean += H[i * K + i]! / K;
    for (const opts of [{ group: 16 }, { group: 16, actOrder: true, blockSize: 8 }, { group: 'channel' as const, blockSize: 5 }]) {
      const res = gptq(w, R, K, H, int4, opts);
      const Hd = Float64Array.from(H);
      for (let i = 0; i < K; i++) Hd[i * K + i] += res.dampening * mean;
      expect(2 * res.loss).toBeCloseTo(outputError(w, res.values, R, K, Hd), 6);
      expect(Math.abs(2 * res.loss / outputError(w, res.values, R, K, Hd) - 1)).toBeLessThan(1e-9);
    }
  });

  it('blocked and unblocked updates agree (block sizes 1, 5, 8, 24, 64, 128)', () => {
    for (const [fmt, opts] of [
      [int4, { group: 16 }],
      [int3, { group: 16, actOrder: true }],
      [uint4, { group: 'channel' }],
      [nvfp4, {}],
      [mxfp4, { clipping: 'mse' }],
      [fp4, { group: 16, clipping: 'mse' }],
    ] as [QuantFormat, GptqOptions][]) {
      const ref = gptq(w, R, K, H, fmt, { ...opts, blockSize: K });
      for (const blockSize of [1, 5, 8, 24, 128]) {
        const res = gptq(w, R, K, H, fmt, { ...opts, blockSize });
        // float rounding in a different order may flip an exact tie, nothing more
        expect(bitMismatches(res.values, ref.values)).toBeLessThanOrEqual(2);
        expect(Math.abs(res.loss / ref.loss - 1)).toBeLessThan(1e-6);
      }
    }
  });

  it('INT and FP values lie on the grid of the returned parameters, MX and NVFP4 values re-encode to themselves', () => {
    const cases: [QuantFormat, GptqOptions][] = [
      [int4, { group: 'channel' }],
      [int4, { group: 16 }],
      [int3, { group: 'tensor' }],
      [uint4, { group: 16 }],
      [uint4, { group: 'channel', clipping: 'mse' }],
      [{ kind: 'int', bits: 8, symmetric: true }, { group: 32, clipping: 'mse' }],
      [fp4, { group: 'channel' }],
      [fp4, { group: 16, clipping: 'mse' }],
      [fp8, { group: 32 }],
      [{ kind: 'float', element: 'e5m2' }, { group: 'tensor' }],
      [mxfp4, {}],
      [mxfp8, {}],
      [mxint8, {}],
      [{ kind: 'mx', element: 'e3m2' }, {}],
      [nvfp4, {}],
    ];
    for (const [fmt, opts] of cases) {
      for (const actOrder of [false, true]) {
        const res = gptq(w, R, K, H, fmt, { ...opts, actOrder });
        expect(offGrid(res, R, K, fmt), `${JSON.stringify(fmt)} ${JSON.stringify(opts)} actOrder ${actOrder}`).toBe(0);
        if (fmt.kind === 'int' && res.granularity.kind === 'block') {
          expect(res.scale!.length).toBe((R * K) / res.granularity.size);
        }
      }
    }
  });

  it('the exporter recovers codes and scales from the values alone (0 mismatches)', () => {
    for (const actOrder of [false, true]) {
      const o = { actOrder };
      expect(recoverInt(gptq(w, R, K, H, int4, { ...o, group: 16 }).values, [R, K], groups(16), 4).mismatches).toBe(0);
      expect(recoverInt(gptq(w, R, K, H, int3, { ...o, group: 'channel' }).values, [R, K], CH0, 3).mismatches).toBe(0);
      expect(recoverInt(gptq(w, R, K, H, int4, { ...o, group: 'tensor' }).values, [R, K], { kind: 'tensor' }, 4).mismatches).toBe(0);
      expect(recoverFloat(gptq(w, R, K, H, fp4, { ...o, group: 16 }).values, [R, K], groups(16), 'e2m1').mismatches).toBe(0);
      expect(recoverFloat(gptq(w, R, K, H, fp8, { ...o, group: 'channel', clipping: 'mse' }).values, [R, K], CH0, 'e4m3fn').mismatches).toBe(0);
      expect(recoverMx(gptq(w, R, K, H, mxfp4, o).values, [R, K], 1, 'e2m1').mismatches).toBe(0);
      expect(recoverMx(gptq(w, R, K, H, mxint8, o).values, [R, K], 1, 'int8').mismatches).toBe(0);
      expect(recoverNvfp4(gptq(w, R, K, H, nvfp4, o).values, [R, K], 1).mismatches).toBe(0);
    }
  });

  it('without keepGroupMax, some groups lose their top code and the exporter fails (the anchors are what keeps them)', () => {
    for (const g of [groups(16), CH0]) {
      const free = gptq(w, R, K, H, int4, { ...optsFor(g), keepGroupMax: false });
      expect(offGrid(free, R, K, int4)).toBe(0); // still on the grid of its parameters
      expect(recoverInt(free.values, [R, K], g, 4).mismatches).toBeGreaterThan(0);
      const kept = gptq(w, R, K, H, int4, optsFor(g));
      expect(recoverInt(kept.values, [R, K], g, 4).mismatches).toBe(0);
      // and the anchors cost little
      expect(outputError(w, kept.values, R, K, H)).toBeLessThan(1.2 * outputError(w, free.values, R, K, H));
    }
  });

  it('act order with groups: the scales keep the per-group layout of the original columns, error below RTN', () => {
    const res = gptq(w, R, K, H, int4, { group: 16, actOrder: true });
    expect(res.granularity).toEqual(groups(16));
    expect(offGrid(res, R, K, int4)).toBe(0);
    // static groups: the scales are the max-calibrated scales of the original weight's groups
    expect(Array.from(res.scale!)).toEqual(Array.from(maxCalibrate(w, [R, K], groups(16), int4).scale));
    expect(outputError(w, res.values, R, K, H)).toBeLessThan(0.7 * outputError(w, rtn(w, R, K, int4, groups(16)), R, K, H));
  });
});

describe('GPTQ: dead inputs, dampening, errors', () => {
  const R = 16;
  const K = 32;
  const w = randomWeight(R, K, 11);

  it('dead input columns (zero H diagonal) give zero weights there and no NaN', () => {
    const dead = [0, 5, 17, 31];
    const { H } = correlatedGram(256, K, 12, dead);
    for (const i of dead) expect(H[i * K + i]).toBe(0);
    for (const [fmt, opts] of [
      [int4, { group: 'channel' }],
      [uint4, { group: 16 }],
      [fp4, { group: 'tensor' }],
      [nvfp4, { actOrder: true }],
      [mxfp4, {}],
    ] as [QuantFormat, GptqOptions][]) {
      const res = gptq(w, R, K, H, fmt, opts);
      expect(res.values.every((v) => Number.isFinite(v))).toBe(true);
      expect(Number.isFinite(res.loss)).toBe(true);
      for (let r = 0; r < R; r++) for (const j of dead) expect(res.values[r * K + j]).toBe(0);
      expect(offGrid(res, R, K, fmt)).toBe(0);
    }
  });

  it('a rank-deficient H (fewer samples than inputs) works through dampening, and beats RTN', () => {
    const N = 12;
    const { X } = correlatedGram(N, K, 13);
    const H = gram(X, N, K);
    const res = gptq(w, R, K, H, int4, { group: 16 });
    expect(res.values.every((v) => Number.isFinite(v))).toBe(true);
    expect(res.dampening).toBe(0.01);
    expect(outputError(w, res.values, R, K, H)).toBeLessThan(0.7 * outputError(w, rtn(w, R, K, int4, groups(16)), R, K, H));
    // no dampening asked: H is singular, so the solver retries with more
    const undamped = gptq(w, R, K, H, int4, { group: 16, percdamp: 0 });
    expect(undamped.dampening).toBeGreaterThan(0);
    expect(undamped.values.every((v) => Number.isFinite(v))).toBe(true);
  });

  it('an H that no dampening makes positive definite throws a RangeError', () => {
    expect(() => gptq(w, R, K, identity(K, -1), int4, {})).toThrow(RangeError);
    expect(() => gptq(w, R, K, identity(K), int4, { group: 12 })).toThrow(/do not divide/);
    expect(() => gptq(w, R, K + 1, identity(K), int4, {})).toThrow(RangeError);
  });

  it('an all-zero H (every input dead) gives an all-zero weight', () => {
    const res = gptq(w, R, K, new Float64Array(K * K), int4, { group: 16 });
    expect(res.values.every((v) => Object.is(v, 0))).toBe(true);
  });
});

describe('choleskyInverseUpper', () => {
  it('U is upper triangular and U^T U = H^-1 (U^T U H = I) for a random SPD matrix', () => {
    const K = 24;
    const g = rng(21);
    const M = Float64Array.from({ length: K * K }, () => g.n());
    const H = new Float64Array(K * K);
    for (let i = 0; i < K; i++)
      for (let j = 0; j < K; j++) {
        let s = i === j ? 0.5 : 0;
        for (let k = 0; k < K; k++) s += M[i * K + k]! * M[j * K + k]!;
        H[i * K + j] = s;
      }
    const U = choleskyInverseUpper(H, K);
    for (let i = 0; i < K; i++) {
      expect(U[i * K + i]).toBeGreaterThan(0);
      for (let j = 0; j < i; j++) expect(U[i * K + j]).toBe(0);
    }
    let worst = 0;
    for (let i = 0; i < K; i++)
      for (let j = 0; j < K; j++) {
        // (U^T U H)[i][j] = sum_k U[k][i] (U H)[k][j]
        let s = 0;
        for (let k = 0; k < K; k++) {
          let uh = 0;
          for (let l = k; l < K; l++) uh += U[k * K + l]! * H[l * K + j]!;
          s += U[k * K + i]! * uh;
        }
        worst = Math.max(worst, Math.abs(s - (i === j ? 1 : 0)));
      }
    expect(worst).toBeLessThan(1e-9);
  });

  it('the 2 x 2 case by hand, and a non-positive-definite matrix throws', () => {
    // H = [[4, 2], [2, 2]]: H^-1 = [[0.5, -0.5], [-0.5, 1]] = U^T U with U = [[1/sqrt2, -1/sqrt2], [0, 1/sqrt2]]
    const U = choleskyInverseUpper(Float64Array.from([4, 2, 2, 2]), 2);
    expect(U[0]).toBeCloseTo(Math.SQRT1_2, 14);
    expect(U[1]).toBeCloseTo(-Math.SQRT1_2, 14);
    expect(U[2]).toBe(0);
    expect(U[3]).toBeCloseTo(Math.SQRT1_2, 14);
    expect(() => choleskyInverseUpper(Float64Array.from([1, 2, 2, 1]), 2)).toThrow(RangeError);
  });
});
