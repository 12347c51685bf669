/**
 * The reference quantizers against the ONNX operator examples (onnx/backend/test/case/node/quantizelinear.py and
 * dequantizelinear.py; expected values are upstream's) and against the OCP MX scale rule.
 */
import { describe, expect, it } from 'vitest';
import { FORMATS, decode, encode, quantizeValue } from '../../../kernels/minifloat';
import {
  FLOAT16_MAX,
  float16Bits,
  float16Floor,
  isFloat16,
  blockAmax,
  dequantizeInt,
  fakeQuantFloat,
  fakeQuantInt,
  fakeQuantMx,
  fakeQuantNvfp4,
  intParams,
  intRange,
  mxElementValue,
  mxScaleExponent,
  nvfp4TensorScale,
  quantizeInt,
} from '../../../kernels/quant';
import { scaleIndex } from '../../../kernels/layout';

const f32 = (a: number[]): Float32Array => Float32Array.from(a);
const axis0 = { kind: 'channel', axis: 0 } as const;
const subByteX = [0.0, 2.5, 4.8, 8.6, -30, -20, 6, 9, 12, 15, 16, 40];

describe('ONNX QuantizeLinear / DequantizeLinear published examples', () => {
  it('QuantizeLinear e4m3fn: [0, 1, 2, 100000, 200] / 2 -> [0, 0.5, 1, 448, 96]', () => {
    const x = f32([0, 1, 2, 100000, 200]);
    const codes = Array.from(x, (v) => encode(FORMATS.e4m3fn, Math.fround(v / 2)));
    expect(codes.map((c) => decode(FORMATS.e4m3fn, c))).toEqual([0, 0.5, 1, 448, 96]);
  });

  it('QuantizeLinear e5m2: [0, 1, 2, 100000, 200] / 2 -> [0, 0.5, 1, 49152, 96]', () => {
    const x = f32([0, 1, 2, 100000, 200]);
    expect(Array.from(x, (v) => quantizeValue(FORMATS.e5m2, Math.fround(v / 2)))).toEqual([0, 0.5, 1, 49152, 96]);
  });

  it('QuantizeLinear int4 / uint4, axis 0, scales [2, 3, 4], zero point 1', () => {
    const x = f32(subByteX);
    const s = f32([2, 3, 4]);
    // int4 (signed codes -8..7) with ONNX's zero point of 1
    const int4 = Array.from(quantizeInt(x, [3, 4], axis0, { bits: 4, symmetric: true }, s, [1, 1, 1]));
    expect(int4).toEqual([1, 2, 3, 5, -8, -6, 3, 4, 4, 5, 5, 7]);
    const uint4 = quantizeInt(x, [3, 4], axis0, { bits: 4, symmetric: false }, s, [1, 1, 1]);
    expect(Array.from(uint4)).toEqual([1, 2, 3, 5, 0, 0, 3, 4, 4, 5, 5, 11]);
  });

  it('QuantizeLinear float4e2m1, axis 0, scales [2, 3, 4]', () => {
    const x = f32([0.0, 2.5, 4.8, 8.6, -30, -20, 6, 9, -0.0, -2.5, -4.8, -8.6]);
    const y = fakeQuantFloat(x, [3, 4], axis0, 'e2m1', f32([2, 3, 4]));
    const codes = Array.from(y, (v, i) => v / [2, 3, 4][Math.floor(i / 4)]!);
    expect(codes).toEqual([0, 1, 2, 4, -6, -6, 2, 3, -0, -0.5, -1, -2]);
  });

  it('QuantizeLinear uint8, blocked (axis 1, block 2) with zero points', () => {
    const x = f32([6, 12, 50, 5, 1, 8, 4, 5, 0, 20, 10, 4]);
    const s = f32([1.5, 2.5, 3, 4.9, 5.1, 6.9]);
    const g = { kind: 'block', axis: 1, size: 2 } as const;
    const q = quantizeInt(x, [3, 4], g, { bits: 8, symmetric: false }, s, [0, 1, 1, 0, 2, 3]);
    // upstream: rint(x / repeat(scale) + repeat(zero_point)), worked out by hand
    expect(Array.from(q)).toEqual([4, 8, 21, 3, 1, 4, 1, 1, 2, 6, 4, 4]);
  });

  it('QuantizeLinear blocked symmetric (axis 1, block 2)', () => {
    const x = f32([6, -8, -10, 5, 1, 8, 4, 5, 0, 20, 10, 4]);
    const s = f32([1.5, 2.5, 3, 4.9, 5.1, 6.9]);
    const q = quantizeInt(x, [3, 4], { kind: 'block', axis: 1, size: 2 }, { bits: 8, symmetric: true }, s);
    expect(Array.from(q)).toEqual([4, -5, -4, 2, 0, 3, 1, 1, 0, 4, 1, 1]);
  });

  it('QuantizeLinear uint8 per tensor: [0, 2, 3, 1000, -254, -1000] / 2 + 128', () => {
    const q = quantizeInt(f32([0, 2, 3, 1000, -254, -1000]), [6], { kind: 'tensor' }, { bits: 8, symmetric: false }, f32([2]), [128]);
    expect(Array.from(q)).toEqual([128, 129, 130, 255, 1, 0]);
  });

  it('DequantizeLinear e4m3fn / e5m2 / float4e2m1, scale 2', () => {
    const dq = (name: 'e4m3fn' | 'e5m2' | 'e2m1', v: number[]): number[] =>
      v.map((x) => Math.fround(decode(FORMATS[name], encode(FORMATS[name], x)) * 2));
    expect(dq('e4m3fn', [0, 0.5, 1, 448, -104])).toEqual([0, 1, 2, 896, -208]);
    expect(dq('e5m2', [0, 0.5, 1, 49152, -96])).toEqual([0, 1, 2, 98304, -192]);
    expect(dq('e2m1', [0, 1, -1, 1.5, -4])).toEqual([0, 2, -2, 3, -8]);
  });

  it('DequantizeLinear int4 / uint4 (zero point 1, scale 2), axis (uint8), blocked (uint8)', () => {
    expect(Array.from(dequantizeInt([0, 1, 7, -4, -8], [5], { kind: 'tensor' }, f32([2]), [1]))).toEqual([-2, 0, 12, -10, -18]);
    expect(Array.from(dequantizeInt([0, 1, 7, 10, 15], [5], { kind: 'tensor' }, f32([2]), [1]))).toEqual([-2, 0, 12, 18, 28]);
    const axisX = [3, 89, 34, 200, 74, 59, 5, 24, 24, 87, 32, 13, 245, 99, 4, 142, 121, 102];
    expect(Array.from(dequantizeInt(axisX, [1, 3, 3, 2], { kind: 'channel', axis: 1 }, f32([2, 4, 5]), [84, 24, 196]))).toEqual([
      -162, 10, -100, 232, -20, -50, -76, 0, 0, 252, 32, -44, 245, -485, -960, -270, -375, -470,
    ]);
    const blockedX = [3, 89, 34, 200, 74, 59, 5, 24, 24, 87, 32, 13, 5, 12, 12, 33, 65, 42, 245, 99, 4, 142, 121, 102];
    const s = f32([3, 2, 4, 1, 2, 2, 5, 2, 4, 3, 5, 2]);
    const zp = [1, 0, 0, 1, 2, 20, 3, 2, 4, 3, 15, 2];
    const y = dequantizeInt(blockedX, [1, 4, 3, 2], { kind: 'block', axis: 1, size: 2 }, s, zp);
    expect(Array.from(y)).toEqual([6, 178, 136, 199, 144, 78, 12, 48, 96, 86, 60, -14, 10, 20, 32, 90, 250, 80, 1210, 194, 0, 417, 530, 200]);
  });
});

