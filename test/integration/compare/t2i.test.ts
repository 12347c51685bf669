/**
 * `dq compare` on text-to-image pipelines (the SD 1.5 and SDXL Optimum fixtures): the same prompts and seeds through
 * FP and quantized variants made by the core (calibrate + quantizePipeline); images, PSNR/SSIM and the judge's
 * FID-to-FP and cosine against an independent sampling and computation; the grid, report and schema; default prompts;
 * the one-line refusals.
 */
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { registerCompare } from '../../../src-main/cli/compare-command';
import { computeComparison, trajectoryFrames, writeComparison, type Comparison, type CompareJob } from '../../../src-main/core/compare/compare';
import { MetricsSchema, type CompareMetrics } from '../../../src-main/core/compare/schema';
import { judgeFeatures, openJudge } from '../../../src-main/core/eval/judge';
import { fitGaussian, frechetDistance, ssim } from '../../../src-main/core/eval/metrics';
import { openPipeline } from '../../../src-main/core/open';
import { releaseSessions } from '../../../src-main/core/pipeline/pipeline';
import { sample } from '../../../src-main/core/pipeline/sample';
import { calibrate } from '../../../src-main/core/quant/calibrate';
import { quantizePipeline } from '../../../src-main/core/quant/quantize';
import { loadRecipe, parseRecipe } from '../../../src-main/core/quant/recipe';
import { CLASSIFIER, ROOT, tmp, TINY } from '../../helpers';

const SD15 = join(ROOT, 'test', 'fixtures', 'sd15-optimum');
const SDXL = join(ROOT, 'test', 'fixtures', 'sdxl-optimum');
const T2I = join(ROOT, 'models', 'tiny-t2i');
const work = tmp('dq-compare-t2i-');
const PROMPTS = ['a red cat', 'a blue dog, on "grass"!'];
const SEEDS = [0, 1];
const STEPS = 2;
const FID = 2;

let sd15: Comparison;
let sdxl: Comparison;
let t2i: Comparison;

/** A weight-only recipe of `bits` bits rounded to nearest (it needs no calibration record). */
function wNearest(bits: 4 | 8) {
  const base = loadRecipe('int4-w4a16');
  const name = `w${bits}-nearest`;
  return parseRecipe({ ...base, name, weights: { ...base.weights, format: { kind: 'int', bits, symmetric: true }, rounding: 'nearest', clipping: 'minmax' } }, name);
}

function job(pipelineDir: string, variants: string[], extra: Partial<CompareJob> = {}): CompareJob {
  return {
    pipelineDir, variants, seeds: SEEDS, classes: [], prompts: PROMPTS.map((prompt) => ({ prompt })), steps: STEPS, sampler: 'ddim', guidance: 3,
    fidSamples: FID, walkFrames: 2, video: true, out: join(work, 'unused'), judge: { path: CLASSIFIER }, ...extra,
  };
}

beforeAll(async () => {
  // calibrating the SD 1.5 fixture takes minutes here, so its variants are weight-only (tiny-t2i below is calibrated)
  await quantizePipeline({ pipelineDir: SD15, recipe: wNearest(8), record: null, out: join(work, 'sd15-w8') });
  await quantizePipeline({ pipelineDir: SD15, recipe: wNearest(4), record: null, out: join(work, 'sd15-w4') });
  await quantizePipeline({ pipelineDir: SDXL, recipe: wNearest(4), record: null, out: join(work, 'sdxl-w4') });
  sd15 = await computeComparison(job(SD15, ['fp', join(work, 'sd15-w8'), join(work, 'sd15-w4')]));
  // the embedded model: calibrated on its own prompts, int8-w8a8 (activations quantized, the text-feature cache decided by measurement)
  const calib = join(work, 't2i-calib.json');
  const rec = await calibrate(T2I, calib, { samples: 1, steps: STEPS, batchSize: 1 });
  await quantizePipeline({ pipelineDir: T2I, recipe: loadRecipe('int8-w8a8'), record: rec, recordPath: calib, out: join(work, 't2i-int8') });
  t2i = await computeComparison(job(T2I, [join(work, 't2i-int8')], { prompts: undefined, seeds: [0], video: false }));
  sdxl = await computeComparison(job(SDXL, [join(work, 'sdxl-w4')], { prompts: [{ prompt: 'a red cat', negative: 'blurry' }], video: false }));
}, 600_000);

