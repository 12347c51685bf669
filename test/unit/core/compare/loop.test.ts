import { describe, expect, it } from 'vitest';
import { seedNoise, slerp } from '../../../../src-main/core/compare/loop';
import { gaussian, Rng } from '../../../../src-main/core/pipeline/noise';

const dot = (a: Float64Array, b: Float64Array) => a.reduce((s, v, i) => s + v * b[i]!, 0);
const norm = (a: Float64Array) => Math.sqrt(dot(a, a));
const angle = (a: Float64Array, b: Float64Array) => Math.acos(Math.min(1, Math.max(-1, dot(a, b) / (norm(a) * norm(b)))));

describe('slerp', () => {
  const a = gaussian(1, 784);
  const b = gaussian(2, 784);
  const theta = angle(a, b);

  it('starts at a and ends at b', () => {
    const s0 = slerp(a, b, 0);
    const s1 = slerp(a, b, 1);
    for (let i = 0; i < a.length; i++) {
      expect(s0[i]).toBeCloseTo(a[i]!, 12);
      expect(s1[i]).toBeCloseTo(b[i]!, 12);
    }
  });

  it('moves at constant angular speed between vectors of equal norm', () => {
    const bn = b.map((v) => (v * norm(a)) / norm(b));
    for (const t of [0.125, 0.25, 0.5, 0.9]) {
      const s = slerp(a, bn, t);
      expect(angle(a, s)).toBeCloseTo(t * theta, 9);
      expect(angle(s, bn)).toBeCloseTo((1 - t) * theta, 9);
      expect(norm(s)).toBeCloseTo(norm(a), 9);
    }
  });

  it('keeps the norm where linear interpolation would shrink it', () => {
    const u = Float64Array.from([3, 0, 0]);
    const v = Float64Array.from([0, 3, 0]);
    const mid = slerp(u, v, 0.5);
    expect(norm(mid)).toBeCloseTo(3, 12);
    expect(mid[0]).toBeCloseTo(3 / Math.SQRT2, 12);
    expect(mid[1]).toBeCloseTo(3 / Math.SQRT2, 12);
    expect(mid[2]).toBe(0);
  });

  it('falls back to linear interpolation for parallel vectors', () => {
    const u = Float64Array.from([1, 2]);
    const v = Float64Array.from([2, 4]);
    expect(Array.from(slerp(u, v, 0.5))).toEqual([1.5, 3]);
  });

  it('refuses vectors of different lengths', () => {
    expect(() => slerp(new Float64Array(2), new Float64Array(3), 0.5)).toThrow(/same length/);
  });
});

describe('seedNoise', () => {
  it('is the seed\'s initial noise, and the generator continues where sample() continues', () => {
    const { z, rng } = seedNoise(7, 10);
    expect(Array.from(z)).toEqual(Array.from(gaussian(7, 10)));
    const ref = new Rng(7);
    ref.normal(new Float64Array(10));
    expect(Array.from(rng.normal(new Float64Array(4)))).toEqual(Array.from(ref.normal(new Float64Array(4))));
  });
});
