/**
 * The TypeScript reference and the ONNX subgraphs (onnxruntime, CPU provider) agree bit for bit, for every format
 * and granularity, over > 100,000 random and adversarial values each; and every representable value of every
 * format passes through the subgraph unchanged.
 */
import { describe, expect, it } from 'vitest';
import { numel, scaleDims, scaleIndex, type Granularity } from '../../../kernels/layout';
import { FORMATS, finiteValues, type FloatName } from '../../../kernels/minifloat';
import {
  fakeQuantFloat,
  fakeQuantInt,
  fakeQuantMx,
  fakeQuantNvfp4,
  intRange,
  MX_BLOCK,
  NVFP4_BLOCK,
  nvfp4TensorScale,
  type MxElement,
  type QuantFormat,
} from '../../../kernels/quant';
import { fakeQuantFragment, hasNativeQdq, opTypes, type FakeQuantSpec } from '../../../kernels/onnx/fakequant';
import { adversarial, adversarialScale, normal, rng, SPECIALS } from './data';
import { firstBitMismatch, runOnce } from './onnx-model';

const DIMS = [64, 1600]; // 102,400 values per case
const N = numel(DIMS);

/** Fails with the first differing element spelled out. */
function expectSameBits(ref: Float32Array, ort: Float32Array, x: Float32Array, what: string): void {
  const i = firstBitMismatch(ref, ort);
  const show = (v: number | undefined): string => (Object.is(v, -0) ? '-0' : String(v));
  expect(i, i < 0 ? '' : `${what}: element ${i}: x = ${show(x[i])}, reference ${show(ref[i])}, onnxruntime ${show(ort[i])}`).toBe(-1);
}

/** Ops the WebGPU provider has (onnxruntime's WebGPU operator list): the 'std' block formats use only these. */
const WEBGPU_OPS = new Set(['Abs', 'Add', 'Cast', 'Clip', 'Div', 'Equal', 'Floor', 'Gather', 'Greater', 'GreaterOrEqual', 'Identity', 'Less', 'LessOrEqual', 'Log', 'Max', 'Mul', 'Neg', 'ReduceMax', 'ReduceSum', 'Reshape', 'Round', 'Sub', 'Where']);

/* ------------------------------------------------------------------------------------- INT and FP -- */

interface Case {
  fmt: Extract<QuantFormat, { kind: 'int' | 'float' }>;
  impl: 'native' | 'std';
  g: Granularity;
  label: string;
  /** Per-tensor variants: the one scale. */
  tensorScale?: number;
}

function grid(fmt: Case['fmt'], zp: number): { values: number[]; max: number } {
  if (fmt.kind === 'float') {
    const v = finiteValues(FORMATS[fmt.element]);
    return { values: v, max: FORMATS[fmt.element].max };
  }
  const { qmin, qmax } = intRange(fmt.bits, fmt.symmetric);
  const values = Array.from({ length: qmax - qmin + 1 }, (_, i) => qmin + i - zp);
  return { values, max: Math.max(-values[0]!, values[values.length - 1]!) };
}

function makeCase(c: Case, seed: number): { x: Float32Array; scale: Float32Array; zeroPoint?: Int32Array } {
  const r = rng(seed);
  const groups = numel(scaleDims(DIMS, c.g));
  const scale = new Float32Array(groups);
  const zeroPoint = new Int32Array(groups);
  for (let j = 0; j < groups; j++) {
    scale[j] = c.tensorScale ?? adversarialScale(r);
    if (c.fmt.kind === 'int' && !c.fmt.symmetric) zeroPoint[j] = Math.floor(r() * 2 ** c.fmt.bits);
  }
  const idx = scaleIndex(DIMS, c.g);
  const grids = new Map<number, ReturnType<typeof grid>>();
  const x = new Float32Array(N);
  for (let i = 0; i < N; i++) {
    const j = idx[i]!;
    const zp = zeroPoint[j]!;
    let gr = grids.get(zp);
    if (!gr) grids.set(zp, (gr = grid(c.fmt, zp)));
    x[i] = adversarial(r, scale[j]!, gr.values, gr.max);
  }
  return c.fmt.kind === 'int' && !c.fmt.symmetric ? { x, scale, zeroPoint } : { x, scale };
}

