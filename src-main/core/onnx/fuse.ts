/**
 * Float graph fusions for exported pipelines. Independent of any number format: they make the float remainder
 * of a network (what stays float32 whatever the recipe) cheaper on onnxruntime, and apply to an FP32 pipeline the
 * same way.
 *
 * `fuseAttention`: scaled dot-product attention as exported by PyTorch,
 *   q, k, v [B, S, D] -> Reshape [B, S, h, d] -> Transpose (q, v: 0,2,1,3; k: 0,2,3,1)
 *   -> MatMul(q, k^T) -> Mul/Div by a scalar (optional) -> Softmax(last axis) -> MatMul(., v)
 *   -> Transpose(0,2,1,3) -> Reshape [B, S, D]
 * or with q and k^T each multiplied by a scalar before their product (PyTorch's export of
 * scaled_dot_product_attention scales both by the square root of the scale). A scalar is a constant, or shape
 * arithmetic that evaluates statically (onnx/static.ts: 1 / sqrt(head_dim) computed from the projection's shape,
 * as traced models have it); a scale that depends on the runtime sizes is not fused.
 * becomes one com.microsoft MultiHeadAttention(q, k, v) node (num_heads h, scale). onnxruntime's CPU kernel
 * computes it per head without the separate transposes, the materialised scaled scores and their shape
 * bookkeeping. Attention products are never quantized (activation x activation), so this changes no quantizer.
 * A pattern that differs anywhere (masks, biases, other layouts, tensors used elsewhere) is left as it is.
 * MultiHeadAttention does not broadcast over the batch: keys or values that do not depend on every input the
 * queries depend on (a context stored in the graph with batch 1, a text embedding input) are expanded to the
 * queries' batch first.
 */
import { dependence } from './analysis.js';
import { DataType, decodeTensor } from './tensor.js';
import { indexGraph, nodeAttr, sortTopologically, type GraphIndex } from './graph.js';
import type { ModelMsg, NodeMsg, TensorMsg } from './model.js';
import { pruneDead } from './rewrite.js';
import { staticInfo, type StaticInfo } from './static.js';

export const MS_DOMAIN = 'com.microsoft';

/** A constant tensor: an initializer or a Constant node's value, or undefined. */
function constTensor(g: GraphIndex, name: string): TensorMsg | undefined {
  const t = g.initializers.get(name);
  if (t) return t;
  const p = g.producer.get(name);
  const n = p === undefined ? undefined : g.nodes[p]!;
  if (!n || n.op_type !== 'Constant' || n.domain) return undefined;
  return (n as { attribute?: { name?: string; t?: TensorMsg }[] }).attribute?.find((a) => a.name === 'value')?.t;
}

/** Values of a small constant tensor (constTensor), or null. */
function constValues(g: GraphIndex, name: string): number[] | null {
  const t = constTensor(g, name);
  if (!t || (t.dims ?? []).reduce((a: number, b) => a * Number(b), 1) > 16) return null;
  if (t.data_type === DataType.FLOAT16 || t.data_type === DataType.BFLOAT16) return null; // bit patterns, not values
  try {
    return Array.from(decodeTensor(t).data as ArrayLike<number | bigint>, Number);
  } catch {
    return null;
  }
}

export const permIs = (n: NodeMsg, perm: number[]) => {
  const p = (nodeAttr(n, 'perm')?.ints ?? []).map(Number);
  return p.length === perm.length && p.every((v, i) => v === perm[i]);
};

