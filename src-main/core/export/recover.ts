/**
 * Recovering the real low-bit form of a fake-quantized weight: the variant holds each quantized weight as float32
 * values on its format's grid ((q - zp) * s, Q(x / s) * s, MX/NVFP4 blocks). Export needs the codes and the scales.
 * They are found from the values themselves (no access to the FP weights is needed):
 *
 * - INT (symmetric) and FP: every group's largest magnitude is the format's largest code times the group scale
 *   (min-max scales map the group maximum onto it; MSE clipping saturates it), so s = max / qmax up to a float32
 *   ulp; the candidates around it are tried until q * s reproduces every value bit for bit.
 * - MX: re-encoding an MX-quantized tensor is the identity (the block maximum keeps its binade), so encodeMx of the
 *   values gives the codes.
 * - NVFP4: the block holding the tensor maximum has the E4M3 scale 448 and the element 6, which fixes the float32
 *   per-tensor scale; each block is then re-encoded.
 *
 * Every recovery is checked by decoding: `mismatches` counts values that did not come back bit for bit (0 in
 * practice; the count is reported in the export manifest).
 */
import { numel, scaleDims, scaleIndex, type Granularity } from '../../../kernels/layout.js';
import { FORMATS, decode, encode, type FloatName } from '../../../kernels/minifloat.js';
import { MX_BLOCK, NVFP4_BLOCK, intRange, type MxElement, type QuantFormat } from '../../../kernels/quant.js';
import { decodeMx, decodeNvfp4, encodeMx, encodeNvfp4 } from '../../../kernels/storage.js';
import { toRows } from '../quant/weights.js';

const f32 = Math.fround;

/** One weight tensor (or one input-channel range of it) in real low-bit form. */
export type Recovered =
  | {
      kind: 'int';
      bits: number;
      dims: number[];
      g: Granularity;
      /** Signed codes, row-major like the weight. */
      codes: Int8Array;
      scale: Float32Array;
      mismatches: number;
    }
  | { kind: 'float'; element: FloatName; dims: number[]; g: Granularity; codes: Uint8Array; scale: Float32Array; mismatches: number }
  | {
      kind: 'mx' | 'nvfp4';
      element: MxElement | 'e2m1';
      /** The weight's dims and the input axis the blocks run along. */
      dims: number[];
      inAxis: number;
      /** Rows [R, Kp]: the input axis moved last, padded with zeros to whole blocks. */
      R: number;
      K: number;
      Kp: number;
      codes: Uint8Array;
      /** E8M0 (MX) or E4M3FN (NVFP4) codes, one per block, [R, Kp / block]. */
      scaleCodes: Uint8Array;
      tensorScale: number;
      mismatches: number;
    };

/** The granularity a manifest label names (see quant/weights.ts), for a weight of `dims` with these axes. */
export function parseGranularity(label: string, axes: { out: number; in: number }): Granularity | null {
  if (label === 'per tensor') return { kind: 'tensor' };
  if (label.startsWith('per channel')) return { kind: 'channel', axis: axes.out };
  const m = /^groups of (\d+) along axis (\d+)$/.exec(label);
  if (m) return { kind: 'block', axis: Number(m[2]), size: Number(m[1]) };
  return null;
}

/** Input-channel split point of a split-shortcut weight label, and the inner label of each half. */
export function parseSplit(label: string): { at: number; inner: string } | null {
  const m = /^split at input channel (\d+), each half (.+)$/.exec(label);
  return m ? { at: Number(m[1]), inner: m[2]! } : null;
}

function bitsOf(x: number): number {
  const f = new Float32Array([x]);
  return new Int32Array(f.buffer)[0]!;
}

function fromBits(b: number): number {
  const i = new Int32Array([b]);
  return new Float32Array(i.buffer)[0]!;
}

/** Scale candidates around m / top: the float32 nearest, then up to 4 ulps either side. */
function candidates(m: number, top: number): number[] {
  const s0 = f32(m / top);
  const b = bitsOf(s0);
  const out = [s0];
  for (let d = 1; d <= 4; d++) out.push(fromBits(b + d), fromBits(b - d));
  return out.filter((s) => s > 0 && Number.isFinite(s));
}

