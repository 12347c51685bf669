/**
 * Bring your own judge (src-main/core/eval/judge.ts): the embedded classifier as the judge against classify(), the
 * output pick on tiny graphs shaped like CLIP's and Inception's exports, preprocessing against torch-checked numbers
 * (test/fixtures/judges/resize_reference.json, from tools/make_judge_fixtures.py), FID and cosine against the
 * formulas, and the one-line errors.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { classify } from '../../../../src-main/core/eval/classifier';
import {
  CLIP_MEAN,
  CLIP_STD,
  compareFeatures,
  cosineSimilarity,
  frechetFromFeatures,
  judgeFeatures,
  judgeSession,
  openJudge,
  pickFeatureOutput,
  prepareImage,
  type JudgeInputSpec,
  type OutputCandidate,
} from '../../../../src-main/core/eval/judge';
import { fitGaussian, frechetDistance } from '../../../../src-main/core/eval/metrics';
import { heldOutDigit } from '../../../../src-main/core/compare/data';
import { releaseSessions } from '../../../../src-main/core/pipeline/pipeline';
import { Rng } from '../../../../src-main/core/pipeline/noise';
import { CLASSIFIER, ROOT, tmp } from '../../../helpers';

afterAll(releaseSessions);

const FIX = join(ROOT, 'test', 'fixtures', 'judges');
interface Case { name: string; shape: [number, number, number]; image: number[]; channels: 1 | 3; size: [number, number]; expected: number[] }
const REF = JSON.parse(readFileSync(join(FIX, 'resize_reference.json'), 'utf8')) as {
  cases: Case[];
  inception: { shape: [number, number, number]; images: number[][]; z: number[][] };
};
const refCase = (name: string) => REF.cases.find((c) => c.name === name)!;

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number) {
  expect(got.length).toBe(want.length);
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
  expect(worst).toBeLessThan(tol);
}

/** 4 held-out digits of each class, model space. */
function digits(per = 4): Float32Array[] {
  const out: Float32Array[] = [];
  for (let d = 0; d < 10; d++) out.push(...heldOutDigit(d).slice(0, per));
  return out;
}

