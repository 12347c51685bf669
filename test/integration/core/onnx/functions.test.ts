/**
 * Model-local functions (fragment.ts localFunction): a fragment becomes one ONNX function however many times it is
 * called, onnxruntime runs it with the same results as the fragment inlined, and parameters are function inputs.
 */
import { describe, expect, it } from 'vitest';
import { MX_BLOCK } from '../../../../kernels/quant';
import { fakeQuantFragment } from '../../../../kernels/onnx/fakequant';
import { GraphBuilder } from '../../../../kernels/onnx/graph';
import { embedFragment, LOCAL_DOMAIN, localFunction } from '../../../../src-main/core/onnx/fragment';
import { encodeModel } from '../../../../src-main/core/onnx/io';
import { ModelProto, type ModelMsg } from '../../../../src-main/core/onnx/model';
import { Session } from '../../../../src-main/core/runtime/onnx';

const C = 2 * MX_BLOCK;
const ROWS = 5;

function emptyModel(): ModelMsg {
  return ModelProto.fromObject({
    ir_version: 10,
    opset_import: [{ domain: '', version: 18 }],
    graph: { name: 'g', input: [{ name: 'x', type: { tensor_type: { elem_type: 1, shape: { dim: [{ dim_value: ROWS }, { dim_value: C }] } } } }] },
  }) as unknown as ModelMsg;
}

/** y1 = fq(x), y2 = fq(x * 3): either inlined or as two calls of one local function. */
function build(asFunction: boolean, scale?: number): ModelMsg {
  const m = emptyModel();
  const spec = scale === undefined ? { format: { kind: 'mx' as const, element: 'e2m1' as const }, dims: [-1, C], axis: 1 } : { format: { kind: 'nvfp4' as const }, dims: [-1, C], axis: 1, tensorScale: scale };
  const b = new GraphBuilder('top');
  const x3 = b.op('Mul', ['x', b.f32(3)]);
  const outs = ['y1', 'y2'];
  ['x', x3].forEach((input, i) => {
    if (asFunction) {
      const frag = fakeQuantFragment(spec, { input: 'fx', output: 'fy', prefix: `f${i}` });
      const params = scale === undefined ? [] : frag.initializers.filter((t) => t.dims.length === 0 && t.data[0] === Math.fround(scale)).map((t) => t.name);
      const fn = localFunction(m, { ...frag, inputs: [{ name: 'fx', dtype: 'float32', dims: [-1, C] }], outputs: [{ name: 'fy', dtype: 'float32', dims: [-1, C] }] }, params);
      b.nodes.push({ name: `call${i}`, opType: fn, domain: LOCAL_DOMAIN, inputs: [input, ...(params.length ? [b.f32(scale!)] : [])], outputs: [outs[i]!], attrs: {} });
    } else {
      const frag = fakeQuantFragment(spec, { input, output: outs[i]!, prefix: `f${i}` });
      b.nodes.push(...frag.nodes);
      b.initializers.push(...frag.initializers);
    }
  });
  embedFragment(m, b.fragment([], outs.map((name) => ({ name, dtype: 'float32' as const, dims: [ROWS, C] })), 18));
  m.graph!.output = outs.map((name) => ModelProto.lookupType('onnx.ValueInfoProto').fromObject({ name, type: { tensor_type: { elem_type: 1 } } }) as never);
  return m;
}

async function run(m: ModelMsg): Promise<Float32Array[]> {
  const s = await Session.create(encodeModel(m));
  const x = Float32Array.from({ length: ROWS * C }, (_, i) => Math.sin(i * 0.7) * (1 + (i % 7)));
  const out = await s.run({ x: { type: 'float32', data: x, dims: [ROWS, C] } });
  await s.release();
  return [out.y1!.data as Float32Array, out.y2!.data as Float32Array];
}

describe('model-local functions', () => {
  it('two calls of the same fragment share one function and compute what the inlined fragment computes', async () => {
    const fn = build(true);
    const functions = (fn as ModelMsg & { functions?: unknown[] }).functions ?? [];
    expect(functions).toHaveLength(1);
    expect((fn.opset_import ?? []).some((o) => o.domain === LOCAL_DOMAIN)).toBe(true);
    const [a, b] = await Promise.all([run(fn), run(build(false))]);
    expect(Array.from(a[0]!)).toEqual(Array.from(b[0]!));
    expect(Array.from(a[1]!)).toEqual(Array.from(b[1]!));
    expect(new Set(a[0]).size).toBeGreaterThan(3); // it did quantize
  });

  it('a parameter (NVFP4 tensor scale) becomes a function input that the caller feeds', async () => {
    const one = build(true, 0.75);
    expect(((one as ModelMsg & { functions?: unknown[] }).functions ?? []).length).toBe(1);
    const [a, b] = await Promise.all([run(one), run(build(false, 0.75))]);
    expect(Array.from(a[1]!)).toEqual(Array.from(b[1]!));
  });
});
