import { describe, expect, it } from 'vitest';
import { gaussian, Rng } from '../../../../src-main/core/pipeline/noise';

describe('seeded Gaussian noise', () => {
  it('is the same for the same seed and different across seeds', () => {
    expect(gaussian(7, 1000)).toEqual(gaussian(7, 1000));
    expect(gaussian(7, 1000)).not.toEqual(gaussian(8, 1000));
  });

  it('is a prefix-stable stream (batch size does not change an image)', () => {
    expect(gaussian(3, 100)).toEqual(gaussian(3, 101).subarray(0, 100));
  });

  it('has mean 0, variance 1, and normal tails', () => {
    const z = gaussian(42, 200_000);
    let m = 0;
    for (const v of z) m += v;
    m /= z.length;
    let v2 = 0;
    let tail = 0;
    for (const v of z) {
      v2 += (v - m) ** 2;
      if (Math.abs(v) > 1.959964) tail++;
    }
    v2 /= z.length;
    expect(Math.abs(m)).toBeLessThan(0.01); // 4.5 sigma of the sample mean
    expect(Math.abs(v2 - 1)).toBeLessThan(0.015);
    expect(tail / z.length).toBeGreaterThan(0.046);
    expect(tail / z.length).toBeLessThan(0.054);
  });

  it('uniforms stay inside (0, 1)', () => {
    const r = new Rng(0);
    for (let i = 0; i < 10_000; i++) {
      const u = r.uniform();
      expect(u > 0 && u < 1).toBe(true);
    }
  });

  it('rejects seeds that are not non-negative integers', () => {
    expect(() => new Rng(-1)).toThrow(RangeError);
    expect(() => new Rng(1.5)).toThrow(RangeError);
  });
});