afterAll(async () => {
  await releaseSessions();
  rmSync(work, { recursive: true, force: true });
});

/** PSNR written out again (data range 2). */
function psnrRef(a: Float32Array, b: Float32Array): number {
  let se = 0;
  for (let i = 0; i < a.length; i++) se += (a[i]! - b[i]!) ** 2;
  return 10 * Math.log10(4 / (se / a.length));
}

/** Largest |a - b|: images of one prompt and seed agree to float rounding whatever the batch they ran in. */
function maxDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function cosine(a: Float32Array, b: Float32Array): number {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return ab / Math.sqrt(aa * bb);
}

/** Every variant sampled again, each from a fresh pipeline object, with sample() itself (its own prompt ids). */
async function independent(c: Comparison, fidSeeds: number[]): Promise<{ grid: Float32Array[][]; fid: Float32Array[][] }> {
  const m = c.metrics;
  const grid: Float32Array[][] = [];
  const fid: Float32Array[][] = [];
  const prompts = m.settings.prompts!;
  for (const v of m.variants) {
    const { pipeline, session } = await openPipeline(v.dir);
    const settings = { steps: m.settings.steps, sampler: 'ddim' as const, guidance: m.settings.guidance, batchSize: 3 };
    const g = await sample(pipeline, session, {
      ...settings, seeds: m.images.map((i) => i.seed), classes: [], prompts: m.images.map((i) => i.prompt!), negativePrompts: m.images.map((i) => i.negativePrompt!),
    });
    grid.push(g.images);
    if (fidSeeds.length) {
      const f = await sample(pipeline, session, {
        ...settings, seeds: fidSeeds, classes: [], prompts: fidSeeds.map((_, i) => prompts[i % prompts.length]!.prompt), negativePrompts: fidSeeds.map((_, i) => prompts[i % prompts.length]!.negative),
      });
      fid.push(f.images);
    } else fid.push([]);
  }
  return { grid, fid };
}

