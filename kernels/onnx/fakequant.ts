/**
 * Fake-quantization subgraphs (float32 in, float32 out) for every format, mirroring ../quant.ts operation by
 * operation so that onnxruntime and the TypeScript reference agree bit for bit.
 *
 * - INT8/UINT8/INT4/UINT4 and FP8 (E4M3FN, E5M2) use onnxruntime's native QuantizeLinear -> DequantizeLinear
 *   (per tensor, per axis, or blocked; integers behind a saturation guard, see saturationGuard), unless impl 'std'
 *   is asked for.
 * - Everything else (INT2/3/5/6/7, FP6, FP4, MX*, NVFP4) is built from standard ops that the WebGPU provider has
 *   (Div, Mul, Abs, Less, Equal, Where, Round, Clip, ReduceMax, Reshape), see roundToGrid below.
 *
 * Shapes are static: the builders take the input's dims (weights have them; per-tensor activations may pass any).
 */
import { normAxis, numel, scaleDims, type Granularity } from '../layout.js';
import { FORMATS, type MiniFloat } from '../minifloat.js';
import { E2M1_MAX, MXINT8_MAX_CODE, MX_BLOCK, NVFP4_BLOCK, intRange, mxElementEmax, type MxElement, type QuantFormat } from '../quant.js';
import { GraphBuilder, int, type DType, type Fragment } from './graph.js';

/** Opset the fragments need: QuantizeLinear/DequantizeLinear with int4 and block_size are opset 21. */
export const FAKEQUANT_OPSET = 21;

export interface FakeQuantSpec {
  format: QuantFormat;
  /** The input's dims. */
  dims: readonly number[];
  /** INT and FP formats: which elements share a scale (default per tensor). */
  granularity?: Granularity;
  /** INT and FP formats: the scales, laid out as in ../layout.ts. */
  scale?: Float32Array;
  /** Asymmetric INT: the zero points (integers in the code range). */
  zeroPoint?: ArrayLike<number>;
  /** MX and NVFP4: the axis the blocks run along (default: the last). */
  axis?: number;
  /** NVFP4: the float32 per-tensor scale (> 0). */
  tensorScale?: number;
  /** INT 4/8 and FP8: 'native' (QuantizeLinear/DequantizeLinear, the default) or 'std' (standard ops only). */
  impl?: 'native' | 'std';
}

export interface FragmentNames {
  input?: string;
  output?: string;
  /** Prefix of every internal name (make it unique per fragment when several share a graph). */
  prefix?: string;
}

/** Whether onnxruntime has a native QuantizeLinear/DequantizeLinear for the format. */
export function hasNativeQdq(f: QuantFormat): boolean {
  return (f.kind === 'int' && (f.bits === 8 || f.bits === 4)) || (f.kind === 'float' && (f.element === 'e4m3fn' || f.element === 'e5m2'));
}

export function fakeQuantFragment(spec: FakeQuantSpec, names: FragmentNames = {}): Fragment {
  const input = names.input ?? 'x';
  const output = names.output ?? 'y';
  const b = new GraphBuilder(names.prefix ?? 'fq');
  const dims = [...spec.dims];
  const fmt = spec.format;
  let y: string;
  switch (fmt.kind) {
    case 'int':
    case 'float': {
      const g = spec.granularity ?? { kind: 'tensor' };
      if (!spec.scale) throw new RangeError(`${fmt.kind} formats need scales`);
      const n = numel(scaleDims(dims, g));
      if (spec.scale.length !== n) throw new RangeError(`expected ${n} scales, got ${spec.scale.length}`);
      const native = hasNativeQdq(fmt) && (spec.impl ?? 'native') === 'native';
      if (fmt.kind === 'int') {
        const { qmin, qmax } = intRange(fmt.bits, fmt.symmetric);
        const zp = Array.from(spec.zeroPoint ?? new Array<number>(n).fill(0));
        if (zp.length !== n) throw new RangeError(`expected ${n} zero points, got ${zp.length}`);
        if (zp.some((z) => !Number.isInteger(z) || z < qmin || z > qmax)) throw new RangeError(`zero points must be integers in ${qmin}..${qmax}`);
        if (fmt.symmetric && zp.some((z) => z !== 0)) throw new RangeError('symmetric formats have no zero point');
        y = native ? nativeInt(b, input, dims, g, fmt.bits, fmt.symmetric, spec.scale, zp) : stdInt(b, input, dims, g, qmin, qmax, spec.scale, zp);
      } else {
        y = native ? nativeFp8(b, input, dims, g, fmt.element as 'e4m3fn' | 'e5m2', spec.scale) : stdFloat(b, input, dims, g, FORMATS[fmt.element], spec.scale);
      }
      break;
    }
    case 'mx':
      y = mx(b, input, dims, normAxis(spec.axis ?? -1, dims.length), fmt.element);
      break;
    case 'nvfp4': {
      const st = Math.fround(spec.tensorScale ?? NaN);
      if (!(st > 0 && Number.isFinite(st))) throw new RangeError('NVFP4 needs a positive finite float32 tensorScale');
      y = nvfp4(b, input, dims, normAxis(spec.axis ?? -1, dims.length), st);
      break;
    }
  }
  b.identity(y, output);
  return b.fragment([{ name: input, dtype: 'float32', dims }], [{ name: output, dtype: 'float32', dims }], FAKEQUANT_OPSET);
}

