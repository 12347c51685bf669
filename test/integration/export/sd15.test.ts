/**
 * Export sizes on the committed UNet with Stable Diffusion 1.5's topology (tools/make_sd15_unet.py, reduced width,
 * random weights): W8A8 and 4-bit weights (INT4, MXFP4, NVFP4) vs the FP32 unet.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportPipeline, type ExportManifest } from '../../../src-main/core/export/export';
import { releaseSessions } from '../../../src-main/core/pipeline/pipeline';
import { calibrate } from '../../../src-main/core/quant/calibrate';
import { quantizePipeline } from '../../../src-main/core/quant/quantize';
import { loadRecipe, parseRecipe } from '../../../src-main/core/quant/recipe';
import { ROOT, tmp } from '../../helpers';

const SD15 = join(ROOT, 'test', 'fixtures', 'sd15');
const work = tmp('dq-export-sd15-');
const m: Record<string, ExportManifest> = {};

beforeAll(async () => {
  const calib = join(work, 'calib.json');
  const rec = await calibrate(SD15, calib, { samples: 1, steps: 2, batchSize: 1, gram: true });
  // int8-w8a8's export (the same int8 storage as naive-w8a8's) is checked on the SD 1.5 Optimum fixture (t2i-sd15.test.ts)
  for (const p of ['naive-w8a8', 'q-diffusion-w4a8', 'int4-w4a16']) {
    await quantizePipeline({ pipelineDir: SD15, recipe: loadRecipe(p), record: rec, recordPath: calib, out: join(work, p) });
    m[p] = await exportPipeline({ variantDir: join(work, p), out: join(work, `${p}-x`), calibrationImages: 1, verify: false });
  }
  // the block-scaled 4-bit formats on every layer (their presets keep the first, last and time layers in FP32)
  for (const p of ['mxfp4-w4a8', 'nvfp4-w4a4']) {
    const recipe = parseRecipe({ ...loadRecipe(p), name: `${p}-all`, keepFp: [] }, p);
    await quantizePipeline({ pipelineDir: SD15, recipe, record: rec, recordPath: calib, out: join(work, `${p}-all`) });
    m[`${p}-all`] = await exportPipeline({ variantDir: join(work, `${p}-all`), out: join(work, `${p}-all-x`), calibrationImages: 1, verify: false });
  }
}, 900_000);

afterAll(async () => {
  await releaseSessions();
  rmSync(work, { recursive: true, force: true });
});

describe('dq export (SD 1.5 topology)', () => {
  it('W8A8 is at most 0.30 and 4-bit weights at most 0.16 of the FP32 unet', () => {
    expect(m['naive-w8a8']!.export.summary.int8Kernels).toBeGreaterThan(200);
    expect(m['naive-w8a8']!.export.sizes.ratio!).toBeLessThanOrEqual(0.3);
    expect(m['q-diffusion-w4a8']!.export.sizes.ratio!).toBeLessThanOrEqual(0.16);
    expect(m['int4-w4a16']!.export.sizes.ratio!).toBeLessThanOrEqual(0.16);
    // MXFP4 (4.25 bits) and NVFP4 (4.5 bits): packed codes decoded by one shared local function per model
    for (const p of ['mxfp4-w4a8-all', 'nvfp4-w4a4-all']) {
      expect(m[p]!.export.sizes.ratio!).toBeLessThanOrEqual(0.16);
      expect(m[p]!.export.summary.lowBitStorage).toBeGreaterThan(200);
    }
    // every self- and cross-attention block of the 16 transformers runs as one MultiHeadAttention node
    expect(m['naive-w8a8']!.export.summary.fusedAttention).toBe(32);
    for (const x of Object.values(m)) {
      expect(x.export.summary.weightMismatches).toBe(0);
    }
  });
});