describe('INT fake quantization', () => {
  it('every code of every width round-trips through fake quantization with scale 1', () => {
    for (let bits = 2; bits <= 8; bits++)
      for (const symmetric of [true, false]) {
        const { qmin, qmax } = intRange(bits, symmetric);
        const zp = symmetric ? 0 : Math.floor((qmax + 1) / 3);
        const vals = Array.from({ length: qmax - qmin + 1 }, (_, i) => qmin + i - zp);
        const y = fakeQuantInt(f32(vals), [vals.length], { kind: 'tensor' }, { bits, symmetric }, f32([1]), symmetric ? undefined : [zp]);
        expect(Array.from(y)).toEqual(vals);
      }
  });

  it('ties to even, saturation, NaN -> qmin, -0 -> +0', () => {
    const x = f32([0.5, 1.5, 2.5, -0.5, -1.5, 100, -100, Infinity, -Infinity, NaN, -0.3, -0]);
    const y = fakeQuantInt(x, [x.length], { kind: 'tensor' }, { bits: 3, symmetric: true }, f32([1]));
    expect(Array.from(y)).toEqual([0, 2, 2, 0, -2, 3, -4, 3, -4, -4, 0, 0]);
    expect(Object.is(y[3], 0)).toBe(true);
    expect(Object.is(y[10], 0) && Object.is(y[11], 0)).toBe(true);
  });

  it('scale choice: symmetric amax / qmax, asymmetric (max - min) / (2^b - 1) with a rounded zero point', () => {
    expect(intParams(-1, 2.54, 8, true)).toEqual({ scale: Math.fround(2.54 / 127), zeroPoint: 0 });
    const p = intParams(-1, 3, 4, false);
    expect(p.scale).toBe(Math.fround(4 / 15));
    expect(p.zeroPoint).toBe(4); // -(-1) / (4/15) = 3.75 -> 4
    expect(intParams(0, 0, 8, true).scale).toBe(1);
  });
});

