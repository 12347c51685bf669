import { describe, expect, it } from 'vitest';
import { hadamard } from '../../../kernels/quant';

describe('hadamard', () => {
  it.each([1, 2, 8, 32, 128])('order %i: orthonormal and symmetric', (n) => {
    const h = hadamard(n);
    let worst = 0;
    let symmetric = true;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let dot = 0;
        for (let k = 0; k < n; k++) dot += h[i * n + k]! * h[j * n + k]!;
        worst = Math.max(worst, Math.abs(dot - (i === j ? 1 : 0)));
        symmetric &&= h[i * n + j] === h[j * n + i];
      }
    }
    expect(worst).toBeLessThan(1e-12);
    expect(symmetric).toBe(true);
    expect(new Set(Array.from(h, Math.abs)).size).toBe(1);
  });
});
