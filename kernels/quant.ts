/**
 * The TypeScript reference of every format's fake quantization (quantize, then dequantize, back to float32).
 *
 * It reproduces float32 arithmetic exactly: each + - * / is computed in double and rounded once with Math.fround,
 * which for two float32 operands gives the correctly rounded float32 result, as onnxruntime computes it. The ONNX
 * subgraphs in ./onnx/fakequant.ts perform the same operations in the same order, so the two agree bit for bit.
 */
import { groupReduce, numel, scaleDims, scaleIndex, type Granularity } from './layout.js';
import { FORMATS, floorLog2, quantizeValue, roundHalfEven, type FloatName, type MiniFloat } from './minifloat.js';

const f32 = Math.fround;

export type MxElement = FloatName | 'int8';

export type QuantFormat =
  /** b-bit integers. symmetric: signed codes -2^(b-1)..2^(b-1)-1, no zero point; else unsigned 0..2^b-1 + zero point. */
  | { kind: 'int'; bits: number; symmetric: boolean }
  /** A small float element format (FP8/FP6/FP4) with a float32 scale per tensor, channel or block. */
  | { kind: 'float'; element: FloatName }
  /** OCP Microscaling: 32-element blocks sharing an E8M0 power-of-two scale. */
  | { kind: 'mx'; element: MxElement }
  /** NVFP4: E2M1 elements, 16-element blocks with an E4M3 scale, times a float32 per-tensor scale. */
  | { kind: 'nvfp4' };

export const MX_BLOCK = 32;
export const NVFP4_BLOCK = 16;
/** MXINT8 elements are k / 64 with k in -127..127 (symmetric: the code -128 is not produced). */
export const MXINT8_STEP = 1 / 64;
export const MXINT8_MAX_CODE = 127;

/* --------------------------------------------------------------- INT -- */

export function intRange(bits: number, symmetric: boolean): { qmin: number; qmax: number } {
  if (!Number.isInteger(bits) || bits < 2 || bits > 8) throw new RangeError(`integer formats have 2 to 8 bits, not ${bits}`);
  return symmetric ? { qmin: -(2 ** (bits - 1)), qmax: 2 ** (bits - 1) - 1 } : { qmin: 0, qmax: 2 ** bits - 1 };
}

/**
 * The integer code of y = x / scale (already rounded to float32): round half to even, plus the zero point, clamped
 * to the code range. NaN gives qmin, as onnxruntime's QuantizeLinear does (integers have no NaN).
 */
export function intCode(y: number, zeroPoint: number, qmin: number, qmax: number): number {
  if (y !== y) return qmin;
  const q = roundHalfEven(y) + zeroPoint;
  return q < qmin ? qmin : q > qmax ? qmax : q;
}

/** Fake-quantizes to b-bit integers: out = ((clamp(round(x / s) + zp) - zp) * s), all in float32. */
export function fakeQuantInt(
  x: Float32Array,
  dims: readonly number[],
  g: Granularity,
  fmt: { bits: number; symmetric: boolean },
  scale: Float32Array,
  zeroPoint?: ArrayLike<number>,
): Float32Array {
  if (fmt.symmetric && zeroPoint && Array.from(zeroPoint).some((z) => z !== 0)) throw new RangeError('symmetric formats have no zero point');
  return dequantizeInt(quantizeInt(x, dims, g, fmt, scale, zeroPoint), dims, g, scale, zeroPoint);
}

/**
 * fakeQuantInt for a search over many scale sets (weights.ts's MSE clipping): `idx` is scaleIndex(dims, g), the
 * parameters are not checked again, the result goes into `out` and each group's squared error into `err` (zeroed
 * first). The same float32 arithmetic as fakeQuantInt, bit for bit, in one pass and without allocating.
 */
export function fakeQuantIntInto(
  x: Float32Array,
  idx: Uint32Array,
  fmt: { bits: number; symmetric: boolean },
  scale: Float32Array,
  zeroPoint: ArrayLike<number> | undefined,
  out: Float32Array,
  err: Float64Array,
): void {
  const { qmin, qmax } = intRange(fmt.bits, fmt.symmetric);
  err.fill(0);
  for (let i = 0; i < x.length; i++) {
    const j = idx[i]!;
    const z = zeroPoint ? zeroPoint[j]! : 0;
    const q = f32((intCode(f32(x[i]! / scale[j]!), z, qmin, qmax) - z) * scale[j]!);
    out[i] = q;
    err[j] += (x[i]! - q) ** 2;
  }
}

