/**
 * `dq compare` on variants written by the quantizer (src-main/core/quant): a weight-only INT4 variant and the same
 * with TFMQ's temporal cache (its time-only region cut out and fed from a feature model). No calibration is
 * needed for weight-only recipes; no FID and no videos, to keep this quick.
 */
import { cpSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCompare } from '../../../src-main/core/compare/compare';
import type { CompareMetrics } from '../../../src-main/core/compare/schema';
import { releaseSessions } from '../../../src-main/core/pipeline/pipeline';
import { quantizePipeline, type Manifest } from '../../../src-main/core/quant/quantize';
import { loadRecipe } from '../../../src-main/core/quant/recipe';
import { tmp, TINY } from '../../helpers';

const work = tmp('dq-compare-q-');
let m: CompareMetrics;
const manifests: Manifest[] = [];

beforeAll(async () => {
  const base = join(work, 'fp');
  cpSync(TINY, base, { recursive: true });
  const preset = loadRecipe('int4-w4a16');
  const w4 = { ...preset, weights: { ...preset.weights, rounding: 'nearest' as const } }; // no calibration needed
  for (const recipe of [w4, { ...w4, name: 'int4-tfmq', temporal: 'cache' as const }]) {
    manifests.push(await quantizePipeline({ pipelineDir: base, recipe, record: null, out: join(work, recipe.name) }));
  }
  m = await runCompare({
    pipelineDir: base, variants: ['fp', join(work, 'int4-w4a16'), join(work, 'int4-tfmq')], seeds: [0, 1], classes: [2, 5], steps: 4, sampler: 'ddim',
    guidance: 2, fidSamples: 0, video: false, out: join(work, 'out'),
  });
}, 180_000);

afterAll(async () => {
  await releaseSessions();
  rmSync(work, { recursive: true, force: true });
});

describe('dq compare on quantizer variants', () => {
  it('names rows by recipe and reads their size from the manifest', () => {
    expect(m.variants.map((v) => v.name)).toEqual(['fp', 'int4-w4a16', 'int4-tfmq']);
    manifests.forEach((man, k) => {
      const v = m.variants[k + 1]!;
      expect(v.weightBitsPerParameter).toBe(man.summary.weightBitsPerParameter);
      expect(v.weightBitsPerParameter!).toBeLessThan(8);
      const saved = man.summary.quantizedParameters * (4 - man.summary.weightBitsPerParameter / 8);
      expect(v.estimatedDeployedBytes).toBe(Math.round(v.modelBytes - saved));
    });
    expect(m.variants[0]!.estimatedDeployedBytes).toBe(m.variants[0]!.modelBytes);
  });

  it('tapped temporal features of the uncut variant carry its weight error; the cut one is fed FP features', () => {
    const [, plain, cut] = m.variants;
    expect(plain!.temporalFeatureError.source).toBe('graph');
    expect(plain!.temporalFeatureError.perStep.every((s) => s.relative! > 0)).toBe(true);
    expect(cut!.temporalFeatureError.source).toBe('fed');
    expect(cut!.temporalFeatureError.perStep.map((s) => s.rmse)).toEqual([0, 0, 0, 0]);
    for (const v of [plain!, cut!]) expect(v.epsError.every((s) => s.relative! > 0)).toBe(true);
  });

  it('leaves FID and videos out when asked, and says why', () => {
    expect(m.variants[1]!.fid).toEqual({ toFp: null, toData: null, samples: 0, reason: 'FID was not asked for (--fid-samples 0)' });
    expect(m.notes).toContain('videos not written (--no-video)');
    expect(m.files.trajectory).toEqual({ webp: null, mp4: null, frames: 0 });
    expect(existsSync(join(work, 'out', 'trajectory.webp'))).toBe(false);
    expect(existsSync(join(work, 'out', 'report.html'))).toBe(true);
  });
});
