/**
 * fuseAttention (onnx/fuse.ts): PyTorch-style multi-head attention blocks become com.microsoft MultiHeadAttention
 * nodes that onnxruntime runs with the same results, keys/values from a batch-1 constant context are broadcast to
 * the batch, and blocks that differ from the pattern are left alone. The scale may be a constant, shape arithmetic
 * on the head dimension (as traced exports have it: after the product, or on q and k^T before it as PyTorch exports
 * scaled_dot_product_attention), but not a value that depends on the runtime sizes. The committed Optimum SD 1.5
 * and SDXL unets fuse every attention block with the same outputs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../../../kernels/onnx/graph';
import { fragmentModel } from '../../../../src-main/core/onnx/fragment';
import { fuseAttention } from '../../../../src-main/core/onnx/fuse';
import { decodeModel, type ModelMsg } from '../../../../src-main/core/onnx/model';
import { encodeModel, loadOnnx, saveOnnx } from '../../../../src-main/core/onnx/io';
import { Session, type FeedValue } from '../../../../src-main/core/runtime/onnx';
import { worstAgainst } from '../../../helpers';

const FIXTURES = join(__dirname, '..', '..', '..', 'fixtures');

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
 * How the self-attention's scores are scaled: 'mul' by a constant after the product; 'shape' after the product by
 * (D / H)^-0.5 computed from the query projection's shape (Shape, Gather, Div, Cast, Pow: the committed Optimum
 * fixtures' form); 'sdpa' q and k^T each by sqrt(1 / sqrt(head_dim)) from the head-split query's shape before the
 * product (PyTorch's scaled_dot_product_attention export); 'runtime' by the sequence length^-0.5 (a runtime size:
 * not fusable).
 */
type ScaleMode = 'mul' | 'shape' | 'sdpa' | 'runtime';

/**
 * y = to_out(self_attention(x)) + to_out(cross_attention(x, context)); the self-attention reshapes with constant
 * shapes and scales as `mode` says, the cross-attention reshapes with shapes built by Concat (as torch exports them)
 * and scales with Div. `leak`: the self-attention's softmax is also a graph output (not fusable).
 */
