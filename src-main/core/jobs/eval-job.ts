/**
 * `dq eval`: every preset against FP on the same seeds and classes. Calibrates once (or reads a record),
 * quantizes each preset into <out>/<preset>, samples N images per variant and reports class agreement (the
 * embedded classifier vs the requested class) and FID-to-FP in the classifier's feature space.
 * On the embedded text-to-image model (a pipeline with attributes.json) it reports prompt agreement: every attribute
 * of the prompt (digit, foreground, background) read back from the image by the judge (eval/t2i-judge.ts).
 * Bring your own judge (`judge`: any ONNX image model with a feature output, eval/judge.ts): FID-to-FP and per-image
 * feature cosine in its features, beside the other columns; with one, a text-to-image pipeline without attributes.json
 * (a user's real pipeline) is evaluated too, on the prompts of a prompt file (or its calibration_prompts.txt), cycled
 * to the sample count: FID-to-FP, cosine and PSNR, no agreement.
 */
import { existsSync } from 'node:fs';
import { DqError } from '../errors.js';
import { compareFeatures, judgeFeatures, openJudge, type Judge, type JudgeNormalize } from '../eval/judge.js';
import { readPromptFile } from '../pipeline/prompt-file.js';
import { join, resolve } from 'node:path';
import { agreement, classify } from '../eval/classifier.js';
import { fitGaussian, frechetDistance, psnr, type Gaussian } from '../eval/metrics.js';
import { makeDirs, prepareOutput, writeFileAtomic } from '../fsutil.js';
import { svgLineChart } from '../compare/render.js';
import { evalPrompts, loadAttributes, promptAgreement } from '../eval/t2i-judge.js';
import { videoAgreement } from '../eval/video-judge.js';
import { frameOf } from '../pipeline/codec.js';
import { releaseSessions } from '../pipeline/pipeline.js';
import { openPipeline } from '../open.js';
import { sample } from '../pipeline/sample.js';
import type { SamplerName } from '../pipeline/schedulers.js';
import { calibrate, DEFAULT_PROMPTS_FILE, readRecord, type CalibrationRecord } from '../quant/calibrate.js';
import { quantizePipeline, type Manifest, type QuantizeOptions } from '../quant/quantize.js';
import type { SensitivityRecord } from '../quant/sensitivity.js';
import { loadRecipe, type Recipe } from '../quant/recipe.js';
import { flickerOf } from '../compare/video-compare.js';

/** --judge: the user's image model and how its features are read. */
export interface EvalJudge {
  path: string;
  output?: string;
  normalize?: JudgeNormalize;
}

/** A variant's numbers in the user's judge's features (FP's own row: FID 0, cosine 1, by definition). */
export interface JudgeColumns {
  fidToFp: number | null;
  cosine: { mean: number; min: number };
}

export interface EvalRow {
  variant: string;
  agreement: number;
  fidToFp: number | null;
  /** --judge: FID-to-FP and feature cosine in the judge's features; absent without one. */
  judge?: JudgeColumns;
  weightBits: number | null;
  activations: string | null;
  seconds: number;
  quantizeSeconds: number | null;
}

export interface EvalOptions {
  pipelineDir: string;
  presets: string[];
  samples: number;
  steps: number;
  /** Default: the pipeline's (its scheduler config's sampler, its default guidance). */
  sampler?: SamplerName;
  guidance?: number;
  out: string;
  calib?: string;
  calibSamples?: number;
  seed?: number;
  /** Bring your own judge. */
  judge?: EvalJudge;
  /** Text-to-image without attributes.json: a prompt file (default: the pipeline's calibration_prompts.txt). */
  prompts?: string;
  /** Text-to-image: the negative prompt of every sample (prompts from a file may give their own). */
  negativePrompt?: string;
  onLine?: (s: string) => void;
  signal?: AbortSignal;
  /** Mixed precision: every preset also at each of these bits budgets (dq quantize --budget), named preset@bits. */
  budgets?: { bits: number[]; sensitivity: SensitivityRecord; path: string; perRange?: boolean };
}

