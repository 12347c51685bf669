/** Element formats against the values their specs publish (OCP OFP8, OCP MX v1.0 FP6/FP4, E8M0). */
import { describe, expect, it } from 'vitest';
import {
  FORMATS,
  decode,
  decodeE8M0,
  encode,
  encodeE8M0,
  finiteValues,
  quantizeValue,
  type FloatName,
} from '../../../kernels/minifloat';

const NAMES = Object.keys(FORMATS) as FloatName[];

describe('value tables from the specs', () => {
  it('E2M1 (FP4) is +-{0, 0.5, 1, 1.5, 2, 3, 4, 6}', () => {
    const pos = [0, 0.5, 1, 1.5, 2, 3, 4, 6];
    expect(finiteValues(FORMATS.e2m1)).toEqual([...pos.slice(1).reverse().map((v) => -v), ...pos]);
    // codes 0..7 are the positives in order, 8..15 their negatives (sign bit 3)
    for (let c = 0; c < 8; c++) {
      expect(decode(FORMATS.e2m1, c)).toBe(pos[c]);
      expect(decode(FORMATS.e2m1, c | 8)).toBe(-pos[c]!);
    }
    expect(Object.is(decode(FORMATS.e2m1, 8), -0)).toBe(true);
  });

  it('E4M3FN: max 448, min subnormal 2^-9, min normal 2^-6, NaN only at S.1111.111, no Inf', () => {
    const f = FORMATS.e4m3fn;
    expect(f.max).toBe(448);
    expect(decode(f, 0x7e)).toBe(448);
    expect(decode(f, 0x38)).toBe(1);
    expect(decode(f, 0x01)).toBe(2 ** -9);
    expect(decode(f, 0x08)).toBe(2 ** -6);
    expect(decode(f, 0x7f)).toBeNaN();
    expect(decode(f, 0xff)).toBeNaN();
    expect(decode(f, 0x78)).toBe(256); // exponent all ones is still a number in FN
    expect(f.infCode).toBe(-1);
    // 256 codes - 2 NaNs - 1 duplicate zero
    expect(finiteValues(f)).toHaveLength(253);
  });

  it('E5M2: max 57344, min subnormal 2^-16, Inf at S.11111.00, NaN at S.11111.{01,10,11}', () => {
    const f = FORMATS.e5m2;
    expect(f.max).toBe(57344);
    expect(decode(f, 0x7b)).toBe(57344);
    expect(decode(f, 0x3c)).toBe(1);
    expect(decode(f, 0x01)).toBe(2 ** -16);
    expect(decode(f, 0x04)).toBe(2 ** -14);
    expect(decode(f, 0x7c)).toBe(Infinity);
    expect(decode(f, 0xfc)).toBe(-Infinity);
    for (const c of [0x7d, 0x7e, 0x7f, 0xfd, 0xfe, 0xff]) expect(decode(f, c)).toBeNaN();
  });

  it('E3M2 (FP6): bias 3, max 28, min subnormal 0.0625, all 64 codes finite', () => {
    const f = FORMATS.e3m2;
    expect(f.max).toBe(28);
    expect(decode(f, 0x1f)).toBe(28);
    expect(decode(f, 0x01)).toBe(0.0625);
    expect(decode(f, 0x04)).toBe(0.25); // min normal 2^-2
    expect(decode(f, 0x0c)).toBe(1);
    expect(finiteValues(f)).toHaveLength(63);
  });

  it('E2M3 (FP6): bias 1, max 7.5, min subnormal 0.125, all 64 codes finite', () => {
    const f = FORMATS.e2m3;
    expect(f.max).toBe(7.5);
    expect(decode(f, 0x1f)).toBe(7.5);
    expect(decode(f, 0x01)).toBe(0.125);
    expect(decode(f, 0x08)).toBe(1);
    // positive grid: 0..0.875 and 1..1.875 in steps of 1/8, 2..3.75 in 1/4, 4..7.5 in 1/2
    const pos = [
      ...Array.from({ length: 16 }, (_, i) => i / 8),
      ...Array.from({ length: 8 }, (_, i) => 2 + i / 4),
      ...Array.from({ length: 8 }, (_, i) => 4 + i / 2),
    ];
    expect(finiteValues(f).filter((v) => v >= 0)).toEqual(pos);
  });

  it('E8M0: 2^(e-127) for e = 0..254, 0xFF is NaN', () => {
    expect(decodeE8M0(127)).toBe(1);
    expect(decodeE8M0(0)).toBe(2 ** -127);
    expect(decodeE8M0(254)).toBe(2 ** 127);
    expect(decodeE8M0(0xff)).toBeNaN();
    for (let c = 0; c < 255; c++) expect(encodeE8M0(Math.log2(decodeE8M0(c)))).toBe(c);
    expect(encodeE8M0(NaN)).toBe(0xff);
    expect(() => encodeE8M0(128)).toThrow(RangeError);
  });
});

