/**
 * Where the bits matter: for each layer of a simulated variant, and for each range of sampling steps, how much of the
 * variant's error against FP goes away when that layer alone runs in FP (its FP weight and FP input) during those steps
 * only, the variant as quantized everywhere else (quant/tweak.ts). The same seeds and prompts as FP's images.
 *
 * The error is the images' mean squared difference to FP's (model space, about [-1, 1]), split in two orthogonal
 * parts, after MixDQ's split of what a layer harms: `content`, the error of the images' block means (blocks of an
 * eighth of the side: layout, shape, colour), and `detail`, the rest (edges, texture). mse = content + detail exactly.
 * A layer's gain is the base error minus the error with it in FP; gains of several layers are not additive exactly
 * (errors interact), which is why dq quantize --budget allocates from them and the result is measured again.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { DqError } from '../errors.js';
import { openPipeline } from '../open.js';
import type { Pipeline } from '../pipeline/pipeline.js';
import { readPromptFile } from '../pipeline/prompt-file.js';
import { sample, type SampleRequest } from '../pipeline/sample.js';
import { createScheduler, schedulerOptions, type SamplerName } from '../pipeline/schedulers.js';
import { DEFAULT_PROMPTS_FILE } from './calibrate.js';
import { VariantTweaker } from './tweak.js';

export const SENSITIVITY_VERSION = 1;
/** Layers measured per range of steps by default: the largest overall gains (the studio's heatmap shows 24). */
export const RANGE_LAYERS = 24;

const ErrorSchema = z.object({ mse: z.number(), content: z.number(), detail: z.number() });
export type ImageError = z.infer<typeof ErrorSchema>;

export const SensitivitySchema = z.object({
  kind: z.literal('dq-sensitivity'),
  version: z.literal(SENSITIVITY_VERSION),
  variant: z.string(),
  recipe: z.string(),
  source: z.object({ pipeline: z.string(), unetSha256: z.string() }),
  settings: z.object({ samples: z.number().int(), steps: z.number().int(), sampler: z.string(), guidance: z.number(), seed: z.number().int(), prompts: z.array(z.string()).nullable() }),
  /** Step index ranges [first, last] (inclusive) and their model timesteps [first, last]. */
  ranges: z.array(z.object({ steps: z.tuple([z.number().int(), z.number().int()]), timesteps: z.tuple([z.number(), z.number()]) })),
  /** The variant's error against FP. */
  base: ErrorSchema,
  layers: z.array(
    z.object({
      name: z.string(),
      op: z.string(),
      params: z.number().int(),
      /** The variant's weight: its stored bits, and the format in words. */
      bits: z.number(),
      weight: z.string(),
      /** Error removed with the layer in FP at every step (base minus the error then). */
      gain: ErrorSchema,
      /** The same, with the layer in FP during each range of steps only (one per range; empty for a layer outside the
       * largest rangeLayers gains, or with one range). */
      ranges: z.array(ErrorSchema),
    }),
  ),
  seconds: z.number(),
});
export type SensitivityRecord = z.infer<typeof SensitivitySchema>;

export interface SensitivityOptions {
  variantDir: string;
  /** Images per run (default 16). */
  samples?: number;
  steps?: number;
  sampler?: SamplerName;
  guidance?: number;
  /** Ranges of sampling steps (default 4; 1: every step only). */
  ranges?: number;
  /** First seed (default 0): seeds seed .. seed + samples - 1. */
  seed?: number;
  /** Text-to-image: the prompts, cycled (default: the variant's calibration_prompts.txt). */
  prompts?: string[];
  /** Only these layers (default: every layer that can run in FP here). */
  layers?: string[];
  /** Per-range gains for the layers with the largest overall gains only (default 24; Infinity: every layer). */
  rangeLayers?: number;
  signal?: AbortSignal;
  onProgress?: (p: { done: number; total: number; layer: string }) => void;
}