const GRANULARITIES: [string, Granularity][] = [
  ['per tensor', { kind: 'tensor' }],
  ['per channel (axis 0)', { kind: 'channel', axis: 0 }],
  ['per channel (axis 1)', { kind: 'channel', axis: 1 }],
  ['per block of 32 (axis 1)', { kind: 'block', axis: 1, size: 32 }],
  ['per block of 16 (axis 0)', { kind: 'block', axis: 0, size: 16 }],
];

const cases: Case[] = [];
const FORMATS_UNDER_TEST: Case['fmt'][] = [
  ...[2, 3, 4, 5, 6, 7, 8].flatMap((bits) => [true, false].map((symmetric) => ({ kind: 'int' as const, bits, symmetric }))),
  ...(['e4m3fn', 'e5m2', 'e3m2', 'e2m3', 'e2m1'] as FloatName[]).map((element) => ({ kind: 'float' as const, element })),
];
for (const fmt of FORMATS_UNDER_TEST) {
  const impls: ('native' | 'std')[] = hasNativeQdq(fmt) ? ['native', 'std'] : ['std'];
  const name = fmt.kind === 'int' ? `int${fmt.bits} ${fmt.symmetric ? 'symmetric' : 'asymmetric'}` : fmt.element;
  for (const impl of impls)
    for (const [gl, g] of GRANULARITIES) {
      if (g.kind === 'tensor') {
        // one scale for the whole tensor: an ordinary one, and a power of two (exact ties)
        cases.push({ fmt, impl, g, label: `${name} (${impl}) ${gl}, scale 0.0123`, tensorScale: Math.fround(0.0123) });
        cases.push({ fmt, impl, g, label: `${name} (${impl}) ${gl}, scale 2^-3`, tensorScale: 0.125 });
      } else cases.push({ fmt, impl, g, label: `${name} (${impl}) ${gl}` });
    }
}

describe('INT and FP fake quantization: reference == onnxruntime, bit for bit', () => {
  it.each(cases.map((c, i) => [c.label, c, i] as const))('%s', async (_label, c, i) => {
    const { x, scale, zeroPoint } = makeCase(c, 1000 + i);
    expect(x.length).toBeGreaterThanOrEqual(100_000);
    const ref =
      c.fmt.kind === 'int' ? fakeQuantInt(x, DIMS, c.g, c.fmt, scale, zeroPoint) : fakeQuantFloat(x, DIMS, c.g, c.fmt.element, scale);
    const spec: FakeQuantSpec = { format: c.fmt, dims: DIMS, granularity: c.g, scale, impl: c.impl };
    if (zeroPoint) spec.zeroPoint = zeroPoint;
    const f = fakeQuantFragment(spec);
    if (c.impl === 'native') expect(opTypes(f).filter((op) => op.endsWith('uantizeLinear'))).toEqual(['DequantizeLinear', 'QuantizeLinear']);
    else for (const op of opTypes(f)) expect(WEBGPU_OPS.has(op), `${op} is not in the WebGPU-capable set`).toBe(true);
    expectSameBits(ref, await runOnce(f, x, DIMS), x, c.label);
  });
});

/* ------------------------------------------------------------------------------------------ MX / NVFP4 -- */

function elementGrid(element: MxElement | 'nvfp4'): { values: number[]; max: number } {
  if (element === 'int8') {
    const values = Array.from({ length: 255 }, (_, k) => (k - 127) / 64);
    return { values, max: 127 / 64 };
  }
  const f = FORMATS[element === 'nvfp4' ? 'e2m1' : element];
  return { values: finiteValues(f), max: f.max };
}

