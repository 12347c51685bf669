/**
 * `dq eval`: every preset against FP on the same seeds and classes. Calibrates once (or reads a record),
 * quantizes each preset into <out>/<preset>, samples N images per variant and reports class agreement (the
 * embedded classifier vs the requested class) and FID-to-FP in the classifier's feature space.
 * On the embedded text-to-image model (a pipeline with attributes.json) it reports prompt agreement: every attribute
 * of the prompt (digit, foreground, background) read back from the image by the judge (eval/t2i-judge.ts).
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { agreement, classify } from '../eval/classifier.js';
import { fitGaussian, frechetDistance, psnr, type Gaussian } from '../eval/metrics.js';
import { makeDirs, prepareOutput, writeFileAtomic } from '../fsutil.js';
import { evalPrompts, loadAttributes, promptAgreement } from '../eval/t2i-judge.js';
import { releaseSessions } from '../pipeline/pipeline.js';
import { openPipeline } from '../open.js';
import { sample } from '../pipeline/sample.js';
import type { SamplerName } from '../pipeline/schedulers.js';
import { calibrate, readRecord, type CalibrationRecord } from '../quant/calibrate.js';
import { quantizePipeline, type Manifest } from '../quant/quantize.js';
import { loadRecipe } from '../quant/recipe.js';

export interface EvalRow {
  variant: string;
  agreement: number;
  fidToFp: number | null;
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
  onLine?: (s: string) => void;
  signal?: AbortSignal;
}

export interface TextEvalRow {
  variant: string;
  /** Fraction of samples with every attribute right; then each attribute's own rate. */
  agreement: number;
  digit: number;
  fg: number;
  bg: number;
  /** Frechet distance to FP's samples in the judge's feature space (t2i-judge.ts: digit features and colours). */
  fidToFp: number;
  /** Mean PSNR (dB) of each image against FP's image of the same prompt and seed; null for FP itself. */
  psnrToFp: number | null;
  weightBits: number;
  activations: string;
  seconds: number;
  quantizeSeconds: number | null;
}

export async function runEval(o: EvalOptions): Promise<{ rows: EvalRow[]; calibration: { path: string; seconds: number } } | { text: TextEvalRow[]; calibration: { path: string; seconds: number } | null }> {
  const opened = await openPipeline(o.pipelineDir, 'cpu');
  if (opened.pipeline.text) return runTextEval(o);
  o = { ...o, sampler: o.sampler ?? opened.pipeline.index.defaultSampler, guidance: o.guidance ?? opened.pipeline.index.defaultGuidance };
  const out = prepareOutput(o.out, 'folder');
  // every preset's variant folder is checked before any work: replacing one that is not ours is refused
  const recipes = o.presets.map((p) => loadRecipe(p));
  for (const r of recipes) prepareOutput(join(out, r.name), { replace: 'variant' });
  makeDirs(out, '--out');
  const say = o.onLine ?? (() => {});
  let recPath = o.calib ? resolve(o.calib) : join(out, 'calibration.json');
  let rec: CalibrationRecord;
  let calSeconds = 0;
  if (o.calib || existsSync(recPath)) {
    rec = readRecord(recPath);
    say(`calibration: ${recPath} (${rec.settings.samples} samples x ${rec.steps.length} steps)`);
  } else {
    const t0 = performance.now();
    const gram = recipes.some((r) => r.weights.rounding === 'gptq');
    rec = await calibrate(o.pipelineDir, recPath, { samples: o.calibSamples ?? 64, steps: o.steps, sampler: o.sampler!, guidance: o.guidance!, timesteps: 'all', gram, signal: o.signal });
    calSeconds = (performance.now() - t0) / 1000;
    say(`calibrated ${rec.sites.length} sites at ${rec.steps.length} steps in ${calSeconds.toFixed(1)} s -> ${recPath}`);
  }
  recPath = resolve(recPath);

  const seed0 = o.seed ?? 10_000;
  const classes = Array.from({ length: o.samples }, (_, i) => i % 10);
  const seeds = classes.map((_, i) => seed0 + i);
  const rows: EvalRow[] = [];
  let fpGauss: Gaussian | null = null;

  const run = async (name: string, dir: string, manifest: Manifest | null, qs: number | null) => {
    const { pipeline, session } = await openPipeline(dir, 'cpu');
    const res = await sample(pipeline, session, { seeds, classes, steps: o.steps, sampler: o.sampler!, guidance: o.guidance!, batchSize: 50, signal: o.signal });
    const { labels, features } = await classify(res.images);
    const g = fitGaussian(features);
    if (!fpGauss) fpGauss = g;
    const row: EvalRow = {
      variant: name,
      agreement: agreement(classes, labels),
      fidToFp: name === 'fp' ? 0 : frechetDistance(fpGauss, g),
      weightBits: manifest ? manifest.summary.weightBitsPerParameter : 32,
      activations: manifest ? manifest.summary.activationFormat : 'fp32',
      seconds: res.seconds,
      quantizeSeconds: qs,
    };
    rows.push(row);
    say(formatRow(row));
    await releaseSessions();
  };

  say(header());
  await run('fp', o.pipelineDir, null, null);
  for (const recipe of recipes) {
    const t0 = performance.now();
    const dir = join(out, recipe.name);
    const manifest = await quantizePipeline({ pipelineDir: o.pipelineDir, recipe, record: rec, recordPath: recPath, out: dir });
    await run(recipe.name, dir, manifest, (performance.now() - t0) / 1000);
  }
  const result = { rows, calibration: { path: recPath, seconds: calSeconds } };
  writeFileAtomic(join(out, 'eval.json'), JSON.stringify({ settings: { samples: o.samples, steps: o.steps, sampler: o.sampler, guidance: o.guidance, seeds: [seeds[0], seeds[seeds.length - 1]] }, ...result }, null, 2) + '\n');
  return result;
}

