/**
 * Rotations folded into the previous layer (quant/fold.ts): on tiny-t2i every attention's output projection reads
 * softmax(q k^T) v, so x -> (x R) diag(1/s) goes into the value projection's weight, and the output projection takes
 * diag(s) R W. In FP the folded graph computes what the original does; in a variant the folded sites lose their
 * online nodes (the Mul by 1/s by default, the rotation too with fold 'all'), both layers say so, and the in-memory
 * editor refuses them. With balance.ranges, each pair takes a balance per timestep range: per-step weight sets.
 */
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { exportPipeline } from '../../../../src-main/core/export/export';
import { analyzeGraph } from '../../../../src-main/core/onnx/analysis';
import { encodeModel, floatTensor, loadOnnx } from '../../../../src-main/core/onnx/io';
import { hadamard } from '../../../../kernels/quant';
import { psnr } from '../../../../src-main/core/eval/metrics';
import { openPipeline } from '../../../../src-main/core/open';
import { releaseSessions } from '../../../../src-main/core/pipeline/pipeline';
import { sample } from '../../../../src-main/core/pipeline/sample';
import { calibrate } from '../../../../src-main/core/quant/calibrate';
import { findRotationFolds, foldBlock, foldIntoOutputs, setFloats } from '../../../../src-main/core/quant/fold';
import { quantizePipeline } from '../../../../src-main/core/quant/quantize';
import { parseRecipe } from '../../../../src-main/core/quant/recipe';
import { buildSites } from '../../../../src-main/core/quant/sites';
import { VariantTweaker } from '../../../../src-main/core/quant/tweak';
import { readParams } from '../../../../src-main/core/quant/variant';
import { Session } from '../../../../src-main/core/runtime/onnx';
import { ROOT, tmp } from '../../../helpers';

const T2I = join(ROOT, 'models', 'tiny-t2i');
const UNET = join(T2I, 'unet', 'model.onnx');
const work = tmp('dq-fold-');
afterAll(async () => {
  await releaseSessions();
  rmSync(work, { recursive: true, force: true });
});

/** One evaluation of a tiny-t2i denoiser graph on fixed inputs. */
async function run(bytes: Uint8Array): Promise<Float32Array> {
  const N = 2;
  const s = await Session.create(bytes);
  const out = await s.run({
    sample: { type: 'float32', data: Float32Array.from({ length: N * 4 * 8 * 8 }, (_, i) => Math.sin(i * 12.9898) * 1.3), dims: [N, 4, 8, 8] },
    timestep: { type: 'float32', data: Float32Array.of(500), dims: [] },
    encoder_hidden_states: { type: 'float32', data: Float32Array.from({ length: N * 6 * 64 }, (_, i) => Math.cos(i * 4.1414)), dims: [N, 6, 64] },
  });
  await s.release();
  return Object.values(out)[0]!.data as Float32Array;
}

it("finds every attention's value/output pair, and the fold computes what the graph did", async () => {
  const loaded = loadOnnx(UNET);
  const model = loaded.model;
  const map = analyzeGraph(model);
  const sites = buildSites(map, map.quantizable, true);
  const folds = findRotationFolds(model, sites);
  // 7 transformer blocks, self- and cross-attention each
  expect(folds.size).toBe(14);
  const ref = await run(encodeModel(model));
  const inits = new Map(model.graph!.initializer!.map((t) => [t.name ?? '', t]));
  const nodes = new Map(model.graph!.node!.map((n) => [n.name ?? '', n]));
  const rel = (b: Float32Array) => {
    let d = 0;
    let n = 0;
    ref.forEach((v, i) => {
      d += (v - b[i]!) ** 2;
      n += v * v;
    });
    return Math.sqrt(d / n);
  };
  const scaleOf = (C: number) => Float32Array.from({ length: C }, (_, j) => 0.5 + ((j * 37) % 11) / 5);
  // the value projections: columns x R diag(1/s)
  for (const f of folds.values()) {
    const block = foldBlock(f, 128);
    expect(block).toBeGreaterThanOrEqual(2);
    expect(f.headDim % block).toBe(0);
    const vw = inits.get(f.value.weight)!;
    const res = foldIntoOutputs(floatTensor(loaded, vw), (vw.dims ?? []).map(Number), f.value.transB, null, hadamard(block), block, scaleOf(f.channels));
    setFloats(vw, res.w);
  }
  // alone, they change the network's output (the comparison sees a fold left half done)
  expect(rel(await run(encodeModel(model)))).toBeGreaterThan(0.01);
  // the output projections ([C, out]): diag(s) R W
  for (const [id, f] of folds) {
    const site = sites.find((s) => s.id === id)!;
    const block = foldBlock(f, 128);
    const C = f.channels;
    const scale = scaleOf(C);
    const ow = inits.get(nodes.get(site.layers[0]!)!.input![1]!)!;
    const W = floatTensor(loaded, ow);
    const out = W.length / C;
    const h = hadamard(block);
    const W2 = new Float32Array(W.length);
    for (let blk = 0; blk < C; blk += block) {
      for (let i = 0; i < block; i++) {
        for (let o = 0; o < out; o++) {
          let acc = 0;
          for (let k = 0; k < block; k++) acc += h[i * block + k]! * W[(blk + k) * out + o]!;
          W2[(blk + i) * out + o] = acc * scale[blk + i]!;
        }
      }
    }
    setFloats(ow, W2);
  }
  expect(rel(await run(encodeModel(model)))).toBeLessThan(1e-5);
}, 120_000);

