/**
 * Storage: packing of sub-byte codes, the encoded form of MX and NVFP4 tensors (element codes + scale codes), and
 * exact bits per parameter for every format and granularity.
 *
 * Packing is a little-endian bit stream: code i occupies bits [i*b, i*b + b) of the stream, least significant bit
 * first, and stream bit j is bit (j % 8) of byte floor(j / 8). For b = 4 this is ONNX's int4/uint4/float4e2m1
 * layout (element 2i in the low nibble of byte i); for b = 6, four codes fill three bytes.
 */
import { numel, scaleDims, scaleIndex, type Granularity } from './layout.js';
import { FORMATS, decode, decodeE8M0, encode, encodeE8M0 } from './minifloat.js';
import {
  MXINT8_MAX_CODE,
  MXINT8_STEP,
  MX_BLOCK,
  NVFP4_BLOCK,
  blockAmax,
  mxElementValue,
  mxScaleExponent,
  nvfp4BlockScale,
  type MxElement,
  type QuantFormat,
} from './quant.js';

const f32 = Math.fround;

/* ------------------------------------------------------------------------------------------------ packing -- */

/** Packs codes of `bits` bits each (only their low bits are used). */
export function packBits(codes: ArrayLike<number>, bits: number): Uint8Array {
  if (!Number.isInteger(bits) || bits < 1 || bits > 8) throw new RangeError(`cannot pack ${bits}-bit codes`);
  const out = new Uint8Array(Math.ceil((codes.length * bits) / 8));
  const mask = (1 << bits) - 1;
  let bit = 0;
  for (let i = 0; i < codes.length; i++, bit += bits) {
    const v = (codes[i]! & mask) << (bit & 7); // at most 15 bits wide
    out[bit >> 3]! |= v & 0xff;
    if (v > 0xff) out[(bit >> 3) + 1]! |= v >> 8;
  }
  return out;
}

/** Unpacks `count` codes of `bits` bits (unsigned). */
export function unpackBits(bytes: Uint8Array, bits: number, count: number): Uint8Array {
  if (!Number.isInteger(bits) || bits < 1 || bits > 8) throw new RangeError(`cannot unpack ${bits}-bit codes`);
  if (bytes.length * 8 < count * bits) throw new RangeError(`${bytes.length} bytes hold fewer than ${count} ${bits}-bit codes`);
  const out = new Uint8Array(count);
  const mask = (1 << bits) - 1;
  let bit = 0;
  for (let i = 0; i < count; i++, bit += bits) {
    const lo = bytes[bit >> 3]!;
    const hi = (bit & 7) + bits > 8 ? bytes[(bit >> 3) + 1]! : 0;
    out[i] = ((lo | (hi << 8)) >> (bit & 7)) & mask;
  }
  return out;
}

export const pack4 = (codes: ArrayLike<number>): Uint8Array => packBits(codes, 4);
export const unpack4 = (bytes: Uint8Array, count: number): Uint8Array => unpackBits(bytes, 4, count);
export const pack6 = (codes: ArrayLike<number>): Uint8Array => packBits(codes, 6);
export const unpack6 = (bytes: Uint8Array, count: number): Uint8Array => unpackBits(bytes, 6, count);

/** A signed integer as a `bits`-bit two's complement code, and back. */
export const toTwosComplement = (v: number, bits: number): number => v & ((1 << bits) - 1);
export const fromTwosComplement = (c: number, bits: number): number => (c & (1 << (bits - 1)) ? c - (1 << bits) : c);

/* ------------------------------------------------------------------------------------------ MX / NVFP4 -- */

export interface MxEncoded {
  element: MxElement;
  dims: number[];
  axis: number;
  /** One E8M0 code per block (0xFF: the block is NaN), in the blocked-scale layout. */
  scales: Uint8Array;
  /** One element code per value (MXINT8: two's complement byte), unpacked. */
  codes: Uint8Array;
}

/** Encodes a tensor as MX (the same choices as fakeQuantMx; NaN blocks get scale 0xFF and element codes 0). */
export function encodeMx(x: Float32Array, dims: readonly number[], axis: number, element: MxElement): MxEncoded {
  const amax = blockAmax(x, dims, axis, MX_BLOCK);
  const exps = Array.from(amax, (a) => mxScaleExponent(a, element));
  const idx = scaleIndex(dims, { kind: 'block', axis, size: MX_BLOCK });
  const codes = new Uint8Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const e = exps[idx[i]!]!;
    if (e !== e) continue;
    const v = mxElementValue(element, f32(x[i]! / 2 ** e));
    codes[i] = element === 'int8' ? toTwosComplement(Math.round(v / MXINT8_STEP), 8) : encode(FORMATS[element], v);
  }
  return { element, dims: [...dims], axis, scales: Uint8Array.from(exps, (e) => encodeE8M0(e)), codes };
}