/** Blocks of `size` along `axis` of DIMS, each with its own magnitude and its own kind of trouble. */
function blockData(element: MxElement | 'nvfp4', dims: number[], axis: number, size: number, seed: number): Float32Array {
  const r = rng(seed);
  const { values, max } = elementGrid(element);
  const g: Granularity = { kind: 'block', axis, size };
  const idx = scaleIndex(dims, g);
  const nb = numel(scaleDims(dims, g));
  const e4m3 = finiteValues(FORMATS.e4m3fn).filter((v) => v > 0);
  const blockScale = Array.from({ length: nb }, () => {
    const u = r();
    if (u < 0.7) return element === 'nvfp4' ? e4m3[Math.floor(r() * e4m3.length)]! : 2 ** (Math.floor(r() * 260) - 140);
    return adversarialScale(r);
  });
  const mode = Array.from({ length: nb }, () => r());
  const first = new Uint8Array(nb);
  const x = new Float32Array(numel(dims));
  for (let i = 0; i < x.length; i++) {
    const j = idx[i]!;
    const s = blockScale[j]!;
    const m = mode[j]!;
    if (m < 0.05) x[i] = 0; // all-zero block
    else if (m < 0.1) x[i] = Math.fround(normal(r) * 2 ** -140); // subnormal block
    else if (m < 0.15) x[i] = randomish(r);
    else if (!first[j]) x[i] = Math.fround((r() < 0.5 ? -1 : 1) * max * s); // pins the block's amax to max * s
    else x[i] = r() < 0.02 ? SPECIALS[Math.floor(r() * SPECIALS.length)]! : adversarial(r, s, values, max);
    first[j] = 1;
  }
  return x;
}

function randomish(r: () => number): number {
  return Math.fround(normal(r) * 2 ** (r() * 250 - 125));
}

describe('MX and NVFP4 fake quantization: reference == onnxruntime, bit for bit', () => {
  const mxCases: [string, MxElement, number[], number][] = [];
  for (const element of ['e4m3fn', 'e5m2', 'e3m2', 'e2m3', 'e2m1', 'int8'] as MxElement[]) {
    mxCases.push([`MX ${element}, blocks along axis 1`, element, DIMS, 1]);
    mxCases.push([`MX ${element}, blocks along axis 0`, element, DIMS, 0]);
  }
  it.each(mxCases.map((c, i) => [...c, i] as const))('%s', async (label, element, dims, axis, i) => {
    const x = blockData(element, dims, axis, MX_BLOCK, 2000 + i);
    const ref = fakeQuantMx(x, dims, axis, element).y;
    const f = fakeQuantFragment({ format: { kind: 'mx', element }, dims, axis });
    for (const op of opTypes(f)) expect(WEBGPU_OPS.has(op), `${op} is not in the WebGPU-capable set`).toBe(true);
    expectSameBits(ref, await runOnce(f, x, dims), x, label);
    if (element === 'e4m3fn' || element === 'e5m2') {
      const native = fakeQuantFragment({ format: { kind: 'mx', element }, dims, axis, blockImpl: 'native' });
      expect(opTypes(native)).toContain('QuantizeLinear');
      expectSameBits(ref, await runOnce(native, x, dims), x, `${label} (native FP8 rounding)`);
    }
  });

  const x = blockData('nvfp4', DIMS, 1, NVFP4_BLOCK, 3000);
  const finiteAmax = x.reduce((a, v) => (Number.isFinite(v) ? Math.max(a, Math.abs(v)) : a), 0);
  const nvCases: [string, number, number][] = [
    ['NVFP4, s_t = 1, blocks along axis 1', 1, 1],
    ['NVFP4, s_t = amax / 2688, blocks along axis 1', nvfp4TensorScale(finiteAmax), 1],
    ['NVFP4, s_t = 2^-100 (tiny), blocks along axis 0', 2 ** -100, 0],
    ['NVFP4, s_t = 1e30 (huge), blocks along axis 1', 1e30, 1],
    ['NVFP4, s_t = 0.37, blocks along axis 0', 0.37, 0],
  ];
  it.each(nvCases)('%s', async (label, st, axis) => {
    const ref = fakeQuantNvfp4(x, DIMS, axis, st).y;
    const f = fakeQuantFragment({ format: { kind: 'nvfp4' }, dims: DIMS, axis, tensorScale: st });
    for (const op of opTypes(f)) expect(WEBGPU_OPS.has(op), `${op} is not in the WebGPU-capable set`).toBe(true);
    expectSameBits(ref, await runOnce(f, x, DIMS), x, label);
    const native = fakeQuantFragment({ format: { kind: 'nvfp4' }, dims: DIMS, axis, tensorScale: st, blockImpl: 'native' });
    expect(opTypes(native)).toContain('QuantizeLinear');
    expectSameBits(ref, await runOnce(native, x, DIMS), x, `${label} (native E4M3 scale)`);
  });
});

