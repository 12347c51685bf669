/**
 * fuseAttention (onnx/fuse.ts): PyTorch-style multi-head attention blocks become com.microsoft MultiHeadAttention
 * nodes that onnxruntime runs with the same results, keys/values from a batch-1 constant context are broadcast to
 * the batch, and blocks that differ from the pattern are left alone.
 */
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../../../kernels/onnx/graph';
import { fragmentModel } from '../../../../src-main/core/onnx/fragment';
import { fuseAttention } from '../../../../src-main/core/onnx/fuse';
import { encodeModel } from '../../../../src-main/core/onnx/io';
import { decodeModel, type ModelMsg } from '../../../../src-main/core/onnx/model';
import { Session } from '../../../../src-main/core/runtime/onnx';

const S = 6;
const L = 4;
const H = 2;
const HD = 8;
const D = H * HD;

const rand = (n: number, seed: number) =>
  Float32Array.from({ length: n }, (_, i) => {
    const v = Math.sin(i * 12.9898 + seed * 78.233) * 43758.5453;
    return v - Math.floor(v) - 0.5;
  });

/**
 * y = to_out(self_attention(x)) + to_out(cross_attention(x, context)); the self-attention reshapes with constant
 * shapes and scales with Mul, the cross-attention reshapes with shapes built by Concat (as torch exports them)
 * and scales with Div. `leak`: the self-attention's softmax is also a graph output (not fusable).
 */
function build(leak = false): ModelMsg {
  const b = new GraphBuilder('t');
  const w = (seed: number) => b.init('w', 'float32', [D, D], rand(D * D, seed));
  const context = b.init('ctx', 'float32', [1, L, D], rand(L * D, 9));
  const heads = (t: string, perm: number[], concat: boolean) => {
    const shape = concat ? b.op('Concat', [b.op('Slice', [b.op('Shape', [t]), b.i64([0]), b.i64([1])]), b.i64([-1]), b.i64([H]), b.i64([HD])], { axis: { type: 'int', value: 0 } }) : b.i64([0, -1, H, HD]);
    return b.op('Transpose', [b.op('Reshape', [t, shape])], { perm: { type: 'ints', value: perm } });
  };
  const attention = (q: string, k: string, v: string, concat: boolean, scaleOp: 'Mul' | 'Div', softmaxOut?: string) => {
    const scores = b.op('MatMul', [heads(q, [0, 2, 1, 3], concat), heads(k, [0, 2, 3, 1], concat)]);
    const scaled = b.op(scaleOp, [scores, b.f32(scaleOp === 'Mul' ? 1 / Math.sqrt(HD) : Math.sqrt(HD))]);
    const p = softmaxOut ? b.opTo(softmaxOut, 'Softmax', [scaled], { axis: { type: 'int', value: -1 } }) : b.op('Softmax', [scaled], { axis: { type: 'int', value: -1 } });
    const o = b.op('Transpose', [b.op('MatMul', [p, heads(v, [0, 2, 1, 3], concat)])], { perm: { type: 'ints', value: [0, 2, 1, 3] } });
    return b.op('MatMul', [b.op('Reshape', [o, b.i64([0, -1, D])]), w(7)]);
  };
  const self = attention(b.op('MatMul', ['x', w(1)]), b.op('MatMul', ['x', w(2)]), b.op('MatMul', ['x', w(3)]), false, 'Mul', leak ? 'probs' : undefined);
  const cross = attention(b.op('MatMul', ['x', w(4)]), b.op('MatMul', [context, w(5)]), b.op('MatMul', [context, w(6)]), true, 'Div');
  b.opTo('y', 'Add', [self, cross]);
  const outputs = [{ name: 'y', dtype: 'float32' as const, dims: null }, ...(leak ? [{ name: 'probs', dtype: 'float32' as const, dims: null }] : [])];
  return decodeModel(fragmentModel(b.fragment([{ name: 'x', dtype: 'float32', dims: null }], outputs, 17)), 'fuse test');
}

async function run(m: ModelMsg, batch: number): Promise<Float32Array> {
  const s = await Session.create(encodeModel(m));
  const out = await s.run({ x: { type: 'float32', data: rand(batch * S * D, 3), dims: [batch, S, D] } }, ['y']);
  await s.release();
  return out.y!.data as Float32Array;
}

const ops = (m: ModelMsg) => (m.graph?.node ?? []).map((n) => n.op_type);

describe('fuseAttention', () => {
  it('fuses self- and cross-attention into MultiHeadAttention with the same outputs at any batch', async () => {
    const ref = build();
    const fused = build();
    const f = fuseAttention(fused);
    expect(f.map((x) => x.heads)).toEqual([H, H]);
    for (const x of f) expect(x.scale).toBeCloseTo(1 / Math.sqrt(HD), 6);
    expect(ops(fused).filter((o) => o === 'MultiHeadAttention')).toHaveLength(2);
    expect(ops(fused)).not.toContain('Softmax');
    // the cross-attention's keys and values come from a batch-1 constant: expanded to the batch
    expect(ops(fused).filter((o) => o === 'Expand')).toHaveLength(2);
    for (const batch of [1, 3]) {
      const a = await run(ref, batch);
      const c = await run(fused, batch);
      expect(c.length).toBe(a.length);
      let max = 0;
      for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - c[i]!));
      expect(max).toBeLessThan(1e-5);
      expect(Math.max(...a.map(Math.abs))).toBeGreaterThan(0.1);
    }
  });

  it('leaves a block alone when a tensor inside it is used elsewhere', async () => {
    const m = build(true);
    const f = fuseAttention(m);
    expect(f).toHaveLength(1); // only the cross-attention
    expect(ops(m).filter((o) => o === 'Softmax')).toHaveLength(1);
    const a = await run(build(true), 2);
    const c = await run(m, 2);
    for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - c[i]!)).toBeLessThan(1e-5);
  });
});