export function decodeMx(m: MxEncoded): Float32Array {
  const idx = scaleIndex(m.dims, { kind: 'block', axis: m.axis, size: MX_BLOCK });
  const out = new Float32Array(m.codes.length);
  for (let i = 0; i < out.length; i++) {
    const X = decodeE8M0(m.scales[idx[i]!]!);
    const c = m.codes[i]!;
    const v = m.element === 'int8' ? fromTwosComplement(c, 8) * MXINT8_STEP : decode(FORMATS[m.element], c);
    out[i] = f32(v * X);
  }
  return out;
}

export interface Nvfp4Encoded {
  dims: number[];
  axis: number;
  /** The float32 per-tensor scale. */
  tensorScale: number;
  /** One E4M3FN code per 16-block (0x7F: the block is NaN). */
  scales: Uint8Array;
  /** One E2M1 code per value, unpacked. */
  codes: Uint8Array;
}

export function encodeNvfp4(x: Float32Array, dims: readonly number[], axis: number, tensorScale: number): Nvfp4Encoded {
  const st = f32(tensorScale);
  const amax = blockAmax(x, dims, axis, NVFP4_BLOCK);
  const sb = Array.from(amax, (a) => nvfp4BlockScale(a, st));
  const idx = scaleIndex(dims, { kind: 'block', axis, size: NVFP4_BLOCK });
  const codes = new Uint8Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const s = sb[idx[i]!]!;
    if (s !== s) continue;
    const S = f32(s * st);
    codes[i] = encode(FORMATS.e2m1, f32(x[i]! / (S === 0 ? 1 : S)));
  }
  return { dims: [...dims], axis, tensorScale: st, scales: Uint8Array.from(sb, (s) => encode(FORMATS.e4m3fn, s)), codes };
}

export function decodeNvfp4(m: Nvfp4Encoded): Float32Array {
  const idx = scaleIndex(m.dims, { kind: 'block', axis: m.axis, size: NVFP4_BLOCK });
  const out = new Float32Array(m.codes.length);
  for (let i = 0; i < out.length; i++) {
    const S = f32(decode(FORMATS.e4m3fn, m.scales[idx[i]!]!) * m.tensorScale);
    out[i] = f32(decode(FORMATS.e2m1, m.codes[i]!) * S);
  }
  return out;
}

/* ------------------------------------------------------------------------------------ bits per parameter -- */

export interface StorageCost {
  /** Element bits in total. */
  elementBits: number;
  /** Scale and zero-point bits in total. */
  metadataBits: number;
  totalBits: number;
  /** totalBits / number of parameters. */
  bitsPerParameter: number;
}

export function elementBits(fmt: QuantFormat): number {
  switch (fmt.kind) {
    case 'int':
      return fmt.bits;
    case 'float':
      return FORMATS[fmt.element].bits;
    case 'mx':
      return fmt.element === 'int8' ? 8 : FORMATS[fmt.element].bits;
    case 'nvfp4':
      return 4;
  }
}

/**
 * Exact storage of a tensor of `dims`: elements at their width; INT/FP scales float32 (or float16: scaleBits) per group and INT
 * zero points at the element width (asymmetric only); MX one 8-bit E8M0 per 32 elements; NVFP4 one 8-bit E4M3 per
 * 16 elements plus one float32 per tensor. Block counts follow ./layout.ts (the blocked axis must divide).
 */
export function storageCost(fmt: QuantFormat, dims: readonly number[], g: Granularity = { kind: 'tensor' }, axis = -1, scaleBits: 16 | 32 = 32): StorageCost {
  const n = numel(dims);
  const eb = elementBits(fmt) * n;
  let meta: number;
  if (fmt.kind === 'int' || fmt.kind === 'float') {
    const groups = numel(scaleDims(dims, g));
    meta = groups * (scaleBits + (fmt.kind === 'int' && !fmt.symmetric ? fmt.bits : 0));
  } else if (fmt.kind === 'mx') {
    meta = numel(scaleDims(dims, { kind: 'block', axis, size: MX_BLOCK })) * 8;
  } else {
    meta = numel(scaleDims(dims, { kind: 'block', axis, size: NVFP4_BLOCK })) * 8 + 32;
  }
  return { elementBits: eb, metadataBits: meta, totalBits: eb + meta, bitsPerParameter: (eb + meta) / n };
}

/** The MXINT8 element value of a code (for grids), k / 64. */
export const mxint8Value = (k: number): number => Math.max(-MXINT8_MAX_CODE, Math.min(MXINT8_MAX_CODE, k)) * MXINT8_STEP;