/**
 * With --budgets: each preset's Pareto front as a chart, pareto-<preset>.svg beside eval.json (FID-to-FP, in the
 * user's judge's features when there is one, against the measured bits per weight, every point its own variant).
 */
function writeFronts(out: string, recipes: Recipe[], budgets: EvalOptions['budgets'], rows: { variant: string; fidToFp: number | null; weightBits: number | null; judge?: JudgeColumns }[], say: (s: string) => void): void {
  if (!budgets?.bits.length) return;
  for (const r of recipes) {
    const names = [r.name, ...budgets.bits.map((b) => `${r.name}@${b}${budgets.perRange ? '-ranges' : ''}`)];
    const pts = names
      .map((n) => rows.find((x) => x.variant === n))
      .filter((x): x is NonNullable<typeof x> => !!x && x.weightBits !== null)
      .map((x) => ({ bits: x.weightBits!, fid: x.judge?.fidToFp ?? x.fidToFp }))
      .filter((x): x is { bits: number; fid: number } => x.fid !== null)
      .sort((a, b) => a.bits - b.bits);
    if (pts.length < 2) continue;
    const file = join(out, `pareto-${r.name.replace(/[^A-Za-z0-9._-]/g, '_')}.svg`);
    writeFileAtomic(
      file,
      svgLineChart({
        title: `${r.name}: FID-to-FP against measured bits (${budgets.perRange ? 'per layer and timestep range' : 'per layer'})`,
        xLabels: pts.map((x) => x.bits.toFixed(2)), xValues: pts.map((x) => x.bits), xTitle: 'weight bits per parameter (measured)', yTitle: 'FID-to-FP',
        series: [{ name: r.name, colour: '#1f77b4', values: pts.map((x) => x.fid) }],
      }),
    );
    say(`Pareto front of ${r.name}: ${pts.length} measured points -> ${file}`);
  }
}

/** The variants an eval makes: each preset as it is, then at each budget. */
function variantPlan(recipes: Recipe[], budgets: EvalOptions['budgets']): { name: string; recipe: Recipe; budget?: QuantizeOptions['budget'] }[] {
  return recipes.flatMap((recipe) => [
    { name: recipe.name, recipe },
    ...(budgets?.bits ?? []).map((bits) => ({
      name: `${recipe.name}@${bits}${budgets!.perRange ? '-ranges' : ''}`,
      recipe,
      budget: { bits, sensitivity: budgets!.sensitivity, path: budgets!.path, perRange: budgets!.perRange === true },
    })),
  ]);
}

export interface TextEvalRow {
  variant: string;
  /** Fraction of samples with every attribute right; then each attribute's own rate (null without attributes.json). */
  agreement: number | null;
  digit: number | null;
  fg: number | null;
  bg: number | null;
  /** Frechet distance to FP's samples in the embedded judge's feature space (t2i-judge.ts: digit features and colours); null without attributes.json. */
  fidToFp: number | null;
  /** --judge: FID-to-FP and feature cosine in the user's judge's features; absent without one. */
  judge?: JudgeColumns;
  /** Mean PSNR (dB) of each image against FP's image of the same prompt and seed; null for FP itself. A video's:
   * per frame. */
  psnrToFp: number | null;
  /** A video pipeline (eval/video-judge.ts): `agreement` is then per video (motion right and enough frames right),
   * digit/fg/bg are per frame; `fidToFp` is over frames. flicker: the mean squared change between consecutive frames
   * (model space), and its ratio to FP's on the same prompts and seeds. */
  video?: { motion: number; frames: number; flicker: number; flickerRatio: number | null };
  weightBits: number;
  activations: string;
  seconds: number;
  quantizeSeconds: number | null;
}

