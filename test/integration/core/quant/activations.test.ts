/**
 * The activation quantizers a variant's graph carries (quant/activations.ts) compute what the kernels' TypeScript
 * reference computes, bit for bit, in the layout each layer reads: a convolution's input blocked along its channels
 * (axis 1 of [N, C, H, W], viewed in place), a linear layer's along its last axis; INT8 and FP8 with their runtime
 * scale inputs, split sites per half. The quantizer's output is fetched as a graph output next to the layers'.
 */
import { describe, expect, it } from 'vitest';
import { fakeQuantFloat, fakeQuantInt, fakeQuantMx, fakeQuantNvfp4, fakeQuantTokens, nvfp4TensorScale, type QuantFormat } from '../../../../kernels/quant';
import { PER_TENSOR } from '../../../../kernels/layout';
import { insertActivationQuantizer, paramInputNames } from '../../../../src-main/core/quant/activations';
import type { Site } from '../../../../src-main/core/quant/sites';
import { encodeModel } from '../../../../src-main/core/onnx/io';
import { ModelProto, type ModelMsg } from '../../../../src-main/core/onnx/model';
import { Session, type FeedValue } from '../../../../src-main/core/runtime/onnx';
import { adversarial, rng, SPECIALS } from '../../kernels/data';
import { firstBitMismatch } from '../../kernels/onnx-model';

const C = 64;
const CONV_DIMS = [3, C, 5, 7];
const MM_DIMS = [3, 4, C];

/** x (conv input, NCHW) -> Conv 1x1 -> y; h ([B, L, C]) -> MatMul -> z. */
function model(): ModelMsg {
  const f32 = (name: string, dims: number[], seed: number) => {
    const r = rng(seed);
    const data = Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => r() - 0.5);
    return { name, dims, data_type: 1, raw_data: new Uint8Array(data.buffer) };
  };
  const vi = (name: string, dims: (number | string)[]) => ({ name, type: { tensor_type: { elem_type: 1, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) } } } });
  return ModelProto.fromObject({
    ir_version: 10,
    opset_import: [{ domain: '', version: 21 }],
    graph: {
      name: 'g',
      input: [vi('x', ['n', C, 5, 7]), vi('h', ['b', 4, C])],
      output: [vi('y', ['n', 8, 5, 7]), vi('z', ['b', 4, 8])],
      initializer: [f32('w_conv', [8, C, 1, 1], 1), f32('w_mm', [C, 8], 2)],
      node: [
        { name: 'conv', op_type: 'Conv', input: ['x', 'w_conv'], output: ['y'] },
        { name: 'mm', op_type: 'MatMul', input: ['h', 'w_mm'], output: ['z'] },
      ],
    },
  }) as unknown as ModelMsg;
}

function data(dims: number[], seed: number, scale: number): Float32Array {
  const r = rng(seed);
  const grid = Array.from({ length: 255 }, (_, i) => i - 127);
  return Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => (r() < 0.01 ? SPECIALS[Math.floor(r() * SPECIALS.length)]! : adversarial(r, scale, grid, 127)));
}

interface Case {
  label: string;
  fmt: QuantFormat;
  split?: number;
  /** INT and FP: the per-tensor scale (and zero point) fed at run time. */
  scale?: number;
  zeroPoint?: number;
}

const CASES: Case[] = [
  { label: 'INT8 symmetric', fmt: { kind: 'int', bits: 8, symmetric: true }, scale: 0.0173 },
  { label: 'UINT8 asymmetric', fmt: { kind: 'int', bits: 8, symmetric: false }, scale: 0.0211, zeroPoint: 117 },
  { label: 'INT8, split site (24 | 40 channels)', fmt: { kind: 'int', bits: 8, symmetric: true }, scale: 0.0173, split: 24 },
  { label: 'INT4 asymmetric (standard ops)', fmt: { kind: 'int', bits: 4, symmetric: false }, scale: 0.25, zeroPoint: 7 },
  { label: 'FP8 E4M3FN', fmt: { kind: 'float', element: 'e4m3fn' }, scale: 0.0041 },
  { label: 'FP8 E5M2', fmt: { kind: 'float', element: 'e5m2' }, scale: 2 ** -7 },
  { label: 'MXFP4', fmt: { kind: 'mx', element: 'e2m1' } },
  { label: 'MXFP8 (E4M3)', fmt: { kind: 'mx', element: 'e4m3fn' } },
  { label: 'MXINT8', fmt: { kind: 'mx', element: 'int8' } },
  { label: 'NVFP4', fmt: { kind: 'nvfp4' } },
  { label: 'NVFP4, split site (32 | 32 channels)', fmt: { kind: 'nvfp4' }, split: 32 },
];

