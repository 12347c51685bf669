/**
 * The comparison's own sampling loop and its probes along the FP trajectory, checked against `sample` and against
 * network evaluations made here by hand.
 */
import { cpSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runLoop, seedNoise } from '../../../src-main/core/compare/loop';
import { probeTrajectory, setupFpTemporal, setupVariantTemporal, type TemporalProbe } from '../../../src-main/core/compare/probe';
import { encodeModel, loadOnnx, saveOnnx } from '../../../src-main/core/onnx/io';
import { cutTemporalRegion, exposeTensors } from '../../../src-main/core/onnx/rewrite';
import { releaseSessions, type Pipeline } from '../../../src-main/core/pipeline/pipeline';
import { openPipeline } from '../../../src-main/core/open';
import { sample } from '../../../src-main/core/pipeline/sample';
import { Session } from '../../../src-main/core/runtime/onnx';
import { tmp, TINY } from '../../helpers';
import { makeQuantVariant, makeRenamedVariant } from './make-variant';

const work = tmp('dq-probe-');
let base: string;
let fp: { pipeline: Pipeline; session: Session };
let int8: { pipeline: Pipeline; session: Session };
let int4: { pipeline: Pipeline; session: Session };
let fpTemporal: TemporalProbe;
const SEEDS = [0, 5];
const LABELS = [1, 6];
const SETTINGS = { steps: 4, sampler: 'ddim' as const, guidance: 2, eta: 0, batchSize: 8 };

beforeAll(async () => {
  base = join(work, 'fp');
  cpSync(TINY, base, { recursive: true }); // a snapshot: the embedded model may be retrained meanwhile
  makeQuantVariant(base, join(work, 'int8'), 8);
  makeQuantVariant(base, join(work, 'int4'), 4);
  fp = await openPipeline(base);
  int8 = await openPipeline(join(work, 'int8'));
  int4 = await openPipeline(join(work, 'int4'));
  const t = await setupFpTemporal(fp.pipeline.unetPath, 'cpu');
  if (!t.ok) throw new Error(t.reason);
  fpTemporal = t.probe;
});
afterAll(async () => {
  await fpTemporal?.release();
  await releaseSessions();
  rmSync(work, { recursive: true, force: true });
});

describe('runLoop', () => {
  for (const sampler of ['ddim', 'ddpm', 'dpm++2m'] as const) {
    it(`from a seed's noise gives exactly the images sample() gives (${sampler})`, async () => {
      const settings = { ...SETTINGS, sampler, batchSize: 1 };
      const ref = await sample(fp.pipeline, fp.session, { ...settings, seeds: SEEDS, classes: LABELS });
      const noise = SEEDS.map((s) => seedNoise(s, 784));
      const own = await runLoop(fp.pipeline, fp.session, { ...settings, init: noise.map((n) => n.z), rngs: noise.map((n) => n.rng), labels: LABELS });
      expect(own.timesteps).toEqual(ref.timesteps);
      own.images.forEach((img, i) => expect(Buffer.compare(Buffer.from(img.buffer), Buffer.from(ref.images[i]!.buffer))).toBe(0));
    });
  }
});