/** The images' error against FP, split into block means (content) and the rest (detail). */
export function imageError(images: Float32Array[], fp: Float32Array[], shape: readonly [number, number, number]): ImageError {
  const [C, H, W] = shape;
  const bh = Math.max(1, Math.floor(H / 8));
  const bw = Math.max(1, Math.floor(W / 8));
  let total = 0;
  let content = 0;
  let count = 0;
  for (let i = 0; i < images.length; i++) {
    const a = images[i]!;
    const b = fp[i]!;
    for (let c = 0; c < C; c++) {
      for (let y0 = 0; y0 < H; y0 += bh) {
        for (let x0 = 0; x0 < W; x0 += bw) {
          let s = 0;
          let n = 0;
          for (let y = y0; y < Math.min(H, y0 + bh); y++) {
            for (let x = x0; x < Math.min(W, x0 + bw); x++) {
              const d = a[(c * H + y) * W + x]! - b[(c * H + y) * W + x]!;
              s += d;
              total += d * d;
              n++;
            }
          }
          // the block mean's share: n x mean^2 (the residual within the block is orthogonal to it)
          content += (s * s) / n;
          count += n;
        }
      }
    }
  }
  const mse = total / count;
  const cont = content / count;
  return { mse, content: cont, detail: Math.max(0, mse - cont) };
}

const minus = (a: ImageError, b: ImageError): ImageError => ({ mse: a.mse - b.mse, content: a.content - b.content, detail: a.detail - b.detail });

/** Splits steps 0..n-1 into k contiguous ranges of near-equal length. */
export function stepRanges(n: number, k: number): [number, number][] {
  const out: [number, number][] = [];
  const m = Math.max(1, Math.min(k, n));
  for (let r = 0; r < m; r++) out.push([Math.floor((r * n) / m), Math.floor(((r + 1) * n) / m) - 1]);
  return out;
}

/**
 * The sampling a record's settings describe: its seeds, its prompts (text-to-image) or classes cycling 0..C-1 (class
 * pipelines), no negative prompt. The sensitivity measure and every point of the Pareto front sample with it.
 */
export function recordRequest(p: Pipeline, s: SensitivityRecord['settings'], signal?: AbortSignal): Omit<SampleRequest, 'extraFeeds' | 'tap'> {
  const n = s.samples;
  return {
    steps: s.steps, sampler: s.sampler as SamplerName, guidance: s.guidance,
    seeds: Array.from({ length: n }, (_, i) => s.seed + i),
    classes: !s.prompts && p.io.classLabels ? Array.from({ length: n }, (_, i) => i % Math.max(1, p.index.classes.length)) : [],
    ...(s.prompts ? { prompts: s.prompts, negativePrompts: new Array<string>(n).fill('') } : {}),
    signal,
  };
}