export async function runEval(o: EvalOptions): Promise<{ rows: EvalRow[]; calibration: { path: string; seconds: number } } | { text: TextEvalRow[]; calibration: { path: string; seconds: number } | null }> {
  const opened = await openPipeline(o.pipelineDir, 'cpu');
  if (opened.pipeline.text) return runTextEval(o);
  if (o.prompts !== undefined || o.negativePrompt !== undefined) {
    throw new DqError('BAD_ARGUMENT', `${o.pipelineDir} takes no text (it is ${opened.pipeline.io.classLabels ? 'class-conditional' : 'unconditional'}): leave out --prompts and --negative-prompt`);
  }
  const judge = o.judge ? await openJudge(o.judge.path, { output: o.judge.output, normalize: o.judge.normalize }) : null;
  o = { ...o, sampler: o.sampler ?? opened.pipeline.index.defaultSampler, guidance: o.guidance ?? opened.pipeline.index.defaultGuidance };
  const out = prepareOutput(o.out, 'folder');
  // every preset's variant folder is checked before any work: replacing one that is not ours is refused
  const recipes = o.presets.map((p) => loadRecipe(p));
  const plan = variantPlan(recipes, o.budgets);
  for (const v of plan) prepareOutput(join(out, v.name), { replace: 'variant' });
  makeDirs(out, '--out');
  const say = o.onLine ?? (() => {});
  const { rec, path: recPath, seconds: calSeconds } = await evalCalibration(o, out, recipes, { sampler: o.sampler!, guidance: o.guidance! }, say);

  const seed0 = o.seed ?? 10_000;
  const classes = Array.from({ length: o.samples }, (_, i) => i % 10);
  const seeds = classes.map((_, i) => seed0 + i);
  const rows: EvalRow[] = [];
  let fpGauss: Gaussian | null = null;
  let fpJudged: Float32Array[] | null = null;

  const run = async (name: string, dir: string, manifest: Manifest | null, qs: number | null) => {
    const { pipeline, session } = await openPipeline(dir, 'cpu');
    const res = await sample(pipeline, session, { seeds, classes, steps: o.steps, sampler: o.sampler!, guidance: o.guidance!, batchSize: 50, signal: o.signal });
    const { labels, features } = await classify(res.images);
    const g = fitGaussian(features);
    if (!fpGauss) fpGauss = g;
    const judged = judge ? await judgeFeatures(judge, res.images, { shape: pipeline.imageShape, signal: o.signal }) : null;
    fpJudged ??= judged;
    const row: EvalRow = {
      variant: name,
      agreement: agreement(classes, labels),
      fidToFp: name === 'fp' ? 0 : frechetDistance(fpGauss, g),
      weightBits: manifest ? manifest.summary.weightBitsPerParameter : 32,
      activations: manifest ? manifest.summary.activationFormat : 'fp32',
      seconds: res.seconds,
      quantizeSeconds: qs,
      ...(judged && fpJudged ? { judge: judgeColumns(fpJudged, judged) } : {}),
    };
    rows.push(row);
    say(formatRow(row));
    await releaseSessions();
  };

  if (judge) sayJudge(judge, o.samples, say);
  say(header(judge !== null));
  await run('fp', o.pipelineDir, null, null);
  for (const v of plan) {
    const t0 = performance.now();
    const dir = join(out, v.name);
    const manifest = await quantizePipeline({ pipelineDir: o.pipelineDir, recipe: v.recipe, record: rec, recordPath: recPath, out: dir, budget: v.budget });
    await run(v.name, dir, manifest, (performance.now() - t0) / 1000);
  }
  writeFronts(out, recipes, o.budgets, rows, say);
  const result = { rows, calibration: { path: recPath, seconds: calSeconds } };
  const judgeInfo = judge ? judgeSettings(judge, o.samples) : undefined;
  writeFileAtomic(
    join(out, 'eval.json'),
    JSON.stringify({ settings: { samples: o.samples, steps: o.steps, sampler: o.sampler, guidance: o.guidance, seeds: [seeds[0], seeds[seeds.length - 1]], ...(judgeInfo ? { userJudge: judgeInfo } : {}) }, ...result }, null, 2) + '\n',
  );
  return result;
}

