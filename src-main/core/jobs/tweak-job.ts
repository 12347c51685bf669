/**
 * The studio's interactive re-quantization: a same-seed grid of a variant with some layers changed (quant/tweak.ts),
 * a row per class (or prompt) and a column per seed, as a PNG. One tweaker is kept open (its variant's sessions and
 * graph), so the next change costs a graph edit, one session and the samples.
 */
import { DqError } from '../errors.js';
import { encodePng, layoutGrid } from '../image/grid.js';
import type { SamplerName } from '../pipeline/schedulers.js';
import { FormatSchema } from '../quant/recipe.js';
import { VariantTweaker, type LayerChoice, type TweakLayer } from '../quant/tweak.js';
import type { QuantFormat } from '../../../kernels/quant.js';

export interface TweakGridRequest {
  choices: Record<string, 'variant' | 'fp' | Record<string, unknown>>;
  seeds: number[];
  classes: number[];
  prompts?: string[];
  steps: number;
  guidance?: number;
  sampler?: SamplerName;
}

export interface TweakGrid {
  png: Uint8Array;
  rows: number;
  cols: number;
  changed: string[];
  seconds: { graph: number; session: number; sample: number };
}

let open: { dir: string; tw: VariantTweaker } | null = null;

async function tweaker(dir: string): Promise<VariantTweaker> {
  if (open?.dir === dir) return open.tw;
  await open?.tw.release();
  open = null;
  const tw = await VariantTweaker.open(dir);
  open = { dir, tw };
  return tw;
}

export async function tweakLayers(dir: string): Promise<TweakLayer[]> {
  return (await tweaker(dir)).layers();
}

/** Validated choices: 'variant', 'fp', or a format (the recipe schema's), named in one line when wrong. */
function parseChoices(raw: TweakGridRequest['choices']): Record<string, LayerChoice> {
  const out: Record<string, LayerChoice> = {};
  for (const [layer, c] of Object.entries(raw)) {
    if (c === 'variant' || c === 'fp') out[layer] = c;
    else {
      const r = FormatSchema.safeParse(c);
      if (!r.success) throw new DqError('BAD_ARGUMENT', `layer '${layer}': ${JSON.stringify(c)} is not a format (int 2-8 bits, float e4m3fn/e5m2/e3m2/e2m3/e2m1, mx, nvfp4)`);
      out[layer] = r.data as QuantFormat;
    }
  }
  return out;
}

export async function tweakGrid(dir: string, req: TweakGridRequest): Promise<TweakGrid> {
  const tw = await tweaker(dir);
  const p = tw.pipeline;
  const text = p.text !== null && p.text !== undefined;
  if (text && !req.prompts?.length) throw new DqError('BAD_ARGUMENT', 'a text-to-image variant takes prompts (a row each)');
  if (!text && req.prompts?.length) throw new DqError('BAD_ARGUMENT', 'this variant takes no text: give classes');
  const rowsOf: (number | string)[] = text ? req.prompts! : p.io.classLabels ? (req.classes.length ? req.classes : [0]) : [0];
  const sampler = req.sampler ?? p.index.defaultSampler;
  const n = rowsOf.length * req.seeds.length;
  const seeds = rowsOf.flatMap(() => req.seeds);
  const run = await tw.run(parseChoices(req.choices), {
    seeds,
    classes: !text && p.io.classLabels ? rowsOf.flatMap((c) => req.seeds.map(() => c as number)) : [],
    ...(text ? { prompts: rowsOf.flatMap((t) => req.seeds.map(() => t as string)), negativePrompts: new Array<string>(n).fill('') } : {}),
    steps: req.steps,
    sampler,
    guidance: req.guidance ?? p.index.defaultGuidance,
  });
  const [C, H, W] = p.imageShape;
  const grid = layoutGrid({
    cells: rowsOf.map((_, r) => req.seeds.map((_, c) => run.images[r * req.seeds.length + c]!)),
    channels: C,
    height: H,
    width: W,
    rowLabels: rowsOf.map((r) => (typeof r === 'number' ? (p.index.classes[r] ?? String(r)) : r.length > 24 ? `${r.slice(0, 23)}…` : r)),
    colLabels: req.seeds.map((s) => `s${s}`),
    zoom: H >= 128 ? 1 : 2,
    title: `${run.changed.length ? `${run.changed.length} layer${run.changed.length === 1 ? '' : 's'} changed` : 'as quantized'}, ${sampler} ${req.steps} steps`,
  });
  return { png: await encodePng(grid), rows: rowsOf.length, cols: req.seeds.length, changed: run.changed, seconds: run.seconds };
}

export async function closeTweaker(): Promise<void> {
  await open?.tw.release();
  open = null;
}
