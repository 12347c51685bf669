/** In-graph calibration statistics against the reference (../../../kernels/stats.ts). */
import { describe, expect, it } from 'vitest';
import { gram, histogram, minMax } from '../../../kernels/stats';
import { gramFragment, histogramFragment, minMaxFragment } from '../../../kernels/onnx/stats';
import { normal, rng } from './data';
import { firstBitMismatch, session } from './onnx-model';
import type { Fragment } from '../../../kernels/onnx/graph';

async function run(f: Fragment, x: Float32Array, dims: number[]): Promise<Record<string, { data: ArrayLike<number | bigint>; dims: readonly number[] }>> {
  const s = await session(f);
  try {
    return await s.run({ x: { type: 'float32', data: x, dims } });
  } finally {
    await s.release();
  }
}

function sample(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => Math.fround(normal(r) * 2 ** (r() * 10 - 5)));
}

describe('min / max / absmax', () => {
  const dims = [4, 6, 50];
  const x = sample(4 * 6 * 50, 1);
  x[17] = NaN; // channel (axis 1) 0, and the tensor
  x[300] = -Infinity;

  it('per tensor', async () => {
    const ref = minMax(x, dims);
    const out = await run(minMaxFragment(dims), x, dims);
    expect(out.stats_min!.dims).toEqual([]);
    for (const k of ['min', 'max', 'absmax'] as const) expect(firstBitMismatch(ref[k], out[`stats_${k}`]!.data as Float32Array)).toBe(-1);
    expect(ref.min[0]).toBe(-Infinity); // the NaN is ignored, the -Inf is not
  });

  it.each([0, 1, 2])('per channel, axis %i', async (axis) => {
    const ref = minMax(x, dims, axis);
    const out = await run(minMaxFragment(dims, axis), x, dims);
    expect(out.stats_min!.dims).toEqual([dims[axis]]);
    for (const k of ['min', 'max', 'absmax'] as const) expect(firstBitMismatch(ref[k], out[`stats_${k}`]!.data as Float32Array)).toBe(-1);
  });
});

describe('histogram', () => {
  it('counts per bin equal the reference (edges clamp, NaN dropped), 100,000 values', async () => {
    const dims = [100, 1000];
    const x = sample(100_000, 2);
    x[5] = NaN;
    x[6] = Infinity;
    x[7] = -Infinity;
    x[8] = 1; // exactly hi: last bin
    const spec = { lo: -1, hi: 1, bins: 256 };
    const ref = histogram(x, spec);
    const out = await run(histogramFragment(dims, spec), x, dims);
    const counts = Array.from(out.hist!.data as BigInt64Array, Number);
    expect(counts).toEqual(Array.from(ref));
    expect(counts.reduce((a, b) => a + b, 0)).toBe(100_000 - 1);
  });
});

describe('Gram matrix X^T X', () => {
  it('is exact on small integers (every partial sum is exact in float32)', async () => {
    const dims = [8, 10, 24]; // 80 rows of 24 features
    const r = rng(3);
    const x = Float32Array.from({ length: 8 * 10 * 24 }, () => Math.floor(r() * 17) - 8);
    const ref = gram(x, dims);
    const out = await run(gramFragment(dims), x, dims);
    expect(out.gram!.dims).toEqual([24, 24]);
    expect(firstBitMismatch(ref.data, out.gram!.data as Float32Array)).toBe(-1);
  });

  it('matches the double-precision reference to float32 accuracy, features on axis 1 (NCHW)', async () => {
    const dims = [4, 16, 5, 5];
    const x = sample(4 * 16 * 25, 4);
    const ref = gram(x, dims, 1);
    const out = (await run(gramFragment(dims, 1), x, dims)).gram!.data as Float32Array;
    const scale = Math.max(...Array.from(ref.data, Math.abs));
    for (let i = 0; i < ref.data.length; i++) expect(Math.abs(out[i]! - ref.data[i]!)).toBeLessThan(scale * 1e-5);
  });
});
