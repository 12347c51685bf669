/**
 * Small floating-point element formats (FP8, FP6, FP4) and the E8M0 scale format: exact encode/decode between
 * float32 values and codes, round to nearest with ties to even, saturating.
 *
 * All arithmetic here is exact: inputs are float32 values held in doubles, and every step (scaling by powers of
 * two, rounding to an integer multiple of the quantum) is exact in double precision.
 */

export type FloatName = 'e4m3fn' | 'e5m2' | 'e3m2' | 'e2m3' | 'e2m1';

/**
 * How a format spends its top codes:
 * - 'fn'   (E4M3FN): no infinities; only S.1111.111 is NaN, so the largest finite mantissa is 110.
 * - 'ieee' (E5M2):   exponent all ones = Inf (mantissa 0) or NaN (otherwise), as IEEE 754.
 * - 'none' (E3M2, E2M3, E2M1): every code is a finite number; there is no Inf and no NaN.
 */
export type Specials = 'fn' | 'ieee' | 'none';

export interface MiniFloat {
  readonly name: FloatName;
  readonly ebits: number;
  readonly mbits: number;
  readonly bias: number;
  readonly specials: Specials;
  /** Total bits including the sign. */
  readonly bits: number;
  /** Exponent of the smallest normal (1 - bias); subnormals share its quantum. */
  readonly emin: number;
  /** Exponent of the largest finite value. */
  readonly emax: number;
  /** Largest finite value. */
  readonly max: number;
  /** Smallest positive (subnormal) value: 2^(emin - mbits). */
  readonly minSubnormal: number;
  /** Code of +NaN, or -1 if the format has no NaN. */
  readonly nanCode: number;
  /** Code of +Inf, or -1 if the format has no infinity. */
  readonly infCode: number;
}

function make(name: FloatName, ebits: number, mbits: number, bias: number, specials: Specials): MiniFloat {
  const emin = 1 - bias;
  const topField = (1 << ebits) - 1;
  // The largest exponent field that holds finite values, and the largest mantissa allowed there.
  const topFinite = specials === 'ieee' ? topField - 1 : topField;
  const topMantissa = specials === 'fn' ? (1 << mbits) - 2 : (1 << mbits) - 1;
  const emax = topFinite - bias;
  const max = 2 ** emax * (1 + topMantissa / 2 ** mbits);
  const signless = ebits + mbits;
  return {
    name,
    ebits,
    mbits,
    bias,
    specials,
    bits: 1 + signless,
    emin,
    emax,
    max,
    minSubnormal: 2 ** (emin - mbits),
    nanCode: specials === 'none' ? -1 : specials === 'fn' ? (1 << signless) - 1 : (topField << mbits) | ((1 << mbits) - 1),
    infCode: specials === 'ieee' ? topField << mbits : -1,
  };
}

/** The element formats: OCP OFP8 (E4M3FN, E5M2) and the OCP MX FP6/FP4 elements. */
export const FORMATS: Readonly<Record<FloatName, MiniFloat>> = {
  e4m3fn: make('e4m3fn', 4, 3, 7, 'fn'),
  e5m2: make('e5m2', 5, 2, 15, 'ieee'),
  e3m2: make('e3m2', 3, 2, 3, 'none'),
  e2m3: make('e2m3', 2, 3, 1, 'none'),
  e2m1: make('e2m1', 2, 1, 1, 'none'),
};