describe('dq compare on SD 1.5 (Optimum layout)', () => {
  it('samples the same prompts and seeds for every variant: the images are what sample() gives each variant alone', async () => {
    const m = sd15.metrics;
    expect(() => MetricsSchema.parse(m)).not.toThrow();
    expect(m.variants.map((v) => v.name)).toEqual(['fp', 'w8-nearest', 'w4-nearest']);
    expect(m.settings.prompts).toEqual(PROMPTS.map((prompt) => ({ prompt, negative: '' })));
    expect(m.settings.imageShape).toEqual([3, 128, 128]);
    expect(m.settings.sampleShape).toEqual([4, 16, 16]);
    // image order: prompt by prompt, seed by seed
    expect(m.images.map((i) => [i.prompt, i.seed])).toEqual([[PROMPTS[0], 0], [PROMPTS[0], 1], [PROMPTS[1], 0], [PROMPTS[1], 1]]);
    const ref = await independent(sd15, [1_000_000, 1_000_001]);
    for (let k = 0; k < 3; k++) {
      expect(sd15.images[k]!.length).toBe(4);
      sd15.images[k]!.forEach((img, i) => {
        expect(img.length).toBe(3 * 128 * 128);
        expect(maxDiff(img, ref.grid[k]![i]!)).toBeLessThan(1e-4);
      });
    }
    // a quantized variant differs from FP, and another prompt or seed differs far more than the batch's rounding
    expect(maxDiff(sd15.images[0]![0]!, sd15.images[1]![0]!)).toBeGreaterThan(1e-3);
    expect(maxDiff(sd15.images[0]![0]!, ref.grid[0]![1]!)).toBeGreaterThan(1e-2);
    expect(maxDiff(sd15.images[0]![0]!, ref.grid[0]![2]!)).toBeGreaterThan(1e-2);
  }, 300_000);

  it('PSNR and SSIM per image against FP, their mean and min', () => {
    const m = sd15.metrics;
    for (let k = 1; k < 3; k++) {
      const v = m.variants[k]!;
      const p = sd15.images[k]!.map((img, i) => psnrRef(sd15.images[0]![i]!, img));
      const s = sd15.images[k]!.map((img, i) => ssim(sd15.images[0]![i]!, img, [3, 128, 128], 2));
      expect(v.psnrDb.perImage.length).toBe(4);
      v.psnrDb.perImage.forEach((x, i) => expect(x).toBeCloseTo(p[i]!, 6));
      expect(v.psnrDb.mean).toBeCloseTo(p.reduce((a, b) => a + b) / 4, 6);
      expect(v.psnrDb.min).toBeCloseTo(Math.min(...p), 6);
      v.ssim.perImage.forEach((x, i) => expect(x).toBeCloseTo(s[i]!, 8));
      expect(v.ssim.min).toBeCloseTo(Math.min(...s), 8);
      expect(v.ssim.mean!).toBeLessThan(1);
    }
    expect(m.variants[0]!.psnrDb.mean).toBeNull(); // FP against itself: identical
  });

  it("the judge (the embedded classifier): FID-to-FP and cosine in its features, over the grid and FID images", async () => {
    const m = sd15.metrics;
    expect(m.reference.judge).toMatchObject({ output: 'features', width: 128 });
    expect(m.reference.judge!.preprocessing).toMatch(/luma/);
    const judge = await openJudge(CLASSIFIER);
    const ref = await independent(sd15, [1_000_000, 1_000_001]);
    const feats = await Promise.all(ref.grid.map((g, k) => judgeFeatures(judge, [...g, ...ref.fid[k]!], { shape: [3, 128, 128] })));
    for (let k = 1; k < 3; k++) {
      const j = m.variants[k]!.judge!;
      expect(j.samples).toBe(4 + FID);
      const cos = feats[k]!.map((f, i) => cosine(feats[0]![i]!, f));
      expect(j.cosine.mean).toBeCloseTo(cos.reduce((a, b) => a + b) / cos.length, 5);
      expect(j.cosine.min).toBeCloseTo(Math.min(...cos), 5);
      // the FID formula on the full (singular) covariances
      const fid = frechetDistance(fitGaussian(feats[k]!), fitGaussian(feats[0]!));
      expect(j.fidToFp!).toBeCloseTo(fid, 3);
      expect(j.fidToFp!).toBeGreaterThan(0);
      expect(j.note).toMatch(/6 samples for 128 feature dimensions/);
    }
    expect(m.variants[0]!.judge!.fidToFp!).toBeLessThan(1e-6);
    expect(m.notes.some((n) => n.includes('judge') && n.includes("'features'"))).toBe(true);
    // the classifier's own FID is for 1x28x28 digits: null, with the reason
    expect(m.variants[1]!.fid.toFp).toBeNull();
    expect(m.variants[1]!.fid.reason).toMatch(/3,128,128/);
  }, 300_000);

  it('errors along the FP trajectory, temporal features, trajectory frames and the walk decoded by the VAE', () => {
    const m = sd15.metrics;
    expect(m.variants[0]!.epsError.every((r) => r.rmse === 0)).toBe(true);
    for (const v of m.variants.slice(1)) {
      expect(v.epsError.length).toBe(STEPS);
      expect(v.epsError.every((r) => r.relative !== null && r.relative > 0)).toBe(true);
      expect(v.temporalFeatureError.available).toBe(true);
    }
    // the trajectory video: every step (2), FP/variants rows, frames are decoded RGB images
    expect(sd15.trajectoryVideo!.frames.length).toBe(STEPS);
    expect(sd15.trajectoryVideo!.frames[0]!.channels).toBe(3);
    // the walk: 2 seeds x 2 frames per segment, a column per prompt; decoded images per variant
    expect(sd15.walk.length).toBe(3);
    expect(sd15.walk[0]!.length).toBe(2 * 2 * 2);
    expect(sd15.walk[0]![0]!.length).toBe(3 * 128 * 128);
    // the walk frame of fraction 0 starts from the seed's own noise: it is the grid image of that seed and prompt
    expect(maxDiff(sd15.walk[1]![0]!, sd15.images[1]![0]!)).toBeLessThan(1e-4);
    expect(maxDiff(sd15.walk[1]![1]!, sd15.images[1]![2]!)).toBeLessThan(1e-4);
  });

  it('the grid: a row per prompt, per seed a column per variant', () => {
    const g = sd15.grid;
    // cells at zoom 1 (128 px images): 2 rows of 128 + pads, 2 seeds x 3 variants columns
    expect(g.channels).toBe(3);
    const head = 2 * (5 * 2 + 6); // the title and the column labels (5-pixel glyphs at scale 2)
    expect(g.height).toBe(head + 2 * (128 + 2) + 2);
    const cellsW = 6 * (128 + 2) + 2;
    expect(g.width).toBeGreaterThan(cellsW);
    // the left-most cell of the first row is FP's image of prompt 1, seed 0: find it by its pixels
    const labelW = g.width - cellsW;
    const y0 = head + 2;
    const x0 = labelW + 2;
    const img = sd15.images[0]![0]!;
    const toByte = (v: number) => Math.max(0, Math.min(255, Math.floor(((v + 1) / 2) * 255 + 0.5)));
    for (const [y, x] of [[0, 0], [5, 70], [127, 127]] as const) {
      for (let c = 0; c < 3; c++) expect(g.data[((y0 + y) * g.width + x0 + x) * 3 + c]).toBe(toByte(img[c * 128 * 128 + y * 128 + x]!));
    }
    // second column: the first variant, same prompt and seed
    const img1 = sd15.images[1]![0]!;
    expect(g.data[(y0 * g.width + x0 + 130) * 3]).toBe(toByte(img1[0]!));
    expect(trajectoryFrames(25, true)).toEqual([0, 3, 5, 8, 11, 13, 16, 19, 21, 24]);
    expect(trajectoryFrames(25, false).length).toBe(25);
  });

  it('writes metrics.json and a report that shows the prompts and the judge columns', async () => {
    const out = join(work, 'out-sd15');
    const written = await writeComparison(sd15, { out, video: true, ffmpeg: join(work, 'no-ffmpeg') });
    const m = JSON.parse(readFileSync(join(out, 'metrics.json'), 'utf8')) as CompareMetrics;
    expect(() => MetricsSchema.parse(m)).not.toThrow();
    expect(m.variants[1]!.judge!.fidToFp).toBe(written.variants[1]!.judge!.fidToFp);
    const html = readFileSync(join(out, 'report.html'), 'utf8');
    expect(html).toContain('a blue dog, on &quot;grass&quot;!');
    expect(html).toContain('judge FID<br>to FP');
    expect(html).toContain('A row per prompt');
  });
});

