/**
 * Channel balancing (recipe.balance, ViDiT-Q / SmoothQuant scaling) on the embedded DiT: every balanced linear layer
 * reads its input divided by s (a Mul before its quantizer) and holds weights W diag(s) on its format's grid, so
 * W' diag(1/s) is W up to the weight quantization; s follows the activations (not all ones); and a balanced W8A8
 * variant samples like FP, with the block Hadamard rotation too. A recipe that balances or rotates without dynamic
 * per-token activations is refused. With alpha 'search', each site's alpha is measured on sampled activations and
 * reported.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { psnr } from '../../../../src-main/core/eval/metrics';
import { floatTensor, loadOnnx } from '../../../../src-main/core/onnx/io';
import { openPipeline } from '../../../../src-main/core/open';
import { releaseSessions } from '../../../../src-main/core/pipeline/pipeline';
import { sample } from '../../../../src-main/core/pipeline/sample';
import { calibrate } from '../../../../src-main/core/quant/calibrate';
import { quantizePipeline } from '../../../../src-main/core/quant/quantize';
import { parseRecipe } from '../../../../src-main/core/quant/recipe';
import { ROOT, tmp } from '../../../helpers';

const DIT = join(ROOT, 'models', 'tiny-dit');
const work = tmp('dq-balance-');
afterAll(async () => {
  await releaseSessions();
  rmSync(work, { recursive: true, force: true });
});

/** A pipeline's images for one request. */
async function imagesOf(dir: string, req: Parameters<typeof sample>[2]): Promise<Float32Array[]> {
  const p = await openPipeline(dir, 'cpu');
  return (await sample(p.pipeline, p.session, req)).images;
}

/** The worst PSNR of images against FP's of the same seeds and prompts. */
const minPsnr = (fp: Float32Array[], got: Float32Array[]) => Math.min(...fp.map((img, i) => psnr(img, got[i]!, 2)));

const recipe = (balance: unknown, dynamic = 'token', rotate = false) =>
  parseRecipe(
    {
      name: 'balanced-w8a8',
      weights: { format: { kind: 'int', bits: 8, symmetric: true }, granularity: 'channel' },
      activations: { format: { kind: 'int', bits: 8, symmetric: true }, dynamic },
      calibration: { timesteps: 'all' },
      keepFp: ['first', 'last'],
      balance,
      rotate,
    },
    'test recipe',
  );

it('balances the linear layers: x / s before the quantizer, W diag(s) on the grid, images like FP', async () => {
  expect(() => recipe({ alpha: 0.5 }, 'none')).toThrow(/field 'balance': channel balancing needs activations\.dynamic 'token'/);
  const recPath = join(work, 'cal.json');
  const rec = await calibrate(DIT, recPath, { samples: 2, steps: 3, batchSize: 4, timesteps: 'all', gram: true });
  const m = await quantizePipeline({ pipelineDir: DIT, recipe: recipe({ alpha: 0.5 }), record: rec, recordPath: recPath, out: join(work, 'v') });
  const balanced = m.layers.filter((l) => /channels balanced \(alpha 0\.5\)/.test(l.weight?.rounding ?? ''));
  expect(balanced.length).toBeGreaterThan(40);

  const fp = loadOnnx(join(DIT, 'transformer', 'model.onnx'));
  const v = loadOnnx(join(work, 'v', 'transformer', 'model.onnx'));
  const layer = '/transformer_blocks.1/ff/net.0/proj/MatMul';
  const node = (l: typeof fp, name: string) => l.model.graph!.node!.find((n) => n.name === name)!;
  const init = (l: typeof fp, name: string) => floatTensor(l, l.model.graph!.initializer!.find((t) => t.name === name)!);
  const W = init(fp, node(fp, layer).input![1]!);
  const Wq = init(v, node(v, layer).input![1]!);
  // the Mul by 1/s on the way to this layer's quantizer
  const invName = v.model.graph!.initializer!.map((t) => t.name ?? '').find((n) => n.includes('balance_inv_s') && v.model.graph!.node!.some((x) => x.op_type === 'Mul' && x.input!.includes(n) && x.input!.includes(node(fp, layer).input![0]!)));
  expect(invName).toBeDefined();
  const inv = init(v, invName!);
  const C = inv.length;
  const out = W.length / C;
  let err = 0;
  let ref = 0;
  for (let j = 0; j < C; j++) for (let k = 0; k < out; k++) {
    err += (Wq[j * out + k]! * inv[j]! - W[j * out + k]!) ** 2;
    ref += W[j * out + k]! ** 2;
  }
  // int8 per output channel on W diag(s): about 1% (a wrong axis or a missing 1/s would be off by far more)
  expect(Math.sqrt(err / ref)).toBeLessThan(0.05);
  expect(Math.max(...inv) / Math.min(...inv)).toBeGreaterThan(2);

  const req = { seeds: [0, 1], classes: [], prompts: Array(2).fill('a red seven on a blue background'), steps: 8, sampler: 'flow-euler' as const, guidance: 3 };
  const fa = await imagesOf(DIT, req);
  expect(minPsnr(fa, await imagesOf(join(work, 'v'), req))).toBeGreaterThan(30);

  // with the block Hadamard rotation as well (96 channels: blocks of 32): x diag(1/s) R, weights R diag(s) W
  expect(() => recipe(null, 'none', true)).toThrow(/field 'rotate': the rotation needs activations\.dynamic 'token'/);
  const mr = await quantizePipeline({ pipelineDir: DIT, recipe: recipe({ alpha: 0.5 }, 'token', true), record: rec, recordPath: recPath, out: join(work, 'vr') });
  expect(mr.layers.filter((l) => /rotated \(Hadamard blocks of 32\)/.test(l.weight?.rounding ?? '')).length).toBeGreaterThan(30);
  expect(minPsnr(fa, await imagesOf(join(work, 'vr'), req))).toBeGreaterThan(30);
}, 300_000);

