/**
 * dq export on SD 1.5's Optimum layout (test/fixtures/sd15-optimum): calibrate on prompts -> quantize (int8-w8a8,
 * tfmq-w4a8 with its text-feature and temporal caches) -> export -> open and sample the export.
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { releaseSessions } from '../../../src-main/core/pipeline/pipeline';
import { dq, ROOT, tmp } from '../../helpers';
import { build, expectSameLayout, expectSameTextFeatures, expectSmaller, images, meanAbs, type Built } from './t2i-export';

const SRC = join(ROOT, 'test', 'fixtures', 'sd15-optimum');
const work = tmp('dq-export-t2i-sd15-');
let b: Built;

beforeAll(async () => {
  b = await build(SRC, work, ['int8-w8a8', 'tfmq-w4a8']);
}, 900_000);

afterAll(async () => {
  await releaseSessions();
  rmSync(work, { recursive: true, force: true });
});

describe('dq export: SD 1.5, Optimum layout', () => {
  it('keeps the Optimum layout: convention, components, every other graph I/O as the source', async () => {
    for (const p of ['int8-w8a8', 'tfmq-w4a8']) await expectSameLayout(SRC, join(work, `${p}-x`));
  });

  it('W8A8 runs its layers on int8 kernels and the unet is at most 0.40 of FP32; 4-bit smaller still, at most 0.30', () => {
    const x = b.exports['int8-w8a8']!.export;
    // cross-attention K/V projections read the text states: their MatMuls are integer kernels too
    expect(x.summary.int8Kernels).toBe(x.summary.layers);
    // every attention block of the quantized graph is fused too (its scale's shape arithmetic reads through the
    // integer layers)
    expect(x.summary.fusedAttention).toBe(32);
    expect(x.summary.unfusedAttention).toBeUndefined();
    expect(x.layers.some((l) => /attn2\/to_k/.test(l.name) && l.compute.startsWith('MatMulIntegerToFloat'))).toBe(true);
    expectSmaller(SRC, join(work, 'int8-w8a8-x'), 0.4);
    // weights are 58% of this small fixture's unet file (graph structure the rest): 4-bit codes shrink only them
    expectSmaller(SRC, join(work, 'tfmq-w4a8-x'), 0.3);
    expect(b.exports['tfmq-w4a8']!.export.sizes.files['unet/model.onnx']!).toBeLessThan(b.exports['int8-w8a8']!.export.sizes.files['unet/model.onnx']!);
    // the denoiser as a whole (unet, cut-out FP regions, parameters) is smaller than the FP32 unet
    for (const p of ['int8-w8a8', 'tfmq-w4a8']) expect(b.exports[p]!.export.sizes.exportBytes).toBeLessThan(b.exports[p]!.export.sizes.fp32UnetBytes!);
  });

  it('carries the text-feature model without the network it read for sizes, computing the same features', async () => {
    expect(b.variants['tfmq-w4a8']!.text?.cached.length).toBeGreaterThan(0);
    await expectSameTextFeatures(join(work, 'tfmq-w4a8'), join(work, 'tfmq-w4a8-x'));
  });

  it('dq compare takes both calibrated variants and their exports on a prompt (the chain calibrate -> quantize -> compare -> export -> sample)', () => {
    const dirs = ['int8-w8a8', 'tfmq-w4a8', 'int8-w8a8-x'].map((d) => join(work, d));
    const r = dq(['compare', SRC, ...dirs, '--prompt', 'a red cat', '--seeds', '0', '--steps', '2', '--fid-samples', '0', '--out', join(work, 'cmp')]);
    expect(r.code, r.stderr).toBe(0);
    const m = JSON.parse(readFileSync(join(work, 'cmp', 'metrics.json'), 'utf8')) as { variants: { psnrDb: { mean: number | null } }[] };
    const psnr = m.variants.slice(1).map((v) => v.psnrDb.mean ?? NaN);
    expect(psnr.length).toBe(3);
    for (const x of psnr) expect(x).toBeGreaterThan(10);
  });

  it('samples images closer to its variant than the variant is to FP', async () => {
    const seeds = [0, 1];
    for (const p of ['int8-w8a8', 'tfmq-w4a8']) {
      const [fp, v, x] = await images([SRC, join(work, p), join(work, `${p}-x`)], seeds);
      // the export changes how the variant's numbers are computed (kernels, requantized outputs), not what it quantizes
      expect(meanAbs(v!, x!), p).toBeLessThan(meanAbs(fp!, v!));
      for (const img of x!) expect(img.every(Number.isFinite)).toBe(true);
    }
  });
});