it("a balanced, rotated variant folds the scales (default) or everything ('all') where the graph allows; both layers say so, the editor refuses them", async () => {
  const recPath = join(work, 'cal.json');
  const rec = await calibrate(T2I, recPath, { samples: 2, steps: 3, batchSize: 4, timesteps: 'all', gram: true });
  const recipe = (fold: string) =>
    parseRecipe(
      {
        name: `rot-w8a8-${fold}`,
        weights: { format: { kind: 'int', bits: 8, symmetric: true }, granularity: 'channel' },
        activations: { format: { kind: 'int', bits: 8, symmetric: true }, dynamic: 'token' },
        calibration: { timesteps: 'all' },
        keepFp: ['first', 'last'],
        balance: { alpha: 0.5 },
        rotate: true,
        text: 'quantize',
        ...(fold === 'default' ? {} : { fold }),
      },
      'test recipe',
    );
  const nodes = (dir: string, re: RegExp) => (loadOnnx(join(dir, 'unet', 'model.onnx')).model.graph!.node ?? []).filter((n) => re.test(n.output?.[0] ?? '')).length;
  const counts: Record<string, { muls: number; rotations: number; sites: number }> = {};
  for (const fold of ['none', 'default', 'all']) {
    const dir = join(work, fold);
    const m = await quantizePipeline({ pipelineDir: T2I, recipe: recipe(fold), record: rec, recordPath: recPath, out: dir });
    const outs = m.layers.filter((l) => /computed by .*to_v/.test(l.fold ?? ''));
    const values = m.layers.filter((l) => /its outputs carry .*to_out.* input transform \(folded\)/.test(l.fold ?? ''));
    const rotated = m.layers.filter((l) => /rotated \(Hadamard/.test(l.weight?.rounding ?? ''));
    counts[fold] = { muls: nodes(dir, /^dq_aq\/\d+\/balanced/), rotations: nodes(dir, /^dq_aq\/\d+\/rotated/), sites: new Set(rotated.map((l) => rec.sites.find((s) => s.layers.includes(l.name))!.id)).size };
    if (fold === 'none') {
      expect(outs.length + values.length).toBe(0);
      continue;
    }
    expect(outs.length).toBe(14);
    expect(values.length).toBe(14);
    expect(outs[0]!.fold).toMatch(fold === 'all' ? /balance and rotation computed by .* \(folded: no online nodes\)/ : /balance computed by .* \(folded; the rotation online\)/);
    if (fold === 'all') {
      const tw = await VariantTweaker.open(dir);
      try {
        expect(tw.layers().find((l) => l.name === outs[0]!.name)!.fixed).toMatch(/folded/);
        await expect(tw.run({ [values[0]!.name]: 'fp' }, { seeds: [0], classes: [], prompts: ['a red seven'], steps: 2, sampler: 'ddim', guidance: 3 })).rejects.toThrow(/cannot be changed here .*folded/);
      } finally {
        await tw.release();
      }
    }
  }
  // online: a Mul by 1/s and a rotation per balanced site; scales folded: 14 Muls fewer; all folded: 14 rotations fewer too
  expect(counts.none!.muls).toBe(counts.none!.sites);
  expect(counts.none!.rotations).toBe(counts.none!.sites);
  expect(counts.default!.muls).toBe(counts.none!.muls - 14);
  expect(counts.default!.rotations).toBe(counts.none!.rotations);
  expect(counts.all!.muls).toBe(counts.none!.muls - 14);
  expect(counts.all!.rotations).toBe(counts.none!.rotations - 14);
}, 300_000);

it('balances per timestep range where the balance folds (balance.ranges): a weight set per range for each value/output pair, fed per step; pairing the wrong ranges shows', async () => {
  const recPath = join(work, 'cal-ranges.json');
  const rec = await calibrate(T2I, recPath, { samples: 4, steps: 6, batchSize: 8, timesteps: 'all', gram: true });
  const recipe = parseRecipe(
    {
      name: 'w8a8-balance-ranges',
      weights: { format: { kind: 'int', bits: 8, symmetric: true }, granularity: 'channel' },
      activations: { format: { kind: 'int', bits: 8, symmetric: true }, dynamic: 'token' },
      calibration: { timesteps: 'all' },
      keepFp: ['first', 'last'],
      balance: { alpha: 0.5, ranges: 3 },
      text: 'quantize',
    },
    'test recipe',
  );
  const dir = join(work, 'ranges');
  const m = await quantizePipeline({ pipelineDir: T2I, recipe, record: rec, recordPath: recPath, out: dir });
  const w = readParams(dir)!.weights!;
  // 14 attention pairs, each layer with 3 sets of its own
  expect(w).toHaveLength(28);
  for (const x of w) {
    expect(x.gate).toBeNull();
    expect(new Set(x.sets.map((s) => s.file)).size).toBe(3);
  }
  expect(m.layers.filter((l) => /channels balanced per timestep range \(3 ranges/.test(l.weight?.rounding ?? ''))).toHaveLength(14);
  // the ranges tile the calibrated timesteps, first to last
  const ts = w[0]!.sets.map((s) => s.timesteps);
  expect(ts[0]![0]).toBe(Math.max(...rec.timesteps));
  expect(ts[2]![1]).toBe(Math.min(...rec.timesteps));
  // a range's value projection differs from another's (their balances differ)
  const v = w.find((x) => /to_v/.test(x.layer))!;
  const a = readFileSync(join(dir, v.sets[0]!.file));
  const b = readFileSync(join(dir, v.sets[2]!.file));
  expect(a.equals(b)).toBe(false);
  // W8A8 samples like FP; the output projections' sets in the wrong order (each range's value with another range's
  // output projection) do not
  const req = { seeds: [0, 1], classes: [], prompts: ['a red seven on a blue background', 'a green two on a yellow background'], steps: 6, sampler: 'ddim' as const, guidance: 3 };
  const fp = await openPipeline(T2I, 'cpu');
  const ref = (await sample(fp.pipeline, fp.session, req)).images;
  const psnrOf = async (d: string) => {
    const p = await openPipeline(d, 'cpu');
    const imgs = (await sample(p.pipeline, p.session, req)).images;
    return Math.min(...imgs.map((im, i) => psnr(im, ref[i]!, 2)));
  };
  const good = await psnrOf(dir);
  expect(good).toBeGreaterThan(38);
  const swapped = join(work, 'ranges-swapped');
  cpSync(dir, swapped, { recursive: true });
  const params = JSON.parse(readFileSync(join(swapped, 'quant', 'params.json'), 'utf8')) as { weights: { layer: string; sets: { file: string }[] }[] };
  for (const x of params.weights) if (/to_out/.test(x.layer)) {
    const files = x.sets.map((s) => s.file).reverse();
    x.sets.forEach((s, i) => (s.file = files[i]!));
  }
  writeFileSync(join(swapped, 'quant', 'params.json'), JSON.stringify(params));
  expect(await psnrOf(swapped)).toBeLessThan(good - 5);
  // an export stores every set as int8 codes with their scales (the MatMul weights' axes read from the graph) and
  // computes what the variant does
  const ex = await exportPipeline({ variantDir: dir, out: join(work, 'ranges-export'), verify: { seeds: [0, 1], steps: 3 } });
  expect(ex.export.real.join(' ')).toMatch(/28 layers switch their weights by timestep range .*: 84 sets under quant\/ \(\d+ bytes\), 84 of them as integer codes with float32 scales, fed per step/);
  expect(ex.export.verification?.verdict?.ok).toBe(true);
}, 300_000);
