/**
 * Gram matrices of quantizable layers' inputs, for GPTQ: H = sum over input rows x x^T, where a row is what one
 * output element of the layer sees (a Conv's unfolded k x k patch, in the weight's [C, kh, kw] order; a Gemm or
 * MatMul's input feature vector). Computed in-graph by a separate "Gram model" (the FP denoiser with these outputs):
 *
 *   Conv:        patches = Conv(x, one-hot kernels, group = C) -> [N, C*kh*kw, H', W'] -> rows [N*H'*W', C*kh*kw]
 *   Gemm/MatMul: rows = x reshaped to [-1, features]
 *   rows -> every s-th row (s odd, s = 2 floor(n / 4096) + 1: at most ~2048 rows a run, no aliasing with even
 *   widths) -> H = rows^T rows, plus the number of rows used.
 *
 * Layers that read the same tensor with the same geometry share one matrix. Calibration runs the Gram model on a few
 * rows of the batch at a few steps (GPTQ's H is merged over timesteps) and sums the matrices in float64; the sums
 * are stored beside the calibration record as a binary file (little-endian float64, matrices back to back).
 */
import { existsSync, readFileSync } from 'node:fs';
import { GraphBuilder, int, ints, type Attr } from '../../../kernels/onnx/graph.js';
import { DqError } from '../errors.js';
import { embedFragment, raiseOpset } from '../onnx/fragment.js';
import { nodeAttr } from '../onnx/graph.js';
import { ModelProto, type ModelMsg } from '../onnx/model.js';
import type { QuantizableLayer } from '../onnx/analysis.js';
import { pruneDead } from '../onnx/rewrite.js';

export const GRAM_MAX_DIM = 4608;

export interface GramEntry {
  /** Index of this matrix in the binary file. */
  index: number;
  tensor: string;
  layers: string[];
  /** Rows of H (= columns of the layer's weight viewed as [out, in * kh * kw]). */
  dim: number;
  /** Conv geometry, null for Gemm/MatMul. */
  conv: { channels: number; kernel: number[]; attrs: Record<string, Attr> } | null;
  /** Byte offset in the binary file. */
  offset: number;
}

export interface GramTargets {
  entries: GramEntry[];
  /** Layers without a Gram matrix, with the reason (GPTQ rounds them to nearest). */
  skipped: Record<string, string>;
}

/** Which layers get a Gram matrix, and its geometry. */
export function gramTargets(model: ModelMsg, layers: QuantizableLayer[]): GramTargets {
  const nodes = new Map((model.graph!.node ?? []).map((n) => [n.name ?? '', n]));
  const byKey = new Map<string, GramEntry>();
  const skipped: Record<string, string> = {};
  let offset = 0;
  for (const l of layers) {
    const n = nodes.get(l.name);
    if (!n) {
      skipped[l.name] = 'node not found';
      continue;
    }
    const a = (name: string) => nodeAttr(n, name);
    let dim: number;
    let conv: GramEntry['conv'] = null;
    if (l.op === 'Conv') {
      if (Number(a('group')?.i ?? 1) !== 1) {
        skipped[l.name] = 'grouped convolution';
        continue;
      }
      const [, c, ...k] = l.weightShape;
      if (k.length !== 2) {
        skipped[l.name] = `${k.length}-d convolution (GPTQ here covers 2-d)`;
        continue;
      }
      const attrs: Record<string, Attr> = {};
      for (const name of ['strides', 'pads', 'dilations']) {
        const v = a(name)?.ints;
        if (v?.length) attrs[name] = ints(v.map(Number));
      }
      const autoPad = a('auto_pad')?.s;
      if (autoPad?.length) attrs.auto_pad = { type: 'string', value: new TextDecoder().decode(autoPad) };
      dim = c! * k[0]! * k[1]!;
      conv = { channels: c!, kernel: k, attrs };
    } else if (l.op === 'Gemm' || l.op === 'MatMul') {
      if (l.op === 'MatMul' && l.weightIndex !== 1) {
        skipped[l.name] = 'weight is the first MatMul operand';
        continue;
      }
      if (l.op === 'Gemm' && Number(a('transA')?.i ?? 0) === 1) {
        skipped[l.name] = 'Gemm with transA';
        continue;
      }
      if (l.weightShape.length !== 2) {
        skipped[l.name] = 'batched MatMul weight';
        continue;
      }
      const transB = Number(a('transB')?.i ?? 0) === 1;
      dim = l.op === 'Gemm' && transB ? l.weightShape[1]! : l.weightShape[0]!;
    } else {
      skipped[l.name] = `${l.op} (GPTQ here covers Conv, Gemm and MatMul)`;
      continue;
    }
    if (dim > GRAM_MAX_DIM) {
      skipped[l.name] = `input dimension ${dim} > ${GRAM_MAX_DIM}`;
      continue;
    }
    const key = JSON.stringify([l.input, dim, conv]);
    const have = byKey.get(key);
    if (have) {
      have.layers.push(l.name);
      continue;
    }
    const e: GramEntry = { index: byKey.size, tensor: l.input, layers: [l.name], dim, conv, offset };
    offset += dim * dim * 8;
    byKey.set(key, e);
  }
  return { entries: [...byKey.values()], skipped };
}

