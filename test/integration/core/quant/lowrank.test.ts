/**
 * SVDQuant's low-rank branch (recipe lowRank, quant/lowrank.ts): each layer's rank-r part in float16 beside it on
 * its FP input, the residual quantized; bits counted; exported with the branches stored as float16.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { psnr } from '../../../../src-main/core/eval/metrics';
import { exportPipeline } from '../../../../src-main/core/export/export';
import { loadOnnx } from '../../../../src-main/core/onnx/io';
import { openPipeline } from '../../../../src-main/core/open';
import { releaseSessions } from '../../../../src-main/core/pipeline/pipeline';
import { sample } from '../../../../src-main/core/pipeline/sample';
import { quantizePipeline, type Manifest } from '../../../../src-main/core/quant/quantize';
import { loadRecipe, type Recipe } from '../../../../src-main/core/quant/recipe';
import { Session } from '../../../../src-main/core/runtime/onnx';
import { tmp, TINY } from '../../../helpers';

const work = tmp();
const weightOnly = (bits: number, rank: number | null): Recipe =>
  ({ ...loadRecipe('int4-w4a16'), name: `w${bits}-lr${rank ?? 0}`, weights: { ...loadRecipe('int4-w4a16').weights, format: { kind: 'int', bits, symmetric: true }, rounding: 'nearest' }, lowRank: rank ? { rank } : null }) as Recipe;
const m = new Map<string, Manifest>();

beforeAll(async () => {
  for (const [bits, rank] of [[8, 4], [4, 4], [4, null]] as const) {
    const r = weightOnly(bits, rank);
    m.set(r.name, await quantizePipeline({ pipelineDir: TINY, recipe: r, record: null, out: join(work, r.name) }));
  }
}, 120_000);
afterAll(async () => {
  await releaseSessions();
  rmSync(work, { recursive: true, force: true });
});

/** The denoiser's relative squared error against FP at a few timesteps, on one fixed batch of inputs. */
async function stepError(dir: string): Promise<number> {
  const N = 16;
  const x = Float32Array.from({ length: N * 28 * 28 }, (_, i) => Math.sin(i * 12.9898) * 1.3);
  const feeds = (t: number) => ({
    sample: { type: 'float32' as const, data: x, dims: [N, 1, 28, 28] },
    timestep: { type: 'float32' as const, data: new Float32Array(N).fill(t), dims: [N] },
    class_labels: { type: 'int64' as const, data: BigInt64Array.from({ length: N }, (_, i) => BigInt(i % 10)), dims: [N] },
  });
  const fp = await Session.create(join(TINY, 'unet', 'model.onnx'));
  const q = await Session.create(join(dir, 'unet', 'model.onnx'));
  let e = 0;
  for (const t of [100, 500]) {
    const a = Object.values(await fp.run(feeds(t)))[0]!.data as Float32Array;
    const b = Object.values(await q.run(feeds(t)))[0]!.data as Float32Array;
    let d = 0;
    let n = 0;
    a.forEach((v, i) => {
      d += (v - b[i]!) ** 2;
      n += v * v;
    });
    e += d / n;
  }
  await fp.release();
  await q.release();
  return e / 2;
}

describe('recipe lowRank', () => {
  it('adds a float16 branch beside each layer that takes one, counts its bits, and samples as the weights say', async () => {
    const lr = m.get('w8-lr4')!;
    const withBranch = lr.layers.filter((l) => /low-rank branch rank 4 in float16/.test(l.weight?.rounding ?? ''));
    expect(withBranch.length).toBeGreaterThan(20);
    // conv_out (1 output) is too narrow for rank 4: said so
    expect(lr.layers.find((l) => l.name === '/conv_out/Conv')!.weight!.rounding).toMatch(/no low-rank branch \(rank 4 is not below half of min\(out, in\)\)/);
    expect(lr.summary.weightBitsPerParameter).toBeGreaterThan(8.5);
    const graph = loadOnnx(join(work, 'w8-lr4', 'unet', 'model.onnx')).model.graph!;
    expect((graph.node ?? []).filter((n) => /^dq_lr\/\d+\/up/.test(n.output?.[0] ?? '')).length).toBe(withBranch.length);
    // 8-bit residuals plus the float16 branches: the images stay with FP's
    const req = { seeds: [0, 1, 2, 3], classes: [1, 3, 5, 7], steps: 5, sampler: 'ddim' as const, guidance: 2 };
    const fp = await openPipeline(TINY, 'cpu');
    const ref = (await sample(fp.pipeline, fp.session, req)).images;
    const v = await openPipeline(join(work, 'w8-lr4'), 'cpu');
    const imgs = (await sample(v.pipeline, v.session, req)).images;
    expect(imgs.reduce((s, im, i) => s + psnr(im, ref[i]!), 0) / imgs.length).toBeGreaterThan(35);
  });

  it('at 4 bits the residual quantizes with less error than the weight: the denoiser is closer to FP', async () => {
    const with4 = await stepError(join(work, 'w4-lr4'));
    const without = await stepError(join(work, 'w4-lr0'));
    console.log(`W4 weights, one evaluation against FP (t = 100, 500): relative squared error ${without.toExponential(2)} without the branch, ${with4.toExponential(2)} with rank 4`);
    expect(with4).toBeLessThan(without);
    expect(m.get('w4-lr4')!.summary.weightBitsPerParameter).toBeGreaterThan(m.get('w4-lr0')!.summary.weightBitsPerParameter + 1);
  });

  it('exports with the branches stored as float16', async () => {
    const x = await exportPipeline({ variantDir: join(work, 'w8-lr4'), out: join(work, 'export'), verify: { seeds: [0], steps: 3 } });
    expect(x.export.real.join('\n')).toMatch(/\d+ low-rank branches \(SVDQuant, recipe lowRank\) stored as float16/);
    expect(x.export.verification?.verdict?.ok).toBe(true);
    // (the export shortens tensor names) every branch factor is a float16 initializer read through a Cast to float32
    const g = loadOnnx(join(work, 'export', 'unet', 'model.onnx')).model.graph!;
    const half = new Set((g.initializer ?? []).filter((t) => t.data_type === 10).map((t) => t.name ?? ''));
    const casts = (g.node ?? []).filter((n) => n.op_type === 'Cast' && half.has(n.input?.[0] ?? ''));
    const branches = Number(/(\d+) low-rank branches/.exec(x.export.real.join('\n'))![1]);
    expect(branches).toBe(m.get('w8-lr4')!.layers.filter((l) => /low-rank branch rank/.test(l.weight?.rounding ?? '')).length);
    expect(casts.length).toBeGreaterThanOrEqual(2 * branches);
  });
});