/* ------------------------------------------------------------------------------------------------ native -- */

function qdqAttrs(dims: number[], g: Granularity): Record<string, ReturnType<typeof int>> {
  if (g.kind === 'tensor') return {};
  const axis = int(normAxis(g.axis, dims.length));
  return g.kind === 'channel' ? { axis } : { axis, block_size: int(g.size) };
}

function nativeInt(b: GraphBuilder, x: string, dims: number[], g: Granularity, bits: number, symmetric: boolean, scale: Float32Array, zp: number[]): string {
  const sd = scaleDims(dims, g);
  const dtype: DType = bits === 8 ? (symmetric ? 'int8' : 'uint8') : symmetric ? 'int4' : 'uint4';
  const zpData = symmetric ? Int8Array.from(zp) : Uint8Array.from(zp);
  const s = b.init('scale', 'float32', sd, scale);
  const z = b.init('zero_point', dtype, sd, zpData);
  const attrs = qdqAttrs(dims, g);
  const q = b.op('QuantizeLinear', [saturationGuard(b, x, dims, g, scale, zp, bits, symmetric), s, z], attrs, 'q');
  return b.op('DequantizeLinear', [q, s, z], attrs, 'dq');
}

/**
 * onnxruntime 1.30's CPU QuantizeLinear to int8/int4 does not saturate when x / scale is beyond the int32 range
 * for some layouts (per axis on the last axis for int4, blocked along a non-last axis): such values come out as
 * qmin instead of qmax (seen in test/integration/kernels). So x is first clamped, per scale group, to
 * [(qmin - zp - 2) * s, (qmax - zp + 2) * s] (float32). Any x beyond a bound already saturates (x / s is more
 * than 1.5 codes past the end of the range), and so does the bound itself: no result changes. NaN passes through.
 */
function saturationGuard(b: GraphBuilder, x: string, dims: number[], g: Granularity, scale: Float32Array, zp: number[], bits: number, symmetric: boolean): string {
  const { qmin, qmax } = intRange(bits, symmetric);
  const bc = broadcast(b, dims, g);
  const hi = b.init('hi', 'float32', bc.scaleDims, scale.map((s, j) => (qmax - zp[j]! + 2) * s));
  const lo = b.init('lo', 'float32', bc.scaleDims, scale.map((s, j) => (qmin - zp[j]! - 2) * s));
  return bc.unview(b.op('Max', [b.op('Min', [bc.view(x), hi]), lo], {}, 'guard'));
}

function nativeFp8(b: GraphBuilder, x: string, dims: number[], g: Granularity, element: 'e4m3fn' | 'e5m2', scale: Float32Array): string {
  const sd = scaleDims(dims, g);
  const s = b.init('scale', 'float32', sd, scale);
  const z = b.init('zero_point', element === 'e4m3fn' ? 'float8e4m3fn' : 'float8e5m2', sd, new Uint8Array(numel(sd)));
  const attrs = qdqAttrs(dims, g);
  const q = b.op('QuantizeLinear', [x, s, z], { ...attrs, saturate: int(1) }, 'q');
  return b.op('DequantizeLinear', [q, s, z], attrs, 'dq');
}

/* --------------------------------------------------------------------------------------- standard ops -- */

/**
 * How a scale tensor broadcasts against x. Blocked granularity views x as [..., nb, size, ...] (static Reshape)
 * so that a scale of shape [..., nb, 1, ...] broadcasts; `view`/`unview` are no-ops otherwise.
 */
interface Broadcast {
  scaleDims: number[];
  view(x: string): string;
  unview(y: string): string;
}

