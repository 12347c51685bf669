/**
 * Weight quantization: each layer's weight is replaced by its fake-quantized values (the kernels/ reference,
 * bit-identical to the ONNX fake-quant subgraphs), per tensor, per output channel or per group along the input
 * axis; MX and NVFP4 use their own blocks along the input axis (rows padded with zeros to a whole block).
 * Split-shortcut layers quantize the two input halves of their weight separately (Q-Diffusion).
 */
import { numel, scaleIndex, type Granularity } from '../../../kernels/layout.js';
import {
  fakeQuantFloat, fakeQuantInt, fakeQuantMx, fakeQuantNvfp4, intParams, maxCalibrate, MX_BLOCK, NVFP4_BLOCK,
  nvfp4TensorScale, type QuantFormat,
} from '../../../kernels/quant.js';
import { storageCost } from '../../../kernels/storage.js';
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
  const cost = storageCost(fmt, [R, Kp], { kind: 'tensor' }, 1);
  return { values: back(outRows), bits: cost.totalBits, granularity: `${fmt.kind} blocks of ${B} along axis ${inAxis}` };
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
function intOrFloat(w: Float32Array, dims: number[], g: Granularity, fmt: Extract<QuantFormat, { kind: 'int' | 'float' }>, clipping: 'minmax' | 'mse'): Float32Array {
  const base = maxCalibrate(w, dims, g, fmt);
  const run = (scale: Float32Array, zp?: Int32Array) =>
    fmt.kind === 'int' ? fakeQuantInt(w, dims, g, fmt, scale, zp) : fakeQuantFloat(w, dims, g, fmt.element, scale);
  if (clipping === 'minmax') return run(base.scale, base.zeroPoint);
  // MSE: per scale group, shrink the range by alpha in [0.5, 1] and keep the alpha with the least squared error.
  const groups = base.scale.length;
  const idx = scaleIndex(dims, g);
  const best = run(base.scale, base.zeroPoint);
  const bestErr = groupErrors(w, best, idx, groups);
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
    } else {
      scale = base.scale.map((s) => Math.fround(s * a));
    }
    const cand = run(scale, zp);
    const err = groupErrors(w, cand, idx, groups);
    for (let i = 0; i < w.length; i++) {
      const j = idx[i]!;
      if (err[j]! < bestErr[j]!) best[i] = cand[i]!;
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
  const values = intOrFloat(w, dims, g, fmt, recipe.clipping);
  return { values, bits: storageCost(fmt, dims, g).totalBits, granularity: label };
}

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