describe('OCP MX scale selection: X = 2^(floor(log2 amax) - emax_elem), clamped to E8M0', () => {
  it('picks the shared exponent per element type', () => {
    expect(mxScaleExponent(6, 'e2m1')).toBe(0);
    expect(mxScaleExponent(7.99, 'e2m1')).toBe(0);
    expect(mxScaleExponent(8, 'e2m1')).toBe(1);
    expect(mxScaleExponent(1, 'e2m1')).toBe(-2);
    expect(mxScaleExponent(448, 'e4m3fn')).toBe(0);
    expect(mxScaleExponent(1, 'e4m3fn')).toBe(-8);
    expect(mxScaleExponent(1, 'e5m2')).toBe(-15);
    expect(mxScaleExponent(28, 'e3m2')).toBe(0);
    expect(mxScaleExponent(7.5, 'e2m3')).toBe(0);
    expect(mxScaleExponent(1.5, 'int8')).toBe(0);
    expect(mxScaleExponent(2 ** 127 * 1.5, 'int8')).toBe(127);
    expect(mxScaleExponent(0, 'e2m1')).toBe(-127);
    expect(mxScaleExponent(2 ** -130, 'e2m1')).toBe(-127);
    expect(mxScaleExponent(Infinity, 'e2m1')).toBeNaN();
  });

  it('MXFP4 block: elements are E2M1 of x / X, saturating at 6 X', () => {
    const x = new Float32Array(32);
    x.set([7, 3, 1.25, -0.25, -5, 2.5, 0.75]); // amax 7 -> X = 2^(2 - 2) = 1
    const { y, scaleExp } = fakeQuantMx(x, [32], 0, 'e2m1');
    expect(Array.from(scaleExp)).toEqual([0]);
    expect(Array.from(y.slice(0, 8))).toEqual([6, 3, 1, -0, -4, 2, 1, 0]);
  });

  it('MXINT8: k / 64 with k = RNE(64 x / X), +-127; amax 3 -> X = 2', () => {
    const x = new Float32Array(32);
    x.set([3, -3, 1 / 64, 3 / 64, -2.1]);
    const { y } = fakeQuantMx(x, [32], 0, 'int8');
    // x / 2 * 64 = 96, -96, 0.5 -> 0, 1.5 -> 2, -67.2 -> -67
    expect(Array.from(y.slice(0, 5))).toEqual([3, -3, 0, 2 / 32, -67 / 32]);
    expect(mxElementValue('int8', 1.999)).toBe(127 / 64);
    expect(mxElementValue('int8', -5)).toBe(-127 / 64);
  });

  it('a NaN or an Inf makes its whole block NaN; other blocks are untouched', () => {
    const x = new Float32Array(64).fill(1);
    x[3] = NaN;
    x[40] = 2;
    const { y, scaleExp } = fakeQuantMx(x, [64], 0, 'e4m3fn');
    expect(Number.isNaN(scaleExp[0])).toBe(true);
    expect(Array.from(y.slice(0, 32)).every(Number.isNaN)).toBe(true);
    expect(y[32]).toBe(1);
    expect(y[40]).toBe(2);
    const z = new Float32Array(32);
    z[0] = -Infinity;
    expect(Array.from(fakeQuantMx(z, [32], 0, 'e2m1').y).every(Number.isNaN)).toBe(true);
  });

  it('an all-zero block gets the smallest scale 2^-127 and stays zero', () => {
    const { y, scaleExp } = fakeQuantMx(new Float32Array(32), [32], 0, 'e2m1');
    expect(Array.from(scaleExp)).toEqual([-127]);
    expect(Array.from(y).every((v) => v === 0)).toBe(true);
  });
});