/**
 * Element indices of every scale group (ascending; views into one flat index array, as a CSR layout: no per-element
 * JS arrays, which cost gigabytes and minutes on a 0.2B-parameter unet), and each group's max |v|.
 */
function groupMembers(v: Float32Array, dims: number[], g: Granularity): { members: Uint32Array[]; amax: Float64Array } {
  const idx = scaleIndex(dims, g);
  const n = numel(scaleDims(dims, g));
  const start = new Uint32Array(n + 1);
  const amax = new Float64Array(n);
  for (let i = 0; i < v.length; i++) {
    const j = idx[i]!;
    start[j + 1]!++;
    const a = Math.abs(v[i]!);
    if (a > amax[j]!) amax[j] = a;
  }
  for (let j = 0; j < n; j++) start[j + 1]! += start[j]!;
  const flat = new Uint32Array(v.length);
  const next = start.slice(0, n);
  for (let i = 0; i < v.length; i++) flat[next[idx[i]!]!++] = i;
  const members = Array.from({ length: n }, (_, j) => flat.subarray(start[j]!, start[j + 1]!));
  return { members, amax };
}

/** Symmetric INT codes and scales of fake-quantized values. */
export function recoverInt(v: Float32Array, dims: number[], g: Granularity, bits: number): Recovered {
  const { qmin, qmax } = intRange(bits, true);
  const { members, amax } = groupMembers(v, dims, g);
  const n = members.length;
  const scale = new Float32Array(n);
  const codes = new Int8Array(v.length);
  let mismatches = 0;
  for (let j = 0; j < n; j++) {
    const mem = members[j]!;
    const m = amax[j]!;
    if (m === 0) {
      scale[j] = 1;
      continue;
    }
    const code = (s: number, i: number) => Math.min(qmax, Math.max(qmin, Math.round(v[i]! / s)));
    const cands = [...candidates(m, qmax), ...candidates(m, -qmin)];
    let best = cands[0]!;
    let bestBad = Infinity;
    for (const s of cands) {
      let bad = 0;
      for (const i of mem) if (f32(code(s, i) * s) !== v[i]) bad++;
      if (bad < bestBad) {
        bestBad = bad;
        best = s;
      }
      if (bad === 0) break;
    }
    scale[j] = best;
    for (const i of mem) codes[i] = code(best, i);
    mismatches += bestBad;
  }
  return { kind: 'int', bits, dims, g, codes, scale, mismatches };
}

/** FP element codes (FP8/FP6/FP4 with a float32 scale per group) of fake-quantized values. */
export function recoverFloat(v: Float32Array, dims: number[], g: Granularity, element: FloatName): Recovered {
  const f = FORMATS[element];
  const { members, amax } = groupMembers(v, dims, g);
  const n = members.length;
  const scale = new Float32Array(n);
  const codes = new Uint8Array(v.length);
  let mismatches = 0;
  for (let j = 0; j < n; j++) {
    const mem = members[j]!;
    const m = amax[j]!;
    if (m === 0) {
      scale[j] = 1;
      for (const i of mem) codes[i] = encode(f, v[i]!);
      continue;
    }
    const cands = candidates(m, f.max);
    let best = cands[0]!;
    let bestBad = Infinity;
    for (const s of cands) {
      let bad = 0;
      for (const i of mem) if (f32(decode(f, encode(f, f32(v[i]! / s))) * s) !== v[i]) bad++;
      if (bad < bestBad) {
        bestBad = bad;
        best = s;
      }
      if (bad === 0) break;
    }
    scale[j] = best;
    for (const i of mem) codes[i] = encode(f, f32(v[i]! / best));
    mismatches += bestBad;
  }
  return { kind: 'float', element, dims, g, codes, scale, mismatches };
}

