/**
 * A rotation (and a channel balance) folded into the previous layer where the graph allows, instead of computed
 * online. An attention's output projection reads softmax(q k^T) v with the heads merged; the probabilities mix
 * tokens, never channels, so a transform T of the channels that stays inside each head (a block Hadamard whose blocks
 * divide the head width, then a per-channel scale) commutes with the attention: (P (x Wv)) T = P (x (Wv T)). The value
 * projection's weight and bias take T, the output projection's input arrives transformed, and no node is added
 * (QuaRot folds the value/output pair the same way). Elsewhere (after a LayerNorm, a GELU, a convolution) the
 * rotation stays online.
 *
 * The pattern, as PyTorch exports attention (the one onnx/fuse.ts fuses):
 *   x Wv (+ b) -> Reshape [B, S, h, d] -> Transpose(0,2,1,3) -> MatMul(Softmax(..), .) -> Transpose(0,2,1,3)
 *   -> Reshape [B, S, D] -> the output projection (the site's only layer)
 * with every tensor on the way used once and the value weight used by its projection alone.
 */
import { headsOf, permIs } from '../onnx/fuse.js';
import { indexGraph, nodeAttr } from '../onnx/graph.js';
import type { ModelMsg, NodeMsg, TensorMsg } from '../onnx/model.js';
import type { Site } from './sites.js';

export interface RotationFold {
  /** The value projection's node (a quantizable layer's name), its weight and bias initializers. */
  value: { node: string; weight: string; bias: string | null; transB: boolean };
  /** Channels of the site (the value projection's outputs) and the width of one head. */
  channels: number;
  headDim: number;
}

/** Sites (by id) whose input is an attention's merged heads, with the value projection a fold goes into. */
export function findRotationFolds(model: ModelMsg, sites: Site[]): Map<number, RotationFold> {
  const g = indexGraph(model);
  const prod = (t: string): NodeMsg | null => {
    const p = g.producer.get(t);
    return p === undefined ? null : g.nodes[p]!;
  };
  const is = (n: NodeMsg | null, op: string): n is NodeMsg => !!n && n.op_type === op && !n.domain;
  // besides its one user, a tensor may feed Shape nodes (the exporter's reshape arithmetic): a fold keeps shapes
  const usedOnlyBy = (t: string, n: NodeMsg) => !g.outputs.includes(t) && (g.consumers.get(t) ?? []).every((c) => g.nodes[c] === n || is(g.nodes[c]!, 'Shape'));
  const out0 = (n: NodeMsg) => n.output?.[0] ?? '';
  const byName = new Map(g.nodes.map((n, i) => [g.names[i]!, n]));
  const out = new Map<number, RotationFold>();
  for (const site of sites) {
    if (site.split !== null || site.layers.length !== 1) continue;
    const user = byName.get(site.layers[0]!);
    if (!user || !(is(user, 'MatMul') || is(user, 'Gemm')) || !usedOnlyBy(site.tensor, user)) continue;
    const merge = prod(site.tensor);
    if (!is(merge, 'Reshape')) continue;
    const mt = prod(merge.input?.[0] ?? '');
    if (!is(mt, 'Transpose') || !permIs(mt, [0, 2, 1, 3]) || !usedOnlyBy(out0(mt), merge)) continue;
    const pv = prod(mt.input?.[0] ?? '');
    if (!is(pv, 'MatMul') || !usedOnlyBy(out0(pv), mt) || !is(prod(pv.input?.[0] ?? ''), 'Softmax')) continue;
    const vt = prod(pv.input?.[1] ?? '');
    if (!is(vt, 'Transpose') || !permIs(vt, [0, 2, 1, 3]) || !usedOnlyBy(out0(vt), pv)) continue;
    const vr = prod(vt.input?.[0] ?? '');
    if (!is(vr, 'Reshape') || !usedOnlyBy(out0(vr), vt)) continue;
    const heads = headsOf(g, vr);
    if (!heads) continue;
    let proj = prod(vr.input?.[0] ?? '');
    let bias: string | null = null;
    if (is(proj, 'Add') && usedOnlyBy(out0(proj), vr)) {
      const add = proj;
      const [a, b] = add.input ?? [];
      const [x, c] = g.initializers.has(b ?? '') ? [a, b] : [b, a];
      if (!c || !g.initializers.has(c) || (g.consumers.get(c) ?? []).length !== 1) continue;
      bias = c;
      proj = prod(x ?? '');
      if (!proj || !usedOnlyBy(out0(proj), add)) continue;
    } else if (!proj || !usedOnlyBy(out0(proj), vr)) continue;
    const gemm = is(proj, 'Gemm');
    if (!(is(proj, 'MatMul') || gemm)) continue;
    const weight = proj.input?.[1] ?? '';
    const w = g.initializers.get(weight);
    if (!w || w.data_type !== 1 || (w.dims ?? []).length !== 2 || (g.consumers.get(weight) ?? []).length !== 1) continue;
    if (gemm && (Number(nodeAttr(proj, 'transA')?.i ?? 0) !== 0 || Number(nodeAttr(proj, 'alpha')?.f ?? 1) !== 1)) continue;
    const transB = gemm && Number(nodeAttr(proj, 'transB')?.i ?? 0) === 1;
    if (gemm && proj.input?.[2]) {
      if (bias !== null) continue;
      const c = proj.input[2];
      if (!g.initializers.has(c) || (g.consumers.get(c) ?? []).length !== 1 || Number(nodeAttr(proj, 'beta')?.f ?? 1) !== 1) continue;
      bias = c;
    }
    const D = Number((w.dims as number[])[transB ? 0 : 1]);
    if (D % heads !== 0) continue;
    if (bias !== null && (g.initializers.get(bias)!.dims ?? []).reduce((a: number, d) => a * Number(d), 1) !== D) continue;
    out.set(site.id, { value: { node: g.names[g.producer.get(out0(proj))!]!, weight, bias, transB }, channels: D, headDim: D / heads });
  }
  return out;
}