/** Measures every layer's gain, overall and per range of steps. Cancels with `signal` (nothing is written here). */
export async function measureSensitivity(o: SensitivityOptions): Promise<SensitivityRecord> {
  const t0 = performance.now();
  const tw = await VariantTweaker.open(o.variantDir);
  try {
    const p = tw.pipeline;
    const m = tw.manifest;
    const n = o.samples ?? 16;
    const steps = o.steps ?? 25;
    const sampler = o.sampler ?? p.index.defaultSampler;
    const guidance = o.guidance ?? p.index.defaultGuidance;
    const seed = o.seed ?? 0;
    const text = p.text !== null && p.text !== undefined;
    let prompts: string[] | null = null;
    if (text) {
      let list = o.prompts;
      if (!list?.length) {
        const file = join(o.variantDir, DEFAULT_PROMPTS_FILE);
        if (!existsSync(file)) throw new DqError('BAD_ARGUMENT', `${o.variantDir} is text-to-image and has no ${DEFAULT_PROMPTS_FILE}: give --prompts <file>`);
        list = readPromptFile(file).map((e) => e.prompt);
      }
      prompts = Array.from({ length: n }, (_, i) => list![i % list!.length]!);
    } else if (o.prompts?.length) throw new DqError('BAD_ARGUMENT', `${o.variantDir} takes no text: leave out --prompts`);
    const settings: SensitivityRecord['settings'] = { samples: n, steps, sampler, guidance, seed, prompts };
    const req = recordRequest(p, settings, o.signal);
    const all = tw.layers();
    const known = new Map(all.map((l) => [l.name, l]));
    for (const name of o.layers ?? []) {
      const l = known.get(name);
      if (!l) throw new DqError('BAD_ARGUMENT', `--layers: '${name}' is not a layer of ${o.variantDir}`);
      if (l.fixed) throw new DqError('BAD_ARGUMENT', `--layers: '${name}' cannot run in FP here (${l.fixed})`);
    }
    const reportOf = new Map(m.layers.map((r) => [r.name, r]));
    const targets = (o.layers?.length ? o.layers.map((name) => known.get(name)!) : all.filter((l) => !l.fixed)).filter((l) => {
      const r = reportOf.get(l.name);
      return r?.weight || (r && r.activation && !/^FP/.test(r.activation));
    });
    if (!targets.length) throw new DqError('BAD_ARGUMENT', `${o.variantDir}: no quantized layer can run in FP here`);
    const ranges = stepRanges(steps, o.ranges ?? 4);
    const ranged = ranges.length > 1 ? Math.min(targets.length, o.rangeLayers ?? RANGE_LAYERS) : 0;
    const total = 2 + targets.length + ranged * ranges.length;
    let done = 0;
    const tick = (layer: string) => o.onProgress?.({ done: ++done, total, layer });

    // FP: the source pipeline itself, on the same seeds and prompts
    const src = await openPipeline(m.source.pipeline, 'cpu');
    const fp = (await sample(src.pipeline, src.session, req)).images;
    tick('fp');
    const shape = p.imageShape;
    const base = imageError((await tw.run({}, req)).images, fp, shape);
    tick('variant');
    const timesteps = createScheduler(sampler, p.scheduler, steps, schedulerOptions(p)).timesteps;
    // every layer at every step, then the largest gains per range of steps
    const layers: SensitivityRecord['layers'] = [];
    for (const l of targets) {
      const r = reportOf.get(l.name)!;
      const params = r.weight?.params ?? (tw.weightShape(l.name) ?? []).reduce((a, b) => a * b, 1);
      const gain = minus(base, imageError((await tw.run({ [l.name]: 'fp' }, req)).images, fp, shape));
      tick(l.name);
      layers.push({ name: l.name, op: l.op, params, bits: r.weight?.bits ?? 32 * params, weight: l.weight, gain, ranges: [] });
    }
    for (const l of [...layers].sort((a, b) => b.gain.mse - a.gain.mse).slice(0, ranged)) {
      for (const [a, b] of ranges) {
        const set = new Set(Array.from({ length: b - a + 1 }, (_, i) => a + i));
        l.ranges.push(minus(base, imageError((await tw.run({ [l.name]: 'fp' }, req, set)).images, fp, shape)));
        tick(l.name);
      }
    }
    return {
      kind: 'dq-sensitivity', version: SENSITIVITY_VERSION, variant: o.variantDir, recipe: m.recipe.name, source: m.source,
      settings,
      ranges: ranges.map(([a, b]) => ({ steps: [a, b] as [number, number], timesteps: [timesteps[a]!, timesteps[b]!] as [number, number] })),
      base, layers, seconds: Math.round((performance.now() - t0) / 10) / 100,
    };
  } finally {
    await tw.release();
  }
}

/** A sensitivity record from a file, validated (one-line errors). */
export function readSensitivity(path: string): SensitivityRecord {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new DqError(code === 'ENOENT' ? 'NOT_FOUND' : 'BAD_ARGUMENT', code === 'ENOENT' ? `sensitivity record not found: ${path}` : `${path}: not a JSON sensitivity record (${(e as Error).message})`);
  }
  const r = SensitivitySchema.safeParse(raw);
  if (!r.success) throw new DqError('BAD_CONFIG', `${path}: not a sensitivity record from dq sensitivity (${r.error.issues[0]?.path.join('.') ?? ''}: ${r.error.issues[0]?.message ?? 'invalid'})`);
  return r.data;
}