describe('every code round-trips', () => {
  it.each(NAMES)('%s: encode(decode(c)) == c for every non-NaN code; NaN codes decode to NaN', (name) => {
    const f = FORMATS[name];
    let checked = 0;
    for (let c = 0; c < 1 << f.bits; c++) {
      const v = decode(f, c);
      if (Number.isNaN(v)) {
        expect(Number.isNaN(decode(f, encode(f, v)))).toBe(true);
        continue;
      }
      expect(encode(f, v, false)).toBe(c);
      if (Number.isFinite(v)) {
        expect(encode(f, v)).toBe(c);
        expect(Object.is(quantizeValue(f, v), v)).toBe(true);
      }
      checked++;
    }
    expect(checked).toBe((1 << f.bits) - (f.specials === 'fn' ? 2 : f.specials === 'ieee' ? 6 : 0));
  });
});

describe('round to nearest, ties to even, saturating', () => {
  it('E2M1 ties go to the even mantissa; beyond 6 saturates; the sign of zero survives', () => {
    const q = (v: number): number => quantizeValue(FORMATS.e2m1, v);
    expect([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5].map(q)).toEqual([0, 1, 1, 2, 2, 4, 4]);
    expect([0.26, 0.74, 1.3, 2.6, 5.01].map(q)).toEqual([0.5, 0.5, 1.5, 3, 6]);
    expect([6.5, 7, 1e30, Infinity].map(q)).toEqual([6, 6, 6, 6]);
    expect(q(-Infinity)).toBe(-6);
    expect(Object.is(q(-0.25), -0)).toBe(true);
    expect(Object.is(q(-0), -0)).toBe(true);
    expect(q(NaN)).toBeNaN();
    expect(() => encode(FORMATS.e2m1, NaN)).toThrow(RangeError);
  });

  it('E4M3FN: 464 ties down to 448, beyond saturates (or is NaN without saturation); subnormal ties', () => {
    const f = FORMATS.e4m3fn;
    expect(quantizeValue(f, 464)).toBe(448); // 448 = 1.110b x 2^8 is even, 480 = 1.111b x 2^8 is odd
    expect(quantizeValue(f, 465)).toBe(448); // 480 is not a value: saturates
    expect(encode(f, 465, false)).toBe(0x7f);
    expect(encode(f, 464, false)).toBe(0x7e);
    expect(encode(f, Infinity)).toBe(0x7e);
    expect(encode(f, -Infinity)).toBe(0xfe);
    expect(quantizeValue(f, 2 ** -10)).toBe(0); // tie between 0 and 2^-9: 0 is even
    expect(quantizeValue(f, 3 * 2 ** -10)).toBe(2 ** -8); // tie between 1 and 2 times 2^-9: 2 is even
    expect(quantizeValue(f, 17)).toBe(16); // 16 and 18: 16 = 1.000b x 2^4 is even
    expect(quantizeValue(f, 19)).toBe(20);
  });

  it('E5M2: 61440 ties up to 65536, which is beyond max: saturates, or is Inf without saturation', () => {
    const f = FORMATS.e5m2;
    expect(quantizeValue(f, 61440)).toBe(57344);
    expect(encode(f, 61440, false)).toBe(0x7c);
    expect(encode(f, 61439, false)).toBe(0x7b);
    expect(encode(f, -Infinity, false)).toBe(0xfc);
    expect(encode(f, Infinity)).toBe(0x7b);
    expect(quantizeValue(f, 50000)).toBe(49152);
  });
});
