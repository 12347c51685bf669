/**
 * SVDQuant's low-rank branch in a simulated variant (recipe `lowRank`): a layer's weight W, viewed as M [out x in]
 * (a Conv's [O, C, kh, kw] as [O, C kh kw]), is split into L1 L2 (its rank-r truncated SVD, kernels/lowrank.ts, kept
 * in float16 values) and the residual M - L1 L2, which the recipe quantizes. The graph then adds the branch to the
 * layer's output: the layer computes Q(x) Q(R), the branch x L2^T L1^T on the layer's FP input (as SVDQuant runs
 * its 16-bit branch on the unquantized input):
 *   Conv:        Conv(x, L2 as [r, C, kh, kw], the layer's strides/pads/dilations) -> Conv(., L1 as [O, r, 1, 1])
 *   Gemm/MatMul: MatMul(MatMul(x, L2^T [in, r]), L1^T [r, out])
 * Grouped convolutions and a MatMul whose weight is its first input are left without a branch.
 */
import { fromHalfBits, toHalfBits } from '../../../kernels/half.js';
import { lowRank } from '../../../kernels/lowrank.js';
import { GraphBuilder, type Attr } from '../../../kernels/onnx/graph.js';
import { embedFragment } from '../onnx/fragment.js';
import { nodeAttr } from '../onnx/graph.js';
import { ModelProto, type ModelMsg } from '../onnx/model.js';
import type { QuantizableLayer } from '../onnx/analysis.js';

export interface LowRankBranch {
  /** [out x r] and [r x in] (in = C kh kw for a Conv), float16 values in float32. */
  l1: Float32Array;
  l2: Float32Array;
  rank: number;
  out: number;
  in: number;
  /** Bits the branch stores (16 per value). */
  bits: number;
}

const half = (v: number) => fromHalfBits(toHalfBits(v));

/** Whether a layer can take a branch here, and why not. */
export function lowRankSupport(model: ModelMsg, layer: QuantizableLayer): string | null {
  const node = (model.graph!.node ?? []).find((n) => n.name === layer.name);
  if (!node) return 'node not found';
  if (layer.op === 'Conv') return Number(nodeAttr(node, 'group')?.i ?? 1) === 1 ? (layer.weightShape.length === 4 ? null : `a ${layer.weightShape.length - 2}-d convolution`) : 'a grouped convolution';
  if (layer.op === 'Gemm') return layer.weightIndex === 1 && layer.weightShape.length === 2 ? null : 'a Gemm whose weight is not its second input';
  if (layer.op === 'MatMul') return layer.weightIndex === 1 && layer.weightShape.length === 2 ? null : 'a MatMul whose weight is not a 2-d second input';
  return `${layer.op}`;
}

/** M [out x in] of a weight in its stored layout (Gemm transB=0 and MatMul store [in, out]). */
function asMatrix(w: Float32Array, layer: QuantizableLayer, transB: boolean): { M: Float64Array; out: number; in: number; transposed: boolean } {
  const d = layer.weightShape;
  if (layer.op === 'Conv') return { M: Float64Array.from(w), out: d[0]!, in: w.length / d[0]!, transposed: false };
  if (layer.op === 'Gemm' && transB) return { M: Float64Array.from(w), out: d[0]!, in: d[1]!, transposed: false };
  // stored [in, out]
  const [n, m] = [d[0]!, d[1]!];
  const M = new Float64Array(m * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) M[j * n + i] = w[i * m + j]!;
  return { M, out: m, in: n, transposed: true };
}

/**
 * Splits a weight (in its stored layout) into the residual the recipe quantizes and the branch; null when the rank
 * would not be smaller than half of min(out, in) (the branch would store as much as the weight).
 */
export function splitLowRank(w: Float32Array, layer: QuantizableLayer, transB: boolean, rank: number): { residual: Float32Array; branch: LowRankBranch } | null {
  const { M, out, in: inn, transposed } = asMatrix(w, layer, transB);
  if (rank * 2 > Math.min(out, inn)) return null;
  const lr = lowRank(M, out, inn, rank);
  const r = lr.rank;
  const l1 = Float32Array.from(lr.l1, half);
  const l2 = Float32Array.from(lr.l2, half);
  const residual = new Float32Array(w.length);
  for (let i = 0; i < out; i++) {
    for (let j = 0; j < inn; j++) {
      let v = 0;
      for (let t = 0; t < r; t++) v += l1[i * r + t]! * l2[t * inn + j]!;
      const e = M[i * inn + j]! - v;
      residual[transposed ? j * out + i : i * inn + j] = e;
    }
  }
  return { residual, branch: { l1, l2, rank: r, out, in: inn, bits: 16 * r * (out + inn) } };
}