export function gramOutput(e: GramEntry): { gram: string; rows: string } {
  return { gram: `dq_gram/${e.index}`, rows: `dq_gram/${e.index}_rows` };
}

/** Turns `model` (a copy of the FP denoiser) into the Gram model: its only outputs are the Gram matrices. */
export function buildGramModel(model: ModelMsg, entries: GramEntry[]): void {
  const ValueInfo = ModelProto.lookupType('onnx.ValueInfoProto');
  const outputs: Record<string, unknown>[] = [];
  for (const e of entries) {
    const b = new GraphBuilder(`dq_gram_${e.index}`);
    const names = gramOutput(e);
    let rows: string;
    if (e.conv) {
      const { channels: c, kernel } = e.conv;
      const kk = kernel[0]! * kernel[1]!;
      // one-hot kernels: output channel c*kk + j copies input channel c at kernel tap j (the weight's flatten order)
      const w = new Float32Array(c * kk * kk);
      for (let ch = 0; ch < c; ch++) for (let j = 0; j < kk; j++) w[(ch * kk + j) * kk + j] = 1;
      const kernelInit = b.init('onehot', 'float32', [c * kk, 1, kernel[0]!, kernel[1]!], w);
      const patches = b.op('Conv', [e.tensor, kernelInit], { ...e.conv.attrs, group: int(c), kernel_shape: ints(kernel) }, 'patches');
      const nDL = b.op('Reshape', [patches, b.i64([0, e.dim, -1])], {}, 'ndl');
      rows = b.op('Reshape', [b.op('Transpose', [nDL], { perm: ints([0, 2, 1]) }), b.i64([-1, e.dim])], {}, 'rows');
    } else {
      rows = b.op('Reshape', [e.tensor, b.i64([-1, e.dim])], {}, 'rows');
    }
    const n = b.op('Slice', [b.op('Shape', [rows]), b.i64([0]), b.i64([1])], {}, 'n');
    const step = b.op('Add', [b.op('Mul', [b.op('Div', [n, b.i64([4096])]), b.i64([2])]), b.i64([1])], {}, 'step');
    const picked = b.op('Slice', [rows, b.i64([0]), b.i64([2 ** 62]), b.i64([0]), step], {}, 'picked');
    b.opTo(names.gram, 'MatMul', [b.op('Transpose', [picked], { perm: ints([1, 0]) }), picked]);
    b.opTo(names.rows, 'Slice', [b.op('Shape', [picked]), b.i64([0]), b.i64([1])]);
    embedFragment(model, b.fragment([], [{ name: names.gram, dtype: 'float32', dims: [e.dim, e.dim] }, { name: names.rows, dtype: 'int64', dims: [1] }], 13), { after: e.tensor });
    outputs.push({ name: names.gram, type: { tensor_type: { elem_type: 1 } } }, { name: names.rows, type: { tensor_type: { elem_type: 7 } } });
  }
  model.graph!.output = outputs.map((o) => ValueInfo.fromObject(o) as never);
  raiseOpset(model, 13);
  pruneDead(model, (model.graph!.input ?? []).map((v) => v.name ?? ''));
}

/** Float64 sums of the Gram matrices, and the number of rows each one saw. */
export class GramSums {
  readonly data: Float64Array;
  readonly rows: number[];
  constructor(
    readonly entries: GramEntry[],
    data?: Float64Array,
    rows?: number[],
  ) {
    const total = entries.reduce((a, e) => a + e.dim * e.dim, 0);
    this.data = data ?? new Float64Array(total);
    this.rows = rows ?? entries.map(() => 0);
    if (this.data.length !== total) throw new DqError('BAD_CONFIG', `Gram data holds ${this.data.length} values, the entries need ${total}`);
  }

  add(e: GramEntry, g: Float32Array, rows: number): void {
    const base = e.offset / 8;
    for (let i = 0; i < g.length; i++) this.data[base + i]! += g[i]!;
    this.rows[e.index]! += rows;
  }

  /** H of one entry (a view, no copy). */
  matrix(e: GramEntry): Float64Array {
    return this.data.subarray(e.offset / 8, e.offset / 8 + e.dim * e.dim);
  }

  bytes(): Uint8Array {
    return new Uint8Array(this.data.buffer, this.data.byteOffset, this.data.byteLength);
  }

  static read(path: string, entries: GramEntry[], rows: number[]): GramSums {
    if (!existsSync(path)) throw new DqError('NOT_FOUND', `the calibration record's Gram matrices are missing (${path}): recalibrate with --gram`);
    const buf = readFileSync(path);
    const total = entries.reduce((a, e) => a + e.dim * e.dim, 0);
    if (buf.byteLength !== total * 8) throw new DqError('BAD_CONFIG', `${path}: ${buf.byteLength} bytes, the record's Gram entries need ${total * 8}: recalibrate with --gram`);
    const data = new Float64Array(total);
    new Uint8Array(data.buffer).set(buf);
    return new GramSums(entries, data, rows);
  }
}