function broadcast(b: GraphBuilder, dims: number[], g: Granularity): Broadcast {
  const same = { view: (x: string) => x, unview: (y: string) => y };
  if (g.kind === 'tensor') return { scaleDims: [], ...same };
  const a = normAxis(g.axis, dims.length);
  if (g.kind === 'channel') return { scaleDims: [dims[a]!, ...dims.slice(a + 1).map(() => 1)], ...same };
  scaleDims(dims, g); // validates the block size
  const nb = dims[a]! / g.size;
  const viewDims = [...dims.slice(0, a), nb, g.size, ...dims.slice(a + 1)];
  return {
    scaleDims: [...dims.slice(0, a), nb, 1, ...dims.slice(a + 1)],
    view: (x) => b.op('Reshape', [x, b.i64(viewDims)], {}, 'view'),
    unview: (y) => b.op('Reshape', [y, b.i64(dims)], {}, 'unview'),
  };
}

/**
 * Rounds y (float32, in units of the format) to the float format's grid: nearest, ties to even, saturating at
 * +-max; NaN stays NaN, -0 and negative values that round to 0 give -0. Exact, with elementwise standard ops:
 *
 *   a = |y|;  q = the quantum of a's binade: 2^(emin - m) below 2^(emin+1), doubling at each power of two up to
 *             2^emax (a chain of Less/Where against constants: exact, no logarithms);
 *   r = Round(y / q) * q   (y / q is exact: q is a power of two and y / q cannot underflow; Round is RNE);
 *   out = Clip(r, -max, max).
 *
 * A tie at the top of a binade (2^(e+1) - q/2) rounds to the even neighbour, which is the next power of two,
 * exactly as RNE in the format does. Inf: y / q = Inf, Round(Inf) = Inf, clipped to max. Below 2^(emin+1) the
 * quantum stays 2^(emin - m), which covers the subnormals.
 */
export function roundToGrid(b: GraphBuilder, y: string, f: MiniFloat): string {
  const a = b.op('Abs', [y]);
  let q = b.f32(2 ** (f.emin - f.mbits));
  for (let e = f.emin + 1; e <= f.emax; e++) {
    const below = b.op('Less', [a, b.f32(2 ** e)], {}, 'below');
    q = b.op('Where', [below, q, b.f32(2 ** (e - f.mbits))], {}, 'quantum');
  }
  const r = b.op('Mul', [b.op('Round', [b.op('Div', [y, q])]), q]);
  return b.op('Clip', [r, b.f32(-f.max), b.f32(f.max)]);
}

function stdFloat(b: GraphBuilder, x: string, dims: number[], g: Granularity, f: MiniFloat, scale: Float32Array): string {
  const bc = broadcast(b, dims, g);
  const s = b.init('scale', 'float32', bc.scaleDims, scale);
  const y = b.op('Div', [bc.view(x), s]);
  return bc.unview(b.op('Mul', [roundToGrid(b, y, f), s], {}, 'dequant'));
}

function stdInt(b: GraphBuilder, x: string, dims: number[], g: Granularity, qmin: number, qmax: number, scale: Float32Array, zp: number[]): string {
  const bc = broadcast(b, dims, g);
  const s = b.init('scale', 'float32', bc.scaleDims, scale);
  const z = b.init('zero_point', 'float32', bc.scaleDims, Float32Array.from(zp));
  const r = b.op('Round', [b.op('Div', [bc.view(x), s])]);
  // q = zp - (-r) = r + zp, written so that onnxruntime's no-op elimination cannot drop an "Add 0": adding +0 is
  // what turns Round's -0 into +0, as integer codes have no -0.
  const q = b.op('Sub', [z, b.op('Neg', [r])]);
  const c = b.op('Clip', [q, b.f32(qmin), b.f32(qmax)]);
  // Integers have no NaN: NaN becomes qmin, as in onnxruntime's QuantizeLinear.
  const code = b.op('Where', [b.op('Equal', [c, c]), c, b.f32(qmin)], {}, 'code');
  return bc.unview(b.op('Mul', [b.op('Sub', [code, z]), s], {}, 'dequant'));
}

/* ------------------------------------------------------------------------------------------- MX / NVFP4 -- */

interface Blocks {
  view: string;
  /** Per-block max |x| with NaN counted as +Inf, shape [..., nb, 1, ...]. */
  amax: string;
  /** Per-block flag: the block holds a NaN or an Inf. */
  bad: string;
  unview(y: string): string;
}