/**
 * Text-to-image: every preset against FP on n deterministic prompts (evalPrompts) and seeds seed0..: prompt
 * agreement (each attribute read back by the judge), FID-to-FP in the judge's feature space and PSNR against FP's
 * image of the same prompt and seed. Calibrates once on the pipeline's calibration prompts (or reads --calib).
 */
async function runTextEval(o: EvalOptions): Promise<{ text: TextEvalRow[]; calibration: { path: string; seconds: number } | null }> {
  const attrs = loadAttributes(o.pipelineDir);
  const out = prepareOutput(o.out, 'folder');
  const recipes = o.presets.map((p) => loadRecipe(p));
  for (const r of recipes) prepareOutput(join(out, r.name), { replace: 'variant' });
  makeDirs(out, '--out');
  const say = o.onLine ?? (() => {});
  const { pipeline } = await openPipeline(o.pipelineDir, 'cpu');
  const sampler = o.sampler ?? pipeline.index.defaultSampler;
  const guidance = o.guidance ?? pipeline.index.defaultGuidance;
  let calibration: { path: string; seconds: number } | null = null;
  let rec: CalibrationRecord | null = null;
  if (recipes.length) {
    const recPath = o.calib ? resolve(o.calib) : join(out, 'calibration.json');
    if (o.calib || existsSync(recPath)) {
      rec = readRecord(recPath);
      say(`calibration: ${recPath} (${rec.settings.samples} samples x ${rec.steps.length} steps)`);
      calibration = { path: recPath, seconds: 0 };
    } else {
      const t0 = performance.now();
      const gram = recipes.some((r) => r.weights.rounding === 'gptq');
      rec = await calibrate(o.pipelineDir, recPath, { samples: o.calibSamples ?? 64, steps: o.steps, sampler, guidance, timesteps: 'all', gram, signal: o.signal });
      calibration = { path: recPath, seconds: (performance.now() - t0) / 1000 };
      say(`calibrated ${rec.sites.length} sites at ${rec.steps.length} steps on ${rec.settings.prompts?.length ?? 0} prompts in ${calibration.seconds.toFixed(1)} s -> ${recPath}`);
    }
  }
  const prompts = evalPrompts(attrs, o.samples);
  const seed0 = o.seed ?? 10_000;
  const seeds = prompts.map((_, i) => seed0 + i);
  const rows: TextEvalRow[] = [];
  const perSample: Record<string, boolean[]> = {};
  let fp: { gauss: Gaussian; images: Float32Array[]; shape: [number, number, number] } | null = null;
  const run = async (name: string, dir: string, manifest: Manifest | null, qs: number | null) => {
    const { pipeline: p, session } = await openPipeline(dir, 'cpu');
    const res = await sample(p, session, { seeds, classes: [], prompts: prompts.map((q) => q.prompt), steps: o.steps, sampler, guidance, batchSize: 50, signal: o.signal });
    const a = await promptAgreement(prompts.map((q) => q.prompt), res.images, attrs);
    const g = fitGaussian(a.results.map((r) => r.judged.features));
    fp ??= { gauss: g, images: res.images, shape: p.imageShape };
    const ref = fp;
    const row: TextEvalRow = {
      variant: name, agreement: a.agreement, digit: a.digit, fg: a.fg, bg: a.bg,
      fidToFp: name === 'fp' ? 0 : frechetDistance(ref.gauss, g),
      psnrToFp: name === 'fp' ? null : res.images.reduce((acc, img, i) => acc + Math.min(99, psnr(img, ref.images[i]!)), 0) / res.images.length,
      weightBits: manifest ? manifest.summary.weightBitsPerParameter : 32,
      activations: manifest ? (manifest.summary.activationFormat ?? 'fp32') : 'fp32',
      seconds: res.seconds, quantizeSeconds: qs,
    };
    rows.push(row);
    perSample[name] = a.results.map((r) => r.ok);
    say(formatTextRow(row));
    await releaseSessions();
  };
  say(textHeader());
  await run('fp', o.pipelineDir, null, null);
  for (const recipe of recipes) {
    const t0 = performance.now();
    const dir = join(out, recipe.name);
    const manifest = await quantizePipeline({ pipelineDir: o.pipelineDir, recipe, record: rec, recordPath: calibration?.path, out: dir });
    await run(recipe.name, dir, manifest, (performance.now() - t0) / 1000);
  }
  const settings = { samples: o.samples, steps: o.steps, sampler, guidance, seeds: [seeds[0], seeds[seeds.length - 1]], judge: 'digit features of the embedded classifier + colours (t2i-judge.ts)' };
  writeFileAtomic(
    join(out, 'eval.json'),
    JSON.stringify({ settings, calibration, text: rows, prompts: prompts.map((q) => q.prompt), ok: perSample }, null, 2) + '\n',
  );
  return { text: rows, calibration };
}

