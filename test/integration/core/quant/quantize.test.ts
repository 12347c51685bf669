/**
 * Quantized variants: every preset writes a variant that samples like a pipeline; weights lie on their format's
 * grid; activation parameters are fed per timestep; 8-bit quantization everywhere stays close to FP.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { psnr } from '../../../../src-main/core/eval/metrics';
import { loadOnnx, tensorBytes } from '../../../../src-main/core/onnx/io';
import { releaseSessions } from '../../../../src-main/core/pipeline/pipeline';
import { openPipeline } from '../../../../src-main/core/open';
import { sample } from '../../../../src-main/core/pipeline/sample';
import { calibrate, type CalibrationRecord } from '../../../../src-main/core/quant/calibrate';
import { quantizePipeline, type Manifest } from '../../../../src-main/core/quant/quantize';
import { listPresets, loadRecipe } from '../../../../src-main/core/quant/recipe';
import { VariantTweaker } from '../../../../src-main/core/quant/tweak';
import { ROOT, tmp, TINY } from '../../../helpers';

const work = tmp();
let rec: CalibrationRecord;
const recPath = join(work, 'calib.json');
const manifests = new Map<string, Manifest>();
const req = { seeds: [0, 1, 2, 3], classes: [0, 3, 5, 8], steps: 5, sampler: 'ddim' as const, guidance: 2 };
let fpImages: Float32Array[];

beforeAll(async () => {
  rec = await calibrate(TINY, recPath, { samples: 8, steps: 5, batchSize: 8, timesteps: 'all', gram: true });
  const { pipeline, session } = await openPipeline(TINY, 'cpu');
  fpImages = (await sample(pipeline, session, req)).images;
  for (const p of listPresets()) manifests.set(p, await quantizePipeline({ pipelineDir: TINY, recipe: loadRecipe(p), record: rec, recordPath: recPath, out: join(work, p) }));
}, 300_000);
afterAll(async () => {
  await releaseSessions();
  rmSync(work, { recursive: true, force: true });
});

function meanPsnr(a: Float32Array[], b: Float32Array[]): number {
  return a.reduce((s, img, i) => s + psnr(img, b[i]!), 0) / a.length;
}

describe.each(listPresets())('%s', (preset) => {
  it('writes a variant that samples like a pipeline, and a manifest that says what was done', async () => {
    const m = manifests.get(preset)!;
    expect(m.kind).toBe('dq-variant');
    expect(m.simulated).toBe(true);
    expect(m.summary.quantized).toBeGreaterThan(10);
    expect(m.layers.length).toBe(33);
    for (const l of m.layers) expect(Boolean(l.weight) !== Boolean(l.spared)).toBe(true);
    const { pipeline, session } = await openPipeline(join(work, preset), 'cpu');
    expect(pipeline.variant?.recipe).toBe(preset);
    const res = await sample(pipeline, session, req);
    const p = meanPsnr(fpImages, res.images);
    console.log(`${preset}: PSNR vs FP ${p.toFixed(1)} dB (4 images, 5 DDIM steps), ${m.summary.weightBitsPerParameter} weight bits/parameter`);
    expect(Number.isFinite(p)).toBe(true);
    expect(res.images.every((img) => img.every(Number.isFinite))).toBe(true);
  });
});

describe('what the presets do', () => {
  it('8-bit everywhere (naive-w8a8: every layer, first/last/time region included) stays close to FP', async () => {
    const m = manifests.get('naive-w8a8')!;
    expect(m.summary.spared).toBe(0);
    const { pipeline, session } = await openPipeline(join(work, 'naive-w8a8'), 'cpu');
    expect(meanPsnr(fpImages, (await sample(pipeline, session, req)).images)).toBeGreaterThan(25);
  });

  it('INT4 per-channel weights hold at most 16 distinct values per output channel (and per split half)', () => {
    const m = manifests.get('q-diffusion-w4a8')!;
    const layer = m.layers.find((l) => l.name === '/down1/conv1/Conv')!;
    expect(layer.weight!.granularity).toMatch(/per channel/);
    const loaded = loadOnnx(join(work, 'q-diffusion-w4a8', 'unet', 'model.onnx'));
    const w = loaded.model.graph!.initializer!.find((t) => t.name === 'down1.conv1.weight')!;
    const b = tensorBytes(loaded, w);
    const f = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
    const per = f.length / 64;
    for (let o = 0; o < 64; o++) expect(new Set(f.subarray(o * per, (o + 1) * per)).size).toBeLessThanOrEqual(16);
    const split = m.layers.find((l) => l.name === '/up1/shortcut/Conv')!;
    expect(split.weight!.granularity).toMatch(/split at input channel 64/);
  });

  it('spares what the recipe keeps in FP, with reasons', () => {
    const q = manifests.get('q-diffusion-w4a8')!;
    expect(q.layers.filter((l) => l.spared).map((l) => [l.name, l.spared])).toEqual([
      ['/conv_in/Conv', 'first layer (keepFp)'],
      ['/conv_out/Conv', 'last layer (keepFp)'],
    ]);
    const t = manifests.get('tfmq-w4a8')!;
    expect(t.layers.filter((l) => l.spared?.startsWith('time-only region'))).toHaveLength(8);
  });

  it('per-timestep activation parameters: one set per calibrated timestep; otherwise one set', () => {
    const per = JSON.parse(readFileSync(join(work, 'int8-w8a8', 'quant', 'params.json'), 'utf8'));
    expect(per.activations.length).toBeGreaterThan(20);
    for (const a of per.activations) expect(a.table.map((e: { t: number }) => e.t)).toEqual(rec.timesteps);
    const one = JSON.parse(readFileSync(join(work, 'q-diffusion-w8a8', 'quant', 'params.json'), 'utf8'));
    for (const a of one.activations) expect(a.table).toHaveLength(1);
    // split shortcut: two quantizers (halves) at each split site
    expect(one.activations.filter((a: { half: number }) => a.half === 1).length).toBeGreaterThanOrEqual(2);
  });

  it('TFMQ cache: the time-only region is a separate FP model and the variant no longer reads the timestep', () => {
    expect(existsSync(join(work, 'tfmq-w4a8', 'temporal', 'model.onnx'))).toBe(true);
    const unet = loadOnnx(join(work, 'tfmq-w4a8', 'unet', 'model.onnx')).model;
    expect((unet.graph!.input ?? []).map((v) => v.name)).not.toContain('timestep');
  });

  it('refuses a calibration record made for another model', async () => {
    const other = { ...rec, unetSha256: 'f'.repeat(64) };
    await expect(quantizePipeline({ pipelineDir: TINY, recipe: loadRecipe('int8-w8a8'), record: other, out: join(work, 'x') })).rejects.toThrow(/made for another model/);
    await expect(quantizePipeline({ pipelineDir: TINY, recipe: loadRecipe('int8-w8a8'), record: null, out: join(work, 'x') })).rejects.toThrow(/give a calibration record/);
    expect(existsSync(join(work, 'x'))).toBe(false);
  });
});

describe('TFMQ disturbance-aware temporal features (temporal: auto)', () => {
  const base = () => ({ ...loadRecipe('int8-w8a8'), temporal: 'auto' as const });
  it('measures every temporal feature and caches exactly those above the threshold', async () => {
    const m = await quantizePipeline({ pipelineDir: TINY, recipe: { ...base(), temporalThreshold: 0.01 }, record: rec, recordPath: recPath, out: join(work, 'auto') });
    const t = m.temporal!;
    expect(t.mode).toBe('auto');
    expect(t.disturbance).toHaveLength(12);
    for (const d of t.disturbance) {
      expect(d.max).toBeGreaterThan(0); // 8-bit quantization does change them
      expect(d.max).toBeLessThan(0.5);
      expect(d.mean).toBeLessThanOrEqual(d.max);
    }
    expect(t.cached).toEqual(t.disturbance.filter((d) => d.max > 0.01).map((d) => d.feature));
    const { pipeline, session } = await openPipeline(join(work, 'auto'), 'cpu');
    expect(meanPsnr(fpImages, (await sample(pipeline, session, req)).images)).toBeGreaterThan(25);
  });

  it('a threshold above every disturbance caches nothing: the whole time-only region stays quantized in the graph', async () => {
    const m = await quantizePipeline({ pipelineDir: TINY, recipe: { ...base(), temporalThreshold: 1e6 }, record: rec, recordPath: recPath, out: join(work, 'auto-none') });
    expect(m.temporal!.cached).toEqual([]);
    expect(m.summary.spared).toBe(0);
    expect(existsSync(join(work, 'auto-none', 'temporal', 'model.onnx'))).toBe(false);
    const unet = loadOnnx(join(work, 'auto-none', 'unet', 'model.onnx')).model;
    expect((unet.graph!.input ?? []).map((v) => v.name)).toContain('timestep');
  });

  it('a threshold below every disturbance caches all features: the same layers spared as cache mode', async () => {
    const m = await quantizePipeline({ pipelineDir: TINY, recipe: { ...base(), temporalThreshold: 1e-9 }, record: rec, recordPath: recPath, out: join(work, 'auto-all') });
    expect(m.temporal!.cached).toHaveLength(12);
    const cache = manifests.get('tfmq-w4a8')!; // cache mode: every temporal feature cached
    const timeOnly = (x: Manifest) => x.layers.filter((l) => l.spared?.startsWith('time-only region')).map((l) => l.name).sort();
    expect(m.layers.filter((l) => l.spared).map((l) => l.name).sort()).toEqual(timeOnly(cache));
    expect(timeOnly(m)).toHaveLength(8);
    const params = JSON.parse(readFileSync(join(work, 'auto-all', 'quant', 'params.json'), 'utf8'));
    const unet = loadOnnx(join(work, 'auto-all', 'unet', 'model.onnx')).model;
    const inputs = new Set((unet.graph!.input ?? []).map((v) => v.name));
    // every parameter the variant will be fed is an input of its graph (quantizers of the cut region are gone)
    for (const a of params.activations) expect(inputs.has(a.scaleInput)).toBe(true);
  });
});

it('per-layer overrides keep named layers in FP, and refuse names the model lacks', async () => {
  const preset = loadRecipe('int4-w4a16');
  const r = { ...preset, weights: { ...preset.weights, rounding: 'nearest' as const } };
  const m = await quantizePipeline({ pipelineDir: TINY, recipe: { ...r, keepLayers: ['/mid1/conv1/Conv'] }, record: null, out: join(work, 'k') });
  expect(m.layers.find((l) => l.name === '/mid1/conv1/Conv')!.spared).toBe('kept in FP by the recipe (keepLayers)');
  await expect(quantizePipeline({ pipelineDir: TINY, recipe: { ...r, keepLayers: ['/nope/Conv'] }, record: null, out: join(work, 'k2') })).rejects.toThrow(/keepLayers names '\/nope\/Conv'/);
});

describe('interactive re-quantization (tweak.ts): one layer changed, everything else reused', () => {
  const same = (a: Float32Array[], b: Float32Array[]) => a.every((img, i) => img.every((v, j) => Object.is(v, b[i]![j])));

  it('no change samples the variant; every layer in FP samples FP exactly; one layer changes the images', async () => {
    const tw = await VariantTweaker.open(join(work, 'int8-w8a8'));
    try {
      const layers = tw.layers();
      expect(layers).toHaveLength(33);
      expect(layers.every((l) => l.fixed === null)).toBe(true);
      const { pipeline, session } = await openPipeline(join(work, 'int8-w8a8'), 'cpu');
      const variant = (await sample(pipeline, session, req)).images;
      const none = await tw.run({}, req);
      expect(none.changed).toEqual([]);
      expect(same(none.images, variant)).toBe(true);
      const allFp = await tw.run(Object.fromEntries(layers.map((l) => [l.name, 'fp' as const])), req);
      expect(allFp.changed).toHaveLength(33);
      expect(same(allFp.images, fpImages)).toBe(true);
      const one = await tw.run({ '/mid1/conv1/Conv': { kind: 'int', bits: 2, symmetric: true } }, req);
      expect(one.changed).toEqual(['/mid1/conv1/Conv']);
      expect(same(one.images, variant)).toBe(false);
      console.log(`tweak round trip (4 images, 5 steps): graph ${one.seconds.graph.toFixed(3)} s, session ${one.seconds.session.toFixed(3)} s, sampling ${one.seconds.sample.toFixed(3)} s`);
    } finally {
      await tw.release();
    }
  });

  it('a cached time-only layer is fixed; unknown layers and another source pipeline are refused in one line', async () => {
    const tw = await VariantTweaker.open(join(work, 'tfmq-w4a8'));
    try {
      const fixed = tw.layers().filter((l) => l.fixed);
      expect(fixed).toHaveLength(8);
      expect(fixed[0]!.fixed).toMatch(/time-only region/);
      await expect(tw.run({ [fixed[0]!.name]: 'fp' }, req)).rejects.toThrow(/cannot be changed here \(it is not in the variant's denoiser graph\)/);
      await expect(tw.run({ '/nope/Conv': 'fp' }, req)).rejects.toThrow(/layer '\/nope\/Conv' cannot be changed here \(no such layer\)/);
    } finally {
      await tw.release();
    }
    await expect(VariantTweaker.open(join(work, 'int8-w8a8'), 'cpu', join(ROOT, 'models', 'tiny-t2i'))).rejects.toThrow(/is not the one .* was made from/);
  });
});