describe('the embedded classifier as the judge', () => {
  it('takes its 1x28x28 input and its 128-d penultimate `features` output, by name', async () => {
    const j = await openJudge(CLASSIFIER);
    expect(j.input).toMatchObject({ name: 'image', shape: [1, 28, 28], sizeSource: 'graph', layout: 'NCHW', normalize: '[0,1]', batch: null });
    expect(j.output).toMatchObject({ name: 'features', width: 128, pickedBy: 'name', probeShape: [1, 128] });
    expect(j.outputs.map((o) => o.name).sort()).toEqual(['features', 'logits']);
    expect(j.warnings).toEqual([]);
  });

  it('gives classify()\'s features, so FID agrees with classify() + fitGaussian + frechetDistance', async () => {
    const a = digits();
    const r = new Rng(3);
    const b = a.map((img) => img.map((v) => v + 0.4 * (r.uniform() - 0.5)));
    const j = await openJudge(CLASSIFIER);
    const fa = await judgeFeatures(j, a, { shape: [1, 28, 28], batch: 7 });
    const fb = await judgeFeatures(j, b, { shape: [1, 28, 28] });
    const ca = (await classify(a)).features;
    const cb = (await classify(b)).features;
    // the same numbers: same input values, same session
    for (let i = 0; i < a.length; i++) expect(Array.from(fa[i]!)).toEqual(Array.from(ca[i]!));
    const want = frechetDistance(fitGaussian(cb), fitGaussian(ca));
    const got = compareFeatures(fa, fb);
    expect(want).toBeGreaterThan(0);
    // 40 < 128: computed in the samples' span; metrics.ts's route clamps the singular covariances' round-off
    // eigenvalues and carries ~1e-7 relative error there (the closed-form test below shows which is closer)
    expect(Math.abs(got.fidToFp! - want) / want).toBeLessThan(1e-5);
    expect(got.n).toBe(40);
    expect(got.dim).toBe(128);
    // 40 samples for 128 dimensions: said so
    expect(got.note).toMatch(/40 samples .* 128 feature dimensions.*equal n/);
  });

  it('FID(a, a) = 0 and cosine(a, a) = 1; a perturbed set is farther, its worst pair where the damage is', async () => {
    const a = digits();
    const j = await openJudge(CLASSIFIER);
    const fa = await judgeFeatures(j, a, { shape: [1, 28, 28] });
    const same = compareFeatures(fa, fa);
    const trace = fitGaussian(fa).cov.reduce((s, v, i) => (i % 129 === 0 ? s + v : s), 0);
    expect(same.fidToFp!).toBeLessThan(1e-9 * trace);
    expect(same.cosine.mean).toBeCloseTo(1, 12);
    expect(same.cosine.min).toBeCloseTo(1, 12);
    const r = new Rng(9);
    const b = a.map((img, i) => (i === 13 ? img.map((v) => -v) : img.map((v) => v + 0.2 * (r.uniform() - 0.5))));
    const fb = await judgeFeatures(j, b, { shape: [1, 28, 28] });
    const diff = compareFeatures(fa, fb);
    expect(diff.fidToFp!).toBeGreaterThan(0);
    expect(diff.cosine.mean).toBeLessThan(1);
    expect(diff.cosine.minIndex).toBe(13);
    expect(diff.cosine.min).toBe(diff.cosines[13]);
    expect(diff.cosines[13]).toBeCloseTo(cosineSimilarity(fa[13]!, fb[13]!), 12);
  });

  it('judges RGB images of another size: luma, then resize to 28x28', async () => {
    const j = await openJudge(CLASSIFIER);
    const r = new Rng(4);
    const img = Float32Array.from({ length: 3 * 32 * 32 }, () => r.uniform() * 2 - 1);
    const spec: JudgeInputSpec = { channels: 1, size: [28, 28], layout: 'NCHW', fit: 'stretch', normalize: '[0,1]' };
    const prepared = prepareImage(img, [3, 32, 32], spec);
    const [f] = await judgeFeatures(j, [img], { shape: [3, 32, 32] });
    const direct = await (await judgeSession(j)).run({ image: { type: 'float32', data: prepared, dims: [1, 1, 28, 28] } }, ['features']);
    expectClose(f!, direct.features!.data as Float32Array, 1e-6);
  });

  it('survives releaseSessions() between uses (dq eval releases sessions after each variant)', async () => {
    const j = await openJudge(CLASSIFIER);
    const a = digits(1);
    const before = await judgeFeatures(j, a, { shape: [1, 28, 28] });
    await releaseSessions();
    const after = await judgeFeatures(j, a, { shape: [1, 28, 28] });
    expect(after.map((f) => Array.from(f))).toEqual(before.map((f) => Array.from(f)));
  });

  it('a folder holding model.onnx opens as its model', async () => {
    const j = await openJudge(join(ROOT, 'models', 'mnist-classifier'));
    expect(j.output.name).toBe('features');
  });
});