/** The integer codes of x (QuantizeLinear): clamp(round(x / s) + zp), NaN -> qmin. */
export function quantizeInt(
  x: Float32Array,
  dims: readonly number[],
  g: Granularity,
  fmt: { bits: number; symmetric: boolean },
  scale: Float32Array,
  zeroPoint?: ArrayLike<number>,
): Int32Array {
  const { qmin, qmax } = intRange(fmt.bits, fmt.symmetric);
  checkParams(dims, g, scale, zeroPoint);
  const idx = scaleIndex(dims, g);
  const out = new Int32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const j = idx[i]!;
    out[i] = intCode(f32(x[i]! / scale[j]!), zeroPoint ? zeroPoint[j]! : 0, qmin, qmax);
  }
  return out;
}

/** DequantizeLinear of integer codes: (q - zp) * s in float32. */
export function dequantizeInt(
  q: ArrayLike<number>,
  dims: readonly number[],
  g: Granularity,
  scale: Float32Array,
  zeroPoint?: ArrayLike<number>,
): Float32Array {
  checkParams(dims, g, scale, zeroPoint);
  const idx = scaleIndex(dims, g);
  const out = new Float32Array(q.length);
  for (let i = 0; i < q.length; i++) {
    const j = idx[i]!;
    out[i] = f32((q[i]! - (zeroPoint ? zeroPoint[j]! : 0)) * scale[j]!);
  }
  return out;
}

/* ------------------------------------------------------- small floats -- */

/** Fake-quantizes to a float element format with a float32 scale: out = Q(x / s) * s, Q saturating RNE. */
export function fakeQuantFloat(
  x: Float32Array,
  dims: readonly number[],
  g: Granularity,
  element: FloatName,
  scale: Float32Array,
): Float32Array {
  const f = FORMATS[element];
  checkParams(dims, g, scale);
  const idx = scaleIndex(dims, g);
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const s = scale[idx[i]!]!;
    out[i] = f32(quantizeValue(f, f32(x[i]! / s)) * s);
  }
  return out;
}

function checkParams(dims: readonly number[], g: Granularity, scale: Float32Array, zeroPoint?: ArrayLike<number>): void {
  const n = numel(scaleDims(dims, g));
  if (scale.length !== n) throw new RangeError(`expected ${n} scales, got ${scale.length}`);
  if (zeroPoint && zeroPoint.length !== n) throw new RangeError(`expected ${n} zero points, got ${zeroPoint.length}`);
}

/* ---------------------------------------------------------------- MX -- */

/** The exponent of the element format's largest normal (emax_elem in the OCP MX spec). */
export function mxElementEmax(element: MxElement): number {
  return element === 'int8' ? 0 : FORMATS[element].emax;
}

/**
 * The block's shared scale exponent per OCP MX v1.0: floor(log2(amax)) - emax_elem, clamped to E8M0's -127..127.
 * amax = 0 gives -127 (the smallest scale; every element is then 0). A NaN amax gives NaN (the block is NaN).
 * amax must already have NaN/Inf folded in by the caller (see blockAmax).
 */
export function mxScaleExponent(amax: number, element: MxElement): number {
  if (amax !== amax || amax === Infinity) return NaN;
  if (amax === 0) return -127;
  return Math.max(floorLog2(amax) - mxElementEmax(element), -127);
}

/** One element of an MX block: y = x / X in float32, then the element format's saturating RNE. */
export function mxElementValue(element: MxElement, y: number): number {
  if (element !== 'int8') return quantizeValue(FORMATS[element], y);
  // MXINT8: k/64, k = RNE(y * 64) clamped to +-127 (y * 64 is exact). An integer code has no -0: k = 0 is +0.
  if (y !== y) return NaN;
  const k = Math.min(Math.max(roundHalfEven(y * 64), -MXINT8_MAX_CODE), MXINT8_MAX_CODE);
  return k === 0 ? 0 : k * MXINT8_STEP;
}

/**
 * Per-block max |x| where NaN counts as +Inf: a block whose amax is +Inf holds a NaN or an Inf and is NaN as a
 * whole (its scale is the E8M0/E4M3 NaN code).
 */
export function blockAmax(x: Float32Array, dims: readonly number[], axis: number, size: number): Float32Array {
  const g: Granularity = { kind: 'block', axis, size };
  const idx = scaleIndex(dims, g);
  const out = new Float32Array(numel(scaleDims(dims, g)));
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    const a = v !== v ? Infinity : Math.abs(v);
    if (a > out[idx[i]!]!) out[idx[i]!] = a;
  }
  return out;
}

export interface MxResult {
  /** The fake-quantized tensor. */
  y: Float32Array;
  /** Per-block scale exponents (NaN for NaN blocks), in the blocked-scale layout. */
  scaleExp: Float32Array;
}