function blocks(b: GraphBuilder, x: string, dims: number[], axis: number, size: number): Blocks {
  if (dims[axis]! % size !== 0) throw new RangeError(`blocks of ${size} do not divide dimension ${dims[axis]} (axis ${axis})`);
  const bc = broadcast(b, dims, { kind: 'block', axis, size });
  const v = bc.view(x);
  const absNanInf = b.op('Where', [b.op('Equal', [v, v]), b.op('Abs', [v]), b.f32(Infinity)], {}, 'abs');
  const amax = b.op('ReduceMax', [absNanInf, b.i64([axis + 1])], { keepdims: int(1) }, 'amax');
  const bad = b.op('Equal', [amax, b.f32(Infinity)], {}, 'bad');
  return { view: v, amax, bad, unview: bc.unview };
}

/**
 * p = 2^floor(log2(amax)) exactly, for amax in [0, 2^128): repeatedly scale v by powers of two (exact) until it
 * lies in [1, 2), multiplying p by the inverse factors. amax = 0 gives p = 0 (underflow), which the caller clamps.
 */
function floorPow2(b: GraphBuilder, amax: string): string {
  let v = amax;
  let p = b.f32(1);
  for (const k of [64, 32, 16, 8, 4, 2, 1]) {
    const keep = b.op('Less', [v, b.f32(2 ** k)], {}, 'lt');
    v = b.op('Where', [keep, v, b.op('Mul', [v, b.f32(2 ** -k)])], {}, 'v');
    p = b.op('Where', [keep, p, b.op('Mul', [p, b.f32(2 ** k)])], {}, 'p');
  }
  for (const k of [64, 64, 32, 16, 8, 4, 2, 1]) {
    const up = b.op('Less', [v, b.f32(2 ** (1 - k))], {}, 'lt');
    v = b.op('Where', [up, b.op('Mul', [v, b.f32(2 ** k)]), v], {}, 'v');
    p = b.op('Where', [up, b.op('Mul', [p, b.f32(2 ** -k)]), p], {}, 'p');
  }
  return p;
}

function mx(b: GraphBuilder, x: string, dims: number[], axis: number, element: MxElement): string {
  const bl = blocks(b, x, dims, axis, MX_BLOCK);
  // X = 2^max(floor(log2 amax) - emax_elem, -127): the E8M0 shared scale (2^-127 is a float32 subnormal).
  const pow = floorPow2(b, bl.amax);
  const X = b.op('Max', [b.op('Mul', [pow, b.f32(2 ** -mxElementEmax(element))]), b.f32(2 ** -127)], {}, 'mx_scale');
  const y = b.op('Div', [bl.view, X]);
  let e: string;
  if (element === 'int8') {
    const k = b.op('Clip', [b.op('Round', [b.op('Mul', [y, b.f32(64)])]), b.f32(-MXINT8_MAX_CODE), b.f32(MXINT8_MAX_CODE)]);
    // 0 - (-k) = k with Round's -0 turned into +0 (an integer code has no -0).
    e = b.op('Mul', [b.op('Sub', [b.f32(0), b.op('Neg', [k])]), b.f32(1 / 64)]);
  } else {
    e = roundToGrid(b, y, FORMATS[element]);
  }
  const out = b.op('Where', [bl.bad, b.f32(NaN), b.op('Mul', [e, X], {}, 'dequant')], {}, 'nan_blocks');
  return bl.unview(out);
}

function nvfp4(b: GraphBuilder, x: string, dims: number[], axis: number, tensorScale: number): string {
  const bl = blocks(b, x, dims, axis, NVFP4_BLOCK);
  const st = b.f32(tensorScale);
  // sb = E4M3((amax / 6) / s_t), S = sb * s_t; where S is 0 divide by 1 instead (elements then dequantize to +-0).
  const sb = roundToGrid(b, b.op('Div', [b.op('Div', [bl.amax, b.f32(E2M1_MAX)]), st]), FORMATS.e4m3fn);
  const S = b.op('Mul', [sb, st], {}, 'scale');
  const safe = b.op('Where', [b.op('Equal', [S, b.f32(0)]), b.f32(1), S], {}, 'safe_scale');
  const e = roundToGrid(b, b.op('Div', [bl.view, safe]), FORMATS.e2m1);
  const out = b.op('Where', [bl.bad, b.f32(NaN), b.op('Mul', [e, S], {}, 'dequant')], {}, 'nan_blocks');
  return bl.unview(out);
}

/** The op types a fragment uses (e.g. to check them against an execution provider's kernel list). */
export function opTypes(f: Fragment): string[] {
  return [...new Set(f.nodes.map((n) => n.opType))].sort();
}

