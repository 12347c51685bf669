/**
 * Weight quantization: each layer's weight is replaced by its fake-quantized values (the kernels/ reference,
 * bit-identical to the ONNX fake-quant subgraphs), per tensor, per output channel or per group along the input
 * axis; MX and NVFP4 use their own blocks along the input axis (rows padded with zeros to a whole block).
 * Split-shortcut layers quantize the two input halves of their weight separately (Q-Diffusion).
 */
import { numel, scaleIndex, type Granularity } from '../../../kernels/layout.js';
import {
  fakeQuantFloat, fakeQuantInt, fakeQuantIntInto, fakeQuantMx, fakeQuantNvfp4, float16Floor, intParams, maxCalibrate, MX_BLOCK, NVFP4_BLOCK,
  nvfp4TensorScale, type QuantFormat,
} from '../../../kernels/quant.js';
import { storageCost } from '../../../kernels/storage.js';
import { gptq } from '../../../kernels/gptq.js';
import type { QuantizableLayer } from '../onnx/analysis.js';
import type { Recipe } from './recipe.js';

export interface WeightResult {
  values: Float32Array;
  /** Storage bits of the quantized weight, scales included. */
  bits: number;
  granularity: string;
}

/** Axes of a layer's weight: output channels and input channels. */
export function weightAxes(layer: QuantizableLayer, transB: boolean): { out: number; in: number } {
  switch (layer.op) {
    case 'Conv':
      return { out: 0, in: 1 };
    case 'ConvTranspose':
      return { out: 1, in: 0 };
    case 'Gemm':
      return transB ? { out: 0, in: 1 } : { out: 1, in: 0 };
    default: // MatMul: x @ W (W is [..., in, out]) or W @ x (weight first: W is [out, in])
      return layer.weightIndex === 1 ? { out: layer.weightShape.length - 1, in: layer.weightShape.length - 2 } : { out: layer.weightShape.length - 2, in: layer.weightShape.length - 1 };
  }
}

/** Moves `axis` last and flattens the rest: returns rows [R, K] (the layout MX/NVFP4 blocks run along) and a
 * function to undo it. */
export function toRows(w: Float32Array, dims: number[], axis: number): { rows: Float32Array; R: number; K: number; back: (r: Float32Array) => Float32Array } {
  const K = dims[axis]!;
  const outer = numel(dims.slice(0, axis));
  const inner = numel(dims.slice(axis + 1));
  const R = outer * inner;
  const rows = new Float32Array(R * K);
  for (let o = 0; o < outer; o++) for (let k = 0; k < K; k++) for (let i = 0; i < inner; i++) rows[(o * inner + i) * K + k] = w[(o * K + k) * inner + i]!;
  const back = (r: Float32Array) => {
    const out = new Float32Array(w.length);
    for (let o = 0; o < outer; o++) for (let k = 0; k < K; k++) for (let i = 0; i < inner; i++) out[(o * K + k) * inner + i] = r[(o * inner + i) * K + k]!;
    return out;
  };
  return { rows, R, K, back };
}

/** MX / NVFP4 along the input axis, padding rows with zeros to a whole number of blocks. */
function blockFormat(w: Float32Array, dims: number[], inAxis: number, fmt: Extract<QuantFormat, { kind: 'mx' | 'nvfp4' }>): WeightResult {
  const { rows, R, K, back } = toRows(w, dims, inAxis);
  const B = fmt.kind === 'mx' ? MX_BLOCK : NVFP4_BLOCK;
  const Kp = Math.ceil(K / B) * B;
  const padded = new Float32Array(R * Kp);
  for (let r = 0; r < R; r++) padded.set(rows.subarray(r * K, (r + 1) * K), r * Kp);
  let y: Float32Array;
  if (fmt.kind === 'mx') y = fakeQuantMx(padded, [R, Kp], 1, fmt.element).y;
  else {
    let amax = 0;
    for (const v of w) amax = Math.max(amax, Math.abs(v));
    y = fakeQuantNvfp4(padded, [R, Kp], 1, nvfp4TensorScale(amax)).y;
  }
  const outRows = new Float32Array(R * K);
  for (let r = 0; r < R; r++) outRows.set(y.subarray(r * Kp, r * Kp + K), r * K);
  return { values: back(outRows), bits: blockBits(dims, inAxis, fmt), granularity: `${fmt.kind} blocks of ${B} along axis ${inAxis}` };
}