/**
 * Text-to-image: every preset against FP on n prompts and seeds seed0..: with attributes.json (the embedded model),
 * deterministic prompts (evalPrompts), prompt agreement (each attribute read back by the judge) and FID-to-FP in that
 * judge's feature space; without it, the prompts of --prompts (or calibration_prompts.txt) cycled to n, which needs
 * --judge. Always PSNR against FP's image of the same prompt and seed; with --judge, FID-to-FP and feature cosine in
 * the user's judge's features. Calibrates once on the pipeline's calibration prompts, or those of --prompts (or
 * reads --calib).
 */
async function runTextEval(o: EvalOptions): Promise<{ text: TextEvalRow[]; calibration: { path: string; seconds: number } | null }> {
  const hasAttributes = existsSync(join(o.pipelineDir, 'attributes.json'));
  if (!hasAttributes && !o.judge) {
    throw new DqError(
      'BAD_ARGUMENT',
      `${o.pipelineDir} has no attributes.json (the embedded model's prompt judge): give --judge <onnx>, an image model with a feature output (a CLIP image encoder, Inception, ...), to evaluate it by FID-to-FP and feature cosine`,
    );
  }
  if (hasAttributes && o.prompts !== undefined) throw new DqError('BAD_ARGUMENT', `${o.pipelineDir} is judged by its attributes.json, whose prompts dq eval makes: leave out --prompts`);
  const attrs = hasAttributes ? loadAttributes(o.pipelineDir) : null;
  // the prompts, before any work: a bad prompt file or a pipeline without prompts fails here
  const given = o.prompts !== undefined ? readPromptFile(o.prompts) : null;
  let entries: { prompt: string; negative: string }[];
  if (attrs) entries = evalPrompts(attrs, o.samples).map((q) => ({ prompt: q.prompt, negative: o.negativePrompt ?? '' }));
  else {
    const list = given ?? defaultPromptEntries(o.pipelineDir);
    entries = Array.from({ length: o.samples }, (_, i) => list[i % list.length]!).map((e) => ({ prompt: e.prompt, negative: e.negative ?? o.negativePrompt ?? '' }));
  }
  const out = prepareOutput(o.out, 'folder');
  const recipes = o.presets.map((p) => loadRecipe(p));
  const plan = variantPlan(recipes, o.budgets);
  for (const v of plan) prepareOutput(join(out, v.name), { replace: 'variant' });
  const judge = o.judge ? await openJudge(o.judge.path, { output: o.judge.output, normalize: o.judge.normalize }) : null;
  makeDirs(out, '--out');
  const say = o.onLine ?? (() => {});
  const { pipeline } = await openPipeline(o.pipelineDir, 'cpu');
  const sampler = o.sampler ?? pipeline.index.defaultSampler;
  const guidance = o.guidance ?? pipeline.index.defaultGuidance;
  let calibration: { path: string; seconds: number } | null = null;
  let rec: CalibrationRecord | null = null;
  // weight-only recipes rounded to nearest, with no cache to measure, need no calibration record
  const needsRecord = recipes.some((r) => r.activations !== null || r.weights.rounding === 'gptq' || r.temporal === 'auto' || r.text === 'auto');
  if (recipes.length && !needsRecord && !o.calib) say('calibration: not needed (weight-only recipes rounded to nearest)');
  if (needsRecord || (recipes.length && o.calib)) {
    const cal = await evalCalibration(o, out, recipes, { sampler, guidance, prompts: given?.map((e) => e.prompt), negativePrompt: o.negativePrompt }, say);
    rec = cal.rec;
    calibration = { path: cal.path, seconds: cal.seconds };
  }
  const seed0 = o.seed ?? 10_000;
  const seeds = entries.map((_, i) => seed0 + i);
  const rows: TextEvalRow[] = [];
  const perSample: Record<string, boolean[]> = {};
  let fp: { gauss: Gaussian | null; images: Float32Array[]; judged: Float32Array[] | null; flicker: number | null } | null = null;
  const frames = pipeline.index.frames;
  const video = frames !== undefined && attrs?.motions !== undefined;
  const run = async (name: string, dir: string, manifest: Manifest | null, qs: number | null) => {
    const { pipeline: p, session } = await openPipeline(dir, 'cpu');
    const res = await sample(p, session, {
      seeds, classes: [], prompts: entries.map((q) => q.prompt), negativePrompts: entries.map((q) => q.negative), steps: o.steps, sampler, guidance, batchSize: video ? 8 : 50, signal: o.signal,
    });
    const prompts = entries.map((q) => q.prompt);
    const va = video ? await videoAgreement(prompts, res.images, frames, attrs!) : null;
    const a = attrs && !video ? await promptAgreement(prompts, res.images, attrs) : null;
    const feats = va ? va.results.flatMap((r) => r.judged.frames.map((f) => f.features)) : a ? a.results.map((r) => r.judged.features) : null;
    const g = feats ? fitGaussian(feats) : null;
    const flicker = frames ? flickerOf(res.images, frames) : null;
    const judged = judge ? await judgeFeatures(judge, res.images, { shape: p.imageShape, signal: o.signal }) : null;
    fp ??= { gauss: g, images: res.images, judged, flicker };
    const ref = fp;
    const framePsnr = (img: Float32Array, i: number) => {
      if (!frames) return Math.min(99, psnr(img, ref.images[i]!));
      let t = 0;
      for (let k = 0; k < frames; k++) t += Math.min(99, psnr(frameOf(img, frames, k), frameOf(ref.images[i]!, frames, k)));
      return t / frames;
    };
    const rates = va ?? a;
    const row: TextEvalRow = {
      variant: name, agreement: rates?.agreement ?? null, digit: rates?.digit ?? null, fg: rates?.fg ?? null, bg: rates?.bg ?? null,
      fidToFp: g && ref.gauss ? (name === 'fp' ? 0 : frechetDistance(ref.gauss, g)) : null,
      ...(judged && ref.judged ? { judge: judgeColumns(ref.judged, judged) } : {}),
      psnrToFp: name === 'fp' ? null : res.images.reduce((acc, img, i) => acc + framePsnr(img, i), 0) / res.images.length,
      ...(va && flicker !== null ? { video: { motion: va.motion, frames: va.frameAgreement, flicker, flickerRatio: ref.flicker ? flicker / ref.flicker : null } } : {}),
      weightBits: manifest ? manifest.summary.weightBitsPerParameter : 32,
      activations: manifest ? (manifest.summary.activationFormat ?? 'fp32') : 'fp32',
      seconds: res.seconds, quantizeSeconds: qs,
    };
    rows.push(row);
    if (rates) perSample[name] = rates.results.map((r) => r.ok);
    say(formatTextRow(row, attrs !== null, judge !== null));
    await releaseSessions();
  };
  if (judge) sayJudge(judge, o.samples, say);
  if (video) say(`video: ${frames} frames; prompt % = videos in agreement (motion right and at least ${attrs!.min_frames ?? frames} frames right), digit/fg/bg % per frame, FID-to-FP and PSNR per frame, flicker x = frame-to-frame change / FP's`);
  say(textHeader(attrs !== null, judge !== null, video));
  await run('fp', o.pipelineDir, null, null);
  for (const v of plan) {
    const t0 = performance.now();
    const dir = join(out, v.name);
    const manifest = await quantizePipeline({ pipelineDir: o.pipelineDir, recipe: v.recipe, record: rec, recordPath: calibration?.path, out: dir, budget: v.budget });
    await run(v.name, dir, manifest, (performance.now() - t0) / 1000);
  }
  writeFronts(out, recipes, o.budgets, rows, say);
  const settings = {
    samples: o.samples, steps: o.steps, sampler, guidance, seeds: [seeds[0], seeds[seeds.length - 1]],
    judge: attrs ? (video ? 'per frame: digit features of the embedded classifier (re-centred) + colours; per video: motion (video-judge.ts)' : 'digit features of the embedded classifier + colours (t2i-judge.ts)') : null,
    ...(frames ? { frames } : {}),
    ...(judge ? { userJudge: judgeSettings(judge, o.samples) } : {}),
  };
  writeFileAtomic(
    join(out, 'eval.json'),
    JSON.stringify({ settings, calibration, text: rows, prompts: entries.map((q) => q.prompt), ...(attrs ? { ok: perSample } : {}) }, null, 2) + '\n',
  );
  return { text: rows, calibration };
}

