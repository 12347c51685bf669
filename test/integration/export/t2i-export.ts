/**
 * Shared by the text-to-image export tests: calibrate a real-topology fixture on prompts, quantize it with a W8A8
 * and a 4-bit preset, export both, and the checks every fixture gets (layout, sizes, images, the text region).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { exportPipeline, type ExportManifest } from '../../../src-main/core/export/export';
import { openPipeline } from '../../../src-main/core/open';
import { describeComponents } from '../../../src-main/core/pipeline/components';
import { buildFeeds, sample, timestepInput } from '../../../src-main/core/pipeline/sample';
import { releaseSessions } from '../../../src-main/core/pipeline/pipeline';
import { calibrate } from '../../../src-main/core/quant/calibrate';
import { quantizePipeline, type Manifest } from '../../../src-main/core/quant/quantize';
import { loadRecipe } from '../../../src-main/core/quant/recipe';
import { Session } from '../../../src-main/core/runtime/onnx';

export const PROMPTS = ['a red seven on a blue background', 'a cat'];

export interface Built {
  variants: Record<string, Manifest>;
  exports: Record<string, ExportManifest>;
}

/** Calibrates `src` (1 image, 2 steps, the given prompts), quantizes with each preset and exports each variant. */
export async function build(src: string, work: string, presets: string[]): Promise<Built> {
  const calib = join(work, 'calib.json');
  const rec = await calibrate(src, calib, { samples: 1, steps: 2, batchSize: 1, prompts: PROMPTS });
  const out: Built = { variants: {}, exports: {} };
  for (const p of presets) {
    out.variants[p] = await quantizePipeline({ pipelineDir: src, recipe: loadRecipe(p), record: rec, recordPath: calib, out: join(work, p) });
    out.exports[p] = await exportPipeline({ variantDir: join(work, p), out: join(work, `${p}-x`), calibrationImages: 1, verify: false });
    await releaseSessions();
  }
  return out;
}

/** Bytes of a component folder's graph and external data. */
function graphBytes(dir: string): number {
  return readdirSync(dir).filter((f) => f.endsWith('.onnx') || f === 'weights.pb' || f.endsWith('.onnx_data')).reduce((a, f) => a + statSync(join(dir, f)).size, 0);
}

/** The export is laid out as its source: same convention (and why), same components, same I/O of every graph. */
export async function expectSameLayout(src: string, exp: string): Promise<void> {
  const a = await describeComponents(src, { io: true });
  const b = await describeComponents(exp, { io: true });
  expect(b.className).toBe(a.className);
  expect(b.convention).toBe(a.convention);
  expect(b.conventionWhy).toBe(a.conventionWhy);
  expect(b.components.map((c) => c.name)).toEqual(a.components.map((c) => c.name));
  for (const c of a.components) {
    const d = b.components.find((x) => x.name === c.name)!;
    expect(d.onnx?.externalData ?? null, c.name).toBe(c.onnx?.externalData ?? null);
    // the unet gains scale inputs (activation parameters that vary by timestep); the others are as they were
    const io = (m: { name: string; type: string }[] | undefined) => (m ?? []).map((x) => `${x.name}:${x.type}`);
    if (c.name === 'unet') {
      for (const x of io(c.onnx?.outputs)) expect(io(d.onnx?.outputs)).toContain(x);
    } else {
      expect(io(d.onnx?.inputs)).toEqual(io(c.onnx?.inputs));
      expect(io(d.onnx?.outputs)).toEqual(io(c.onnx?.outputs));
    }
  }
}

/** The exported unet (graph + external data) is smaller than the source's by at least `factor`. */
export function expectSmaller(src: string, exp: string, factor: number): void {
  const a = graphBytes(join(src, 'unet'));
  const b = graphBytes(join(exp, 'unet'));
  expect(b).toBeLessThan(a * factor);
}

/** Images of FP, a variant and its export on the same prompts and seeds (each pipeline encodes its own prompts). */
export async function images(dirs: string[], seeds: number[]): Promise<Float32Array[][]> {
  const out: Float32Array[][] = [];
  for (const d of dirs) {
    const { pipeline, session } = await openPipeline(d, 'cpu');
    const r = await sample(pipeline, session, { seeds, classes: [], prompts: seeds.map((_, i) => PROMPTS[i % PROMPTS.length]!), steps: 3, sampler: 'ddim', guidance: 3, batchSize: seeds.length });
    out.push(r.images);
    await releaseSessions();
  }
  return out;
}

export function meanAbs(a: Float32Array[], b: Float32Array[]): number {
  let s = 0;
  let n = 0;
  a.forEach((x, k) => {
    for (let j = 0; j < x.length; j++) s += Math.abs(x[j]! - b[k]![j]!);
    n += x.length;
  });
  return s / n;
}

/**
 * The export's text-feature model computes exactly what the variant's does, at a batch size and an image size the
 * slimming never probed (3 rows; the pipeline's size), from real text inputs.
 */
export async function expectSameTextFeatures(variant: string, exp: string): Promise<void> {
  const { pipeline: p } = await openPipeline(variant, 'cpu');
  const params = (dir: string) => JSON.parse(readFileSync(join(dir, 'quant', 'params.json'), 'utf8')) as { text: { model: string; features: string[]; inputs: string[] } | null };
  const pv = params(variant).text!;
  const px = params(exp).text!;
  expect(px.features).toEqual(pv.features);
  const ids = await p.text!.ids(['one', 'two', 'three'], ['', '', ''], false);
  const [C, H, W] = p.index.sampleShape;
  const feeds = await buildFeeds(p, Float64Array.from({ length: 3 * C * H * W }, (_, i) => Math.sin(i)), 400, ids, false, 3, async () => ({}));
  feeds[p.io.timestep] ??= timestepInput(p, 400, 3);
  const run = async (dir: string, r: typeof pv) => {
    const s = await Session.create(join(dir, r.model), 'cpu');
    const f = Object.fromEntries(s.inputNames.map((n) => [n, feeds[n]!]));
    const o = await s.run(f, r.features);
    await s.release();
    return o;
  };
  const a = await run(variant, pv);
  const b = await run(exp, px);
  for (const f of pv.features) expect(Array.from(b[f]!.data as Float32Array)).toEqual(Array.from(a[f]!.data as Float32Array));
  // neither holds the network upstream of the attention blocks (the variant's was slimmed when it was quantized; an
  // export slims a variant's that was not)
  expect(statSync(join(exp, px.model)).size).toBeLessThanOrEqual(statSync(join(variant, pv.model)).size);
  expect(statSync(join(variant, pv.model)).size).toBeLessThan(0.25 * statSync(join(variant, 'unet', 'model.onnx')).size);
  expect(existsSync(join(exp, px.model))).toBe(true);
}
