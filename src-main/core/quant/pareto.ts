/**
 * The Pareto front of mixed precision: one recipe quantized under several bits budgets (quant/budget.ts, from a
 * sensitivity record), and alone; each variant sampled on the record's own seeds, prompts and settings and measured
 * against FP as the record measures (quant/sensitivity.ts imageError), and by FID-to-FP in a judge's features where
 * the pipeline has one (the embedded text-to-image judge, attributes.json; the embedded digit classifier for 28x28
 * class-conditional images). Every point is measured, none is a sum of gains.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { classify } from '../eval/classifier.js';
import { fitGaussian, frechetDistance } from '../eval/metrics.js';
import { loadAttributes, promptAgreement } from '../eval/t2i-judge.js';
import { DqError } from '../errors.js';
import { makeDirs } from '../fsutil.js';
import { openPipeline } from '../open.js';
import { releaseSessions, type Pipeline } from '../pipeline/pipeline.js';
import { sample } from '../pipeline/sample.js';
import type { CalibrationRecord } from './calibrate.js';
import { quantizePipeline } from './quantize.js';
import type { Recipe } from './recipe.js';
import { imageError, recordRequest, type ImageError, type SensitivityRecord } from './sensitivity.js';

export interface FrontPoint {
  /** The budget asked for (null: the recipe alone). */
  budget: number | null;
  /** The variant's weight bits per parameter. */
  bits: number;
  /** Layers moved to keepFormat. */
  layers: number;
  error: ImageError;
  /** FID-to-FP in the judge's features (few images bias it upwards: compare points of one front), or null without a judge. */
  fidToFp: number | null;
  dir: string;
}

/** The features a judge reads from a pipeline's images, or null when the pipeline has no judge here. */
async function judged(p: Pipeline, images: Float32Array[], prompts: string[] | undefined): Promise<Float32Array[] | null> {
  if (p.text) {
    if (!prompts?.length || !existsSync(join(p.dir, 'attributes.json'))) return null;
    const a = await promptAgreement(prompts, images, loadAttributes(p.dir));
    return a.results.map((r) => r.judged.features);
  }
  const [c, h, w] = p.imageShape;
  return p.io.classLabels && c === 1 && h === 28 && w === 28 ? (await classify(images)).features : null;
}

export interface FrontOptions {
  pipelineDir: string;
  recipe: Recipe;
  record: CalibrationRecord | null;
  recordPath?: string;
  sensitivity: SensitivityRecord;
  sensitivityPath: string;
  budgets: number[];
  /** Variants go to out/<recipe>@<bits>. */
  out: string;
  signal?: AbortSignal;
  onProgress?: (p: { done: number; total: number; budget: number }) => void;
}

export async function measureFront(o: FrontOptions): Promise<FrontPoint[]> {
  const s = o.sensitivity;
  if (!o.budgets.length) throw new DqError('BAD_ARGUMENT', 'give at least one budget');
  const budgets = [...new Set(o.budgets)].sort((a, b) => a - b);
  makeDirs(o.out, 'the output folder');
  const src = await openPipeline(o.pipelineDir, 'cpu');
  const req = recordRequest(src.pipeline, s.settings, o.signal);
  const fp = (await sample(src.pipeline, src.session, req)).images;
  const fpJudged = await judged(src.pipeline, fp, req.prompts);
  const fpGauss = fpJudged && fpJudged.length > 1 ? fitGaussian(fpJudged) : null;
  const points: FrontPoint[] = [];
  const plan: (number | null)[] = [null, ...budgets];
  for (const [k, bits] of plan.entries()) {
    o.signal?.throwIfAborted();
    const name = bits === null ? o.recipe.name : `${o.recipe.name}@${bits}`;
    const dir = join(o.out, name);
    const m = await quantizePipeline({ pipelineDir: o.pipelineDir, recipe: { ...o.recipe, name }, record: o.record, recordPath: o.recordPath, out: dir, ...(bits === null ? {} : { budget: { bits, sensitivity: s, path: o.sensitivityPath } }) });
    const v = await openPipeline(dir, 'cpu');
    const images = (await sample(v.pipeline, v.session, req)).images;
    const error = imageError(images, fp, src.pipeline.imageShape);
    const vj = fpGauss ? await judged(src.pipeline, images, req.prompts) : null;
    const fid = fpGauss && vj ? frechetDistance(fpGauss, fitGaussian(vj)) : null;
    const fidToFp = fid !== null && Number.isFinite(fid) ? fid : null;
    points.push({ budget: bits, bits: m.summary.weightBitsPerParameter, layers: m.budget?.chosen.length ?? 0, error, fidToFp, dir });
    await releaseSessions();
    o.onProgress?.({ done: k + 1, total: plan.length, budget: bits ?? m.summary.weightBitsPerParameter });
  }
  return points;
}