/** The largest power of two, at most `cap`, dividing both the channels and the head width. */
export function foldBlock(f: RotationFold, cap: number): number {
  let b = 1;
  while (2 * b <= cap && f.headDim % (2 * b) === 0 && f.channels % (2 * b) === 0) b *= 2;
  return b;
}

/**
 * Folds x -> (x R) diag(1 / s) into a projection's outputs: each output channel's column of the weight ([in, out],
 * or [out, in] with transB) and the bias. R a symmetric block Hadamard of `block` (its h), s per channel (or none).
 */
export function foldIntoOutputs(w: Float32Array, shape: number[], transB: boolean, bias: Float32Array | null, h: Float64Array, block: number, scale: Float32Array | null): { w: Float32Array; bias: Float32Array | null } {
  const [r, c] = shape as [number, number];
  const outDim = transB ? r : c;
  const inDim = transB ? c : r;
  const at = (i: number, o: number) => (transB ? o * c + i : i * c + o);
  const nw = new Float32Array(w.length);
  const mix = (get: (o: number) => number, set: (o: number, v: number) => void) => {
    for (let blk = 0; blk < outDim; blk += block) {
      for (let j = 0; j < block; j++) {
        let acc = 0;
        for (let k = 0; k < block; k++) acc += get(blk + k) * h[k * block + j]!;
        set(blk + j, acc / (scale ? scale[blk + j]! : 1));
      }
    }
  };
  for (let i = 0; i < inDim; i++) mix((o) => w[at(i, o)]!, (o, v) => (nw[at(i, o)] = v));
  let nb: Float32Array | null = null;
  if (bias) {
    const b = new Float32Array(bias.length);
    mix((o) => bias[o]!, (o, v) => (b[o] = v));
    nb = b;
  }
  return { w: nw, bias: nb };
}

/** Replaces a float32 initializer's values (inline from now on, whatever it was). */
export function setFloats(t: TensorMsg, values: Float32Array): void {
  Object.assign(t, { raw_data: new Uint8Array(values.buffer, values.byteOffset, values.byteLength), data_location: 0, external_data: [] });
  delete (t as { float_data?: unknown }).float_data;
}