/** Adds the branch to the layer's output in the graph (the layer's output name is kept, produced by the Add). */
export function insertLowRankBranch(model: ModelMsg, layer: QuantizableLayer, branch: LowRankBranch, index: number): void {
  const node = (model.graph!.node ?? []).find((n) => n.name === layer.name)!;
  const output = node.output![0]!;
  const main = `dq_lr/${index}/main`;
  node.output![0] = main;
  const b = new GraphBuilder(`dq_lr/${index}`);
  const { l1, l2, rank: r, out, in: inn } = branch;
  let lr: string;
  if (layer.op === 'Conv') {
    const [, C, kh, kw] = layer.weightShape as [number, number, number, number];
    const attrs: Record<string, Attr> = {};
    for (const a of ['strides', 'pads', 'dilations'] as const) {
      const v = nodeAttr(node, a);
      if (v?.ints?.length) attrs[a] = { type: 'ints', value: v.ints.map(Number) };
    }
    const autoPad = nodeAttr(node, 'auto_pad');
    if (autoPad?.s?.length) attrs.auto_pad = { type: 'string', value: new TextDecoder().decode(autoPad.s as Uint8Array) };
    const down = b.op('Conv', [layer.input, b.init('l2', 'float32', [r, C, kh, kw], l2)], attrs, 'down');
    lr = b.op('Conv', [down, b.init('l1', 'float32', [out, r, 1, 1], l1)], {}, 'up');
  } else {
    const l2t = new Float32Array(inn * r);
    for (let t = 0; t < r; t++) for (let j = 0; j < inn; j++) l2t[j * r + t] = l2[t * inn + j]!;
    const l1t = new Float32Array(r * out);
    for (let i = 0; i < out; i++) for (let t = 0; t < r; t++) l1t[t * out + i] = l1[i * r + t]!;
    const down = b.op('MatMul', [layer.input, b.init('l2t', 'float32', [inn, r], l2t)], {}, 'down');
    lr = b.op('MatMul', [down, b.init('l1t', 'float32', [r, out], l1t)], {}, 'up');
  }
  b.opTo(output, 'Add', [main, lr]);
  embedFragment(model, b.fragment([], [{ name: output, dtype: 'float32', dims: null }], 13), { after: main });
}

/**
 * An export's low-rank branches stored as float16 (their values are float16 already): each branch initializer becomes
 * a float16 tensor and a Cast to float32 at load, so the branch weighs 2 bytes a value on disk and runs in float32.
 * Returns how many branches (layers) were stored so.
 */
export function storeLowRankHalf(model: ModelMsg): number {
  const graph = model.graph!;
  const layers = new Set<string>();
  const casts: { name: string; half: string }[] = [];
  for (const t of graph.initializer ?? []) {
    const name = t.name ?? '';
    const m = /^dq_lr\/(\d+)\//.exec(name);
    if (!m || t.data_type !== 1 || !t.raw_data?.length) continue;
    const raw = t.raw_data;
    const f = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
    const h = new Uint16Array(f.length);
    let exact = true;
    for (let i = 0; i < f.length; i++) {
      h[i] = toHalfBits(f[i]!);
      if (fromHalfBits(h[i]!) !== f[i]) exact = false;
    }
    if (!exact) continue;
    const half = `${name}/f16`;
    (t as { name?: string }).name = half;
    (t as { data_type?: number }).data_type = 10;
    (t as { raw_data?: Uint8Array }).raw_data = new Uint8Array(h.buffer);
    casts.push({ name, half });
    layers.add(m[1]!);
  }
  if (casts.length) {
    const Node = ModelProto.lookupType('onnx.NodeProto');
    graph.node = [...casts.map((c) => Node.fromObject({ name: `${c.name}/cast`, op_type: 'Cast', input: [c.half], output: [c.name], attribute: [{ name: 'to', type: 2, i: 1 }] }) as never), ...(graph.node ?? [])];
  }
  return layers.size;
}
