/**
 * SmoothQuant's migration strength searched per site (recipe `balance: { alpha: 'search' }`). Each balanced site's FP
 * input is sampled on a few calibration images and steps (rows of the activation, the same prompts, seeds and
 * sampler as the record); then, for every alpha on a grid and for no balance at all, the site's layers are balanced,
 * their weights rounded to nearest in the recipe's format and the sampled rows quantized per token as the variant
 * will, and the layers' outputs compared with FP's: the alpha whose relative output error is least wins. GPTQ, which
 * the recipe may run afterwards, is left out of the search (it would cost a GPTQ per candidate); the measure is each
 * layer's output on real activations, which the closed-form rule s_j = a_j^alpha / w_j^(1 - alpha) does not see.
 */
import { dirname } from 'node:path';
import { fakeQuantTokens, hadamard } from '../../../kernels/quant.js';
import { GraphBuilder } from '../../../kernels/onnx/graph.js';
import type { QuantizableLayer } from '../onnx/analysis.js';
import { encodeModel, inlineExternalData, loadOnnx } from '../onnx/io.js';
import { ModelProto } from '../onnx/model.js';
import { embedFragment } from '../onnx/fragment.js';
import type { Pipeline } from '../pipeline/pipeline.js';
import { sample } from '../pipeline/sample.js';
import { Session } from '../runtime/onnx.js';
import { calibrationImages, type CalibrationRecord } from './calibrate.js';
import type { Recipe } from './recipe.js';
import { quantizeWeight } from './weights.js';

/** Candidate migration strengths (and, beside them, no balance). */
export const ALPHA_GRID = [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1];
/** Calibration images sampled for the search, steps tapped, and rows kept per site and tapped step. */
export const SEARCH_IMAGES = 4;
export const SEARCH_STEPS = 4;
export const ROWS_PER_STEP = 64;
/** Output channels of each layer the error is measured on (spread evenly; all of them on narrower layers). */
export const SEARCH_COLUMNS = 64;

export interface SiteRows {
  /** Sampled rows of the site's input, [rows, dim] row-major. */
  data: Float32Array;
  rows: number;
  dim: number;
}

/** The calibrated steps an alpha search samples: SEARCH_STEPS of them, spread over the record's. */
export function searchSteps(rec: CalibrationRecord): number[] {
  return rec.steps.length <= SEARCH_STEPS ? rec.steps : Array.from({ length: SEARCH_STEPS }, (_, i) => rec.steps[Math.floor(((i + 0.5) * rec.steps.length) / SEARCH_STEPS)]!);
}

/** Rows of several samples of one site, stacked. */
export function joinRows(parts: SiteRows[], dim: number): SiteRows {
  const total = parts.reduce((k, p) => k + p.data.length, 0);
  const data = new Float32Array(total);
  let o = 0;
  for (const p of parts) {
    data.set(p.data, o);
    o += p.data.length;
  }
  return { data, rows: total / dim, dim };
}

/**
 * Rows of the FP inputs of `targets` (site tensors of linear layers, channels last) over the calibration's first
 * SEARCH_IMAGES images at the given step indices, ROWS_PER_STEP rows per step (strided over the batch), kept apart by
 * step: target -> step -> rows. One sampling pass for every target and step.
 */
