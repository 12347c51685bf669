import { describe, expect, it } from 'vitest';
import { fakeQuantFloat, fakeQuantInt, fakeQuantMx, fakeQuantNvfp4, maxCalibrate, nvfp4TensorScale } from '../../../../kernels/quant';
import { recoverFloat, recoverInt, recoverMx, recoverNvfp4 } from '../../../../src-main/core/export/recover';

function data(n: number, seed = 1): Float32Array {
  let s = seed;
  const r = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296);
  return Float32Array.from({ length: n }, () => Math.fround((r() - 0.5) * 2 * (r() < 0.05 ? 4 : 1)));
}

describe('recovering codes from fake-quantized weights', () => {
  const dims = [8, 64];
  const x = data(8 * 64);
  it('INT8 / INT4 per channel, per tensor and in groups, with clipped (MSE-like) scales', () => {
    for (const bits of [8, 4]) {
      for (const g of [{ kind: 'channel' as const, axis: 0 }, { kind: 'tensor' as const }, { kind: 'block' as const, axis: 1, size: 16 }]) {
        const base = maxCalibrate(x, dims, g, { kind: 'int', bits, symmetric: true });
        for (const a of [1, 0.8]) {
          const v = fakeQuantInt(x, dims, g, { bits, symmetric: true }, base.scale.map((s) => Math.fround(s * a)));
          const r = recoverInt(v, dims, g, bits);
          expect(r.mismatches).toBe(0);
          if (r.kind !== 'int') throw new Error('kind');
          const back = fakeQuantInt(v, dims, g, { bits, symmetric: true }, r.scale);
          expect(Array.from(back)).toEqual(Array.from(v));
        }
      }
    }
  });
  it('FP8 E4M3 per channel', () => {
    const g = { kind: 'channel' as const, axis: 0 };
    const base = maxCalibrate(x, dims, g, { kind: 'float', element: 'e4m3fn' });
    const v = fakeQuantFloat(x, dims, g, 'e4m3fn', base.scale);
    expect(recoverFloat(v, dims, g, 'e4m3fn').mismatches).toBe(0);
  });
  it('MX and NVFP4 blocks re-encode exactly', () => {
    expect(recoverMx(fakeQuantMx(x, dims, 1, 'e2m1').y, dims, 1, 'e2m1').mismatches).toBe(0);
    const amax = x.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
    expect(recoverNvfp4(fakeQuantNvfp4(x, dims, 1, nvfp4TensorScale(amax)).y, dims, 1).mismatches).toBe(0);
  });
});