/** MX fake quantization along `axis` (blocks of 32 consecutive elements along it; dims[axis] % 32 == 0). */
export function fakeQuantMx(x: Float32Array, dims: readonly number[], axis: number, element: MxElement, blockSize = MX_BLOCK): MxResult {
  const amax = blockAmax(x, dims, axis, blockSize);
  const scaleExp = amax.map((a) => mxScaleExponent(a, element));
  const idx = scaleIndex(dims, { kind: 'block', axis, size: blockSize });
  const y = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const e = scaleExp[idx[i]!]!;
    if (e !== e) {
      y[i] = NaN;
      continue;
    }
    const X = 2 ** e;
    y[i] = f32(mxElementValue(element, f32(x[i]! / X)) * X);
  }
  return { y, scaleExp };
}

/* ------------------------------------------------------------- NVFP4 -- */

export const E2M1_MAX = 6;
export const E4M3_MAX = 448;

/** The usual per-tensor scale: amax / (448 * 6) in float32 (1 if that is 0, so scales stay positive). */
export function nvfp4TensorScale(amax: number): number {
  const s = f32(amax / (E4M3_MAX * E2M1_MAX));
  return s > 0 && Number.isFinite(s) ? s : 1;
}

/**
 * A block's E4M3 scale: E4M3(((amax / 6) / s_t)), each division in float32, E4M3 saturating RNE. NaN for a NaN
 * block (amax = +Inf, see blockAmax).
 */
export function nvfp4BlockScale(amax: number, tensorScale: number): number {
  if (amax === Infinity) return NaN;
  return quantizeValue(FORMATS.e4m3fn, f32(f32(amax / E2M1_MAX) / tensorScale));
}

export interface Nvfp4Result {
  y: Float32Array;
  /** Per-block E4M3 scale values (NaN for NaN blocks). */
  blockScale: Float32Array;
}

/**
 * NVFP4 fake quantization along `axis` (16-element blocks). With S = sb * s_t (float32), each element is
 * E2M1(x / S) * S; where S is 0 (all-zero or underflowing blocks) elements are E2M1(x) * 0 = +-0.
 */
export function fakeQuantNvfp4(x: Float32Array, dims: readonly number[], axis: number, tensorScale: number, blockSize = NVFP4_BLOCK): Nvfp4Result {
  const st = f32(tensorScale);
  const amax = blockAmax(x, dims, axis, blockSize);
  const blockScale = amax.map((a) => nvfp4BlockScale(a, st));
  const idx = scaleIndex(dims, { kind: 'block', axis, size: blockSize });
  const e2m1 = FORMATS.e2m1;
  const y = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const j = idx[i]!;
    if (amax[j] === Infinity) {
      y[i] = NaN;
      continue;
    }
    const S = f32(blockScale[j]! * st);
    const safe = S === 0 ? 1 : S;
    y[i] = f32(quantizeValue(e2m1, f32(x[i]! / safe)) * S);
  }
  return { y, blockScale };
}

/* ------------------------------------------------------ scale choice -- */

/** Symmetric or asymmetric integer parameters covering [min, max] (min/max clamped to include 0). */
export function intParams(min: number, max: number, bits: number, symmetric: boolean): { scale: number; zeroPoint: number } {
  const { qmin, qmax } = intRange(bits, symmetric);
  if (symmetric) {
    const amax = Math.max(Math.abs(min), Math.abs(max));
    const s = f32(amax / qmax);
    return { scale: s > 0 && Number.isFinite(s) ? s : 1, zeroPoint: 0 };
  }
  const lo = Math.min(min, 0);
  const hi = Math.max(max, 0);
  const s = f32((hi - lo) / (qmax - qmin));
  if (!(s > 0 && Number.isFinite(s))) return { scale: 1, zeroPoint: 0 };
  const zp = Math.min(Math.max(roundHalfEven(qmin - lo / s), qmin), qmax);
  return { scale: s, zeroPoint: zp };
}

/* ------------------------------------------------------ float16 scales -- */

export const FLOAT16_MAX = 65504;
const F16_MIN_SUB = 2 ** -24;

/** The quantum of float16 around |v| (normal: 2^(e-10); subnormal: 2^-24). */
function f16Quantum(v: number): number {
  let e = Math.floor(Math.log2(v));
  if (2 ** e > v) e--;
  else if (2 ** (e + 1) <= v) e++;
  return 2 ** (Math.max(e, -14) - 10);
}

/**
 * The largest float16 value <= s, for a positive scale stored in float16. Rounding scales down (never up) keeps the
 * group maximum on the top code after clamping, as a float32 scale has it. Below float16's smallest subnormal the
 * result is that subnormal; above its max, its max.
 */
export function float16Floor(s: number): number {
  if (!(s > 0)) return s;
  if (s >= FLOAT16_MAX) return FLOAT16_MAX;
  if (s <= F16_MIN_SUB) return F16_MIN_SUB;
  const q = f16Quantum(s);
  return Math.floor(s / q) * q;
}