export async function sampleSiteRowsAt(pipeline: Pipeline, base: Session, rec: CalibrationRecord, targets: { tensor: string; dim: number }[], steps: number[]): Promise<Map<string, Map<number, SiteRows>>> {
  const model = inlineExternalData(loadOnnx(pipeline.unetPath).model, dirname(pipeline.unetPath));
  const ValueInfo = ModelProto.lookupType('onnx.ValueInfoProto');
  const names = targets.map((_, i) => `dq_rows_${i}`);
  targets.forEach((t, i) => {
    const b = new GraphBuilder(`dq_rows/${i}`);
    const rows = b.op('Reshape', [t.tensor, b.i64([-1, t.dim])], {}, 'rows');
    const n = b.op('Slice', [b.op('Shape', [rows]), b.i64([0]), b.i64([1])], {}, 'n');
    const step = b.op('Add', [b.op('Div', [n, b.i64([ROWS_PER_STEP])]), b.i64([1])], {}, 'step');
    b.opTo(names[i]!, 'Slice', [rows, b.i64([0]), b.i64([2 ** 62]), b.i64([0]), step]);
    embedFragment(model, b.fragment([], [{ name: names[i]!, dtype: 'float32', dims: null }], 13), { after: t.tensor });
  });
  model.graph!.output = [...(model.graph!.output ?? []), ...names.map((n) => ValueInfo.fromObject({ name: n, type: { tensor_type: { elem_type: 1 } } }) as never)];
  const session = await Session.create(encodeModel(model), 'cpu');
  const parts = targets.map(() => new Map<number, Float32Array[]>());
  const s = rec.settings;
  const idx = Array.from({ length: Math.min(SEARCH_IMAGES, s.samples) }, (_, i) => i);
  try {
    await sample(pipeline, base, {
      ...calibrationImages(pipeline, s, idx),
      tap: {
        session,
        steps: new Set(steps),
        fetch: names,
        onOutputs: (step, _t, res) => {
          names.forEach((n, i) => {
            const m = parts[i]!;
            m.set(step, [...(m.get(step) ?? []), Float32Array.from(res[n]!.data as Float32Array)]);
          });
        },
      },
    });
  } finally {
    await session.release();
  }
  const out = new Map<string, Map<number, SiteRows>>();
  targets.forEach((t, i) => {
    out.set(t.tensor, new Map([...parts[i]!.entries()].map(([step, arrs]) => [step, joinRows(arrs.map((a) => ({ data: a, rows: a.length / t.dim, dim: t.dim })), t.dim)])));
  });
  return out;
}

/** Each channel's RMS over the rows, after the candidate's rotation when it rotates first (the basis its scales act in). */
export function channelRms(rows: SiteRows, c: Candidate): Float64Array {
  const x = c.rotate && c.rotateFirst ? transformRows(rows.data, rows.rows, rows.dim, { scale: null, rotate: c.rotate, rotateFirst: false }) : rows.data;
  const a = new Float64Array(rows.dim);
  for (let r = 0; r < rows.rows; r++) for (let j = 0; j < rows.dim; j++) a[j] += x[r * rows.dim + j]! ** 2;
  for (let j = 0; j < rows.dim; j++) a[j] = Math.sqrt(a[j]! / Math.max(1, rows.rows));
  return a;
}

/** One layer of a balanced site, as the search sees it. */
export interface SearchLayer {
  layer: QuantizableLayer;
  w: Float32Array;
  transB: boolean;
}

/** A candidate balance of a site: per-channel scales (null: none) and the rotation's block (0: none). */
export interface Candidate {
  scale: Float32Array | null;
  rotate: number;
  /** x -> (x R) diag(1/s) (a fold into the previous layer, fold.ts) instead of (x diag(1/s)) R. */
  rotateFirst: boolean;
}

export interface AlphaSearch {
  /** The chosen alpha, or null when leaving the channels unbalanced measured best. */
  alpha: number | null;
  /** Relative output error (summed over the site's layers) per ALPHA_GRID entry, then unbalanced. */
  errors: number[];
}

/**
 * Picks the balance of one site: `scaleFor(alpha)` gives the closed-form scales, `weightOf` a layer's weight under a
 * candidate (balanced and rotated, as the variant will store it before rounding). Every candidate is measured as
 * sum over layers of ||Q(x') Q(W') - x W||^2 / ||x W||^2 on the sampled rows and SEARCH_COLUMNS output channels.
 */