export function textHeader(): string {
  return `${'variant'.padEnd(18)} ${'prompt %'.padStart(9)} ${'digit %'.padStart(8)} ${'fg %'.padStart(6)} ${'bg %'.padStart(6)} ${'FID-to-FP'.padStart(10)} ${'PSNR dB'.padStart(8)} ${'W bits'.padStart(7)} ${'activations'.padEnd(16)} ${'sample s'.padStart(9)}`;
}

export function formatTextRow(r: TextEvalRow): string {
  const pct = (v: number, w: number) => (100 * v).toFixed(1).padStart(w);
  return `${r.variant.padEnd(18)} ${pct(r.agreement, 9)} ${pct(r.digit, 8)} ${pct(r.fg, 6)} ${pct(r.bg, 6)} ${r.fidToFp.toFixed(3).padStart(10)} ${(r.psnrToFp === null ? '-' : r.psnrToFp.toFixed(1)).padStart(8)} ${r.weightBits.toFixed(2).padStart(7)} ${r.activations.padEnd(16)} ${r.seconds.toFixed(1).padStart(9)}`;
}

export function header(): string {
  return `${'variant'.padEnd(18)} ${'agree %'.padStart(8)} ${'FID-to-FP'.padStart(10)} ${'W bits'.padStart(7)} ${'activations'.padEnd(16)} ${'sample s'.padStart(9)}`;
}

export function formatRow(r: EvalRow): string {
  return `${r.variant.padEnd(18)} ${(100 * r.agreement).toFixed(1).padStart(8)} ${(r.fidToFp ?? NaN).toFixed(3).padStart(10)} ${(r.weightBits ?? NaN).toFixed(2).padStart(7)} ${(r.activations ?? '-').padEnd(16)} ${r.seconds.toFixed(1).padStart(9)}`;
}