describe('dq compare on SDXL (Optimum layout)', () => {
  it('the same prompt (with its negative prompt) and seeds through FP and a 4-bit variant', async () => {
    const m = sdxl.metrics;
    expect(() => MetricsSchema.parse(m)).not.toThrow();
    expect(m.settings.prompts).toEqual([{ prompt: 'a red cat', negative: 'blurry' }]);
    expect(m.images.map((i) => i.negativePrompt)).toEqual(['blurry', 'blurry']);
    const ref = await independent(sdxl, [1_000_000, 1_000_001]);
    for (let k = 0; k < 2; k++) sdxl.images[k]!.forEach((img, i) => expect(maxDiff(img, ref.grid[k]![i]!)).toBeLessThan(1e-4));
    const v = m.variants[1]!;
    const p = sdxl.images[1]!.map((img, i) => psnrRef(sdxl.images[0]![i]!, img));
    expect(v.psnrDb.mean).toBeCloseTo((p[0]! + p[1]!) / 2, 6);
    expect(Number.isFinite(v.psnrDb.min!)).toBe(true);
    expect(v.judge!.samples).toBe(4);
    expect(v.epsError.every((r) => r.relative! > 0)).toBe(true);
    expect(sdxl.trajectoryVideo).toBeNull();
  }, 300_000);
});