/**
 * The record every preset of one eval run is quantized with: --calib, or <out>/calibration.json when a previous run
 * left one, else a calibration over all steps (with Gram matrices when a preset rounds with GPTQ) written there.
 */
async function evalCalibration(
  o: EvalOptions, out: string, recipes: Recipe[], settings: { sampler: SamplerName; guidance: number; prompts?: string[]; negativePrompt?: string }, say: (s: string) => void,
): Promise<{ rec: CalibrationRecord; path: string; seconds: number }> {
  const path = resolve(o.calib ?? join(out, 'calibration.json'));
  if (o.calib || existsSync(path)) {
    const rec = readRecord(path);
    say(`calibration: ${path} (${rec.settings.samples} samples x ${rec.steps.length} steps)`);
    return { rec, path, seconds: 0 };
  }
  const t0 = performance.now();
  const gram = recipes.some((r) => r.weights.rounding === 'gptq');
  const rec = await calibrate(o.pipelineDir, path, { samples: o.calibSamples ?? 64, steps: o.steps, timesteps: 'all', gram, signal: o.signal, ...settings });
  const seconds = (performance.now() - t0) / 1000;
  const prompts = rec.settings.prompts ? ` on ${rec.settings.prompts.length} prompts` : '';
  say(`calibrated ${rec.sites.length} sites at ${rec.steps.length} steps${prompts} in ${seconds.toFixed(1)} s -> ${path}`);
  return { rec, path, seconds };
}