/** Heads of a Reshape to [B, S, h, d]: the shape's third entry, from a constant shape or a Concat of pieces. */
export function headsOf(g: GraphIndex, reshape: NodeMsg): number | null {
  const shape = reshape.input?.[1] ?? '';
  const whole = constValues(g, shape);
  if (whole) return whole.length === 4 && whole[2]! > 0 ? whole[2]! : null;
  const p = g.producer.get(shape);
  const c = p === undefined ? undefined : g.nodes[p]!;
  if (!c || c.op_type !== 'Concat' || (c.input ?? []).length !== 4) return null;
  // each piece one dimension: constants of one value, or shape pieces (Unsqueeze of a Gather, Slice of a Shape)
  for (const piece of c.input!) {
    const v = constValues(g, piece);
    if (v ? v.length !== 1 : !['Unsqueeze', 'Slice', 'Cast'].includes(g.nodes[g.producer.get(piece) ?? -1]?.op_type ?? '')) return null;
  }
  const h = constValues(g, c.input![2]!);
  return h && h[0]! > 0 ? h[0]! : null;
}

/** A softmax fuseAttention left as it was, and why (the first check its block failed). */
export interface SkippedAttention {
  softmax: string;
  reason: string;
}

/** What fuseAttention did: the blocks it fused and the softmax nodes it left, with the reason. */
export interface AttentionFusion {
  fused: FusedAttention[];
  skipped: SkippedAttention[];
}

export interface FusedAttention {
  /** The Softmax of each fused block (its name in the source graph). */
  softmax: string;
  heads: number;
  scale: number;
}