describe('probeTrajectory', () => {
  it('finds no error for a second session of the same model, and follows the FP trajectory', async () => {
    const twin = await Session.create(fp.pipeline.unetPath, 'cpu');
    const twinTemporal = await setupVariantTemporal(fp.pipeline.unetPath, fpTemporal.features, 'cpu');
    expect(twinTemporal.ok).toBe(true);
    const r = await probeTrajectory(fp.pipeline, fp.session, fpTemporal, [{ pipeline: fp.pipeline, session: twin, temporal: twinTemporal.ok ? twinTemporal.probe : null }], {
      ...SETTINGS, seeds: SEEDS, labels: LABELS,
    });
    expect(r.eps[0]!.map((s) => s.rmse)).toEqual([0, 0, 0, 0]);
    expect(r.temporal[0]!.perStep.map((s) => s.rmse)).toEqual([0, 0, 0, 0]);
    expect(r.temporal[0]!.perFeature.every((f) => f.relative === 0)).toBe(true);
    const ref = await sample(fp.pipeline, fp.session, { ...SETTINGS, seeds: SEEDS, classes: LABELS });
    r.images.forEach((img, i) => expect(Array.from(img)).toEqual(Array.from(ref.images[i]!)));
    await twin.release();
    if (twinTemporal.ok) await twinTemporal.probe.release();
  });

  it('measures the first step as a hand-made evaluation of both networks does, and more error at 4 bits than at 8', async () => {
    const temporal = async (dir: string) => {
      const t = await setupVariantTemporal(join(work, dir, 'unet', 'model.onnx'), fpTemporal.features, 'cpu');
      if (!t.ok) throw new Error(t.reason);
      return t.probe;
    };
    const r = await probeTrajectory(
      fp.pipeline,
      fp.session,
      fpTemporal,
      [
        { ...int8, temporal: await temporal('int8') },
        { ...int4, temporal: await temporal('int4') },
      ],
      { ...SETTINGS, seeds: SEEDS, labels: LABELS },
    );
    // scheduler_config: 1000 train steps, 'leading' spacing, steps_offset 1 -> 4 steps at 751, 501, 251, 1
    expect(r.timesteps).toEqual([751, 501, 251, 1]);
    // step 0 by hand: the input is the seeds' noise; eps = uncond + 2 (cond - uncond)
    const x = new Float32Array(4 * 784);
    SEEDS.forEach((s, k) => {
      const z = seedNoise(s, 784).z;
      x.set(Float32Array.from(z), k * 784);
      x.set(Float32Array.from(z), (k + 2) * 784);
    });
    const feeds = {
      sample: { type: 'float32' as const, data: x, dims: [4, 1, 28, 28] },
      timestep: { type: 'float32' as const, data: new Float32Array(4).fill(751), dims: [4] },
      class_labels: { type: 'int64' as const, data: BigInt64Array.from([1n, 6n, 10n, 10n]), dims: [4] },
    };
    const guided = async (s: Session) => {
      const o = (await s.run(feeds, ['out_sample'])).out_sample!.data as Float32Array;
      return Array.from({ length: 2 * 784 }, (_, j) => o[2 * 784 + j]! + 2 * (o[j]! - o[2 * 784 + j]!));
    };
    const e = await guided(fp.session);
    const e4 = await guided(int4.session);
    const d2 = e4.reduce((s, v, j) => s + (v - e[j]!) ** 2, 0);
    const n2 = e.reduce((s, v) => s + v * v, 0);
    expect(r.eps[1]![0]!.relative).toBeCloseTo(Math.sqrt(d2 / n2), 9);
    expect(r.eps[1]![0]!.rmse).toBeCloseTo(Math.sqrt(d2 / e.length), 9);
    for (let s = 0; s < 4; s++) {
      expect(r.eps[0]![s]!.relative).toBeGreaterThan(0);
      expect(r.eps[1]![s]!.relative).toBeGreaterThan(r.eps[0]![s]!.relative!);
      expect(r.temporal[0]!.perStep[s]!.relative).toBeGreaterThan(0);
      expect(r.temporal[1]!.perStep[s]!.relative).toBeGreaterThan(r.temporal[0]!.perStep[s]!.relative!);
    }
  });
});