/** A text-to-image pipeline's calibration_prompts.txt, or the one-line error that asks for --prompts. */
function defaultPromptEntries(dir: string): { prompt: string; negative?: string }[] {
  const file = join(dir, DEFAULT_PROMPTS_FILE);
  if (!existsSync(file)) throw new DqError('BAD_ARGUMENT', `${dir} is a text-to-image pipeline without ${DEFAULT_PROMPTS_FILE}: give the eval prompts with --prompts <file>`);
  return readPromptFile(file);
}

/** FID-to-FP and per-image cosine of a variant's judge features against FP's (same prompts or classes, same seeds). */
function judgeColumns(fp: Float32Array[], variant: Float32Array[]): JudgeColumns {
  const c = compareFeatures(fp, variant);
  return { fidToFp: c.fidToFp, cosine: { mean: c.cosine.mean, min: c.cosine.min } };
}

/** The judge's lines before the table: which output, the preprocessing, its warnings, and the few-samples note. */
function sayJudge(judge: Judge, n: number, say: (s: string) => void): void {
  say(`judge: ${judge.path}, output '${judge.output.name}' (${judge.output.width} values per image); ${judge.preprocessing}`);
  for (const w of judge.warnings) say(`judge warning: ${w}`);
  if (n <= judge.output.width) say(`note: ${n} samples for ${judge.output.width} feature dimensions: the covariances are singular and the judge's FID is biased upwards; compare FIDs only at equal n`);
}