/** Rewrites every matching attention block in place (see the module comment); returns what it fused and what not. */
export function fuseAttention(model: ModelMsg): AttentionFusion {
  const g = indexGraph(model);
  const only = (tensor: string): NodeMsg | null => {
    const c = g.consumers.get(tensor) ?? [];
    return c.length === 1 && !g.outputs.includes(tensor) ? g.nodes[c[0]!]! : null;
  };
  const prod = (tensor: string): NodeMsg | null => {
    const p = g.producer.get(tensor);
    return p === undefined ? null : g.nodes[p]!;
  };
  const is = (n: NodeMsg | null, op: string): n is NodeMsg => !!n && n.op_type === op && !n.domain;
  const out0 = (n: NodeMsg) => n.output?.[0] ?? '';
  /** Reshape [B,S,h,d] -> Transpose(perm) of a head-split projection: [projection, heads] or null. */
  const split = (t: string, perm: number[]): { x: string; heads: number; nodes: NodeMsg[] } | null => {
    const tr = prod(t);
    // besides its one user, the split tensor may feed Shape nodes (a scale computed from the head dimension); the
    // block is fused only if they die with it (checked below)
    if (!is(tr, 'Transpose') || !permIs(tr, perm) || g.outputs.includes(t)) return null;
    if ((g.consumers.get(t) ?? []).filter((c) => !is(g.nodes[c]!, 'Shape')).length !== 1) return null;
    const rs = prod(tr.input?.[0] ?? '');
    if (!is(rs, 'Reshape') || only(out0(rs)) !== tr) return null;
    const heads = headsOf(g, rs);
    // MultiHeadAttention takes [B, S, D] projections: a known shape of another rank is not fused
    const rank = g.shapes.get(rs.input![0]!)?.length;
    if (rank !== undefined && rank !== 3) return null;
    return heads ? { x: rs.input![0]!, heads, nodes: [tr, rs] } : null;
  };

  const dep = dependence(g);
  // the static pass runs only when a scale is not a constant (traced exports' shape arithmetic)
  let info: StaticInfo | null = null;
  /** A scalar operand's value: a small constant, or shape arithmetic that evaluates statically. */
  const scalar = (t: string): number | null => {
    const c = constValues(g, t);
    return c ? (c.length === 1 ? c[0]! : null) : (info ??= staticInfo(g)).scalar(t);
  };
  const opset = Number((model.opset_import ?? []).find((o) => !o.domain || o.domain === 'ai.onnx')?.version ?? 0);
  const extraNodes: NodeMsg[] = [];
  /** `x` broadcast to the batch of `like` (Expand to [B, 1, 1]; the shape constants are added at the end). */
  const toBatchOf = (x: string, like: string, tag: string): string => {
    const p = `dq_fuse/${tag}`;
    extraNodes.push(
      { op_type: 'Shape', input: [like], output: [`${p}/shape`] },
      { op_type: 'Slice', input: [`${p}/shape`, 'dq_fuse/s0', 'dq_fuse/s1'], output: [`${p}/b`] },
      { op_type: 'Concat', input: [`${p}/b`, 'dq_fuse/s11'], output: [`${p}/dims`], attribute: [{ name: 'axis', type: 2, i: 0 }] } as NodeMsg,
      { op_type: 'Expand', input: [x, `${p}/dims`], output: [`${p}/x`] },
    );
    return `${p}/x`;
  };
  /**
   * Whether every other use of the block's inner tensors dies with the block: nodes that feed only block nodes or
   * other such nodes (the shape arithmetic of a scale), never a graph output. The block's `last` node's output lives
   * on as the fused node's.
   */
  const diesWith = (block: Set<NodeMsg>, last: NodeMsg): boolean => {
    const dying = new Map<NodeMsg, boolean>();
    /** No output of n is a graph output, and every consumer of them dies. */
    const outputsDie = (n: NodeMsg, depth: number): boolean =>
      (n.output ?? []).every((t) => !g.outputs.includes(t) && (g.consumers.get(t) ?? []).every((c) => dies(g.nodes[c]!, depth)));
    const dies = (n: NodeMsg, depth: number): boolean => {
      if (block.has(n)) return true;
      const known = dying.get(n);
      if (known !== undefined) return known;
      if (depth > 32) return false;
      dying.set(n, false);
      const ok = outputsDie(n, depth + 1);
      dying.set(n, ok);
      return ok;
    };
    return [...block].every((n) => n === last || outputsDie(n, 0));
  };
  /** Why a scale operand is not fusable. */
  const scaleWhy = (t: string): string => {
    if (constTensor(g, t)?.data_type === DataType.FLOAT16) return "the attention computes in float16 (onnxruntime's CPU MultiHeadAttention is float32)";
    return 'its scale is not a positive scalar known before running (it depends on runtime sizes, or is not a scalar)';
  };
  const fused: FusedAttention[] = [];
  const skipped: SkippedAttention[] = [];
  const drop = new Set<NodeMsg>();
  const add = new Map<NodeMsg, NodeMsg>();
  g.nodes.forEach((sm, i) => {
    if (!is(sm, 'Softmax')) return;
    const skip = (reason: string) => void skipped.push({ softmax: g.names[i]!, reason });
    // Softmax's default axis is -1 from opset 13, 1 before
    const axis = Number(nodeAttr(sm, 'axis')?.i ?? (opset >= 13 ? -1 : 1));
    if (axis !== -1 && axis !== 3) return skip('softmax over another axis than the keys');
    let scores = prod(sm.input?.[0] ?? '');
    let scale = 1;
    const chain: NodeMsg[] = [sm];
    if ((is(scores, 'Mul') || is(scores, 'Div')) && only(out0(scores)) === sm) {
      const [a, b] = scores.input ?? [];
      const c = scalar(b ?? '');
      if (c === null || !(c > 0)) return skip(scaleWhy(b ?? ''));
      scale = scores.op_type === 'Mul' ? c : 1 / c;
      chain.push(scores);
      scores = prod(a ?? '');
    }
    if (!is(scores, 'MatMul') || only(out0(scores)) !== chain[chain.length - 1]) return skip('the scores are not one product q.k^T used only by the softmax (a mask or bias added?)');
    // q and k^T each scaled before the product
    let operandWhy = '';
    const operand = (t: string): string | null => {
      const m = prod(t);
      if (!is(m, 'Mul') || only(t) !== scores) return t;
      const c = scalar(m.input?.[1] ?? '');
      if (c === null || !(c > 0)) {
        operandWhy = scaleWhy(m.input?.[1] ?? '');
        return null;
      }
      scale *= c;
      chain.push(m);
      return m.input?.[0] ?? '';
    };
    const qIn = operand(scores.input?.[0] ?? '');
    const kIn = operand(scores.input?.[1] ?? '');
    if (qIn === null || kIn === null) return skip(operandWhy);
    const q = split(qIn, [0, 2, 1, 3]);
    const k = split(kIn, [0, 2, 3, 1]);
    const pv = only(out0(sm));
    if (!q || !k) return skip('q or k is not a head split (Reshape to [B, S, heads, d], Transpose) of a [B, S, D] projection used only here');
    if (q.heads !== k.heads) return skip(`q and k have different head counts (${q.heads}, ${k.heads})`);
    if (!is(pv, 'MatMul') || pv.input?.[0] !== out0(sm)) return skip('the probabilities are not used once, by the product with v');
    const v = split(pv.input?.[1] ?? '', [0, 2, 1, 3]);
    const ot = only(out0(pv));
    if (!v || v.heads !== q.heads) return skip('v is not a head split like q and k');
    if (!is(ot, 'Transpose') || !permIs(ot, [0, 2, 1, 3])) return skip('the heads are not merged back by a Transpose(0, 2, 1, 3)');
    const or = only(out0(ot));
    if (!is(or, 'Reshape')) return skip('the heads are not merged back by a Reshape to [B, S, D]');
    const orShape = constValues(g, or.input?.[1] ?? '');
    const orConcat = prod(or.input?.[1] ?? '');
    if (!(orShape ? orShape.length === 3 : is(orConcat, 'Concat') && orConcat.input?.length === 3)) return skip('the heads are not merged back to rank 3');
    const blockNodes = [...chain, scores, ...q.nodes, ...k.nodes, ...v.nodes, pv, ot, or];
    if (blockNodes.some((n) => drop.has(n))) return skip('it shares nodes with another fused block');
    if (!diesWith(new Set(blockNodes), or)) return skip('a tensor inside it is used elsewhere (a graph output or another node)');
    for (const n of blockNodes) drop.add(n);
    // keys/values that do not depend on every input the queries do (a context stored in the graph, or a text
    // embedding input) may have another batch size: expand them (cheap: [B, L, D])
    const dq = dep.get(q.x) ?? 0n;
    const batched = (x: string, tag: string) => (((dep.get(x) ?? 0n) & dq) === dq ? x : toBatchOf(x, q.x, `${fused.length}${tag}`));
    add.set(or, {
      op_type: 'MultiHeadAttention',
      domain: MS_DOMAIN,
      input: [q.x, batched(k.x, 'k'), batched(v.x, 'v')],
      output: [out0(or)],
      attribute: [
        { name: 'num_heads', type: 2, i: q.heads },
        { name: 'scale', type: 1, f: scale },
      ],
    } as NodeMsg);
    fused.push({ softmax: g.names[i]!, heads: q.heads, scale });
  });
  if (!fused.length) return { fused, skipped };
  model.graph!.node = [...extraNodes, ...g.nodes.flatMap((n) => (add.has(n) ? [add.get(n)!] : drop.has(n) ? [] : [n]))];
  if (extraNodes.length) {
    const i64 = (name: string, v: number[]): TensorMsg => ({ name, dims: [v.length], data_type: 7, raw_data: new Uint8Array(BigInt64Array.from(v.map(BigInt)).buffer) });
    model.graph!.initializer = [...(model.graph!.initializer ?? []), i64('dq_fuse/s0', [0]), i64('dq_fuse/s1', [1]), i64('dq_fuse/s11', [1, 1])];
  }
  const ops = model.opset_import ?? [];
  if (!ops.some((o) => o.domain === MS_DOMAIN)) model.opset_import = [...ops, { domain: MS_DOMAIN, version: 1 }];
  pruneDead(model, g.inputs);
  sortTopologically(model);
  return { fused, skipped };
}
