/**
 * `dq eval`: every preset against FP on the same seeds and classes. Calibrates once (or reads a record),
 * quantizes each preset into <out>/<preset>, samples N images per variant and reports class agreement (the
 * embedded classifier vs the requested class) and FID-to-FP in the classifier's feature space.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { agreement, classify } from '../eval/classifier.js';
import { fitGaussian, frechetDistance, type Gaussian } from '../eval/metrics.js';
import { makeDirs, prepareOutput, writeFileAtomic } from '../fsutil.js';
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
  sampler: SamplerName;
  guidance: number;
  out: string;
  calib?: string;
  calibSamples?: number;
  seed?: number;
  onLine?: (s: string) => void;
  signal?: AbortSignal;
}

export async function runEval(o: EvalOptions): Promise<{ rows: EvalRow[]; calibration: { path: string; seconds: number } }> {
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
    rec = await calibrate(o.pipelineDir, recPath, { samples: o.calibSamples ?? 64, steps: o.steps, sampler: o.sampler, guidance: o.guidance, timesteps: 'all', gram, signal: o.signal });
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
    const res = await sample(pipeline, session, { seeds, classes, steps: o.steps, sampler: o.sampler, guidance: o.guidance, batchSize: 50, signal: o.signal });
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

export function header(): string {
  return `${'variant'.padEnd(18)} ${'agree %'.padStart(8)} ${'FID-to-FP'.padStart(10)} ${'W bits'.padStart(7)} ${'activations'.padEnd(16)} ${'sample s'.padStart(9)}`;
}

export function formatRow(r: EvalRow): string {
  return `${r.variant.padEnd(18)} ${(100 * r.agreement).toFixed(1).padStart(8)} ${(r.fidToFp ?? NaN).toFixed(3).padStart(10)} ${(r.weightBits ?? NaN).toFixed(2).padStart(7)} ${(r.activations ?? '-').padEnd(16)} ${r.seconds.toFixed(1).padStart(9)}`;
}