/* ------------------------------------------------------------------------ every value passes unchanged -- */

describe('every representable value passes through the subgraph unchanged', () => {
  const pad = (v: number[], m: number): Float32Array => {
    const out = new Float32Array(Math.ceil(v.length / m) * m);
    out.set(v);
    return out;
  };

  it.each(['e4m3fn', 'e5m2', 'e3m2', 'e2m3', 'e2m1'] as FloatName[])('%s (scale 1; native and standard ops where both exist)', async (element) => {
    const vals = finiteValues(FORMATS[element]);
    const x = Float32Array.from([...vals, -0]);
    for (const impl of hasNativeQdq({ kind: 'float', element }) ? (['native', 'std'] as const) : (['std'] as const)) {
      const y = await runOnce(fakeQuantFragment({ format: { kind: 'float', element }, dims: [x.length], scale: Float32Array.of(1), impl }), x, [x.length]);
      expectSameBits(x, y, x, `${element} ${impl}`);
    }
  });

  it('INT 2..8 bits, symmetric and asymmetric (scale 1)', async () => {
    for (let bits = 2; bits <= 8; bits++)
      for (const symmetric of [true, false]) {
        const { qmin, qmax } = intRange(bits, symmetric);
        const zp = symmetric ? 0 : qmax >> 1;
        const x = Float32Array.from({ length: qmax - qmin + 1 }, (_, i) => qmin + i - zp);
        const spec: FakeQuantSpec = { format: { kind: 'int', bits, symmetric }, dims: [x.length], scale: Float32Array.of(1) };
        if (!symmetric) spec.zeroPoint = [zp];
        expectSameBits(x, await runOnce(fakeQuantFragment(spec), x, [x.length]), x, `int${bits}`);
      }
  });

  it.each(['e4m3fn', 'e5m2', 'e3m2', 'e2m3', 'e2m1', 'int8'] as MxElement[])('MX %s (every block holds the max, so X = 1)', async (element) => {
    const { values, max } = elementGrid(element);
    // each block: the max first, then 31 grid values
    const blocks: number[] = [];
    for (let i = 0; i < values.length; i += MX_BLOCK - 1) blocks.push(max, ...values.slice(i, i + MX_BLOCK - 1));
    const x = pad(blocks, MX_BLOCK);
    for (let i = 0; i < x.length; i += MX_BLOCK) x[i] = max;
    const y = await runOnce(fakeQuantFragment({ format: { kind: 'mx', element }, dims: [x.length] }), x, [x.length]);
    expectSameBits(x, y, x, `MX ${element}`);
  });

  it('NVFP4 (s_t = 1, every block holds 6, so S = 1)', async () => {
    const { values } = elementGrid('nvfp4');
    const x = pad([6, ...values, -0], NVFP4_BLOCK);
    const y = await runOnce(fakeQuantFragment({ format: { kind: 'nvfp4' }, dims: [x.length], tensorScale: 1 }), x, [x.length]);
    expectSameBits(x, y, x, 'NVFP4');
  });
});