describe('temporal features', () => {
  it('depend on the timestep and class, not on the sample', async () => {
    const run = async (x: number, t: number, c: number) => (await fpTemporal.read(fp.pipeline, new Float64Array(784).fill(x), t, [c], false, 1)).flatMap((f) => Array.from(f));
    const a = await run(0, 500, 3);
    const b = await run(0.7, 500, 3);
    const c = await run(0, 100, 3);
    const d = await run(0, 500, 4);
    expect(fpTemporal.features.length).toBeGreaterThan(0);
    expect(fpTemporal.source).toBe('graph');
    expect(b).toEqual(a);
    expect(c).not.toEqual(a);
    expect(d).not.toEqual(a);
  });

  it('are refused, with the reason, for a graph whose tensors differ or that takes them as inputs', async () => {
    const renamed = makeRenamedVariant(base, join(work, 'renamed'));
    const r1 = await setupVariantTemporal(join(renamed, 'unet', 'model.onnx'), fpTemporal.features, 'cpu');
    expect(r1.ok).toBe(false);
    expect(!r1.ok && r1.reason).toMatch(/graph differs from FP's: 12 of 12 temporal feature tensors are not in it/);
    const loaded = loadOnnx(fp.pipeline.unetPath);
    cutTemporalRegion(loaded.model);
    const cutPath = join(work, 'cut.onnx');
    saveOnnx(loaded.model, cutPath);
    const r2 = await setupVariantTemporal(cutPath, fpTemporal.features, 'cpu');
    expect(!r2.ok && r2.reason).toMatch(/takes the temporal features as inputs \(a cut graph\), and nothing feeds them/);
    // a pipeline that feeds only some of them
    const partial: Pipeline = { ...fp.pipeline, extraFeeds: async () => ({ [fpTemporal.features[0]!]: { type: 'float32', data: new Float32Array(1), dims: [1] } }) };
    const r3 = await setupVariantTemporal(cutPath, fpTemporal.features, 'cpu', partial);
    expect(!r3.ok && r3.reason).toMatch(/its pipeline does not feed 11 of them/);
  });

  it('of a cut variant are the values its pipeline feeds (TFMQ cache mode)', async () => {
    const loaded = loadOnnx(fp.pipeline.unetPath);
    cutTemporalRegion(loaded.model);
    const cutPath = join(work, 'cut-fed.onnx');
    saveOnnx(loaded.model, cutPath);
    // the cache: FP's own features (from a tapped copy of the FP graph), scaled by 1.01 so the probe has an error to find
    const tapped = loadOnnx(fp.pipeline.unetPath);
    exposeTensors(tapped.model, fpTemporal.features);
    const featureModel = await Session.create(encodeModel(tapped.model), 'cpu');
    const fed: Pipeline = {
      ...fp.pipeline,
      io: { ...fp.pipeline.io, feedsTimestep: false, feedsClassLabels: false }, // the cut graph reads neither
      extraFeeds: async (t, labels, rows) => {
        const out = await featureModel.run(
          {
            sample: { type: 'float32', data: new Float32Array(rows * 784), dims: [rows, 1, 28, 28] },
            timestep: { type: 'float32', data: new Float32Array(rows).fill(t), dims: [rows] },
            class_labels: { type: 'int64', data: labels!, dims: [rows] },
          },
          fpTemporal.features,
        );
        return Object.fromEntries(fpTemporal.features.map((f) => [f, { type: 'float32' as const, data: (out[f]!.data as Float32Array).map((v) => v * 1.01), dims: out[f]!.dims }]));
      },
    };
    const r = await setupVariantTemporal(cutPath, fpTemporal.features, 'cpu', fed);
    expect(r.ok && r.probe.source).toBe('fed');
    if (!r.ok) return;
    const session = await Session.create(cutPath, 'cpu');
    const res = await probeTrajectory(fp.pipeline, fp.session, fpTemporal, [{ pipeline: fed, session, temporal: r.probe }], {
      ...SETTINGS, seeds: SEEDS, labels: LABELS,
    });
    for (const s of res.temporal[0]!.perStep) expect(s.relative).toBeCloseTo(0.01, 6);
    for (const s of res.eps[0]!) expect(s.relative).toBeGreaterThan(0); // the denoiser sees the scaled features
    await session.release();
    await featureModel.release();
  });
});