it("rotates a UNet's linear layers (tiny-t2i: attention, feed-forward, the time embedding's Gemms), its convolutions untouched", async () => {
  const T2I = join(ROOT, 'models', 'tiny-t2i');
  const recPath = join(work, 't2i-cal.json');
  const rec = await calibrate(T2I, recPath, { samples: 2, steps: 3, batchSize: 4, timesteps: 'all' });
  // temporal none: the time embedding's Gemm layers are quantized and rotated too (their transB read by name, after
  // other sites' quantizers were inserted)
  const m = await quantizePipeline({ pipelineDir: T2I, recipe: { ...recipe(null, 'token', true), temporal: 'none' }, record: rec, recordPath: recPath, out: join(work, 't2i-rot') });
  const rotated = m.layers.filter((l) => /rotated/.test(l.weight?.rounding ?? ''));
  expect(rotated.length).toBeGreaterThan(50);
  expect(rotated.some((l) => l.op === 'Gemm')).toBe(true);
  expect(rotated.some((l) => l.op === 'Conv')).toBe(false);
  const req = { seeds: [0, 1], classes: [], prompts: ['a red seven on a blue background', 'a red seven on a blue background'], steps: 8, sampler: 'ddim' as const, guidance: 3 };
  expect(minPsnr(await imagesOf(T2I, req), await imagesOf(join(work, 't2i-rot'), req))).toBeGreaterThan(30);
}, 300_000);


it("searches alpha per site on sampled activations ('search'): every balanced layer says what it chose and why, and the variant samples like FP", async () => {
  const recPath = join(work, 'cal-search.json');
  const rec = await calibrate(DIT, recPath, { samples: 2, steps: 3, batchSize: 4, timesteps: 'all', gram: true });
  expect(() => recipe({ alpha: 'maybe' })).toThrow(/field 'balance\.alpha'/);
  const m = await quantizePipeline({ pipelineDir: DIT, recipe: recipe({ alpha: 'search' }), record: rec, recordPath: recPath, out: join(work, 'vs') });
  const searched = m.layers.filter((l) => /alpha (0|0\.\d|1) searched: output error [\d.e-]+, [\d.e-]+ at 0\.5, [\d.e-]+ unbalanced|not balanced \(alpha searched/.test(l.weight?.rounding ?? ''));
  expect(searched.length).toBeGreaterThan(40);
  // the choices differ between sites (a single fixed alpha would not be a search)
  const chosen = new Set(searched.map((l) => /alpha ([\d.]+) searched/.exec(l.weight!.rounding!)?.[1] ?? 'none'));
  expect(chosen.size).toBeGreaterThan(1);
  const req = { seeds: [0, 1], classes: [], prompts: Array(2).fill('a red seven on a blue background'), steps: 8, sampler: 'flow-euler' as const, guidance: 3 };
  expect(minPsnr(await imagesOf(DIT, req), await imagesOf(join(work, 'vs'), req))).toBeGreaterThan(30);
}, 300_000);