/** The reference for one half of a site (channels [lo, hi) of `axis`), written back in place. */
function reference(x: Float32Array, dims: number[], axis: number, lo: number, hi: number, c: Case, tensorScale: number): Float32Array {
  const outer = dims.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const n = hi - lo;
  // gather the half as [outer, n, inner], quantize, scatter back
  const part = new Float32Array(outer * n * inner);
  for (let o = 0; o < outer; o++) for (let k = 0; k < n; k++) for (let i = 0; i < inner; i++) part[(o * n + k) * inner + i] = x[(o * dims[axis]! + lo + k) * inner + i]!;
  const pd = [outer, n, inner];
  let q: Float32Array;
  const fmt = c.fmt;
  if (fmt.kind === 'int') q = fakeQuantInt(part, pd, PER_TENSOR, fmt, Float32Array.of(c.scale!), c.zeroPoint === undefined ? undefined : Int32Array.of(c.zeroPoint));
  else if (fmt.kind === 'float') q = fakeQuantFloat(part, pd, PER_TENSOR, fmt.element, Float32Array.of(c.scale!));
  else {
    // block formats run along the channels: move them last ([outer, inner, n]), quantize, move back
    const t = new Float32Array(part.length);
    for (let o = 0; o < outer; o++) for (let k = 0; k < n; k++) for (let i = 0; i < inner; i++) t[(o * inner + i) * n + k] = part[(o * n + k) * inner + i]!;
    const td = [outer * inner, n];
    const tq = fmt.kind === 'mx' ? fakeQuantMx(t, td, 1, fmt.element).y : fakeQuantNvfp4(t, td, 1, tensorScale).y;
    q = new Float32Array(part.length);
    for (let o = 0; o < outer; o++) for (let k = 0; k < n; k++) for (let i = 0; i < inner; i++) q[(o * n + k) * inner + i] = tq[(o * inner + i) * n + k]!;
  }
  const out = Float32Array.from(x);
  for (let o = 0; o < outer; o++) for (let k = 0; k < n; k++) for (let i = 0; i < inner; i++) out[(o * dims[axis]! + lo + k) * inner + i] = q[(o * n + k) * inner + i]!;
  return out;
}

describe('activation quantizers in a variant graph == the kernels reference, bit for bit', () => {
  it.each(CASES.map((c, i) => [c.label, c, i] as const))('%s', async (_label, c, i) => {
    const m = model();
    const x = data(CONV_DIMS, 100 + i, 0.03);
    const h = data(MM_DIMS, 200 + i, 0.05);
    const halves = () => (c.split === undefined ? [[0, C]] : [[0, c.split], [c.split, C]]) as [number, number][];
    const finiteAmax = (t: Float32Array, lo: number, hi: number, dims: number[], axis: number) => {
      let a = 0;
      const inner = dims.slice(axis + 1).reduce((p, q) => p * q, 1);
      t.forEach((v, j) => {
        const ch = Math.floor(j / inner) % dims[axis]!;
        if (ch >= lo && ch < hi && Number.isFinite(v)) a = Math.max(a, Math.abs(v));
      });
      return a;
    };
    const feeds: Record<string, FeedValue> = { x: { type: 'float32', data: x, dims: CONV_DIMS }, h: { type: 'float32', data: h, dims: MM_DIMS } };
    const sites: [Site, Float32Array, number[], number][] = [
      [{ id: 0, tensor: 'x', layers: ['conv'], split: c.split ?? null, ops: ['Conv'], temporal: false }, x, CONV_DIMS, 1],
      [{ id: 1, tensor: 'h', layers: ['mm'], split: null, ops: ['MatMul'], temporal: false }, h, MM_DIMS, 2],
    ];
    const expected: Record<string, Float32Array> = {};
    for (const [site, t, dims, axis] of sites) {
      const hv = site.id === 0 ? halves() : ([[0, C]] as [number, number][]);
      const tensorScale = hv.map(([lo, hi]) => nvfp4TensorScale(finiteAmax(t, lo, hi, dims, axis)));
      const res = insertActivationQuantizer(m, site, site.layers, c.fmt, { channels: C, rank: dims.length, tensorScale, useSplit: site.split !== null });
      expect(res.skipped).toBeUndefined();
      let ref = t;
      hv.forEach(([lo, hi], half) => (ref = reference(ref, dims, axis, lo, hi, c, tensorScale[half]!)));
      expected[`dq_aq/${site.id}/out`] = ref;
      hv.forEach((_, half) => {
        const names = paramInputNames(site.id, half);
        if (res.inputs.scale.includes(names.scale)) feeds[names.scale] = { type: 'float32', data: Float32Array.of(c.scale!), dims: [] };
        if (res.inputs.zeroPoint.includes(names.zp)) feeds[names.zp] = { type: 'float32', data: Float32Array.of(c.zeroPoint!), dims: [] };
      });
    }
    const VI = ModelProto.lookupType('onnx.ValueInfoProto');
    m.graph!.output = [...(m.graph!.output ?? []), ...Object.keys(expected).map((name) => VI.fromObject({ name, type: { tensor_type: { elem_type: 1 } } }) as never)];
    const s = await Session.create(encodeModel(m));
    try {
      const out = await s.run(feeds);
      for (const [name, ref] of Object.entries(expected)) {
        const got = out[name]!.data as Float32Array;
        const k = firstBitMismatch(ref, got);
        const src = name.includes('/0/') ? x : h;
        expect(k, k < 0 ? '' : `${name}: element ${k}: x = ${src[k]}, reference ${ref[k]}, onnxruntime ${got[k]}`).toBe(-1);
      }
      // the layers read the quantized tensor
      expect(out.y!.dims).toEqual([3, 8, 5, 7]);
    } finally {
      await s.release();
    }
  });
});

