/**
 * The verification verdict (export/verdict.ts): each kind of export is judged by its own bounds, the image max never,
 * and a broken export (s8 weights on AVX2-only kernels, measured in docs/export.md) is called larger than expected.
 */
import { describe, expect, it } from 'vitest';
import { verificationVerdict } from '../../../../src-main/core/export/verdict';

const measured = (stepMean: number, stepP99: number, imageMean: number, imageP99: number) => ({ meanAbs: imageMean, p99Abs: imageP99, step: { meanAbs: stepMean, p99Abs: stepP99 } });

describe('verificationVerdict', () => {
  it('passes the largest correct integer-kernel exports measured on three CPUs and fails the broken one', () => {
    const int8 = { int8Kernels: 282, int8Weights: 'u8', simulatedActivations: true };
    // naive-w8a8 (u8) on a Zen 5 and int8-w8a8 (u8) under AVX2: docs/export.md, Verification
    expect(verificationVerdict(int8, measured(0.0389, 0.171, 0.0285, 0.279))).toMatchObject({ ok: true, exceeded: [] });
    expect(verificationVerdict(int8, measured(0.0304, 0.204, 0.0179, 0.167)).ok).toBe(true);
    // int8-w8a8 with s8 weights forced on AVX2-only kernels (saturating): broken images
    const broken = verificationVerdict({ ...int8, int8Weights: 's8' }, measured(0.084, 0.683, 0.384, 4.65));
    expect(broken.ok).toBe(false);
    expect(broken.exceeded).toEqual(['step p99 0.683 > 0.5', 'image mean 0.384 > 0.06', 'image p99 4.65 > 0.6']);
    expect(broken.expected).toMatch(/^integer kernels:/);
  });

  it('s7 weights: a coarser grid, a looser image bound and no image p99 bound', () => {
    const v = verificationVerdict({ int8Kernels: 10, int8Weights: 's7', simulatedActivations: true }, measured(0.0328, 0.212, 0.0961, 1.56));
    expect(v).toMatchObject({ ok: true, bounds: { imageMean: 0.15, imageP99: null } });
    expect(v.expected).toMatch(/7-bit/);
  });

  it('weights only: float rounding, so a deviation an integer export may show is larger than expected', () => {
    const kind = { int8Kernels: 0, int8Weights: 'u8', simulatedActivations: false };
    expect(verificationVerdict(kind, measured(1e-6, 1e-5, 0.00012, 0.001))).toMatchObject({ ok: true });
    const v = verificationVerdict(kind, measured(0.03, 0.2, 0.02, 0.2));
    expect(v.ok).toBe(false);
    expect(v.expected).toMatch(/^no integer kernels/);
    expect(v.exceeded).toHaveLength(4);
  });

  it('activation quantizers simulated in float are judged like integer kernels (a flipped code)', () => {
    const v = verificationVerdict({ int8Kernels: 0, int8Weights: 'u8', simulatedActivations: true }, measured(0.03, 0.2, 0.02, 0.2));
    expect(v.ok).toBe(true);
    expect(v.expected).toMatch(/activation quantizers simulated/);
  });

  it('a NaN measure is never within its bound', () => {
    const v = verificationVerdict({ int8Kernels: 1, int8Weights: 'u8', simulatedActivations: false }, measured(Number.NaN, 0.1, 0.01, 0.1));
    expect(v.ok).toBe(false);
    expect(v.exceeded).toEqual(['step mean NaN > 0.1']);
  });
});