/** Stored bits of an MX / NVFP4 weight in blocks along its input axis (rows padded to whole blocks). */
function blockBits(dims: number[], inAxis: number, fmt: Extract<QuantFormat, { kind: 'mx' | 'nvfp4' }>): number {
  const K = dims[inAxis]!;
  const B = fmt.kind === 'mx' ? MX_BLOCK : NVFP4_BLOCK;
  return storageCost(fmt, [numel(dims) / K, Math.ceil(K / B) * B], { kind: 'tensor' }, 1).totalBits;
}

function granularityFor(recipe: Recipe['weights'], dims: number[], axes: { out: number; in: number }): { g: Granularity; label: string } {
  const gr = recipe.granularity;
  if (gr === 'tensor') return { g: { kind: 'tensor' }, label: 'per tensor' };
  if (gr === 'channel' || dims[axes.in]! % gr.group !== 0) {
    return { g: { kind: 'channel', axis: axes.out }, label: gr === 'channel' ? `per channel (axis ${axes.out})` : `per channel (group ${gr.group} does not divide ${dims[axes.in]})` };
  }
  return { g: { kind: 'block', axis: axes.in, size: gr.group }, label: `groups of ${gr.group} along axis ${axes.in}` };
}

/** Fake-quantizes one weight tensor (INT / FP with min-max or MSE clipping). */
function intOrFloat(w: Float32Array, dims: number[], g: Granularity, fmt: Extract<QuantFormat, { kind: 'int' | 'float' }>, clipping: 'minmax' | 'mse', scaleDtype: 'float32' | 'float16'): Float32Array {
  const fit = (s: Float32Array) => (scaleDtype === 'float16' ? s.map(float16Floor) : s);
  const calibrated = maxCalibrate(w, dims, g, fmt);
  const base = { scale: fit(calibrated.scale), zeroPoint: calibrated.zeroPoint };
  const run = (scale: Float32Array, zp?: Int32Array) =>
    fmt.kind === 'int' ? fakeQuantInt(w, dims, g, fmt, scale, zp) : fakeQuantFloat(w, dims, g, fmt.element, scale);
  if (clipping === 'minmax') return run(base.scale, base.zeroPoint);
  // MSE: per scale group, shrink the range by alpha in [0.5, 1] and keep the alpha with the least squared error.
  const groups = base.scale.length;
  const idx = scaleIndex(dims, g);
  const best = run(base.scale, base.zeroPoint);
  const bestErr = groupErrors(w, best, idx, groups);
  // INT candidates in one fused pass each (fakeQuantIntInto: the same values as run)
  const cand = fmt.kind === 'int' ? new Float32Array(w.length) : null;
  const candErr = new Float64Array(groups);
  for (let a = 0.95; a >= 0.5 - 1e-9; a -= 0.05) {
    let scale: Float32Array;
    let zp: Int32Array | undefined;
    if (fmt.kind === 'int' && !fmt.symmetric) {
      // shrink [min, max] around its centre
      const mins = new Float32Array(groups).fill(Infinity);
      const maxs = new Float32Array(groups).fill(-Infinity);
      for (let i = 0; i < w.length; i++) {
        mins[idx[i]!] = Math.min(mins[idx[i]!]!, w[i]!);
        maxs[idx[i]!] = Math.max(maxs[idx[i]!]!, w[i]!);
      }
      scale = new Float32Array(groups);
      zp = new Int32Array(groups);
      for (let j = 0; j < groups; j++) {
        const p = intParams(mins[j]! * a, maxs[j]! * a, fmt.bits, false);
        scale[j] = p.scale;
        zp[j] = p.zeroPoint;
      }
      scale = fit(scale);
    } else {
      scale = fit(calibrated.scale.map((s) => Math.fround(s * a)));
    }
    let values: Float32Array;
    let err: Float64Array;
    if (cand) {
      fakeQuantIntInto(w, idx, fmt as Extract<QuantFormat, { kind: 'int' }>, scale, zp, cand, candErr);
      values = cand;
      err = candErr;
    } else {
      values = run(scale, zp);
      err = groupErrors(w, values, idx, groups);
    }
    for (let i = 0; i < w.length; i++) {
      const j = idx[i]!;
      if (err[j]! < bestErr[j]!) best[i] = values[i]!;
    }
    for (let j = 0; j < groups; j++) if (err[j]! < bestErr[j]!) bestErr[j] = err[j]!;
  }
  return best;
}

function groupErrors(w: Float32Array, q: Float32Array, idx: Uint32Array, groups: number): Float64Array {
  const e = new Float64Array(groups);
  for (let i = 0; i < w.length; i++) e[idx[i]!]! += (w[i]! - q[i]!) ** 2;
  return e;
}

/**
 * Quantizes a layer's weight per the recipe; `split` (input channel index) quantizes the two input halves
 * separately, each with its own scales.
 */