describe('dynamic per-token INT (ViDiT-Q) in a variant graph == fakeQuantTokens, bit for bit', () => {
  it.each([
    ['INT8', 8],
    ['INT4', 4],
  ] as const)('%s: a linear layer per row of its last axis, a convolution per pixel over its channels', async (_label, bits) => {
    const m = model();
    const finite = (dims: number[], seed: number, scale: number) => {
      const r = rng(seed);
      // every magnitude from tiny to large, a row of zeros, ties at half a code
      const out = Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => (r() - 0.5) * scale * 2 ** Math.floor(r() * 12 - 6));
      out.fill(0, 0, dims[dims.length - 1]!);
      return out;
    };
    const x = finite(CONV_DIMS, 300 + bits, 0.5);
    const h = finite(MM_DIMS, 400 + bits, 0.5);
    const fmt = { kind: 'int', bits, symmetric: true } as const;
    const rx = insertActivationQuantizer(m, { id: 0, tensor: 'x', layers: ['conv'], split: null, ops: ['Conv'], temporal: false }, ['conv'], fmt, { channels: C, rank: 4, useSplit: false, dynamic: 'token' });
    const rh = insertActivationQuantizer(m, { id: 1, tensor: 'h', layers: ['mm'], split: null, ops: ['MatMul'], temporal: false }, ['mm'], fmt, { channels: C, rank: 3, useSplit: false, dynamic: 'token' });
    // nothing to calibrate or feed
    expect([...rx.inputs.scale, ...rh.inputs.scale]).toEqual([]);
    const VI = ModelProto.lookupType('onnx.ValueInfoProto');
    m.graph!.output = [...(m.graph!.output ?? []), ...['dq_aq/0/out', 'dq_aq/1/out'].map((name) => VI.fromObject({ name, type: { tensor_type: { elem_type: 1 } } }) as never)];
    const s = await Session.create(encodeModel(m));
    try {
      const out = await s.run({ x: { type: 'float32', data: x, dims: CONV_DIMS }, h: { type: 'float32', data: h, dims: MM_DIMS } });
      for (const [name, src, dims, axis] of [['dq_aq/0/out', x, CONV_DIMS, 1], ['dq_aq/1/out', h, MM_DIMS, -1]] as const) {
        const ref = fakeQuantTokens(src, dims, axis, bits);
        const got = out[name]!.data as Float32Array;
        const k = firstBitMismatch(ref, got);
        expect(k, k < 0 ? '' : `${name}: element ${k}: x = ${src[k]}, reference ${ref[k]}, onnxruntime ${got[k]}`).toBe(-1);
        // it quantizes: at most 2 qmax + 1 values per token
        expect(new Set(Array.from(got.subarray(0, 64))).size).toBeLessThanOrEqual(2 ** bits);
      }
    } finally {
      await s.release();
    }
  });
});