describe('dq compare on text-to-image: prompts and refusals', () => {
  it("the embedded model: its default prompts (the first 4 of calibration_prompts.txt), a calibrated int8-w8a8 variant", async () => {
    const m = t2i.metrics;
    expect(() => MetricsSchema.parse(m)).not.toThrow();
    const file = readFileSync(join(T2I, 'calibration_prompts.txt'), 'utf8').split('\n').map((l) => l.trim()).filter(Boolean);
    expect(m.settings.prompts!.map((p) => p.prompt)).toEqual(file.slice(0, 4));
    expect(m.notes.some((n) => n.includes('the first 4 of') && n.includes('calibration_prompts.txt'))).toBe(true);
    expect(m.variants[1]!.name).toBe('int8-w8a8');
    const ref = await independent(t2i, [1_000_000, 1_000_001]);
    for (let k = 0; k < 2; k++) t2i.images[k]!.forEach((img, i) => expect(maxDiff(img, ref.grid[k]![i]!)).toBeLessThan(1e-4));
    const p = t2i.images[1]!.map((img, i) => psnrRef(t2i.images[0]![i]!, img));
    expect(m.variants[1]!.psnrDb.mean).toBeCloseTo(p.reduce((a, b) => a + b) / p.length, 6);
    expect(m.variants[1]!.judge!.samples).toBe(4 + FID);
    expect(m.variants[1]!.epsError.every((r) => r.relative! > 0)).toBe(true);
    // the grid: 32x32 images at zoom 3, a row per prompt
    expect(t2i.grid.height).toBe(2 * (5 * 2 + 6) + 4 * (96 + 2) + 2);
  }, 300_000);

  it("takes its default prompts from the pipeline's calibration_prompts.txt, with a negative prompt", async () => {
    const dir = join(work, 'sd15-prompts');
    cpSync(SD15, dir, { recursive: true });
    writeFileSync(join(dir, 'calibration_prompts.txt'), 'one\ntwo\n\nthree\nfour\nfive\n');
    const c = await computeComparison(job(dir, ['fp'], { prompts: undefined, negativePrompt: 'dark', seeds: [0], steps: 1, fidSamples: 0, video: false, judge: undefined }));
    expect(c.metrics.settings.prompts).toEqual(['one', 'two', 'three', 'four'].map((prompt) => ({ prompt, negative: 'dark' })));
  }, 120_000);

  it('refuses in one line: no prompts, class options on a text pipeline, prompts on a class pipeline, a bad judge', async () => {
    const one = async (j: CompareJob, re: RegExp) => {
      const e = await computeComparison(j).catch((x: Error) => x);
      expect(e).toBeInstanceOf(Error);
      expect((e as Error).message).toMatch(re);
      expect((e as Error).message).not.toContain('\n');
    };
    await one(job(SD15, ['fp'], { prompts: undefined }), /text-to-image pipeline: give --prompt "\.\.\." or --prompts <file> \(it has no calibration_prompts\.txt/);
    await one(job(SD15, ['fp'], { classes: [1] }), /text-to-image pipeline: give --prompt or --prompts, not --class/);
    await one(job(TINY, ['fp'], { classes: [1] }), /takes no text \(it is class-conditional: use --class\)/);
    await one(job(SD15, ['fp'], { judge: { path: join(work, 'missing.onnx') } }), /judge model not found/);
    await one(job(SD15, [TINY]), /variant .* is class-conditional and the pipeline is text-to-image/);
    await one(job(TINY, ['fp'], { prompts: undefined, classes: [1], height: 64 }), /not a latent pipeline: leave out --height and --width/);
  }, 120_000);

  it('the command: positional variants, --prompt, --judge; --judge-output without --judge is refused', async () => {
    const run = async (args: string[]) => {
      const program = new Command('dq').exitOverride();
      registerCompare(program);
      await program.parseAsync(['node', 'dq', 'compare', ...args]);
    };
    await expect(run([SD15, 'fp', '--prompt', 'x', '--judge-output', 'features', '--out', join(work, 'o1')])).rejects.toThrow('--judge-output and --judge-normalize need --judge <onnx>');
    await expect(run([SD15, '--prompt', 'x', '--out', join(work, 'o1')])).rejects.toThrow(/name the variants/);
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    try {
      const out = join(work, 'o2');
      await run([SD15, join(work, 'sd15-w4'), '--prompt', 'a red cat', '--seeds', '0', '--steps', '1', '--fid-samples', '0', '--no-video', '--quiet', '--judge', CLASSIFIER, '--out', out]);
      const m = JSON.parse(readFileSync(join(out, 'metrics.json'), 'utf8')) as CompareMetrics;
      expect(m.variants.map((v) => v.name)).toEqual(['fp', 'w4-nearest']);
      expect(m.settings.prompts).toEqual([{ prompt: 'a red cat', negative: '' }]);
      expect(m.variants[1]!.judge!.samples).toBe(1);
    } finally {
      log.mockRestore();
    }
  }, 120_000);
});
