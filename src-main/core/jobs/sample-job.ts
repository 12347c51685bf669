/**
 * `dq sample`: images for every (class, seed), a labelled grid PNG and samples.json.
 */
import { join } from 'node:path';
import { DqError } from '../errors.js';
import { prepareOutput, writeFileAtomic } from '../fsutil.js';
import { MAX_GRID_IMAGES } from '../ranges.js';
import { encodePng, layoutGrid } from '../image/grid.js';
import { openPipeline } from '../open.js';
import { sample, type SampleProgress } from '../pipeline/sample.js';
import type { SamplerName } from '../pipeline/schedulers.js';
import type { Provider } from '../runtime/onnx.js';

export interface SampleJob {
  pipelineDir: string;
  classes: number[];
  seeds: number[];
  steps: number;
  sampler: SamplerName;
  guidance: number;
  eta?: number;
  provider: Provider;
  out: string;
  batchSize?: number;
  signal?: AbortSignal;
  onProgress?: (p: SampleProgress) => void;
}

export interface SampleRecord {
  version: 1;
  pipeline: string;
  settings: { steps: number; sampler: SamplerName; guidance: number; eta: number; batchSize: number };
  provider: { requested: Provider; used: string; fallback?: string };
  /** The pipeline's warnings for this machine (e.g. an s8 export on an AVX2-only CPU). */
  warnings?: string[];
  /** An export with int8-kernel layers: its int8 weight storage as exported and as it ran here, and why. */
  int8Weights?: { exported: string; loaded: string; why: string };
  seconds: number;
  seeds: number[];
  classes: number[];
  grid: string;
  images: { seed: number; class: number | null; className: string | null; row: number; col: number }[];
}

export async function runSampleJob(job: SampleJob): Promise<SampleRecord> {
  prepareOutput(job.out, 'folder');
  const { pipeline, session } = await openPipeline(job.pipelineDir, job.provider);
  const conditional = pipeline.io.classLabels !== null;
  if (!conditional && job.classes.length) throw new DqError('BAD_ARGUMENT', 'this model is unconditional: leave out --class');
  const classes = conditional ? (job.classes.length ? job.classes : pipeline.index.classes.map((_, i) => i)) : [];
  const rows = conditional ? classes : [null];
  if (rows.length * job.seeds.length > MAX_GRID_IMAGES) {
    throw new DqError('BAD_ARGUMENT', `${rows.length} classes x ${job.seeds.length} seeds is ${rows.length * job.seeds.length} images, more than a grid holds (at most ${MAX_GRID_IMAGES})`);
  }
  const seeds: number[] = [];
  const cls: number[] = [];
  for (const c of rows) {
    for (const s of job.seeds) {
      seeds.push(s);
      if (c !== null) cls.push(c);
    }
  }
  const batchSize = job.batchSize ?? 16;
  const res = await sample(pipeline, session, {
    seeds,
    classes: cls,
    steps: job.steps,
    sampler: job.sampler,
    guidance: job.guidance,
    eta: job.eta ?? 0,
    batchSize,
    signal: job.signal,
    onProgress: job.onProgress,
  });
  const [C, H, W] = pipeline.index.sampleShape;
  const name = (c: number | null) => (c === null ? null : (pipeline.index.classes[c] ?? String(c)));
  const grid = layoutGrid({
    cells: rows.map((_, r) => job.seeds.map((_, c) => res.images[r * job.seeds.length + c]!)),
    channels: C,
    height: H,
    width: W,
    rowLabels: rows.map((c) => (c === null ? '' : name(c)!)),
    colLabels: job.seeds.map((s) => `s${s}`),
    zoom: 2,
    title: `${job.sampler} ${job.steps} steps cfg ${job.guidance}`,
  });
  const png = await encodePng(grid);
  const record: SampleRecord = {
    version: 1,
    pipeline: pipeline.dir,
    settings: { steps: job.steps, sampler: job.sampler, guidance: job.guidance, eta: job.eta ?? 0, batchSize },
    provider: { requested: session.info.requested, used: session.info.provider, ...(session.info.fallback ? { fallback: session.info.fallback } : {}) },
    ...(pipeline.warnings?.length ? { warnings: pipeline.warnings } : {}),
    ...(pipeline.int8Weights ? { int8Weights: pipeline.int8Weights } : {}),
    seconds: Math.round(res.seconds * 1000) / 1000,
    seeds: job.seeds,
    classes,
    grid: 'grid.png',
    images: rows.flatMap((c, r) => job.seeds.map((s, col) => ({ seed: s, class: c, className: name(c), row: r, col }))),
  };
  writeFileAtomic(join(job.out, 'grid.png'), png);
  writeFileAtomic(join(job.out, 'samples.json'), JSON.stringify(record, null, 2) + '\n');
  return record;
}
