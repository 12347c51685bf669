/**
 * `dq eval` on text-to-image pipelines with a bring-your-own judge (the embedded classifier as the judge): a
 * pipeline without attributes.json (the SD 1.5 fixture: a user's real pipeline) gives FID-to-FP, feature cosine and
 * PSNR per variant, checked against an independent sampling and computation; the embedded model keeps its own
 * columns and gains the judge's; the one-line refusals.
 */
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runEval, type TextEvalRow } from '../../src-main/core/jobs/eval-job';
import { judgeFeatures, openJudge } from '../../src-main/core/eval/judge';
import { fitGaussian, frechetDistance } from '../../src-main/core/eval/metrics';
import { openPipeline } from '../../src-main/core/open';
import { releaseSessions } from '../../src-main/core/pipeline/pipeline';
import { sample } from '../../src-main/core/pipeline/sample';
import { CLASSIFIER, ROOT, tmp } from '../helpers';

const SD15 = join(ROOT, 'test', 'fixtures', 'sd15-optimum');
const T2I = join(ROOT, 'models', 'tiny-t2i');
const work = tmp('dq-eval-t2i-');
const base = join(work, 'sd15');
const PROMPTS = ['a red cat', 'a blue dog', 'a green bird'];
const N = 4;
const STEPS = 2;
let rows: TextEvalRow[];
let eval1: Record<string, unknown>;
const lines: string[] = [];

/** A weight-only 4-bit recipe rounded to nearest, as a recipe file (it needs no calibration). */
function recipeFile(): string {
  const path = join(work, 'w4-nearest.json');
  const preset = JSON.parse(readFileSync(join(ROOT, 'presets', 'int4-w4a16.json'), 'utf8')) as Record<string, unknown> & { weights: Record<string, unknown> };
  delete preset.$schema;
  writeFileSync(path, JSON.stringify({ ...preset, name: 'w4-nearest', weights: { ...preset.weights, rounding: 'nearest', clipping: 'minmax' } }));
  return path;
}

beforeAll(async () => {
  cpSync(SD15, base, { recursive: true });
  writeFileSync(join(work, 'prompts.txt'), PROMPTS.join('\n') + '\n');
  const res = await runEval({
    pipelineDir: base, presets: [recipeFile()], samples: N, steps: STEPS, sampler: 'ddim', guidance: 3, calibSamples: 1,
    out: join(work, 'out'), prompts: join(work, 'prompts.txt'), judge: { path: CLASSIFIER }, onLine: (s) => lines.push(s),
  });
  rows = (res as { text: TextEvalRow[] }).text;
  eval1 = JSON.parse(readFileSync(join(work, 'out', 'eval.json'), 'utf8')) as Record<string, unknown>;
}, 600_000);

afterAll(async () => {
  await releaseSessions();
  rmSync(work, { recursive: true, force: true });
});

function cosine(a: Float32Array, b: Float32Array): number {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return ab / Math.sqrt(aa * bb);
}

