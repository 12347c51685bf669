/**
 * The Pareto front of mixed precision: one recipe quantized under several bits budgets (quant/budget.ts, from a
 * sensitivity record), and alone; each variant sampled on the record's own seeds, prompts and settings and measured
 * against FP as the record measures (quant/sensitivity.ts imageError). Every point is measured, none is a sum of gains.
 */
import { join } from 'node:path';
import { DqError } from '../errors.js';
import { makeDirs } from '../fsutil.js';
import { openPipeline } from '../open.js';
import { releaseSessions } from '../pipeline/pipeline.js';
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
  dir: string;
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
  const points: FrontPoint[] = [];
  const plan: (number | null)[] = [null, ...budgets];
  for (const [k, bits] of plan.entries()) {
    o.signal?.throwIfAborted();
    const name = bits === null ? o.recipe.name : `${o.recipe.name}@${bits}`;
    const dir = join(o.out, name);
    const m = await quantizePipeline({ pipelineDir: o.pipelineDir, recipe: { ...o.recipe, name }, record: o.record, recordPath: o.recordPath, out: dir, ...(bits === null ? {} : { budget: { bits, sensitivity: s, path: o.sensitivityPath } }) });
    const v = await openPipeline(dir, 'cpu');
    const error = imageError((await sample(v.pipeline, v.session, req)).images, fp, src.pipeline.imageShape);
    points.push({ budget: bits, bits: m.summary.weightBitsPerParameter, layers: m.budget?.chosen.length ?? 0, error, dir });
    await releaseSessions();
    o.onProgress?.({ done: k + 1, total: plan.length, budget: bits ?? m.summary.weightBitsPerParameter });
  }
  return points;
}