/** True when v is exactly a finite float16 value. */
export function isFloat16(v: number): boolean {
  if (v === 0) return true;
  const a = Math.abs(v);
  if (!(a <= FLOAT16_MAX)) return false;
  const q = f16Quantum(a);
  return a >= F16_MIN_SUB && Number.isInteger(a / q);
}

/** The IEEE binary16 bits of a value that is exactly a float16 (see isFloat16). */
export function float16Bits(v: number): number {
  if (!isFloat16(v)) throw new RangeError(`${v} is not a float16 value`);
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a === 0) return sign;
  if (a < 2 ** -14) return sign | (a / F16_MIN_SUB);
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  return sign | ((e + 15) << 10) | ((a / 2 ** e - 1) * 1024);
}

/** A float format's scale mapping amax onto the format's max (1 if amax is 0). */
export function floatScale(amax: number, element: FloatName): number {
  const s = f32(amax / FORMATS[element].max);
  return s > 0 && Number.isFinite(s) ? s : 1;
}

/** Parameters for INT/FP formats from the tensor itself (max calibration), per granularity. */
export function maxCalibrate(
  x: Float32Array,
  dims: readonly number[],
  g: Granularity,
  fmt: Extract<QuantFormat, { kind: 'int' | 'float' }>,
): { scale: Float32Array; zeroPoint?: Int32Array } {
  if (fmt.kind === 'float') {
    const amax = groupReduce(x, dims, g, 'absmax');
    return { scale: amax.map((a) => floatScale(a, fmt.element)) };
  }
  const mins = groupReduce(x, dims, g, 'min');
  const maxs = groupReduce(x, dims, g, 'max');
  const scale = new Float32Array(mins.length);
  const zeroPoint = new Int32Array(mins.length);
  for (let i = 0; i < mins.length; i++) {
    const p = intParams(mins[i]!, maxs[i]!, fmt.bits, fmt.symmetric);
    scale[i] = p.scale;
    zeroPoint[i] = p.zeroPoint;
  }
  return fmt.symmetric ? { scale } : { scale, zeroPoint };
}

/** The element format of a float-based format, for callers that draw its grid. */
export function elementFormat(fmt: QuantFormat): MiniFloat | null {
  if (fmt.kind === 'float') return FORMATS[fmt.element];
  if (fmt.kind === 'mx' && fmt.element !== 'int8') return FORMATS[fmt.element];
  if (fmt.kind === 'nvfp4') return FORMATS.e2m1;
  return null;
}



/** The least positive normal float32: the scale of a token of zeros. */
export const TOKEN_MIN_SCALE = 2 ** -126;

/**
 * Dynamic per-token symmetric INT fake quantization (ViDiT-Q): every token (all of x's elements that share their
 * indices off `axis`) gets s = max(absmax over `axis` / qmax, TOKEN_MIN_SCALE) in float32, then codes
 * clamp(round_half_even(x / s), -qmax, qmax) and values code x s. Finite inputs (a token holding NaN or an infinity
 * has no meaningful scale).
 */
export function fakeQuantTokens(x: Float32Array, dims: readonly number[], axis: number, bits: number): Float32Array {
  const ax = axis < 0 ? dims.length + axis : axis;
  const n = dims[ax]!;
  const inner = dims.slice(ax + 1).reduce((a, b) => a * b, 1);
  const outer = dims.slice(0, ax).reduce((a, b) => a * b, 1);
  const qmax = 2 ** (bits - 1) - 1;
  const out = new Float32Array(x.length);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      let amax = 0;
      for (let k = 0; k < n; k++) amax = Math.max(amax, Math.abs(x[(o * n + k) * inner + i]!));
      const s = Math.max(f32(amax / qmax), TOKEN_MIN_SCALE);
      for (let k = 0; k < n; k++) {
        const j = (o * n + k) * inner + i;
        const v = f32(x[j]! / s);
        // Round keeps the sign of a value that rounds to zero (-0.3 -> -0), and so does the product
        const r = roundHalfEven(v);
        const q = Math.min(Math.max(r === 0 && (v < 0 || Object.is(v, -0)) ? -0 : r, -qmax), qmax);
        out[j] = f32(q * s);
      }
    }
  }
  return out;
}

/** Sylvester's Hadamard matrix of order b (a power of two), normalized (orthonormal and symmetric). */
export function hadamard(b: number): Float64Array {
  const h = new Float64Array(b * b);
  const norm = 1 / Math.sqrt(b);
  for (let i = 0; i < b; i++) for (let j = 0; j < b; j++) {
    let bits = i & j;
    let parity = 0;
    while (bits) {
      parity ^= bits & 1;
      bits >>= 1;
    }
    h[i * b + j] = parity ? -norm : norm;
  }
  return h;
}