describe('dq eval --judge on a text-to-image pipeline without attributes.json', () => {
  it('FID-to-FP, cosine and PSNR per variant; no agreement', async () => {
    expect(rows.map((r) => r.variant)).toEqual(['fp', 'w4-nearest']);
    for (const r of rows) {
      expect(r.agreement).toBeNull();
      expect(r.fidToFp).toBeNull();
    }
    // independently: the prompts cycled to N, seeds 10000.., each variant sampled alone, judged, compared by the formulas
    const prompts = Array.from({ length: N }, (_, i) => PROMPTS[i % PROMPTS.length]!);
    const seeds = prompts.map((_, i) => 10_000 + i);
    const judge = await openJudge(CLASSIFIER);
    const images: Float32Array[][] = [];
    for (const dir of [base, join(work, 'out', 'w4-nearest')]) {
      const { pipeline, session } = await openPipeline(dir);
      images.push((await sample(pipeline, session, { seeds, classes: [], prompts, steps: STEPS, sampler: 'ddim', guidance: 3 })).images);
    }
    const feats = await Promise.all(images.map((imgs) => judgeFeatures(judge, imgs, { shape: [3, 128, 128] })));
    const v = rows[1]!;
    const cos = feats[1]!.map((f, i) => cosine(feats[0]![i]!, f));
    expect(v.judge!.cosine.mean).toBeCloseTo(cos.reduce((a, b) => a + b) / N, 5);
    expect(v.judge!.cosine.min).toBeCloseTo(Math.min(...cos), 5);
    expect(v.judge!.fidToFp!).toBeCloseTo(frechetDistance(fitGaussian(feats[1]!), fitGaussian(feats[0]!)), 3);
    expect(v.judge!.fidToFp!).toBeGreaterThan(0);
    let psnr = 0;
    images[1]!.forEach((img, i) => {
      let se = 0;
      for (let j = 0; j < img.length; j++) se += (img[j]! - images[0]![i]![j]!) ** 2;
      psnr += Math.min(99, 10 * Math.log10(4 / (se / img.length)));
    });
    expect(v.psnrToFp!).toBeCloseTo(psnr / N, 4);
    expect(rows[0]!.judge!.fidToFp!).toBeLessThan(1e-6);
    expect(rows[0]!.judge!.cosine.min).toBeCloseTo(1, 6);
  }, 300_000);

  it('prints the judge, its note and the columns; eval.json records them and the prompts', () => {
    expect(lines.some((l) => l.startsWith(`judge: ${CLASSIFIER}, output 'features' (128 values per image)`))).toBe(true);
    expect(lines.some((l) => l.includes(`${N} samples for 128 feature dimensions`))).toBe(true);
    const header = lines.find((l) => l.startsWith('variant'))!;
    expect(header).toContain('judge FID');
    expect(header).not.toContain('prompt %');
    expect(lines.some((l) => l.startsWith('w4-nearest') && l.includes(rows[1]!.judge!.fidToFp!.toFixed(3)))).toBe(true);
    expect(lines).toContain('calibration: not needed (weight-only recipes rounded to nearest)');
    const settings = eval1.settings as { userJudge: { output: string; width: number }; judge: unknown };
    expect(settings.userJudge).toMatchObject({ output: 'features', width: 128 });
    expect(settings.judge).toBeNull();
    expect(eval1.prompts).toEqual(Array.from({ length: N }, (_, i) => PROMPTS[i % PROMPTS.length]));
  });

  it('the embedded text-to-image model keeps its agreement and embedded-judge FID, with the judge columns beside them', async () => {
    const out: string[] = [];
    const res = (await runEval({ pipelineDir: T2I, presets: [], samples: 4, steps: 2, out: join(work, 'out-t2i'), judge: { path: CLASSIFIER }, onLine: (s) => out.push(s) })) as { text: TextEvalRow[] };
    const fp = res.text[0]!;
    expect(fp.agreement).not.toBeNull();
    expect(fp.fidToFp).toBe(0);
    expect(fp.judge!.fidToFp!).toBeLessThan(1e-6);
    const header = out.find((l) => l.startsWith('variant'))!;
    expect(header).toContain('prompt %');
    expect(header).toContain('judge FID');
  }, 120_000);

  it('refuses in one line: no attributes.json and no --judge, no prompts, a bad judge path, prompts on a class pipeline', async () => {
    const one = async (o: Partial<Parameters<typeof runEval>[0]>, re: RegExp) => {
      const e = await runEval({ pipelineDir: base, presets: [], samples: 2, steps: 1, out: join(work, 'o-err'), ...o }).catch((x: Error) => x);
      expect(e).toBeInstanceOf(Error);
      expect((e as Error).message).toMatch(re);
      expect((e as Error).message).not.toContain('\n');
    };
    await one({}, /has no attributes\.json .*: give --judge <onnx>/);
    await one({ judge: { path: CLASSIFIER } }, /without calibration_prompts\.txt: give the eval prompts with --prompts <file>/);
    await one({ judge: { path: join(work, 'nope.onnx') }, prompts: join(work, 'prompts.txt') }, /judge model not found/);
    await one({ pipelineDir: join(ROOT, 'models', 'tiny-mnist'), prompts: join(work, 'prompts.txt') }, /takes no text \(it is class-conditional\)/);
    await one({ pipelineDir: T2I, prompts: join(work, 'prompts.txt') }, /judged by its attributes\.json.*leave out --prompts/);
  }, 120_000);
});