describe('which output holds the features', () => {
  it('CLIP vision with projection: image_embeds, not last_hidden_state', async () => {
    const j = await openJudge(join(FIX, 'clip_vision_proj.onnx'));
    expect(j.input).toMatchObject({ name: 'pixel_values', shape: [3, 16, 16], sizeSource: 'graph' });
    expect(j.output).toMatchObject({ name: 'image_embeds', width: 6, pickedBy: 'name' });
    await expect(openJudge(join(FIX, 'clip_vision_proj.onnx'), { output: 'last_hidden_state' })).rejects.toThrow(
      /output 'last_hidden_state' cannot be used as features: its shape \[1, 4, 8\] for 1 image is not one vector per image/,
    );
  });

  it('Inception-like: the widest per-image vector, [N, 2048, 1, 1] flattened; a dynamic size takes the default or the option', async () => {
    const j = await openJudge(join(FIX, 'inception_pool.onnx'));
    expect(j.output).toMatchObject({ name: 'z', width: 2048, pickedBy: 'widest', probeShape: [1, 2048, 1, 1] });
    expect(j.input).toMatchObject({ size: [224, 224], sizeSource: 'default' });
    const own = await openJudge(join(FIX, 'inception_pool.onnx'), { size: [5, 7] });
    expect(own.input).toMatchObject({ size: [5, 7], sizeSource: 'option' });
    const f = await judgeFeatures(own, REF.inception.images, { shape: REF.inception.shape });
    expect(f).toHaveLength(2);
    for (let i = 0; i < 2; i++) expectClose(f[i]!, REF.inception.z[i]!, 1e-4);
    // the head, by name
    const head = await openJudge(join(FIX, 'inception_pool.onnx'), { output: 'y', size: 8 });
    expect(head.output).toMatchObject({ name: 'y', width: 16, pickedBy: 'option' });
  });

  const o = (name: string, dims: number[], type = 'float32'): OutputCandidate => ({ name, dims, type });
  it('rules: names first (in order), then the one non-head, then the widest; heads last, with a warning', () => {
    expect(pickFeatureOutput('m', [o('pooler_output', [2, 1024]), o('image_embeds', [2, 768])], 2)).toMatchObject({ name: 'image_embeds', pickedBy: 'name' });
    expect(pickFeatureOutput('m', [o('last_hidden_state', [2, 257, 1024]), o('pooler_output', [2, 1024])], 2)).toMatchObject({ name: 'pooler_output' });
    expect(pickFeatureOutput('m', [o('logits', [2, 10]), o('features', [2, 128])], 2)).toMatchObject({ name: 'features', width: 128 });
    expect(pickFeatureOutput('m', [o('logits', [2, 1000]), o('1234', [2, 768])], 2)).toMatchObject({ name: '1234', pickedBy: 'only' });
    expect(pickFeatureOutput('m', [o('a', [2, 64]), o('b', [2, 512, 1, 1]), o('c', [2, 256])], 2)).toMatchObject({ name: 'b', width: 512, pickedBy: 'widest' });
    const head = pickFeatureOutput('m', [o('probs', [2, 10]), o('map', [2, 8, 4, 4])], 2);
    expect(head).toMatchObject({ name: 'probs', pickedBy: 'only' });
    expect(head.warning).toMatch(/looks like a classification head/);
    // integers and batch-less shapes are not features
    expect(pickFeatureOutput('m', [o('argmax', [2, 1], 'int64'), o('embed_all', [4, 8]), o('x', [2, 3])], 2)).toMatchObject({ name: 'x' });
  });

  it('a judge with nothing usable, or a named output it lacks, is refused in one line', async () => {
    await expect(openJudge(join(FIX, 'spatial_only.onnx'))).rejects.toThrow(
      /has no output that is one feature vector per image .*; its outputs: map \[1, 4, 8, 8\] float32, tokens \[1, 64, 3\] float32/,
    );
    await expect(openJudge(CLASSIFIER, { output: 'pool5' })).rejects.toThrow(/has no output 'pool5'; its outputs: (logits|features) \[1, (10|128)\] float32, /);
  });
});

