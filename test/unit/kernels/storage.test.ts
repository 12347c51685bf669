/** Packing, MX/NVFP4 encoded storage, and bits per parameter. */
import { describe, expect, it } from 'vitest';
import { FORMATS, type FloatName } from '../../../kernels/minifloat';
import { fakeQuantMx, fakeQuantNvfp4, type MxElement } from '../../../kernels/quant';
import {
  decodeMx,
  decodeNvfp4,
  encodeMx,
  encodeNvfp4,
  fromTwosComplement,
  pack4,
  pack6,
  packBits,
  storageCost,
  toTwosComplement,
  unpack4,
  unpack6,
  unpackBits,
} from '../../../kernels/storage';

describe('packing', () => {
  it('4-bit: element 2i in the low nibble of byte i (ONNX int4 layout)', () => {
    expect(Array.from(pack4([1, 2, 3]))).toEqual([0x21, 0x03]);
    expect(Array.from(unpack4(Uint8Array.of(0x21, 0x03), 3))).toEqual([1, 2, 3]);
  });

  it('6-bit: four codes in three bytes, least significant bit first', () => {
    // bits 0-5 = 0x3F, 6-11 = 0, 12-17 = 0x3F, 18-23 = 1
    expect(Array.from(pack6([0x3f, 0, 0x3f, 1]))).toEqual([0x3f, 0xf0, 0x07]);
    expect(Array.from(unpack6(Uint8Array.of(0x3f, 0xf0, 0x07), 4))).toEqual([0x3f, 0, 0x3f, 1]);
  });

  it('every code of every width 1..8 round-trips, at every alignment', () => {
    for (let bits = 1; bits <= 8; bits++) {
      const codes = Array.from({ length: 3 * (1 << bits) + 5 }, (_, i) => (i * 37 + 11) % (1 << bits));
      const packed = packBits(codes, bits);
      expect(packed.length).toBe(Math.ceil((codes.length * bits) / 8));
      expect(Array.from(unpackBits(packed, bits, codes.length))).toEqual(codes);
    }
  });

  it("two's complement codes", () => {
    for (let bits = 2; bits <= 8; bits++)
      for (let v = -(2 ** (bits - 1)); v < 2 ** (bits - 1); v++) expect(fromTwosComplement(toTwosComplement(v, bits), bits)).toBe(v);
    expect(toTwosComplement(-1, 4)).toBe(0xf);
  });

  it.each(['e3m2', 'e2m3', 'e2m1'] as FloatName[])('%s: every code survives pack -> unpack', (name) => {
    const f = FORMATS[name];
    const codes = Array.from({ length: 1 << f.bits }, (_, c) => c);
    expect(Array.from(unpackBits(packBits(codes, f.bits), f.bits, codes.length))).toEqual(codes);
  });
});

function mixed(n: number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = Math.fround(Math.sin(i * 1.7) * 2 ** ((i % 37) - 18));
  x[3] = NaN; // block 0 is NaN
  x.fill(0, 64, 96); // an all-zero block
  x[100] = -0;
  return x;
}

describe('MX and NVFP4 storage decodes to exactly the fake-quantized tensor', () => {
  it.each(['e4m3fn', 'e5m2', 'e3m2', 'e2m3', 'e2m1', 'int8'] as MxElement[])('MX %s', (element) => {
    const x = mixed(32 * 40);
    const enc = encodeMx(x, [40, 32], 1, element);
    expect(enc.scales[0]).toBe(0xff);
    expect(enc.scales[2]).toBe(0); // the all-zero block: 2^-127
    const fq = fakeQuantMx(x, [40, 32], 1, element).y;
    const dec = decodeMx(enc);
    for (let i = 0; i < x.length; i++) expect(Object.is(dec[i], fq[i]) || (Number.isNaN(dec[i]) && Number.isNaN(fq[i]))).toBe(true);
  });

  it('NVFP4', () => {
    const x = mixed(16 * 64);
    const enc = encodeNvfp4(x, [64, 16], 1, 0.01);
    expect(enc.scales[0]).toBe(0x7f); // NaN block
    const fq = fakeQuantNvfp4(x, [64, 16], 1, 0.01).y;
    const dec = decodeNvfp4(enc);
    for (let i = 0; i < x.length; i++) expect(Object.is(dec[i], fq[i]) || (Number.isNaN(dec[i]) && Number.isNaN(fq[i]))).toBe(true);
  });
});

describe('bits per parameter', () => {
  const W = [4096, 4096];
  it('MX: element bits + 8 / 32', () => {
    expect(storageCost({ kind: 'mx', element: 'e2m1' }, W).bitsPerParameter).toBe(4.25);
    expect(storageCost({ kind: 'mx', element: 'e3m2' }, W).bitsPerParameter).toBe(6.25);
    expect(storageCost({ kind: 'mx', element: 'e2m3' }, W).bitsPerParameter).toBe(6.25);
    expect(storageCost({ kind: 'mx', element: 'e4m3fn' }, W).bitsPerParameter).toBe(8.25);
    expect(storageCost({ kind: 'mx', element: 'int8' }, W).bitsPerParameter).toBe(8.25);
  });

  it('NVFP4: 4 + 8 / 16 + 32 per tensor', () => {
    const c = storageCost({ kind: 'nvfp4' }, W);
    expect(c.totalBits).toBe(4096 * 4096 * 4.5 + 32);
    expect(c.bitsPerParameter).toBe(4.5 + 32 / (4096 * 4096));
  });

  it('INT/FP: float32 scales, zero points at the element width', () => {
    expect(storageCost({ kind: 'int', bits: 4, symmetric: false }, [64, 1024], { kind: 'block', axis: 1, size: 128 }).bitsPerParameter).toBe(4 + 36 / 128);
    expect(storageCost({ kind: 'int', bits: 8, symmetric: true }, [64, 576], { kind: 'channel', axis: 0 }).bitsPerParameter).toBe(8 + 32 / 576);
    expect(storageCost({ kind: 'float', element: 'e4m3fn' }, [10, 10]).totalBits).toBe(800 + 32);
    expect(storageCost({ kind: 'float', element: 'e3m2' }, [10, 10]).elementBits).toBe(600);
  });
});
