import { describe, expect, it } from 'vitest';
import { fromHalfArray, fromHalfBits, toHalfArray, toHalfBits } from '../../../kernels/half.js';

describe('float16 conversions', () => {
  it('decodes the well-known patterns', () => {
    expect(fromHalfBits(0x3c00)).toBe(1);
    expect(fromHalfBits(0xc000)).toBe(-2);
    expect(fromHalfBits(0x7bff)).toBe(65504);
    expect(fromHalfBits(0x0001)).toBe(2 ** -24);
    expect(fromHalfBits(0x0400)).toBe(2 ** -14);
    expect(fromHalfBits(0x7c00)).toBe(Infinity);
    expect(fromHalfBits(0xfc00)).toBe(-Infinity);
    expect(Number.isNaN(fromHalfBits(0x7e00))).toBe(true);
    expect(Object.is(fromHalfBits(0x8000), -0)).toBe(true);
  });

  it('round-trips every finite half exactly', () => {
    for (let h = 0; h < 0x10000; h++) {
      const v = fromHalfBits(h);
      if (Number.isNaN(v)) {
        expect(Number.isNaN(fromHalfBits(toHalfBits(v)))).toBe(true);
        continue;
      }
      expect(toHalfBits(v)).toBe(h);
    }
  });

  it('rounds to the nearest half, ties to even, between every pair of neighbours', () => {
    for (let h = 0; h < 0x7bff; h++) {
      const lo = fromHalfBits(h);
      const hi = fromHalfBits(h + 1);
      const mid = (lo + hi) / 2; // exact in a double, and in a float32 (half mantissas are 11 bits)
      expect(toHalfBits(mid)).toBe(h % 2 === 0 ? h : h + 1);
      expect(toHalfBits(-mid)).toBe((h % 2 === 0 ? h : h + 1) | 0x8000);
      const step = (hi - lo) / 8;
      expect(toHalfBits(mid - step)).toBe(h);
      expect(toHalfBits(mid + step)).toBe(h + 1);
    }
  });

  it('overflows to infinity past the largest half and underflows to signed zero', () => {
    expect(toHalfBits(65519)).toBe(0x7bff); // below the midpoint to 65536
    expect(toHalfBits(65520)).toBe(0x7c00); // the midpoint rounds to even: inf
    expect(toHalfBits(1e9)).toBe(0x7c00);
    expect(toHalfBits(-1e9)).toBe(0xfc00);
    expect(toHalfBits(2 ** -26)).toBe(0); // below half the smallest subnormal
    expect(toHalfBits(-(2 ** -26))).toBe(0x8000);
    expect(toHalfBits(2 ** -25 * 1.5)).toBe(1);
    expect(toHalfBits(Infinity)).toBe(0x7c00);
  });

  it('converts arrays both ways', () => {
    const src = Float32Array.from([0, 1, -1.5, 3.140625, 1e-3]);
    const back = fromHalfArray(toHalfArray(src));
    for (let i = 0; i < src.length; i++) expect(Math.abs(back[i]! - src[i]!)).toBeLessThanOrEqual(Math.abs(src[i]!) * 2 ** -11);
  });
});