describe('preprocessing against the torch-checked reference', () => {
  for (const c of REF.cases) {
    it(c.name, () => {
      const fit = c.name.includes('center-crop') ? 'center-crop' : 'stretch';
      const spec: JudgeInputSpec = { channels: c.channels, size: c.size, layout: 'NCHW', fit, normalize: '[0,1]' };
      expectClose(prepareImage(Float32Array.from(c.image), c.shape, spec), c.expected, 2e-6);
    });
  }

  it('an image at the judge\'s size is passed through as classify() maps it', () => {
    const img = Float32Array.from([-1.5, -1, -0.25, 0, 0.3, 1, 1.2, 0.999]);
    const spec: JudgeInputSpec = { channels: 1, size: [2, 4], layout: 'NCHW', fit: 'stretch', normalize: '[0,1]' };
    expect(Array.from(prepareImage(img, [1, 2, 4], spec))).toEqual(Array.from(Float32Array.from(img, (v) => Math.min(1, Math.max(0, (v + 1) / 2)))));
  });

  it('ranges: [-1,1], [0,255], CLIP and ImageNet mean/std per channel; NHWC interleaves', () => {
    const c = refCase('rgb down 4x5');
    const base: JudgeInputSpec = { channels: 3, size: [4, 5], layout: 'NCHW', fit: 'stretch', normalize: '[0,1]' };
    const img = Float32Array.from(c.image);
    expectClose(prepareImage(img, c.shape, { ...base, normalize: '[-1,1]' }), c.expected.map((v) => 2 * v - 1), 4e-6);
    expectClose(prepareImage(img, c.shape, { ...base, normalize: '[0,255]' }), c.expected.map((v) => 255 * v), 5e-4);
    expectClose(prepareImage(img, c.shape, { ...base, normalize: 'clip' }), c.expected.map((v, i) => (v - CLIP_MEAN[Math.floor(i / 20)]!) / CLIP_STD[Math.floor(i / 20)]!), 1e-5);
    const inet = [[0.485, 0.229], [0.456, 0.224], [0.406, 0.225]];
    expectClose(prepareImage(img, c.shape, { ...base, normalize: 'imagenet' }), c.expected.map((v, i) => (v - inet[Math.floor(i / 20)]![0]!) / inet[Math.floor(i / 20)]![1]!), 1e-5);
    const hwc = c.expected.map((_, k) => c.expected[(k % 3) * 20 + Math.floor(k / 3)]!);
    expectClose(prepareImage(img, c.shape, { ...base, layout: 'NHWC' }), hwc, 2e-6);
  });

  it('through a graph: static batch 2 padded for 3 images; NHWC with static batch 1', async () => {
    const g = await openJudge(join(FIX, 'flatten_gray.onnx'));
    expect(g.input).toMatchObject({ batch: 2, shape: [1, 6, 9] });
    const c1 = refCase('rgb down to gray 6x9');
    const c2 = refCase('rgb2 down to gray 6x9');
    const f = await judgeFeatures(g, [c1.image, c2.image, c1.image], { shape: c1.shape, batch: 5 });
    expect(f).toHaveLength(3);
    expectClose(f[0]!, c1.expected, 2e-6);
    expectClose(f[1]!, c2.expected, 2e-6);
    expectClose(f[2]!, c1.expected, 2e-6);
    const n = await openJudge(join(FIX, 'flatten_nhwc.onnx'), { normalize: '[-1,1]' });
    expect(n.input).toMatchObject({ layout: 'NHWC', batch: 1, size: [4, 5], channels: 3 });
    const c = refCase('rgb down 4x5');
    const [h] = await judgeFeatures(n, [c.image], { shape: c.shape });
    expectClose(h!, c.expected.map((_, k) => 2 * c.expected[(k % 3) * 20 + Math.floor(k / 3)]! - 1), 4e-6);
  });

  it('float16 judges: fed and read as half floats', async () => {
    const j = await openJudge(join(FIX, 'fp16_embed.onnx'));
    expect(j.input.type).toBe('float16');
    expect(j.output).toMatchObject({ name: 'embeddings', width: 3, type: 'float16' });
    const img = Float32Array.from({ length: 48 }, (_, i) => Math.sin(i));
    const [f] = await judgeFeatures(j, [img], { shape: [3, 4, 4] });
    const want = [0, 1, 2].map((c) => img.slice(c * 16, c * 16 + 16).reduce((s, v) => s + (v + 1) / 2, 0) / 16);
    expectClose(f!, want, 2e-3);
  });
});

