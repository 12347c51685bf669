/**
 * The ONNX operator examples (onnx/backend/test/case/node/quantizelinear.py; expected values are upstream's) in
 * onnxruntime: native QuantizeLinear -> DequantizeLinear(scale 1) so that the codes come back as float32 (fp8 and
 * int4 outputs cannot cross the JS boundary), and float4e2m1, which onnxruntime lacks, through our standard-op graph.
 */
import { describe, expect, it } from 'vitest';
import { GraphBuilder, int, type DType } from '../../../kernels/onnx/graph';
import { fakeQuantFragment } from '../../../kernels/onnx/fakequant';
import { runOnce } from './onnx-model';

async function quantizeCodes(
  x: number[],
  dims: number[],
  scale: number[],
  scaleDims: number[],
  zp: number[],
  dtype: DType,
  attrs: Record<string, number>,
): Promise<number[]> {
  const b = new GraphBuilder('ex');
  const zpData = dtype === 'int4' || dtype === 'int8' ? Int8Array.from(zp) : Uint8Array.from(zp);
  const s = b.init('scale', 'float32', scaleDims, Float32Array.from(scale));
  const z = b.init('zp', dtype, scaleDims, zpData);
  const a = Object.fromEntries(Object.entries(attrs).map(([k, v]) => [k, int(v)]));
  const q = b.op('QuantizeLinear', ['x', s, z], a);
  // codes back as numbers: DequantizeLinear with scale 1 and zero point 0 (per tensor)
  const zero = b.init('zero', dtype, [], dtype === 'int4' || dtype === 'int8' ? Int8Array.of(0) : Uint8Array.of(0));
  b.identity(b.op('DequantizeLinear', [q, b.f32(1), zero]), 'y');
  const f = b.fragment([{ name: 'x', dtype: 'float32', dims }], [{ name: 'y', dtype: 'float32', dims }], 21);
  return Array.from(await runOnce(f, Float32Array.from(x), dims));
}

const subByteX = [0.0, 2.5, 4.8, 8.6, -30, -20, 6, 9, 12, 15, 16, 40];

describe('ONNX QuantizeLinear examples in onnxruntime', () => {
  it('e4m3fn', async () => {
    expect(await quantizeCodes([0, 1, 2, 100000, 200], [5], [2], [], [0], 'float8e4m3fn', {})).toEqual([0, 0.5, 1, 448, 96]);
  });
  it('e5m2', async () => {
    expect(await quantizeCodes([0, 1, 2, 100000, 200], [5], [2], [], [0], 'float8e5m2', {})).toEqual([0, 0.5, 1, 49152, 96]);
  });
  it('int4, axis 0', async () => {
    expect(await quantizeCodes(subByteX, [3, 4], [2, 3, 4], [3], [1, 1, 1], 'int4', { axis: 0 })).toEqual([1, 2, 3, 5, -8, -6, 3, 4, 4, 5, 5, 7]);
  });
  it('uint4, axis 0', async () => {
    expect(await quantizeCodes(subByteX, [3, 4], [2, 3, 4], [3], [1, 1, 1], 'uint4', { axis: 0 })).toEqual([1, 2, 3, 5, 0, 0, 3, 4, 4, 5, 5, 11]);
  });
  it('blocked asymmetric (uint8, axis 1, block 2)', async () => {
    const y = await quantizeCodes([6, 12, 50, 5, 1, 8, 4, 5, 0, 20, 10, 4], [3, 4], [1.5, 2.5, 3, 4.9, 5.1, 6.9], [3, 2], [0, 1, 1, 0, 2, 3], 'uint8', {
      axis: 1,
      block_size: 2,
    });
    expect(y).toEqual([4, 8, 21, 3, 1, 4, 1, 1, 2, 6, 4, 4]);
  });
  it('blocked symmetric (int8 here; upstream uses int16, the codes fit)', async () => {
    const y = await quantizeCodes([6, -8, -10, 5, 1, 8, 4, 5, 0, 20, 10, 4], [3, 4], [1.5, 2.5, 3, 4.9, 5.1, 6.9], [3, 2], [0, 0, 0, 0, 0, 0], 'int8', {
      axis: 1,
      block_size: 2,
    });
    expect(y).toEqual([4, -5, -4, 2, 0, 3, 1, 1, 0, 4, 1, 1]);
  });
  it('float4e2m1, axis 0: through the standard-op subgraph (onnxruntime has no float4 kernels)', async () => {
    const x = Float32Array.from([0.0, 2.5, 4.8, 8.6, -30, -20, 6, 9, -0.0, -2.5, -4.8, -8.6]);
    const f = fakeQuantFragment({ format: { kind: 'float', element: 'e2m1' }, dims: [3, 4], granularity: { kind: 'channel', axis: 0 }, scale: Float32Array.of(2, 3, 4) });
    const y = await runOnce(f, x, [3, 4]);
    expect(Array.from(y, (v, i) => v / [2, 3, 4][Math.floor(i / 4)]!)).toEqual([0, 1, 2, 4, -6, -6, 2, 3, -0, -0.5, -1, -2]);
  });
});