function padRows(rows: Float32Array, R: number, K: number, B: number): { padded: Float32Array; Kp: number } {
  const Kp = Math.ceil(K / B) * B;
  const padded = new Float32Array(R * Kp);
  for (let r = 0; r < R; r++) padded.set(rows.subarray(r * K, (r + 1) * K), r * Kp);
  return { padded, Kp };
}

function countMismatch(a: Float32Array, b: Float32Array): number {
  let bad = 0;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i]) && !(a[i] === 0 && b[i] === 0)) bad++;
  return bad;
}

export function recoverMx(v: Float32Array, dims: number[], inAxis: number, element: MxElement): Recovered {
  const { rows, R, K } = toRows(v, dims, inAxis);
  const { padded, Kp } = padRows(rows, R, K, MX_BLOCK);
  const enc = encodeMx(padded, [R, Kp], 1, element);
  const mismatches = countMismatch(decodeMx(enc), padded);
  return { kind: 'mx', element, dims, inAxis, R, K, Kp, codes: enc.codes, scaleCodes: enc.scales, tensorScale: 1, mismatches };
}

export function recoverNvfp4(v: Float32Array, dims: number[], inAxis: number): Recovered {
  const { rows, R, K } = toRows(v, dims, inAxis);
  const { padded, Kp } = padRows(rows, R, K, NVFP4_BLOCK);
  let m = 0;
  for (const x of padded) m = Math.max(m, Math.abs(x));
  let best: { st: number; bad: number; enc: ReturnType<typeof encodeNvfp4> } | null = null;
  for (const st of m > 0 ? candidates(m, 448 * 6) : [1]) {
    const enc = encodeNvfp4(padded, [R, Kp], 1, st);
    const bad = countMismatch(decodeNvfp4(enc), padded);
    if (!best || bad < best.bad) best = { st, bad, enc };
    if (bad === 0) break;
  }
  const b = best!;
  return { kind: 'nvfp4', element: 'e2m1', dims, inAxis, R, K, Kp, codes: b.enc.codes, scaleCodes: b.enc.scales, tensorScale: b.enc.tensorScale, mismatches: b.bad };
}

/** Dispatches on the recipe's weight format; null when the format has no exporter (asymmetric INT weights). */
export function recoverWeight(v: Float32Array, dims: number[], fmt: QuantFormat, g: Granularity | null, inAxis: number): Recovered | null {
  switch (fmt.kind) {
    case 'int':
      return fmt.symmetric && g ? recoverInt(v, dims, g, fmt.bits) : null;
    case 'float':
      return g ? recoverFloat(v, dims, g, fmt.element) : null;
    case 'mx':
      return recoverMx(v, dims, inAxis, fmt.element);
    case 'nvfp4':
      return recoverNvfp4(v, dims, inAxis);
  }
}

/** Elements lo..hi-1 along `axis`. */
export function sliceAxis<T extends Float32Array | Int8Array>(w: T, dims: number[], axis: number, lo: number, hi: number): { data: T; dims: number[] } {
  const outer = numel(dims.slice(0, axis));
  const inner = numel(dims.slice(axis + 1));
  const K = dims[axis]!;
  const k = hi - lo;
  const data = new (w.constructor as new (n: number) => T)(outer * k * inner);
  for (let o = 0; o < outer; o++) data.set(w.subarray((o * K + lo) * inner, (o * K + hi) * inner) as never, o * k * inner);
  const nd = [...dims];
  nd[axis] = k;
  return { data, dims: nd };
}

/** Storage bits of a recovered weight as exported (codes at their packed width, scales as stored). */
export function storedBits(r: Recovered): number {
  const n = numel(r.dims);
  switch (r.kind) {
    case 'int':
      return n * (r.bits <= 4 ? 4 : 8) + r.scale.length * 32;
    case 'float':
      return n * (FORMATS[r.element].bits <= 4 ? 4 : 8) + r.scale.length * 32;
    default: {
      const eb = r.element === 'int8' || (r.element !== 'e2m1' && FORMATS[r.element as FloatName].bits > 4) ? 8 : 4;
      return r.R * r.Kp * eb + r.scaleCodes.length * 8 + (r.kind === 'nvfp4' ? 32 : 0);
    }
  }
}