describe('FID and cosine', () => {
  const r = new Rng(11);
  const set = (n: number, d: number, shift = 0) =>
    Array.from({ length: n }, () => r.normal(new Float64Array(d)).map((v, i) => v * (1 + (i % 3)) + shift * (i % 2)));

  it('the span computation (n < d) equals fitGaussian + frechetDistance, sets of unequal sizes too', () => {
    for (const [n1, n2, d] of [[12, 9, 30], [9, 12, 30], [20, 20, 21], [40, 35, 30]] as const) {
      const a = set(n1, d);
      const b = set(n2, d, 0.7);
      const want = frechetDistance(fitGaussian(a), fitGaussian(b));
      expect(Math.abs(frechetFromFeatures(a, b) - want) / want).toBeLessThan(1e-7);
    }
  });

  it('closed forms with n < d: a scaled set (FID = (|m|^2 + Tr S) (1 - s)^2), a shifted set (FID = |c|^2)', () => {
    const a = set(15, 40, 0.3);
    const g = fitGaussian(a);
    let m2 = 0;
    let tr = 0;
    for (let i = 0; i < 40; i++) {
      m2 += g.mean[i]! ** 2;
      tr += g.cov[i * 41]!;
    }
    const s = 1.7;
    const want = (m2 + tr) * (1 - s) ** 2;
    expect(Math.abs(frechetFromFeatures(a, a.map((f) => f.map((v) => v * s))) - want) / want).toBeLessThan(1e-10);
    const c = Float64Array.from({ length: 40 }, (_, i) => Math.cos(i));
    const c2 = c.reduce((x, v) => x + v * v, 0);
    expect(Math.abs(frechetFromFeatures(a, a.map((f) => f.map((v, i) => v + c[i]!))) - c2) / c2).toBeLessThan(1e-7);
  });

  it('a note when samples do not outnumber dimensions, none when they do', () => {
    expect(compareFeatures(set(10, 10), set(10, 10)).note).toMatch(/singular/);
    const big = compareFeatures(set(30, 5), set(30, 5, 1));
    expect(big.note).toBeNull();
    expect(big.fidToFp).toBeGreaterThan(0);
    const one = compareFeatures(set(1, 5), set(1, 5));
    expect(one.fidToFp).toBeNull();
    expect(one.note).toMatch(/at least 2/);
  });

  it('cosine: the formula, zero vectors', () => {
    expect(cosineSimilarity([1, 0], [1, 1])).toBeCloseTo(Math.SQRT1_2, 14);
    expect(cosineSimilarity([1, 2], [-2, -4])).toBeCloseTo(-1, 14);
    expect(cosineSimilarity([0, 0], [0, 0])).toBe(1);
    expect(cosineSimilarity([0, 0], [1, 0])).toBe(0);
  });

  it('sets that do not pair are refused', () => {
    expect(() => compareFeatures(set(3, 4), set(4, 4))).toThrow(/FP has 3 images and the variant 4/);
    expect(() => compareFeatures(set(3, 4), set(3, 5))).toThrow(/different widths/);
  });
});

describe('errors', () => {
  it('a missing file, a file that is not ONNX, a model without an image input', async () => {
    await expect(openJudge('/nonexistent/judge.onnx')).rejects.toThrow(/^judge model not found: \/nonexistent\/judge.onnx$/);
    const bad = join(tmp(), 'judge.onnx');
    writeFileSync(bad, 'this is not a model\n');
    await expect(openJudge(bad)).rejects.toThrow(/not a valid ONNX model/);
    await expect(openJudge(join(FIX, 'vector_input.onnx'))).rejects.toThrow(/has no image input \(a float tensor of rank 4.*\); its inputs: x \[N, 10\] float32/);
  });

  it('options that do not fit the judge, images that do not fit their shape, cancellation', async () => {
    await expect(openJudge(CLASSIFIER, { normalize: 'clip' })).rejects.toThrow(/takes 1-channel images; 'clip' normalization is for RGB judges/);
    await expect(openJudge(CLASSIFIER, { size: 32 })).rejects.toThrow(/takes 28x28 images .*a size of 32x32 cannot be used/);
    const j = await openJudge(CLASSIFIER);
    await expect(judgeFeatures(j, [new Float32Array(100)], { shape: [1, 28, 28] })).rejects.toThrow(/an image has 100 values, not 1x28x28/);
    await expect(judgeFeatures(j, [new Float32Array(4 * 4)], { shape: [4, 2, 2] })).rejects.toThrow(/grey or RGB images, got 4 channels/);
    const ac = new AbortController();
    ac.abort();
    await expect(judgeFeatures(j, [new Float32Array(784)], { shape: [1, 28, 28], signal: ac.signal })).rejects.toMatchObject({ code: 'CANCELLED' });
  });
});
