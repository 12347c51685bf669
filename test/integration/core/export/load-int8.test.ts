/**
 * export/load-int8.ts on hand-built int8-kernel graphs: u8 weights become the same values as int8, tensors other
 * nodes also read stay as they are, and the rewritten model computes exactly what the original does (weights small
 * enough that the u8s8 kernels cannot saturate, so this holds on AVX2-only CPUs too).
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { signedInt8Model } from '../../../../src-main/core/export/load-int8';
import { decodeModel, ModelProto } from '../../../../src-main/core/onnx/model';
import { Session } from '../../../../src-main/core/runtime/onnx';
import { tmp } from '../../../helpers';

const work = tmp('dq-load-int8-');
afterAll(() => rmSync(work, { recursive: true, force: true }));

const f32 = (name: string, dims: number[], v: number[]) => ({ name, dims, data_type: 1, raw_data: new Uint8Array(Float32Array.from(v).buffer) });
const u8 = (name: string, dims: number[], v: number[]) => ({ name, dims, data_type: 2, raw_data: Uint8Array.from(v) });
const vi = (name: string, dims: number[]) => ({ name, type: { tensor_type: { elem_type: 1, shape: { dim: dims.map((d) => ({ dim_value: d })) } } } });

/** One QLinearConv and one MatMulIntegerToFloat; `zp` is the weights' zero point, also the activations' (shared). */
function model(zp: number): string {
  let s = 7;
  const r = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296);
  const codes = (n: number) => Array.from({ length: n }, () => zp + Math.round((r() - 0.5) * 120));
  const m = ModelProto.fromObject({
    ir_version: 9,
    opset_import: [{ domain: '', version: 17 }, { domain: 'com.microsoft', version: 1 }],
    graph: {
      name: 'g',
      node: [
        { op_type: 'QuantizeLinear', input: ['x', 'xs', 'zp'], output: ['xq'] },
        { op_type: 'QLinearConv', input: ['xq', 'xs', 'zp', 'w', 'ws', 'zp', 'ys', 'yzp'], output: ['yq'], attribute: [{ name: 'pads', type: 7, ints: [1, 1, 1, 1] }] },
        { op_type: 'DequantizeLinear', input: ['yq', 'ys', 'yzp'], output: ['y'] },
        { op_type: 'QuantizeLinear', input: ['m', 'xs', 'zp'], output: ['mq'] },
        { op_type: 'MatMulIntegerToFloat', domain: 'com.microsoft', input: ['mq', 'b', 'xs', 'bs', 'zp', 'bzp'], output: ['z'] },
      ],
      initializer: [
        f32('xs', [], [0.02]), u8('zp', [], [zp]),
        u8('w', [6, 4, 3, 3], codes(6 * 4 * 9)), f32('ws', [6], [0.01, 0.02, 0.015, 0.01, 0.03, 0.02]),
        f32('ys', [], [0.05]), u8('yzp', [], [100]),
        u8('b', [8, 5], codes(40)), f32('bs', [5], [0.01, 0.02, 0.03, 0.02, 0.01]), u8('bzp', [5], [zp, zp, zp, zp, zp]),
      ],
      input: [vi('x', [1, 4, 5, 5]), vi('m', [3, 8])],
      output: [vi('y', [1, 6, 5, 5]), vi('z', [3, 5])],
    },
  });
  const path = join(work, `zp${zp}.onnx`);
  writeFileSync(path, ModelProto.encode(m).finish());
  return path;
}

async function outputs(m: string | Uint8Array): Promise<number[][]> {
  const s = await Session.create(m, 'cpu');
  const x = Float32Array.from({ length: 100 }, (_, i) => Math.sin(i * 0.7) * 2 + 1);
  const mm = Float32Array.from({ length: 24 }, (_, i) => Math.cos(i * 0.3) * 2 + 1.5);
  const o = await s.run({ x: { type: 'float32', data: x, dims: [1, 4, 5, 5] }, m: { type: 'float32', data: mm, dims: [3, 8] } });
  await s.release();
  return [Array.from(o.y!.data as Float32Array), Array.from(o.z!.data as Float32Array)];
}

describe('u8 int8-kernel weights loaded as s8', () => {
  it('rewrites both kernels to int8 weights with zero point 0, keeps the shared activation zero point, same outputs', async () => {
    const path = model(128);
    const r = signedInt8Model(path);
    expect(r.layers).toBe(2);
    const g = decodeModel(r.bytes!, 'rewritten').graph!;
    const init = new Map((g.initializer ?? []).map((t) => [t.name, t]));
    const [conv, mm] = [g.node!.find((n) => n.op_type === 'QLinearConv')!, g.node!.find((n) => n.op_type === 'MatMulIntegerToFloat')!];
    for (const [n, w] of [[conv, 3], [mm, 1]] as const) {
      expect(init.get(n.input![w])!.data_type).toBe(3);
      expect(init.get(n.input![5])!.data_type).toBe(3);
      expect([...init.get(n.input![5])!.raw_data!].every((v) => v === 0)).toBe(true);
    }
    // the activation zero point (the same tensor as the conv's weight zero point before) is still uint8 128
    expect(conv.input![2]).toBe('zp');
    expect(init.get('zp')!.data_type).toBe(2);
    expect([...init.get('zp')!.raw_data!]).toEqual([128]);
    // the originals only weights read are gone
    expect(init.has('w')).toBe(false);
    expect(init.has('bzp')).toBe(false);
    const before = await outputs(path);
    // outputs that vary (not clipped to one value), and the same after the rewrite
    for (const o of before) expect(new Set(o).size).toBeGreaterThan(o.length / 4);
    expect(await outputs(r.bytes!)).toEqual(before);
  });

  it('leaves weights whose zero point is not 128 alone', () => {
    const r = signedInt8Model(model(120));
    expect(r.bytes).toBeNull();
    expect(r.skipped).toMatch(/no uint8 kernel weights with zero point 128/);
  });
});
