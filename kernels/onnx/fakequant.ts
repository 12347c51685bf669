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
  /** MX and NVFP4: how FP8 scales and elements are rounded (default 'std': standard ops only). */
  blockImpl?: BlockImpl;
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
      y = mx(b, input, dims, normAxis(spec.axis ?? -1, dims.length), fmt.element, spec.blockImpl ?? 'std');
      break;
    case 'nvfp4': {
      const st = Math.fround(spec.tensorScale ?? NaN);
      if (!(st > 0 && Number.isFinite(st))) throw new RangeError('NVFP4 needs a positive finite float32 tensorScale');
      y = nvfp4(b, input, dims, normAxis(spec.axis ?? -1, dims.length), st, spec.blockImpl ?? 'std');
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
 * +-max; NaN stays NaN, -0 and negative values that round to 0 give -0. Exact, with elementwise standard ops.
 *
 * Formats of at most three binades (E2M1, E2M3) use the quantum q of a = |y|'s binade, from Floor and Clip, and
 * r = Round(y / q) * q (y / q is exact: q is a power of two), then r is clipped to +-max (Inf saturates; a tie at
 * the top of a binade rounds to the next power of two, as RNE in the format does). The others round y / q_min with
 * roundToGridUnits (Veltkamp's split, and the subnormals below 2^emin) and scale back. `scaledAbs`, when given, is
 * |y| / 2^(emin + 1) computed otherwise (exactly that value; the few-binades branch uses it).
 */
export function roundToGrid(b: GraphBuilder, y: string, f: MiniFloat, scaledAbs?: string): string {
  if (f.emax - f.emin <= 2) {
    // a format of at most three binades (E2M1, E2M3): the quantum from Floor(a / 2^(emin + 1)), which is 0 below
    // the second binade, 1 in it and 2 or 3 in the third: clipped to [0.5, 2^(emax - emin - 1)] and scaled by
    // 2^(emin + 1 - m), that is the binade's quantum (no select: Where is a slow op in onnxruntime)
    const scaled = scaledAbs ?? b.op('Mul', [b.op('Abs', [y]), b.f32(2 ** -(f.emin + 1))]);
    let q = b.op('Clip', [b.op('Floor', [scaled]), b.f32(0.5), b.f32(2 ** (f.emax - f.emin - 1))], {}, 'quantum');
    if (f.emin + 1 - f.mbits !== 0) q = b.op('Mul', [q, b.f32(2 ** (f.emin + 1 - f.mbits))], {}, 'quantum');
    const r = b.op('Mul', [b.op('Round', [b.op('Div', [y, q])]), q]);
    return b.op('Clip', [r, b.f32(-f.max), b.f32(f.max)]);
  }
  const q = 2 ** (f.emin - f.mbits);
  return b.op('Mul', [roundToGridUnits(b, b.op('Mul', [y, b.f32(1 / q)], {}, 'units'), f), b.f32(q)], {}, 'rounded');
}

/**
 * roundToGrid's split (formats of more than three binades) in units of the format's smallest quantum
 * q = 2^(emin - m): takes y / q, returns the rounded value / q (an integer). A caller that divides by a scale s and
 * multiplies by it again folds q into it (s q: exact, a power of two apart) and saves two elementwise Muls; the
 * result is the same float32 as roundToGrid's (scaling by a power of two commutes with rounding; an overflow of
 * y / q is an infinity, which saturates as the clipped value would).
 *
 * In units, hi = t - (t - y) with t = (2^(23 - m) + 1) y (Veltkamp) is y rounded to m + 1 significant bits, and
 * Round(y) is the subnormal rounding, taken where |y| < 2^m (below 2^emin). The select is arithmetic (onnxruntime's
 * Where costs about eight elementwise ops on the CPU): with `normal` = 1 where |y| >= 2^m, else 0,
 * r = sub - (sub - hi) normal. Exact: sub and hi are integers well inside float32's range (or, past 2^24, y itself
 * and its Veltkamp split), so sub - hi is exact and sub - (sub - hi) = hi; where normal = 0 the product is a zero of
 * the sign of -hi, so sub - it keeps sub's sign of zero (-0 stays -0, +0 stays +0); NaN comes through sub.
 * `normal`: the caller's own 0/1 float mask of |y| >= 2^m when it has |y| cheaper (MX: from the block's |x|).
 */
export function roundToGridUnits(b: GraphBuilder, y: string, f: MiniFloat, opts: { normal?: string } = {}): string {
  if (f.emax - f.emin <= 2) throw new RangeError(`roundToGridUnits: ${f.name} has at most three binades (use roundToGrid)`);
  // saturation first: the format's max is on its grid, so nothing clipped into [-max, max] rounds past it, and
  // whatever lies beyond saturates to it as the format's rounding does (NaN passes, -0 stays)
  const top = f.max * 2 ** -(f.emin - f.mbits);
  const yc = b.op('Clip', [y, b.f32(-top), b.f32(top)], {}, 'y_c');
  const t = b.op('Mul', [yc, b.f32(2 ** (23 - f.mbits) + 1)], {}, 'split_t');
  const hi = b.op('Sub', [t, b.op('Sub', [t, yc])], {}, 'split_hi');
  const sub = b.op('Round', [yc], {}, 'subnormal');
  const normal = opts.normal ?? b.op('Cast', [b.op('GreaterOrEqual', [b.op('Abs', [yc]), b.f32(2 ** f.mbits)])], { to: int(1) }, 'normal');
  return b.op('Sub', [sub, b.op('Mul', [b.op('Sub', [sub, hi]), normal])], {}, 'rounded');
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

/**
 * How the block formats round their float scales: 'std' with standard ops only (the set the WebGPU provider has),
 * 'native' with QuantizeLinear/DequantizeLinear to FP8 where a scale is FP8 (NVFP4's E4M3 block scale, MXFP8's
 * elements): fewer nodes on the CPU, where QuantizeLinear is exact; the WebGPU provider runs it on the CPU.
 */
export type BlockImpl = 'std' | 'native';

/**
 * Block statistics of a view whose axis `axis` holds one block: |x|, the block's max |x| cleaned for the scale
 * arithmetic (keepdims, so it broadcasts against the view; 1 where onnxruntime's ReduceMax reported a NaN), and
 * `poison`: per block 0, or NaN where the max is NaN or Inf. Adding poison to a block's scale makes every element
 * of the block NaN without a select over the elements. onnxruntime's ReduceMax drops some NaNs (it saw 4 of 128
 * blocks with one NaN each), so the callers also add the block sum of their rounded elements times 0 (NaN exactly
 * where an element is NaN; the sum of rounded elements cannot overflow).
 */
function blockAmax(b: GraphBuilder, v: string, axis: number): { abs: string; amax: string; poison: string } {
  const abs = b.op('Abs', [v]);
  const raw = b.op('ReduceMax', [abs, b.i64([axis])], { keepdims: int(1) }, 'amax_raw');
  const poison = b.op('Mul', [raw, b.f32(0)], {}, 'poison');
  const amax = b.op('Where', [b.op('Equal', [poison, poison]), raw, b.f32(1)], {}, 'amax');
  return { abs, amax, poison };
}

/** `scale` made NaN for every block holding a NaN element of `e` (block sums over `axis`, times 0). */
function poisonByElements(b: GraphBuilder, scale: string, e: string, axis: number): string {
  const s = b.op('ReduceSum', [e, b.i64([axis])], { keepdims: int(1) }, 'elem_sum');
  return b.op('Add', [scale, b.op('Mul', [s, b.f32(0)])], {}, 'scale_nan');
}

/** Offset of 2^0 in POW2_TABLE: entry i is 2^(i - POW2_OFFSET). */
const POW2_OFFSET = 130;
/** 2^-130 .. 2^130 (the ends are a float32 subnormal and +Inf): every power floor(log2 a) can be off by one from. */
const pow2Table = (f: (k: number) => number) => Float32Array.from({ length: 2 * POW2_OFFSET + 1 }, (_, i) => f(i - POW2_OFFSET));

/**
 * k = floor(log2(a)) as an index into a table of powers of two (int64, k + POW2_OFFSET), exactly, for a in
 * [2^-127, FLT_MAX] (callers clip into that range): the estimate Floor(Log(a) / ln 2) is off by at most one (its
 * rounding error is ~1e-5, and a subnormal a, which Log may read as 2^-126, is at most one binade below), and one
 * comparison each way with the table's 2^k corrects it. 12 nodes, on a block-statistics tensor.
 */
function floorLog2Index(b: GraphBuilder, a: string): string {
  const est = b.op('Floor', [b.op('Mul', [b.op('Log', [a]), b.f32(1 / Math.LN2)])], {}, 'log2');
  const i0 = b.op('Cast', [b.op('Add', [est, b.f32(POW2_OFFSET)])], { to: int(7) }, 'k0');
  const p0 = b.op('Gather', [b.init('pow2', 'float32', [2 * POW2_OFFSET + 1], pow2Table((k) => 2 ** k)), i0], { axis: int(0) }, 'p0');
  const down = b.op('Cast', [b.op('Greater', [p0, a])], { to: int(7) }, 'down');
  const up = b.op('Cast', [b.op('LessOrEqual', [b.op('Mul', [p0, b.f32(2)]), a])], { to: int(7) }, 'up');
  return b.op('Add', [b.op('Sub', [i0, down]), up], {}, 'k');
}

/**
 * The MX shared scale X = 2^max(floor(log2 amax) - emax_elem, -127) (E8M0; 2^-127 is a float32 subnormal), exactly:
 * amax below 2^(emax_elem - 127) gives 2^-127 whatever it is, so it is clipped up to that bound first (and down to
 * FLT_MAX: Log must see a finite value).
 */
function mxScale(b: GraphBuilder, amax: string, emaxElem: number): string {
  const a = b.op('Clip', [amax, b.f32(2 ** (emaxElem - 127)), b.f32(3.4028234663852886e38)], {}, 'amax_c');
  const table = b.init('mx_scale', 'float32', [2 * POW2_OFFSET + 1], pow2Table((k) => 2 ** Math.max(k - emaxElem, -127)));
  return b.op('Gather', [table, floorLog2Index(b, a)], { axis: int(0) }, 'mx_scale');
}

/**
 * Rounds y to an FP8 grid (E4M3FN or E5M2) as roundToGrid does, with QuantizeLinear (scale 1, saturating) and
 * DequantizeLinear: nearest, ties to even, +-max for anything beyond, NaN kept, -0 kept.
 */
function nativeFp8Round(b: GraphBuilder, y: string, element: 'e4m3fn' | 'e5m2'): string {
  const one = b.f32(1);
  const z = b.init('zero_point', element === 'e4m3fn' ? 'float8e4m3fn' : 'float8e5m2', [], new Uint8Array(1));
  return b.op('DequantizeLinear', [b.op('QuantizeLinear', [y, one, z], { saturate: int(1) }, 'q8'), one, z], {}, 'dq8');
}

/** A block format's rounding of y to an element or scale grid: roundToGrid, or QuantizeLinear for FP8 ('native'). */
function roundElement(b: GraphBuilder, y: string, f: MiniFloat, impl: BlockImpl, scaledAbs?: string): string {
  if (impl === 'native' && (f.name === 'e4m3fn' || f.name === 'e5m2')) return nativeFp8Round(b, y, f.name);
  return roundToGrid(b, y, f, scaledAbs);
}

/**
 * MX fake quantization of a view whose axis `axis` holds one block of MX_BLOCK elements (any other axes: rows, or
 * the positions of a convolution's channel blocks). Mirrors ../quant.ts fakeQuantMx.
 */
export function mxBlocks(b: GraphBuilder, v: string, axis: number, element: MxElement, impl: BlockImpl = 'std'): string {
  const bl = blockAmax(b, v, axis);
  const X = b.op('Add', [mxScale(b, bl.amax, mxElementEmax(element)), bl.poison], {}, 'mx_scale_p');
  let e: string;
  if (element === 'int8') {
    const k = b.op('Clip', [b.op('Round', [b.op('Mul', [b.op('Div', [v, X]), b.f32(64)])]), b.f32(-MXINT8_MAX_CODE), b.f32(MXINT8_MAX_CODE)]);
    // 0 - (-k) = k with Round's -0 turned into +0 (an integer code has no -0).
    e = b.op('Mul', [b.op('Sub', [b.f32(0), b.op('Neg', [k])]), b.f32(1 / 64)]);
  } else {
    const f = FORMATS[element];
    if (impl === 'std' && f.emax - f.emin > 2) {
      // in units of the element's smallest quantum (roundToGridUnits): divide by X q and multiply by it (powers of
      // two, exact), and |y| >= 2^emin read from the block's |x| >= X 2^emin
      const unit = b.op('Mul', [X, b.f32(2 ** (f.emin - f.mbits))], {}, 'mx_unit');
      const normal = b.op('Cast', [b.op('GreaterOrEqual', [bl.abs, b.op('Mul', [X, b.f32(2 ** f.emin)])])], { to: int(1) }, 'normal');
      const u = roundToGridUnits(b, b.op('Div', [v, unit]), f, { normal });
      return b.op('Mul', [u, poisonByElements(b, unit, u, axis)], {}, 'dequant');
    }
    // few binades: the quantum reads |y| / 2^(emin+1), which is |x| times a power of two per block (X is one):
    // the same real number, rounded once, so the same Floor
    const scaledAbs = f.emax - f.emin <= 2 ? b.op('Mul', [bl.abs, b.op('Div', [b.f32(2 ** -(f.emin + 1)), X])], {}, 'abs_y') : undefined;
    e = roundElement(b, b.op('Div', [v, X]), f, impl, scaledAbs);
  }
  return b.op('Mul', [e, poisonByElements(b, X, e, axis)], {}, 'dequant');
}

/**
 * NVFP4 fake quantization of a view whose axis `axis` holds one block of NVFP4_BLOCK elements, with the float32
 * per-tensor scale `tensorScale` (a constant or a tensor name). Mirrors ../quant.ts fakeQuantNvfp4.
 */
export function nvfp4Blocks(b: GraphBuilder, v: string, axis: number, tensorScale: number | string, impl: BlockImpl = 'std'): string {
  const bl = blockAmax(b, v, axis);
  const st = typeof tensorScale === 'number' ? b.f32(tensorScale) : tensorScale;
  // sb = E4M3((amax / 6) / s_t), S = sb * s_t; where S is 0 divide by 1 instead (elements then dequantize to +-0).
  const sb = roundElement(b, b.op('Div', [b.op('Div', [bl.amax, b.f32(E2M1_MAX)]), st]), FORMATS.e4m3fn, impl);
  const S = b.op('Add', [b.op('Mul', [sb, st]), bl.poison], {}, 'scale');
  const safe = b.op('Where', [b.op('Equal', [S, b.f32(0)]), b.f32(1), S], {}, 'safe_scale');
  const e = roundToGrid(b, b.op('Div', [v, safe]), FORMATS.e2m1);
  return b.op('Mul', [e, poisonByElements(b, S, e, axis)], {}, 'dequant');
}

function mx(b: GraphBuilder, x: string, dims: number[], axis: number, element: MxElement, impl: BlockImpl): string {
  const bc = blockView(b, dims, axis, MX_BLOCK);
  return bc.unview(mxBlocks(b, bc.view(x), axis + 1, element, impl));
}

function nvfp4(b: GraphBuilder, x: string, dims: number[], axis: number, tensorScale: number, impl: BlockImpl): string {
  const bc = blockView(b, dims, axis, NVFP4_BLOCK);
  return bc.unview(nvfp4Blocks(b, bc.view(x), axis + 1, tensorScale, impl));
}

function blockView(b: GraphBuilder, dims: number[], axis: number, size: number): Broadcast {
  if (dims[axis]! % size !== 0) throw new RangeError(`blocks of ${size} do not divide dimension ${dims[axis]} (axis ${axis})`);
  return broadcast(b, dims, { kind: 'block', axis, size });
}

/** The op types a fragment uses (e.g. to check them against an execution provider's kernel list). */
export function opTypes(f: Fragment): string[] {
  return [...new Set(f.nodes.map((n) => n.opType))].sort();
}