export function quantizeWeight(w: Float32Array, layer: QuantizableLayer, recipe: Recipe['weights'], transB: boolean, split: number | null): WeightResult {
  const dims = layer.weightShape;
  const axes = weightAxes(layer, transB);
  const fmt = recipe.format as QuantFormat;
  if (split !== null && dims[axes.in]! > split) {
    // quantize the two input halves as two weights of the same layer, each with its own scales
    let bits = 0;
    let label = '';
    const out = new Float32Array(w.length);
    for (const [a, b] of [[0, split], [split, dims[axes.in]!]] as const) {
      const part = sliceAxis(w, dims, axes.in, a, b);
      const res = quantizeWeight(part.data, { ...layer, weightShape: part.dims }, recipe, transB, null);
      placeAxis(out, dims, axes.in, a, res.values, part.dims);
      bits += res.bits;
      label = `split at input channel ${split}, each half ${res.granularity}`;
    }
    return { values: out, bits, granularity: label };
  }
  if (fmt.kind === 'mx' || fmt.kind === 'nvfp4') return blockFormat(w, dims, axes.in, fmt);
  const { g, label } = granularityFor(recipe, dims, axes);
  const values = intOrFloat(w, dims, g, fmt, recipe.clipping, recipe.scale);
  return { values, bits: weightBits(layer, recipe, transB, null), granularity: label };
}

/** The bits quantizeWeight stores for this layer and recipe, without quantizing (they depend on the shape only). */
export function weightBits(layer: QuantizableLayer, recipe: Recipe['weights'], transB: boolean, split: number | null): number {
  const dims = layer.weightShape;
  const axes = weightAxes(layer, transB);
  const fmt = recipe.format as QuantFormat;
  if (split !== null && dims[axes.in]! > split) {
    return ([[0, split], [split, dims[axes.in]!]] as const).reduce((bits, [a, b]) => {
      const half = [...dims];
      half[axes.in] = b - a;
      return bits + weightBits({ ...layer, weightShape: half }, recipe, transB, null);
    }, 0);
  }
  if (fmt.kind === 'mx' || fmt.kind === 'nvfp4') return blockBits(dims, axes.in, fmt);
  return storageCost(fmt, dims, granularityFor(recipe, dims, axes).g, -1, scaleBits(recipe)).totalBits;
}

/** Bits of one stored INT/FP scale. */
const scaleBits = (recipe: Recipe['weights']): 16 | 32 => (recipe.scale === 'float16' ? 16 : 32);

/** Elements a..b-1 along `axis`. */
function sliceAxis(w: Float32Array, dims: number[], axis: number, a: number, b: number): { data: Float32Array; dims: number[] } {
  const outer = numel(dims.slice(0, axis));
  const inner = numel(dims.slice(axis + 1));
  const K = dims[axis]!;
  const k = b - a;
  const data = new Float32Array(outer * k * inner);
  for (let o = 0; o < outer; o++) data.set(w.subarray((o * K + a) * inner, (o * K + b) * inner), o * k * inner);
  const nd = [...dims];
  nd[axis] = k;
  return { data, dims: nd };
}

/** Writes `part` (dims `pd`) into `into` at offset a along `axis`. */
function placeAxis(into: Float32Array, dims: number[], axis: number, a: number, part: Float32Array, pd: number[]): Float32Array {
  const outer = numel(dims.slice(0, axis));
  const inner = numel(dims.slice(axis + 1));
  const K = dims[axis]!;
  const k = pd[axis]!;
  for (let o = 0; o < outer; o++) into.set(part.subarray(o * k * inner, (o + 1) * k * inner), (o * K + a) * inner);
  return into;
}

export interface GptqWeightResult extends WeightResult {
  /** GPTQ's proxy loss (sum over columns of err^2 / U_jj^2 / 2). */
  loss: number;
  /** Dampening added to H's diagonal (relative to its mean), after retries. */
  dampening: number;
}

/**
 * GPTQ (Frantar et al.): rounds the weight column by column, compensating each column's error on the columns not
 * yet rounded, through the inverse of H = sum x x^T (the Gram matrix of the layer's inputs, in the weight's
 * natural input order: a Conv's (channel, ky, kx), a Gemm/MatMul's input features). Same formats, granularity and
 * storage as round-to-nearest. A Conv's columns are reordered (tap, channel) so that groups and MX/NVFP4 blocks run
 * along the channels of one kernel tap, the layout round-to-nearest uses. Split-shortcut layers: each input half
 * on its own block of H (no compensation across the split). Returns null when the layout does not fit (a group or
 * block that does not divide the channels): the caller rounds to nearest and says so.
 */