describe('NVFP4', () => {
  it('block scale E4M3(amax / 6 / s_t), elements E2M1(x / S)', () => {
    const x = new Float32Array(32);
    x.set([7, -3, 0.5, 1.2]); // block 0: amax 7 -> 7/6 = 1.1667 -> E4M3 1.125 (q = 1/8)
    x.set([12, 5], 16); // block 1: amax 12 -> 2
    const { y, blockScale } = fakeQuantNvfp4(x, [32], 0, 1);
    expect(Array.from(blockScale)).toEqual([1.125, 2]);
    // 7 / 1.125 = 6.22 -> 6; -3 / 1.125 = -2.67 -> -3; 0.5 / 1.125 = 0.444 -> 0.5; 1.2 / 1.125 = 1.0667 -> 1
    expect(Array.from(y.slice(0, 4))).toEqual([6.75, -3.375, 0.5625, 1.125]);
    // 12 / 2 = 6 -> 6; 5 / 2 = 2.5 -> tie -> 2
    expect(Array.from(y.slice(16, 18))).toEqual([12, 4]);
  });

  it('the per-tensor scale is amax / 2688, and scales of all-zero blocks give zeros', () => {
    expect(nvfp4TensorScale(2688)).toBe(1);
    expect(nvfp4TensorScale(0)).toBe(1);
    const { y, blockScale } = fakeQuantNvfp4(new Float32Array(16), [16], 0, 0.5);
    expect(Array.from(blockScale)).toEqual([0]);
    expect(Array.from(y).every((v) => v === 0)).toBe(true);
  });
});

describe('layout', () => {
  it('blocked scales follow ONNX: the scale tensor is x with dims[axis] / block', () => {
    // x [2, 4, 3], blocks of 2 along axis 1 -> scales [2, 2, 3]
    const idx = scaleIndex([2, 4, 3], { kind: 'block', axis: 1, size: 2 });
    // element (o=1, c=3, k=2) -> scale (1, 1, 2) = 1*6 + 1*3 + 2 = 11
    expect(idx[1 * 12 + 3 * 3 + 2]).toBe(11);
    expect(idx[0 * 12 + 1 * 3 + 1]).toBe(1);
    expect(() => scaleIndex([2, 5], { kind: 'block', axis: 1, size: 2 })).toThrow(RangeError);
    expect(Array.from(blockAmax(f32([1, -3, NaN, 2]), [4], 0, 2))).toEqual([3, Infinity]);
  });
});

describe('float16 scales', () => {
  /** binary16 bits -> value, decoded independently of the code under test. */
  const half = (h: number) => {
    const e = (h >> 10) & 31;
    const m = h & 1023;
    const v = e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15);
    return h & 0x8000 ? -v : v;
  };
  it('float16Floor is the largest float16 <= s, over every float16 interval', () => {
    for (let h = 1; h < 0x7bff; h += 7) {
      const lo = half(h);
      const hi = half(h + 1);
      expect(float16Floor(lo)).toBe(lo);
      expect(float16Floor((lo + hi) / 2)).toBe(lo); // never rounds up
      expect(float16Floor(Math.fround(hi * (1 - 2 ** -20)))).toBe(lo); // just below the next float16
      expect(isFloat16(lo)).toBe(true);
      expect(isFloat16((lo + hi) / 2)).toBe(false);
      expect(float16Bits(lo)).toBe(h);
    }
    expect(float16Floor(1e9)).toBe(FLOAT16_MAX);
    expect(float16Floor(1e-12)).toBe(2 ** -24);
    expect(float16Bits(-2)).toBe(0xc000);
    expect(() => float16Bits(0.1)).toThrow(RangeError);
  });
});
