/**
 * GPTQ end to end: calibration collects Gram matrices in-graph (checked against an im2col Gram computed here), a
 * cancelled run resumes to the same matrices, and GPTQ-rounded weights sample much closer to FP than
 * round-to-nearest with the same format and groups.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { psnr } from '../../../../src-main/core/eval/metrics';
import { analyzeGraph } from '../../../../src-main/core/onnx/analysis';
import { encodeModel, loadOnnx } from '../../../../src-main/core/onnx/io';
import { exposeTensors } from '../../../../src-main/core/onnx/rewrite';
import { releaseSessions } from '../../../../src-main/core/pipeline/pipeline';
import { openPipeline } from '../../../../src-main/core/open';
import { sample } from '../../../../src-main/core/pipeline/sample';
import { calibrate, gramPath, readRecord, type CalibrationRecord } from '../../../../src-main/core/quant/calibrate';
import { buildGramModel, gramOutput, gramTargets, GramSums } from '../../../../src-main/core/quant/gram';
import { quantizePipeline, type Manifest } from '../../../../src-main/core/quant/quantize';
import { loadRecipe, parseRecipe, type Recipe } from '../../../../src-main/core/quant/recipe';
import { Session } from '../../../../src-main/core/runtime/onnx';
import { tmp, TINY } from '../../../helpers';

const work = tmp();
const recPath = join(work, 'calib.json');
const settings = { samples: 8, steps: 5, batchSize: 4, timesteps: 'all' as const, gram: true };
let rec: CalibrationRecord;
const req = { seeds: [0, 1, 2, 3], classes: [0, 3, 5, 8], steps: 5, sampler: 'ddim' as const, guidance: 2 };

beforeAll(async () => {
  rec = await calibrate(TINY, recPath, settings);
}, 300_000);
afterAll(async () => {
  await releaseSessions();
  rmSync(work, { recursive: true, force: true });
});

const feeds = (x: Float32Array, n: number, t: number) => ({
  sample: { type: 'float32' as const, data: x, dims: [n, 1, 28, 28] },
  timestep: { type: 'float32' as const, data: new Float32Array(n).fill(t), dims: [n] },
  class_labels: { type: 'int64' as const, data: new BigInt64Array(n).fill(3n), dims: [n] },
});

describe('Gram matrices', () => {
  it('are recorded beside the record for every Conv/Gemm/MatMul outside the time-only region, with row counts', () => {
    expect(rec.gram).toBeDefined();
    const g = rec.gram!;
    expect(existsSync(join(work, g.file))).toBe(true);
    expect(readFileSync(join(work, g.file)).byteLength).toBe(g.entries.reduce((a, e) => a + e.dim * e.dim * 8, 0));
    const layers = g.entries.flatMap((e) => e.layers);
    expect(layers).toContain('/down1/conv1/Conv');
    expect(layers).toContain('/attn/q/MatMul');
    // q, k and v read the same tensor: one matrix
    expect(g.entries.find((e) => e.layers.includes('/attn/q/MatMul'))!.layers).toEqual(expect.arrayContaining(['/attn/k/MatMul', '/attn/v/MatMul']));
    expect(g.skipped['/time_mlp/time_mlp.0/Gemm']).toMatch(/time-only/);
    for (const e of g.entries) expect(g.rows[e.index]!).toBeGreaterThan(0);
    expect(g.steps.length).toBeLessThanOrEqual(5);
  });

  it('equal X^T X of the unfolded conv input computed here (3x3 conv, one image, every patch)', async () => {
    const layer = '/down1/conv1/Conv';
    const model = loadOnnx(join(TINY, 'unet', 'model.onnx')).model;
    const map = analyzeGraph(model);
    const l = map.quantizable.find((q) => q.name === layer)!;
    const { entries } = gramTargets(model, [l]);
    const gm = loadOnnx(join(TINY, 'unet', 'model.onnx')).model;
    buildGramModel(gm, entries);
    const gs = await Session.create(encodeModel(gm));
    const x = Float32Array.from({ length: 784 }, (_, i) => Math.sin(i * 0.37) * 1.5);
    const out = await gs.run(feeds(x, 1, 500));
    const H = out[gramOutput(entries[0]!).gram]!.data as Float32Array;
    // the layer's input, from the FP model
    exposeTensors(model, [l.input]);
    const fs = await Session.create(encodeModel(model));
    const a = (await fs.run(feeds(x, 1, 500)))[l.input]!;
    const [, C, Hh, W] = a.dims as number[];
    const inp = a.data as Float32Array;
    expect(l.weightShape.slice(2)).toEqual([3, 3]);
    const D = C! * 9;
    expect(entries[0]!.dim).toBe(D);
    // stride 1, pads 1 (the model's 3x3 convs keep the size)
    const ref = new Float64Array(D * D);
    const patch = new Float64Array(D);
    for (let y = 0; y < Hh!; y++)
      for (let x0 = 0; x0 < W!; x0++) {
        for (let c = 0; c < C!; c++)
          for (let ky = 0; ky < 3; ky++)
            for (let kx = 0; kx < 3; kx++) {
              const yy = y + ky - 1;
              const xx = x0 + kx - 1;
              patch[c * 9 + ky * 3 + kx] = yy < 0 || xx < 0 || yy >= Hh! || xx >= W! ? 0 : inp[(c * Hh! + yy) * W! + xx]!;
            }
        for (let i = 0; i < D; i++) for (let j = 0; j < D; j++) ref[i * D + j]! += patch[i]! * patch[j]!;
      }
    let err = 0;
    let norm = 0;
    for (let i = 0; i < D * D; i++) {
      err = Math.max(err, Math.abs(H[i]! - ref[i]!));
      norm = Math.max(norm, Math.abs(ref[i]!));
    }
    expect(norm).toBeGreaterThan(1);
    expect(err / norm).toBeLessThan(1e-5);
    expect(Number((out[gramOutput(entries[0]!).rows]!.data as BigInt64Array)[0])).toBe(Hh! * W!);
    await gs.release();
    await fs.release();
  });

  it('cancel and resume give the same matrices as an uninterrupted run', async () => {
    const out = join(work, 'b.json');
    const ac = new AbortController();
    await expect(calibrate(TINY, out, { ...settings, signal: ac.signal, onProgress: (p) => p.done >= settings.steps + 1 && ac.abort() })).rejects.toThrow(/cancelled/);
    expect(existsSync(out)).toBe(false);
    expect(existsSync(gramPath(`${out}.partial.json`))).toBe(true);
    const resumed = await calibrate(TINY, out, settings);
    expect(existsSync(gramPath(`${out}.partial.json`))).toBe(false);
    expect(resumed.gram!.rows).toEqual(rec.gram!.rows);
    expect(Buffer.compare(readFileSync(gramPath(out)), readFileSync(gramPath(recPath)))).toBe(0);
  });
});

describe('GPTQ rounding', () => {
  const int4 = (rounding: 'nearest' | 'gptq'): Recipe =>
    parseRecipe({ name: `int4-${rounding}`, weights: { format: { kind: 'int', bits: 4, symmetric: true }, granularity: { group: 16 }, rounding, clipping: 'mse' }, activations: null, temporal: 'none' }, 'test');
  let fp: Float32Array[];
  const run = async (dir: string) => {
    const { pipeline, session } = await openPipeline(dir, 'cpu');
    return (await sample(pipeline, session, req)).images;
  };
  const meanPsnr = (a: Float32Array[]) => a.reduce((s, img, i) => s + psnr(img, fp[i]!), 0) / a.length;

  it('samples much closer to FP than round-to-nearest with the same format, groups and clipping', async () => {
    fp = await run(TINY);
    const ms: Manifest[] = [];
    for (const r of ['nearest', 'gptq'] as const) ms.push(await quantizePipeline({ pipelineDir: TINY, recipe: int4(r), record: rec, recordPath: recPath, out: join(work, r) }));
    const [near, gptq] = [meanPsnr(await run(join(work, 'nearest'))), meanPsnr(await run(join(work, 'gptq')))];
    console.log(`int4 groups of 16, 4 images x 5 steps: PSNR vs FP nearest ${near.toFixed(1)} dB, GPTQ ${gptq.toFixed(1)} dB`);
    expect(gptq).toBeGreaterThan(near + 3);
    // same storage; GPTQ layers say so, time-only layers say why they were rounded to nearest
    expect(ms[1]!.summary.weightBitsPerParameter).toBe(ms[0]!.summary.weightBitsPerParameter);
    const byName = new Map(ms[1]!.layers.map((l) => [l.name, l.weight?.rounding ?? '']));
    expect(byName.get('/down1/conv1/Conv')).toMatch(/^gptq/);
    expect(byName.get('/attn/q/MatMul')).toMatch(/^gptq/);
    expect(byName.get('/time_mlp/time_mlp.0/Gemm')).toMatch(/^nearest \(no Gram matrix: time-only/);
    // each group of 16 input channels of a 3x3 conv holds at most 16 distinct values per output channel and tap
    const loaded = loadOnnx(join(work, 'gptq', 'unet', 'model.onnx'));
    const w = loaded.model.graph!.initializer!.find((t) => t.name === 'down1.conv1.weight')!;
    const f = new Float32Array(new Uint8Array(w.raw_data!).slice().buffer);
    const [O, C] = [64, f.length / 64 / 9];
    for (let o = 0; o < O; o++)
      for (let tap = 0; tap < 9; tap++)
        for (let g = 0; g < C; g += 16) {
          const vals = new Set<number>();
          for (let c = g; c < g + 16; c++) vals.add(f[(o * C + c) * 9 + tap]!);
          expect(vals.size).toBeLessThanOrEqual(16);
        }
  });

  it('refuses a record without Gram matrices, and says how to make one', async () => {
    const plain = join(work, 'plain.json');
    const r = await calibrate(TINY, plain, { ...settings, gram: false, samples: 2, batchSize: 2, steps: 2 });
    await expect(quantizePipeline({ pipelineDir: TINY, recipe: int4('gptq'), record: r, recordPath: plain, out: join(work, 'x') })).rejects.toThrow(/no Gram matrices: recalibrate with --gram/);
    await expect(quantizePipeline({ pipelineDir: TINY, recipe: int4('gptq'), record: null, out: join(work, 'x') })).rejects.toThrow(/calibration record with Gram matrices/);
    expect(existsSync(join(work, 'x'))).toBe(false);
  });

  it('reads a damaged Gram file as an error, not as zeros', () => {
    expect(() => GramSums.read(join(work, 'nope.gram'), rec.gram!.entries, rec.gram!.rows)).toThrow(/missing/);
    expect(readRecord(recPath).gram!.entries.length).toBe(rec.gram!.entries.length);
    expect(loadRecipe('int4-w4a16').weights.format.kind).toBe('int');
  });
});