export function searchAlpha(
  rows: SiteRows,
  layers: SearchLayer[],
  basis: { rotate: number; rotateFirst: boolean },
  scaleFor: (alpha: number) => Float32Array,
  weightOf: (l: SearchLayer, c: Candidate) => Float32Array,
  weights: Recipe['weights'],
  actBits: number,
): AlphaSearch {
  const { data: X, rows: R, dim: C } = rows;
  // FP outputs on the measured columns, once per layer
  const refs = layers.map((l) => {
    const out = l.transB ? l.layer.weightShape[0]! : l.layer.weightShape[1]!;
    const K = Math.min(SEARCH_COLUMNS, out);
    const cols = Array.from({ length: K }, (_, k) => Math.floor((k * out) / K));
    const y = product(X, R, C, l.w, l.transB, out, cols);
    let norm = 0;
    for (const v of y) norm += v * v;
    return { cols, out, y, norm: Math.max(norm, 1e-30) };
  });
  const cands: Candidate[] = [...ALPHA_GRID.map((a) => ({ scale: scaleFor(a), ...basis })), { scale: null, ...basis }];
  const errors = cands.map((c) => {
    const xq = fakeQuantTokens(transformRows(X, R, C, c), [R, C], 1, actBits);
    let err = 0;
    layers.forEach((l, k) => {
      const q = quantizeWeight(weightOf(l, c), l.layer, weights, l.transB, null).values;
      const r = refs[k]!;
      const y = product(xq, R, C, q, l.transB, r.out, r.cols);
      let e = 0;
      for (let i = 0; i < y.length; i++) e += (y[i]! - r.y[i]!) ** 2;
      err += e / r.norm;
    });
    return err;
  });
  let best = 0;
  errors.forEach((e, i) => {
    if (e < errors[best]!) best = i;
  });
  return { alpha: best < ALPHA_GRID.length ? ALPHA_GRID[best]! : null, errors };
}

/** Rows x / s, then rotated by the block Hadamard (x' = x diag(1/s) R; the other order for a fold), as the variant computes them. */
function transformRows(X: Float32Array, R: number, C: number, c: Candidate): Float32Array {
  if (c.rotateFirst) {
    const y = transformRows(X, R, C, { scale: null, rotate: c.rotate, rotateFirst: false });
    if (c.scale) for (let i = 0; i < R * C; i++) y[i] = y[i]! / c.scale[i % C]!;
    return y;
  }
  const y = new Float32Array(X.length);
  for (let i = 0; i < R * C; i++) y[i] = c.scale ? X[i]! / c.scale[i % C]! : X[i]!;
  if (!c.rotate) return y;
  const n = c.rotate;
  const h = hadamard(n);
  const tmp = new Float64Array(n);
  for (let r = 0; r < R; r++) {
    for (let blk = 0; blk < C; blk += n) {
      const o = r * C + blk;
      for (let j = 0; j < n; j++) {
        let acc = 0;
        for (let k = 0; k < n; k++) acc += y[o + k]! * h[k * n + j]!;
        tmp[j] = acc;
      }
      for (let j = 0; j < n; j++) y[o + j] = tmp[j]!;
    }
  }
  return y;
}

/** X [R, C] times the weight's columns `cols` ([C, out], or [out, C] with transB) -> [R, cols] in float64. */
function product(X: Float32Array, R: number, C: number, w: Float32Array, transB: boolean, out: number, cols: number[]): Float64Array {
  const K = cols.length;
  const wc = new Float64Array(C * K);
  for (let j = 0; j < C; j++) for (let k = 0; k < K; k++) wc[j * K + k] = transB ? w[cols[k]! * C + j]! : w[j * out + cols[k]!]!;
  const y = new Float64Array(R * K);
  for (let r = 0; r < R; r++) {
    for (let j = 0; j < C; j++) {
      const x = X[r * C + j]!;
      if (x === 0) continue;
      const o = j * K;
      for (let k = 0; k < K; k++) y[r * K + k] += x * wc[o + k]!;
    }
  }
  return y;
}