/** The judge as eval.json records it (settings.userJudge). */
function judgeSettings(judge: Judge, n: number) {
  return {
    path: judge.path, output: judge.output.name, width: judge.output.width, preprocessing: judge.preprocessing, warnings: judge.warnings,
    note: n <= judge.output.width ? `${n} samples for ${judge.output.width} feature dimensions: FID is biased upwards; compare FIDs only at equal n` : null,
  };
}

function judgeHeader(withJudge: boolean): string {
  return withJudge ? ` ${'judge FID'.padStart(10)} ${'cos mean'.padStart(8)} ${'cos min'.padStart(8)}` : '';
}

function judgeCells(j: JudgeColumns | undefined, withJudge: boolean): string {
  if (!withJudge) return '';
  return ` ${(j?.fidToFp === null || j === undefined ? '-' : j.fidToFp.toFixed(3)).padStart(10)} ${(j ? j.cosine.mean.toFixed(4) : '-').padStart(8)} ${(j ? j.cosine.min.toFixed(4) : '-').padStart(8)}`;
}

export function textHeader(withAttributes = true, withJudge = false, video = false): string {
  const attrs = withAttributes ? ` ${'prompt %'.padStart(9)}${video ? ` ${'motion %'.padStart(8)} ${'frames %'.padStart(8)}` : ''} ${'digit %'.padStart(8)} ${'fg %'.padStart(6)} ${'bg %'.padStart(6)} ${'FID-to-FP'.padStart(10)}${video ? ` ${'flicker x'.padStart(9)}` : ''}` : '';
  return `${'variant'.padEnd(18)}${attrs}${judgeHeader(withJudge)} ${'PSNR dB'.padStart(8)} ${'W bits'.padStart(7)} ${'activations'.padEnd(16)} ${'sample s'.padStart(9)}`;
}

export function formatTextRow(r: TextEvalRow, withAttributes = r.agreement !== null, withJudge = r.judge !== undefined): string {
  const pct = (v: number | null, w: number) => (v === null ? '-' : (100 * v).toFixed(1)).padStart(w);
  const v = r.video;
  const attrs = withAttributes
    ? ` ${pct(r.agreement, 9)}${v ? ` ${pct(v.motion, 8)} ${pct(v.frames, 8)}` : ''} ${pct(r.digit, 8)} ${pct(r.fg, 6)} ${pct(r.bg, 6)} ${(r.fidToFp === null ? '-' : r.fidToFp.toFixed(3)).padStart(10)}${v ? ` ${(v.flickerRatio === null ? '-' : v.flickerRatio.toFixed(3)).padStart(9)}` : ''}`
    : '';
  return `${r.variant.padEnd(18)}${attrs}${judgeCells(r.judge, withJudge)} ${(r.psnrToFp === null ? '-' : r.psnrToFp.toFixed(1)).padStart(8)} ${r.weightBits.toFixed(2).padStart(7)} ${r.activations.padEnd(16)} ${r.seconds.toFixed(1).padStart(9)}`;
}

export function header(withJudge = false): string {
  return `${'variant'.padEnd(18)} ${'agree %'.padStart(8)} ${'FID-to-FP'.padStart(10)}${judgeHeader(withJudge)} ${'W bits'.padStart(7)} ${'activations'.padEnd(16)} ${'sample s'.padStart(9)}`;
}

export function formatRow(r: EvalRow, withJudge = r.judge !== undefined): string {
  return `${r.variant.padEnd(18)} ${(100 * r.agreement).toFixed(1).padStart(8)} ${(r.fidToFp ?? NaN).toFixed(3).padStart(10)}${judgeCells(r.judge, withJudge)} ${(r.weightBits ?? NaN).toFixed(2).padStart(7)} ${(r.activations ?? '-').padEnd(16)} ${r.seconds.toFixed(1).padStart(9)}`;
}
