/**
 * PTQ on text-to-image pipelines (issue 17): the layer map's text-only region from the graph alone (checked against
 * diffusers' layer names, which the analysis never reads), calibration from prompts with both CFG halves, and the
 * text-feature cache: the cached keys and values are exactly what the FP denoiser computes, they are keyed by the
 * batch's prompts (one prompt's features never reach another's image), and variants keep the source's components.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { analyzeGraph } from '../../../../src-main/core/onnx/analysis';
import { encodeModel, loadOnnx } from '../../../../src-main/core/onnx/io';
import { exposeTensors } from '../../../../src-main/core/onnx/rewrite';
import { openPipeline } from '../../../../src-main/core/open';
import { buildFeeds, sample } from '../../../../src-main/core/pipeline/sample';
import { calibrate, DEFAULT_CALIBRATION, negativeOf, type CalibrationRecord } from '../../../../src-main/core/quant/calibrate';
import { quantizePipeline } from '../../../../src-main/core/quant/quantize';
import { parseRecipe, loadRecipe } from '../../../../src-main/core/quant/recipe';
import { readParams } from '../../../../src-main/core/quant/variant';
import { Session } from '../../../../src-main/core/runtime/onnx';
import { dq, ROOT, TINY, tmp } from '../../../helpers';

const F = (name: string) => join(ROOT, 'test', 'fixtures', name);
const T2I = join(ROOT, 'models', 'tiny-t2i');
const PROMPTS = ['a red seven on a blue background', 'the digit two in green on black', 'a white one on a red background'];

describe('the layer map of a cross-attention UNet', () => {
  it('finds the cross-attention keys and values (attn2.to_k / to_v in diffusers) and nothing else as text-only', () => {
    for (const dir of [T2I, F('sd15-optimum'), F('sd15-legacy')]) {
      const model = loadOnnx(join(dir, 'unet', 'model.onnx')).model;
      const m = analyzeGraph(model);
      expect(m.textInputs).toEqual(['encoder_hidden_states']);
      // the oracle: node names (Optimum's torch export keeps module paths); the analysis reads only the graph
      const named = m.quantizable.filter((l) => /attn2[^/]*\/to_[kv](_\d+)?\//.test(l.name)).map((l) => l.name);
      if (named.length) expect([...m.textOnly].sort()).toEqual(named.sort());
      expect(m.textOnly.length).toBeGreaterThan(0);
      expect(m.crossAttention).toEqual(m.textOnly);
      expect(m.addedEmbedding).toEqual([]);
      // every text-only layer reads the text states directly, and a feature per K and V
      for (const l of m.quantizable.filter((q) => m.textOnly.includes(q.name))) expect(l.input).toBe('encoder_hidden_states');
      expect(m.textFeatures.length).toBe(m.textOnly.length);
      expect(m.textFeaturesOfTime).toEqual([]);
    }
  });

  it("SDXL: the added embedding (text_embeds, time_ids) is conditioning, and a temporal cache covers it", () => {
    const m = analyzeGraph(loadOnnx(join(F('sdxl-optimum'), 'unet', 'model.onnx')).model);
    expect(m.textInputs.sort()).toEqual(['encoder_hidden_states', 'text_embeds', 'time_ids']);
    expect(m.addedEmbedding.length).toBe(2);
    for (const l of m.addedEmbedding) expect(l).toMatch(/add_embedding/);
    expect(m.temporalConditioning.sort()).toEqual(['text_embeds', 'time_ids']);
    expect(m.textFeaturesOfTime.length).toBe(1);
    expect(m.crossAttention.length).toBe(m.textOnly.length - 2);
  });

  it('dq info names the region, with the counts the layer map gives', () => {
    const m = analyzeGraph(loadOnnx(join(F('sd15-optimum'), 'unet', 'model.onnx')).model);
    const r = dq(['info', F('sd15-optimum')]);
    expect(r.stdout).toContain(`  text     ${m.textOnly.length} layers in the text-only region (fed by encoder_hidden_states; not by sample or timestep): ${m.crossAttention.length} cross-attention key/value projections; ${m.textFeatures.length} text features`);
    expect(dq(['info', TINY]).stdout).not.toMatch(/text-only region/);
  });

  it('a class-conditional model has no text-only region', () => {
    const m = analyzeGraph(loadOnnx(join(TINY, 'unet', 'model.onnx')).model);
    expect(m.textInputs).toEqual([]);
    expect(m.textOnly).toEqual([]);
    expect(m.textFeatures).toEqual([]);
  });
});

describe('calibration from prompts', () => {
  it('sees both CFG halves: the text site counts both halves\' rows per step', async () => {
    const out = join(tmp(), 'cal.json');
    const rec = await calibrate(T2I, out, { prompts: PROMPTS, samples: 3, steps: 2, guidance: 5, batchSize: 2, sampler: 'ddim' });
    expect(rec.settings.prompts).toEqual(PROMPTS);
    expect(rec.settings.negativePrompt).toBe('');
    const site = rec.sites.find((s) => s.tensor === 'encoder_hidden_states')!;
    expect(site.text).toBe(true);
    for (const step of rec.steps) expect(rec.stats[site.id]![0]![step]!.n).toBe(2 * 3);
    // unguided: one half
    const rec1 = await calibrate(T2I, join(tmp(), 'cal1.json'), { prompts: PROMPTS, samples: 3, steps: 1, guidance: 1, sampler: 'ddim' });
    expect(rec1.stats[site.id]![0]![rec1.steps[0]!]!.n).toBe(3);
    await expect(calibrate(TINY, join(tmp(), 'x.json'), { prompts: ['a seven'], samples: 2, steps: 1 })).rejects.toThrow(/tiny-mnist takes no text \(it is class-conditional\): leave out --prompts$/);
  }, 300_000);

  it("a prompt file's negative prompts go with their prompts (the common one fills in), one per prompt", async () => {
    const s = { ...DEFAULT_CALIBRATION, prompts: ['a', 'b', 'c'], negativePrompts: ['x', '', 'z'], negativePrompt: 'common' };
    expect([0, 1, 2, 3, 4].map((i) => negativeOf(s, i))).toEqual(['x', 'common', 'z', 'x', 'common']);
    expect(negativeOf({ ...DEFAULT_CALIBRATION, prompts: ['a'] }, 0)).toBe('');
    await expect(calibrate(T2I, join(tmp(), 'n.json'), { prompts: ['a', 'b'], negativePrompts: ['x'], samples: 2, steps: 1 })).rejects.toThrow(/^1 negative prompts for 2 prompts: give one per prompt$/);
  });
});

describe('the text-feature cache', () => {
  let rec: CalibrationRecord;
  let recPath: string;
  beforeAll(async () => {
    recPath = join(tmp(), 'cal.json');
    rec = await calibrate(T2I, recPath, { samples: 8, steps: 4 });
  }, 300_000);

  it("calibrated on the folder's calibration_prompts.txt with the pipeline's sampler and guidance (none given)", () => {
    const file = readFileSync(join(T2I, 'calibration_prompts.txt'), 'utf8').trim().split('\n');
    expect(rec.settings.prompts).toEqual(file);
    expect(rec.settings.sampler).toBe('ddim');
    expect(rec.settings.guidance).toBe(3); // model_index.json default_guidance
  });

  it('feeds the FP keys and values: the text model computes exactly what the FP unet does', async () => {
    const out = join(tmp(), 'v');
    const recipe = parseRecipe({ ...loadRecipe('naive-w8a8'), name: 'cache', text: 'cache' }, 'test');
    const m = await quantizePipeline({ pipelineDir: T2I, recipe, record: rec, recordPath: recPath, out });
    const params = readParams(out)!;
    const fpMap = analyzeGraph(loadOnnx(join(T2I, 'unet', 'model.onnx')).model);
    expect(params.text!.features.sort()).toEqual([...fpMap.textFeatures].sort());
    expect(m.text).toMatchObject({ mode: 'cache', cached: fpMap.textFeatures });
    for (const l of fpMap.textOnly) expect(m.layers.find((r) => r.name === l)!.spared).toMatch(/^text-only region: FP text features cached/);
    // the text model reads the text only: the sizes it took from the network upstream of each attention block
    // (diffusers' attention reads the batch from the query) are constants and the text's batch, so that network
    // is not in it (pipeline/region.ts)
    expect(params.text!.inputs).toEqual(['encoder_hidden_states']);
    expect(m.text!.sizes).toMatch(/^the text-feature models read their batch from the text: \d+ size reads/);
    expect(statSync(join(out, params.text!.model)).size).toBeLessThan(0.1 * statSync(join(T2I, 'unet', 'model.onnx')).size);
    // the variant's unet no longer has those layers
    const names = new Set((loadOnnx(join(out, 'unet', 'model.onnx')).model.graph!.node ?? []).map((n) => n.name));
    for (const l of fpMap.textOnly) expect(names.has(l)).toBe(false);

    // FP unet with the features exposed vs the text model, same feeds
    const { pipeline } = await openPipeline(T2I);
    const ids = await pipeline.text!.ids(PROMPTS, PROMPTS.map(() => ''), true);
    const [C, H, W] = pipeline.index.sampleShape;
    const x = Float64Array.from({ length: 3 * C * H * W }, (_, i) => Math.sin(i));
    const feeds = await buildFeeds(pipeline, x, 500, ids, true, 3, undefined, 3);
    const fpModel = loadOnnx(join(T2I, 'unet', 'model.onnx')).model;
    exposeTensors(fpModel, fpMap.textFeatures);
    const fp = await Session.create(encodeModel(fpModel), 'cpu');
    const text = await Session.create(join(out, params.text!.model), 'cpu');
    const a = await fp.run(feeds, fpMap.textFeatures);
    const b = await text.run(Object.fromEntries(text.inputNames.map((n) => [n, feeds[n]!])), fpMap.textFeatures);
    for (const f of fpMap.textFeatures) {
      expect(b[f]!.dims).toEqual(a[f]!.dims);
      const u = a[f]!.data as Float32Array;
      const v = b[f]!.data as Float32Array;
      let d = 0;
      for (let i = 0; i < u.length; i++) d = Math.max(d, Math.abs(u[i]! - v[i]!));
      expect(d).toBeLessThan(1e-5);
    }
    await fp.release();
    await text.release();
  }, 300_000);

  it('keys the cache by the batch: each image is what it is alone, whatever else is in the batch', async () => {
    const out = join(tmp(), 'v');
    const recipe = parseRecipe({ ...loadRecipe('tfmq-w4a8'), name: 'cache4', text: 'cache' }, 'test');
    await quantizePipeline({ pipelineDir: T2I, recipe, record: rec, recordPath: recPath, out });
    const { pipeline, session } = await openPipeline(out);
    const base = { classes: [], steps: 4, sampler: 'ddim' as const, guidance: 3 };
    const both = await sample(pipeline, session, { ...base, seeds: [1, 2], prompts: [PROMPTS[0]!, PROMPTS[1]!], batchSize: 2 });
    const one = await sample(pipeline, session, { ...base, seeds: [2], prompts: [PROMPTS[1]!], batchSize: 1 });
    const swapped = await sample(pipeline, session, { ...base, seeds: [2, 1], prompts: [PROMPTS[1]!, PROMPTS[0]!], batchSize: 2 });
    const maxDiff = (u: Float32Array, v: Float32Array) => u.reduce((m, x, i) => Math.max(m, Math.abs(x - v[i]!)), 0);
    expect(maxDiff(both.images[1]!, one.images[0]!)).toBeLessThan(1e-4);
    expect(maxDiff(both.images[0]!, swapped.images[1]!)).toBeLessThan(1e-4);
    // and different prompts give different images (the features are not shared across prompts)
    expect(maxDiff(both.images[0]!, both.images[1]!)).toBeGreaterThan(0.1);
  }, 300_000);

  it('auto: caches the features whose measured disturbance is above the threshold', async () => {
    const out = join(tmp(), 'v');
    const recipe = parseRecipe({ ...loadRecipe('tfmq-w4a8'), name: 'auto', text: 'auto', textThreshold: 0.02 }, 'test');
    const m = await quantizePipeline({ pipelineDir: T2I, recipe, record: rec, recordPath: recPath, out });
    const d = m.text!.disturbance;
    expect(d.length).toBe(14);
    expect(m.text!.cached.sort()).toEqual(d.filter((x) => x.max > 0.02).map((x) => x.feature).sort());
    for (const x of d) expect(x.max).toBeGreaterThanOrEqual(x.mean);
    // a threshold above every measured value caches nothing, and the text layers stay quantized
    const high = parseRecipe({ ...recipe, name: 'auto-high', textThreshold: Math.max(...d.map((x) => x.max)) * 2 }, 'test');
    const m2 = await quantizePipeline({ pipelineDir: T2I, recipe: high, record: rec, recordPath: recPath, out: join(tmp(), 'v2') });
    expect(m2.text!.cached).toEqual([]);
    for (const l of analyzeGraph(loadOnnx(join(T2I, 'unet', 'model.onnx')).model).textOnly) expect(m2.layers.find((r) => r.name === l)!.weight).not.toBeNull();
  }, 300_000);

  it('a variant keeps the source folder\'s components and layout', async () => {
    const out = join(tmp(), 'v');
    const w8 = parseRecipe({ name: 'w8', weights: { format: { kind: 'int', bits: 8, symmetric: true } }, activations: null }, 'test');
    await quantizePipeline({ pipelineDir: T2I, recipe: w8, record: null, out });
    const entries = readdirSync(out).sort();
    for (const c of ['model_index.json', 'scheduler', 'text_encoder', 'tokenizer', 'vae_decoder', 'unet', 'manifest.json', 'quant']) expect(entries).toContain(c);
    expect(existsSync(join(out, 'unet', 'config.json'))).toBe(true);
    expect(entries).not.toContain('README.md');
  }, 300_000);
});