function build(leak = false, mode: ScaleMode = 'mul'): ModelMsg {
  const b = new GraphBuilder('t');
  const w = (seed: number) => b.init('w', 'float32', [D, D], rand(D * D, seed));
  const context = b.init('ctx', 'float32', [1, L, D], rand(L * D, 9));
  const heads = (t: string, perm: number[], concat: boolean) => {
    const shape = concat ? b.op('Concat', [b.op('Slice', [b.op('Shape', [t]), b.i64([0]), b.i64([1])]), b.i64([-1]), b.i64([H]), b.i64([HD])], { axis: { type: 'int', value: 0 } }) : b.i64([0, -1, H, HD]);
    return b.op('Transpose', [b.op('Reshape', [t, shape])], { perm: { type: 'ints', value: perm } });
  };
  const f32 = (t: string) => b.op('Cast', [t], { to: { type: 'int', value: 1 } });
  const attention = (q: string, k: string, v: string, concat: boolean, scaleOp: 'Mul' | 'Div', softmaxOut?: string, m: ScaleMode = 'mul') => {
    let qh = heads(q, [0, 2, 1, 3], concat);
    let kh = heads(k, [0, 2, 3, 1], concat);
    let scaled: string;
    if (m === 'sdpa') {
      const last = b.op('Slice', [b.op('Shape', [qh]), b.i64([-1]), b.i64([Number.MAX_SAFE_INTEGER])]);
      const s = b.op('Div', [b.f32(1), b.op('Sqrt', [f32(last)])]);
      qh = b.op('Mul', [qh, b.op('Sqrt', [s])]);
      kh = b.op('Mul', [kh, b.op('Sqrt', [s])]);
      scaled = b.op('MatMul', [qh, kh]);
    } else {
      const scores = b.op('MatMul', [qh, kh]);
      const headDim = b.op('Div', [b.op('Gather', [b.op('Shape', [q]), b.i64([2])], { axis: { type: 'int', value: 0 } }), b.i64([H])]);
      const factor = m === 'shape' ? b.op('Pow', [f32(headDim), b.f32(-0.5)])
        : m === 'runtime' ? b.op('Pow', [f32(b.op('Gather', [b.op('Shape', [q]), b.i64([1])], { axis: { type: 'int', value: 0 } })), b.f32(-0.5)])
        : b.f32(scaleOp === 'Mul' ? 1 / Math.sqrt(HD) : Math.sqrt(HD));
      scaled = b.op(scaleOp, [scores, factor]);
    }
    const p = softmaxOut ? b.opTo(softmaxOut, 'Softmax', [scaled], { axis: { type: 'int', value: -1 } }) : b.op('Softmax', [scaled], { axis: { type: 'int', value: -1 } });
    const o = b.op('Transpose', [b.op('MatMul', [p, heads(v, [0, 2, 1, 3], concat)])], { perm: { type: 'ints', value: [0, 2, 1, 3] } });
    return b.op('MatMul', [b.op('Reshape', [o, b.i64([0, -1, D])]), w(7)]);
  };
  const self = attention(b.op('MatMul', ['x', w(1)]), b.op('MatMul', ['x', w(2)]), b.op('MatMul', ['x', w(3)]), false, 'Mul', leak ? 'probs' : undefined, mode);
  const cross = attention(b.op('MatMul', ['x', w(4)]), b.op('MatMul', [context, w(5)]), b.op('MatMul', [context, w(6)]), true, 'Div');
  b.opTo('y', 'Add', [self, cross]);
  const outputs = [{ name: 'y', dtype: 'float32' as const, dims: null }, ...(leak ? [{ name: 'probs', dtype: 'float32' as const, dims: null }] : [])];
  // x is [batch, sequence, D] with symbolic batch and sequence, as exporters declare it
  return decodeModel(fragmentModel(b.fragment([{ name: 'x', dtype: 'float32', dims: ['batch', 'sequence', D] as never }], outputs, 17)), 'fuse test');
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
    const { fused: f, skipped } = fuseAttention(fused);
    expect(skipped).toEqual([]);
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
    const { fused: f, skipped } = fuseAttention(m);
    expect(f).toHaveLength(1); // only the cross-attention
    expect(skipped).toHaveLength(1);
    expect(skipped[0]!.reason).toMatch(/probabilities are not used once/);
    expect(ops(m).filter((o) => o === 'Softmax')).toHaveLength(1);
    const a = await run(build(true), 2);
    const c = await run(m, 2);
    for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - c[i]!)).toBeLessThan(1e-5);
  });

  it.each(['shape', 'sdpa'] as const)('fuses a scale computed from the head dimension (%s)', async (mode) => {
    const fused = build(false, mode);
    const f = fuseAttention(fused).fused;
    expect(f).toHaveLength(2);
    for (const x of f) expect(x.scale).toBeCloseTo(1 / Math.sqrt(HD), 6);
    expect(ops(fused)).not.toContain('Softmax');
    expect(ops(fused)).not.toContain('Pow'); // the scale arithmetic is gone with the block
    for (const batch of [1, 2]) {
      const ref = await run(build(false, mode), batch);
      const got = await run(fused, batch);
      expect(got.length).toBe(ref.length);
      const d = worstAgainst(got, ref);
      expect(d.worst).toBeLessThan(1e-5);
      expect(d.scale).toBeGreaterThan(0.1);
    }
  });

  it('leaves a block alone when its scale depends on a runtime size', () => {
    const m = build(false, 'runtime');
    const { fused: f, skipped } = fuseAttention(m);
    expect(f).toHaveLength(1); // only the cross-attention
    expect(skipped.map((x) => x.reason)).toEqual([expect.stringMatching(/not a positive scalar known before running/)]);
    expect(ops(m)).toContain('Softmax');
  });

  it.each([
    ['sd15-optimum', 32, { encoder_hidden_states: 32 }],
    ['sdxl-optimum', 34, { encoder_hidden_states: 72, text_embeds: 40, time_ids: 6 }],
    ['sd15-legacy', 32, { encoder_hidden_states: 32 }],
  ] as const)('fuses every attention block of the %s fixture with the same outputs', async (name, blocks, widths) => {
    const path = join(FIXTURES, name, 'unet', 'model.onnx');
    const source = loadOnnx(path);
    const fused = source.model;
    expect(fuseAttention(fused)).toEqual({ fused: expect.any(Array), skipped: [] });
    expect(ops(fused).filter((o) => o === 'MultiHeadAttention')).toHaveLength(blocks);
    expect(ops(fused)).not.toContain('Softmax');
    const B = 2;
    const feeds: Record<string, FeedValue> = {
      sample: { type: 'float32', data: rand(B * 4 * 16 * 16, 1), dims: [B, 4, 16, 16] },
      // the legacy export's timestep is int64 [batch], Optimum's a float32 scalar
      timestep: name === 'sd15-legacy' ? { type: 'int64', data: BigInt64Array.of(601n, 601n), dims: [B] } : { type: 'float32', data: Float32Array.of(601), dims: [] },
      encoder_hidden_states: { type: 'float32', data: rand(B * 77 * widths.encoder_hidden_states, 2), dims: [B, 77, widths.encoder_hidden_states] },
    };
    if ('text_embeds' in widths) {
      feeds.text_embeds = { type: 'float32', data: rand(B * widths.text_embeds, 4), dims: [B, widths.text_embeds] };
      feeds.time_ids = { type: 'float32', data: Float32Array.of(128, 128, 0, 0, 128, 128, 128, 128, 0, 0, 128, 128), dims: [B, 6] };
    }
    // SDXL's weights are external data: the fused graph is saved beside them
    const dir = mkdtempSync(join(tmpdir(), 'dq-fuse-'));
    const outs: Float32Array[] = [];
    try {
      saveOnnx(fused, join(dir, 'model.onnx'), source.dir);
      for (const p of [path, join(dir, 'model.onnx')]) {
        const s = await Session.create(p);
        outs.push((await s.run(feeds, ['out_sample'])).out_sample!.data as Float32Array);
        await s.release();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(outs[1]!.length).toBe(outs[0]!.length);
    const d = worstAgainst(outs[1]!, outs[0]!);
    expect(d.scale).toBeGreaterThan(0.1);
    expect(d.worst).toBeLessThan(1e-4 * d.scale);
  });
});