export function quantizeWeightGptq(w: Float32Array, layer: QuantizableLayer, recipe: Recipe['weights'], transB: boolean, split: number | null, H: Float64Array, opts: { percdamp?: number; actOrder?: boolean } = {}): GptqWeightResult | null {
  const dims = layer.weightShape;
  const axes = weightAxes(layer, transB);
  const C = dims[axes.in]!;
  if (split !== null && C > split) {
    const kk = layer.op === 'Conv' ? numel(dims.slice(2)) : 1;
    const out = new Float32Array(w.length);
    let bits = 0;
    let loss = 0;
    let dampening = 0;
    let label = '';
    for (const [a, b] of [[0, split], [split, C]] as const) {
      const part = sliceAxis(w, dims, axes.in, a, b);
      const n = (b - a) * kk;
      const sub = new Float64Array(n * n);
      const D = C * kk;
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) sub[i * n + j] = H[(a * kk + i) * D + a * kk + j]!;
      const res = quantizeWeightGptq(part.data, { ...layer, weightShape: part.dims }, recipe, transB, null, sub, opts);
      if (!res) return null;
      placeAxis(out, dims, axes.in, a, res.values, part.dims);
      bits += res.bits;
      loss += res.loss;
      dampening = Math.max(dampening, res.dampening);
      label = `split at input channel ${split}, each half ${res.granularity}`;
    }
    return { values: out, bits, granularity: label, loss, dampening };
  }
  const fmt = recipe.format as QuantFormat;
  const block = fmt.kind === 'mx' ? MX_BLOCK : fmt.kind === 'nvfp4' ? NVFP4_BLOCK : null;
  const { g, label } = block === null ? granularityFor(recipe, dims, axes) : { g: { kind: 'block', axis: axes.in, size: block } as Granularity, label: `${fmt.kind} blocks of ${block} along axis ${axes.in}` };
  if (g.kind === 'block' && C % g.size !== 0) return null;
  // rows [out, K] with K in GPTQ column order; perm[k] = the natural input index of column k
  const { rows, R, back } = outFirst(w, dims, axes.out);
  const natural = rows.length / R; // C * kk, natural order (c, ky, kx)
  const kk = natural / C;
  const perm = new Uint32Array(natural);
  for (let j = 0; j < kk; j++) for (let c = 0; c < C; c++) perm[j * C + c] = c * kk + j;
  const Wp = new Float32Array(rows.length);
  for (let r = 0; r < R; r++) for (let k = 0; k < natural; k++) Wp[r * natural + k] = rows[r * natural + perm[k]!]!;
  const Hp = new Float64Array(natural * natural);
  for (let i = 0; i < natural; i++) for (let j = 0; j < natural; j++) Hp[i * natural + j] = H[perm[i]! * natural + perm[j]!]!;
  const group = g.kind === 'tensor' ? 'tensor' : g.kind === 'channel' ? 'channel' : g.size;
  const res = gptq(Wp, R, natural, Hp, fmt, { group, clipping: recipe.clipping, percdamp: opts.percdamp, actOrder: opts.actOrder, roundScale: recipe.scale === 'float16' ? float16Floor : undefined });
  const outRows = new Float32Array(rows.length);
  for (let r = 0; r < R; r++) for (let k = 0; k < natural; k++) outRows[r * natural + perm[k]!] = res.values[r * natural + k]!;
  const bits = block === null ? storageCost(fmt, dims, g, -1, scaleBits(recipe)).totalBits : storageCost(fmt, [numel(dims) / C, C], { kind: 'tensor' }, 1).totalBits;
  return { values: back(outRows), bits, granularity: label, loss: res.loss, dampening: res.dampening };
}

/** The weight as rows [out, rest] (rest in its natural order): Conv and Gemm(transB) as they are, [in, out] transposed. */
function outFirst(w: Float32Array, dims: number[], outAxis: number): { rows: Float32Array; R: number; back: (r: Float32Array) => Float32Array } {
  if (outAxis === 0) return { rows: w, R: dims[0]!, back: (r) => r };
  if (dims.length !== 2 || outAxis !== 1) throw new RangeError(`GPTQ: weight of dims [${dims}] with output axis ${outAxis}`);
  const [I, O] = dims as [number, number];
  const t = (x: Float32Array, a: number, b: number) => {
    const y = new Float32Array(x.length);
    for (let i = 0; i < a; i++) for (let j = 0; j < b; j++) y[j * a + i] = x[i * b + j]!;
    return y;
  };
  return { rows: t(w, I, O), R: O, back: (r) => t(r, O, I) };
}