/** Round half to even of a double (exact for any double). */
export function roundHalfEven(t: number): number {
  const f = Math.floor(t);
  const d = t - f; // exact: t and f are within one binade step of each other
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** floor(log2(a)) for a finite a > 0, exact (Math.log2 can be off by one next to powers of two). */
export function floorLog2(a: number): number {
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  return e;
}

/**
 * |v| rounded to the format's grid with ties to even, with the exponent unbounded above (so the result may exceed
 * the format's max; callers saturate). a must be finite and >= 0.
 */
export function roundMagnitude(f: MiniFloat, a: number): number {
  if (a === 0) return 0;
  const e = Math.max(floorLog2(a), f.emin);
  const q = 2 ** (e - f.mbits); // the quantum of a's binade (subnormals share the first binade's)
  return roundHalfEven(a / q) * q;
}

/**
 * The format's value nearest to v (ties to even), saturating: beyond +-max (including +-Inf) gives +-max. NaN gives
 * NaN (for formats without NaN this is the fake-quant convention; codes cannot hold it, see encode). -0 and values
 * that round to zero keep their sign.
 */
export function quantizeValue(f: MiniFloat, v: number): number {
  if (v !== v) return NaN;
  const neg = v < 0 || Object.is(v, -0);
  const r = v === Infinity || v === -Infinity ? f.max : Math.min(roundMagnitude(f, Math.abs(v)), f.max);
  return neg ? -r : r;
}

/** The value of a code (its low f.bits bits). */
export function decode(f: MiniFloat, code: number): number {
  const m = f.mbits;
  const signless = f.ebits + m;
  const sign = (code >> signless) & 1;
  const mag = code & ((1 << signless) - 1);
  const E = mag >> m;
  const M = mag & ((1 << m) - 1);
  let v: number;
  if (f.specials === 'fn' && mag === f.nanCode) v = NaN;
  else if (f.specials === 'ieee' && E === (1 << f.ebits) - 1) v = M === 0 ? Infinity : NaN;
  else if (E === 0) v = M * 2 ** (f.emin - m);
  else v = (2 ** m + M) * 2 ** (E - f.bias - m);
  return sign ? -v : v;
}

/**
 * The code of v: round to nearest, ties to even. With saturate (ONNX's default), values beyond the range and
 * +-Inf give +-max; without it they give Inf (E5M2) or NaN (E4M3FN). NaN gives the NaN code with v's sign bit
 * cleared. Formats without NaN (E3M2, E2M3, E2M1) throw on NaN, and on out-of-range values without saturate.
 */
export function encode(f: MiniFloat, v: number, saturate = true): number {
  const signBit = 1 << (f.ebits + f.mbits);
  if (v !== v) {
    if (f.nanCode < 0) throw new RangeError(`${f.name} has no NaN`);
    return f.nanCode;
  }
  const neg = v < 0 || Object.is(v, -0);
  const s = neg ? signBit : 0;
  const a = Math.abs(v);
  let r = a === Infinity ? Infinity : roundMagnitude(f, a);
  if (r > f.max) {
    if (saturate) r = f.max;
    else if (f.infCode >= 0) return s | f.infCode;
    else if (f.nanCode >= 0) return s | f.nanCode;
    else throw new RangeError(`${v} is beyond ${f.name}'s range`);
  }
  if (r === 0) return s;
  const m = f.mbits;
  if (r < 2 ** f.emin) return s | (r / 2 ** (f.emin - m)); // subnormal: E = 0
  const e = floorLog2(r);
  const M = r / 2 ** (e - m) - 2 ** m;
  return s | ((e + f.bias) << m) | M;
}

/** Every finite value of the format, ascending, without duplicates (-0 is left out: it equals +0). */
export function finiteValues(f: MiniFloat): number[] {
  const out = new Set<number>();
  for (let c = 0; c < 1 << f.bits; c++) {
    const v = decode(f, c);
    if (Number.isFinite(v)) out.add(v === 0 ? 0 : v);
  }
  return [...out].sort((a, b) => a - b);
}

/* ------------------------------------------------------------------------------------------------------------ */
/* E8M0: the MX shared scale. 8 exponent bits, no sign, no mantissa: code e means 2^(e - 127), e = 0..254;       */
/* 0xFF is NaN. There is no zero.                                                                                */

export const E8M0_NAN = 0xff;
export const E8M0_MIN_EXP = -127;
export const E8M0_MAX_EXP = 127;

export function decodeE8M0(code: number): number {
  return code === E8M0_NAN ? NaN : 2 ** (code - 127);
}

/** The code of 2^exp (exp an integer in -127..127), or of NaN. */
export function encodeE8M0(exp: number): number {
  if (exp !== exp) return E8M0_NAN;
  if (!Number.isInteger(exp) || exp < E8M0_MIN_EXP || exp > E8M0_MAX_EXP) throw new RangeError(`2^${exp} is not an E8M0 value`);
  return exp + 127;
}
