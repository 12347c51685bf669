/**
 * `dq batch <jobs.json>`: a matrix of pipelines x presets, each job running calibrate (once per pipeline, shared),
 * quantize, compare and export, with a log per job. A job is finished when its result.json exists with the same
 * key (pipeline, recipe, settings): running the batch again skips it, so an interrupted batch resumes where it
 * stopped. `--shard i/n` runs the jobs whose index k (in matrix order) has k % n == i, so the array tasks of a
 * cluster (Slurm job arrays, Kubernetes indexed Jobs) split the matrix between them without coordination.
 *
 * jobs.json:
 *   {
 *     "out": "runs/batch",                       // relative to the jobs file
 *     "pipelines": ["../models/tiny-mnist"],      // relative to the jobs file
 *     "presets": ["int8-w8a8", "int4-w4a16"],     // preset names or recipe files
 *     "steps": ["calibrate", "quantize", "compare", "export"],
 *     "calibration": { "samples": 64, "steps": 25, "timesteps": "all" },
 *     "compare": { "seeds": "0-7", "steps": 25, "fidSamples": 0, "video": false },
 *     "export": { "int8Weights": "u8", "fuseAttention": true, "verifySeeds": "0-3", "calibrationImages": 8 }
 *   }
 */
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import { runCompare } from '../compare/compare.js';
import { DqError } from '../errors.js';
import { exportPipeline, INT8_WEIGHTS } from '../export/export.js';
import { makeDirs, prepareOutput, writeFileAtomic, sha256File } from '../fsutil.js';
import { locatePipeline, releaseSessions } from '../pipeline/pipeline.js';
import { calibrate, DEFAULT_CALIBRATION, readRecord, type CalibrationRecord, type CalibrationSettings } from '../quant/calibrate.js';
import { quantizePipeline } from '../quant/quantize.js';
import { loadRecipe } from '../quant/recipe.js';
import { MAX_BATCH, MAX_COUNT, MAX_SAMPLES, parseSeeds } from '../ranges.js';
import { fallbackSampler } from '../pipeline/schedulers.js';

const STEPS = ['calibrate', 'quantize', 'compare', 'export'] as const;

export const JobsSchema = z
  .object({
    out: z.string().min(1),
    pipelines: z.array(z.string().min(1)).min(1),
    presets: z.array(z.string().min(1)).min(1),
    steps: z.array(z.enum(STEPS)).default([...STEPS]),
    calibration: z
      .object({
        samples: z.number().int().positive().max(MAX_SAMPLES).default(64),
        steps: z.number().int().positive().default(25),
        timesteps: z.enum(['all', 'uniform', 'normal']).default('all'),
        count: z.number().int().positive().max(MAX_COUNT).default(10),
        batchSize: z.number().int().positive().max(MAX_BATCH).default(32),
      })
      .strict()
      .default({ samples: 64, steps: 25, timesteps: 'all', count: 10, batchSize: 32 }),
    compare: z
      .object({
        seeds: z.string().default('0-7'),
        steps: z.number().int().positive().default(25),
        fidSamples: z.number().int().nonnegative().max(MAX_SAMPLES).default(0),
        video: z.boolean().default(false),
      })
      .strict()
      .default({ seeds: '0-7', steps: 25, fidSamples: 0, video: false }),
    export: z
      .object({
        int8Weights: z.enum(INT8_WEIGHTS).default('u8'),
        /** Older job files: true means int8Weights 's7'. */
        reduceRange: z.boolean().optional(),
        fuseAttention: z.boolean().default(true),
        verifySeeds: z.string().default('0-3'),
        calibrationImages: z.number().int().positive().max(MAX_SAMPLES).default(8),
      })
      .strict()
      .default({ int8Weights: 'u8', fuseAttention: true, verifySeeds: '0-3', calibrationImages: 8 }),
  })
  .strict();

export type JobsFile = z.infer<typeof JobsSchema>;

export interface Shard {
  index: number;
  count: number;
}

export function parseShard(s: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(s.trim());
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || count < 1 || index >= count) throw new DqError('BAD_ARGUMENT', `--shard must be i/n with 0 <= i < n (e.g. 0/4), got '${s}'`);
  return { index, count };
}

export interface Job {
  /** Index in matrix order (pipelines x presets). */
  index: number;
  id: string;
  pipeline: string;
  preset: string;
  dir: string;
}

export interface JobResult {
  kind: 'dq-batch-job';
  key: string;
  id: string;
  pipeline: string;
  preset: string;
  seconds: number;
  quantize?: { weightBitsPerParameter: number; quantized: number; spared: number };
  compare?: { psnrDb: number | null; ssim: number | null; classAgreement: number | null };
  export?: { bytes: number; ratio: number | null; int8Kernels: number; maxAbs: number | null; meanAbs: number | null };
}

export function readJobs(path: string): { jobs: JobsFile; base: string } {
  if (!existsSync(path)) throw new DqError('NOT_FOUND', `no job file at ${path}`);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new DqError('BAD_CONFIG', `${path} is not valid JSON: ${(e as Error).message}`);
  }
  const r = JobsSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new DqError('BAD_CONFIG', `${path}: field '${issue.path.join('.') || '(top level)'}': ${issue.message}`);
  }
  // seed lists are checked here, before any job runs, not when the first job reaches compare or export
  for (const [what, text] of [['compare.seeds', r.data.compare.seeds], ['export.verifySeeds', r.data.export.verifySeeds]] as const) {
    try {
      parseSeeds(text, `field '${what}'`);
    } catch (e) {
      throw new DqError('BAD_CONFIG', `${path}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return { jobs: r.data, base: dirname(resolve(path)) };
}

/** A preset name as it is, a recipe file (a name ending in .json) relative to the job file. */
function presetRef(base: string, preset: string): string {
  return preset.endsWith('.json') ? resolve(base, preset) : preset;
}

/**
 * The matrix in a fixed order; job directories are <out>/<pipeline name>/<preset name>. Recipe files (names ending
 * in .json) are relative to the job file, like the other paths; other names are presets.
 */
export function listJobs(jobs: JobsFile, base: string): Job[] {
  const out = resolve(base, jobs.out);
  const names = new Map<string, number>();
  const list: Job[] = [];
  for (const p of jobs.pipelines) {
    const abs = resolve(base, p);
    let name = basename(abs);
    const seen = names.get(name) ?? 0;
    names.set(name, seen + 1);
    if (seen) name = `${name}-${seen + 1}`;
    for (const preset of jobs.presets) {
      const pname = basename(preset).replace(/\.json$/, '');
      list.push({ index: list.length, id: `${name}/${pname}`, pipeline: abs, preset: presetRef(base, preset), dir: join(out, name, pname) });
    }
  }
  return list;
}

function jobKey(job: Job, jobs: JobsFile, unetSha: string): string {
  const recipe = loadRecipe(job.preset);
  return createHash('sha256').update(JSON.stringify({ unetSha, recipe, steps: jobs.steps, calibration: jobs.calibration, compare: jobs.compare, export: jobs.export })).digest('hex');
}

function readResult(dir: string): JobResult | null {
  const p = join(dir, 'result.json');
  if (!existsSync(p)) return null;
  try {
    return JSON.parse(readFileSync(p, 'utf8')) as JobResult;
  } catch {
    return null;
  }
}

export interface BatchOptions {
  jobsFile: string;
  shard?: Shard;
  dryRun?: boolean;
  onLine?: (s: string) => void;
}

export async function runBatch(opts: BatchOptions): Promise<{ jobs: Job[]; ran: string[]; skipped: string[]; failed: string[] }> {
  const { jobs, base } = readJobs(opts.jobsFile);
  const shard = opts.shard ?? { index: 0, count: 1 };
  const all = listJobs(jobs, base);
  const mine = all.filter((j) => j.index % shard.count === shard.index);
  const say = opts.onLine ?? (() => {});
  if (!opts.dryRun) {
    // the out folder is checked before any work: a batch that cannot write its results is refused as a whole
    const what = `${opts.jobsFile}: field 'out'`;
    makeDirs(prepareOutput(resolve(base, jobs.out), 'folder', what), what);
  }
  say(`batch: ${all.length} jobs (${jobs.pipelines.length} pipelines x ${jobs.presets.length} presets); shard ${shard.index}/${shard.count} runs ${mine.length}`);
  const ran: string[] = [];
  const skipped: string[] = [];
  const failed: string[] = [];
  // one calibration record per pipeline, shared by its jobs: with Gram matrices when any preset of the matrix uses GPTQ
  const gram = jobs.presets.some((p) => {
    try {
      return loadRecipe(presetRef(base, p)).weights.rounding === 'gptq';
    } catch {
      return false; // a bad preset fails its own jobs, not the others
    }
  });
  // unet hash per pipeline (or why the pipeline cannot be used: each of its jobs fails with that reason)
  const shas = new Map<string, { sha: string } | { error: unknown }>();
  const unetSha = (pipeline: string): string => {
    let r = shas.get(pipeline);
    if (!r) {
      try {
        r = { sha: sha256File(locatePipeline(pipeline).unetPath) };
      } catch (e) {
        r = { error: e };
      }
      shas.set(pipeline, r);
    }
    if ('error' in r) throw r.error;
    return r.sha;
  };
  const logTo = (path: string) => (s: string) => {
    appendFileSync(path, `${new Date().toISOString()} ${s}\n`);
  };
  /** A failed job: the reason on one line, in its log (with the details there) and on the batch's output. */
  const fail = (job: Job, e: unknown, log: ((s: string) => void) | null, verb = 'FAILED') => {
    const msg = e instanceof Error ? e.message : String(e);
    failed.push(job.id);
    if (log) {
      log(`FAILED: ${msg}`);
      if (e instanceof DqError && e.detail) log(`detail: ${e.detail}`);
      else if (!(e instanceof DqError) && e instanceof Error && e.stack) log(e.stack);
    }
    say(`[${job.index}] ${job.id}: ${verb}: ${firstLine(msg)}`);
  };
  for (const job of mine) {
    // a bad entry (a pipeline that is not there, an unknown or broken preset) fails its own jobs; the others run
    let key: string;
    let sha: string;
    try {
      sha = unetSha(job.pipeline);
      key = jobKey(job, jobs, sha);
    } catch (e) {
      if (opts.dryRun) {
        fail(job, e, null, 'cannot run');
        continue;
      }
      let log: ((s: string) => void) | null = null;
      try {
        makeDirs(job.dir, job.id);
        log = logTo(join(job.dir, 'job.log'));
        log(`job ${job.id} (index ${job.index}, shard ${shard.index}/${shard.count}, pid ${process.pid})`);
      } catch {
        log = null; // the reason still reaches the batch's output
      }
      fail(job, e, log);
      continue;
    }
    const prev = readResult(job.dir);
    if (prev && prev.key === key) {
      skipped.push(job.id);
      say(`[${job.index}] ${job.id}: done (skipped)`);
      continue;
    }
    if (opts.dryRun) {
      say(`[${job.index}] ${job.id}: to do`);
      continue;
    }
    const logPath = join(job.dir, 'job.log');
    const log = logTo(logPath);
    try {
      makeDirs(job.dir, job.id);
    } catch (e) {
      fail(job, e, null);
      continue;
    }
    say(`[${job.index}] ${job.id}: running (log: ${logPath})`);
    log(`job ${job.id} (index ${job.index}, shard ${shard.index}/${shard.count}, pid ${process.pid}) key ${key.slice(0, 12)}`);
    const t0 = performance.now();
    try {
      const result = await runJob(job, jobs, { key, unetSha256: sha, gram }, log);
      result.seconds = Math.round((performance.now() - t0) / 10) / 100;
      writeFileAtomic(join(job.dir, 'result.json'), JSON.stringify(result, null, 2) + '\n');
      log(`done in ${result.seconds} s`);
      ran.push(job.id);
      say(`[${job.index}] ${job.id}: done in ${result.seconds} s`);
    } catch (e) {
      fail(job, e, log);
    } finally {
      await releaseSessions();
    }
  }
  return { jobs: mine, ran, skipped, failed };
}

/** The calibration a batch asks for: calibrate's defaults for what the job file does not set. */
export function calibrationRequest(jobs: JobsFile, gram: boolean): CalibrationSettings {
  return { ...DEFAULT_CALIBRATION, ...jobs.calibration, gram };
}

/**
 * Why a calibration record cannot serve a request (a sentence), or null when it can: the record must be of this
 * unet, made with the same samples, steps, sampler, guidance, seed and timestep selection (the count when the
 * selection uses one), and hold Gram matrices when the job rounds with GPTQ. The batch size is not compared: it
 * does not change the record.
 */
export function calibrationMismatch(rec: CalibrationRecord, want: CalibrationSettings, unetSha256: string, needGram: boolean): string | null {
  if (rec.unetSha256 !== unetSha256) return 'it was made for another unet';
  const have = (typeof rec.settings === 'object' && rec.settings !== null ? rec.settings : {}) as Partial<CalibrationSettings>;
  const fields: (keyof CalibrationSettings)[] = ['samples', 'steps', 'sampler', 'guidance', 'seed', 'timesteps'];
  if (want.timesteps !== 'all') fields.push('count');
  const differ = fields.filter((f) => have[f] !== want[f]);
  if (differ.length) {
    const show = (o: Partial<CalibrationSettings>) => differ.map((f) => `${f} ${o[f] === undefined ? '(none)' : String(o[f])}`).join(', ');
    return `it was made with ${show(have)}; this batch asks for ${show(want)}`;
  }
  if (needGram && !rec.gram) return 'it has no Gram matrices (GPTQ needs them)';
  return null;
}

/** The context a job runs in: the batch's key for it, its pipeline's unet hash, whether the shared record needs Gram matrices. */
interface JobContext {
  key: string;
  unetSha256: string;
  gram: boolean;
}

async function runJob(job: Job, jobs: JobsFile, { key, unetSha256, gram }: JobContext, log: (s: string) => void): Promise<JobResult> {
  const recipe = loadRecipe(job.preset);
  const res: JobResult = { kind: 'dq-batch-job', key, id: job.id, pipeline: job.pipeline, preset: recipe.name, seconds: 0 };
  const steps = new Set(jobs.steps);
  const gptq = recipe.weights.rounding === 'gptq';
  const needsCalib = gptq || (recipe.activations !== null && recipe.activations.format.kind !== 'mx');
  let record: CalibrationRecord | null = null;
  const calibPath = join(dirname(job.dir), 'calibration.json');
  if (needsCalib && (steps.has('calibrate') || steps.has('quantize'))) {
    // the record is reused only when it was made for this unet with the settings this batch asks for
    const want = calibrationRequest(jobs, gram);
    let why: string | null = null;
    let have: CalibrationRecord | null = null;
    if (existsSync(calibPath)) {
      try {
        have = readRecord(calibPath);
        why = calibrationMismatch(have, want, unetSha256, gptq);
      } catch (e) {
        why = `it cannot be read (${firstLine(e instanceof Error ? e.message : String(e))})`;
      }
    }
    if (have && why === null) {
      record = have;
      log(`calibration: reusing ${calibPath}`);
    } else {
      if (!steps.has('calibrate')) {
        const state = why === null ? 'there is none' : `the one at ${calibPath} does not fit: ${why}`;
        throw new DqError('BAD_CONFIG', `${job.id}: the recipe needs a calibration record, ${state}, and 'calibrate' is not among the steps`);
      }
      if (why !== null) log(`calibration: not reusing ${calibPath}: ${why}: calibrating again`);
      log(`calibrating ${job.pipeline} (${want.samples} images, ${want.steps} steps${gram ? ', Gram matrices' : ''}) -> ${calibPath}`);
      record = await calibrate(job.pipeline, calibPath, want);
      log(`calibrated in ${record.seconds} s`);
    }
  }
  const variant = join(job.dir, 'variant');
  if (steps.has('quantize')) {
    log(`quantizing with ${recipe.name} -> ${variant}`);
    const m = await quantizePipeline({ pipelineDir: job.pipeline, recipe, record, recordPath: record ? calibPath : undefined, out: variant });
    res.quantize = { weightBitsPerParameter: m.summary.weightBitsPerParameter, quantized: m.summary.quantized, spared: m.summary.spared };
    log(`quantized: ${m.summary.quantized} layers, ${m.summary.weightBitsPerParameter} bits/parameter`);
  }
  const exported = join(job.dir, 'export');
  if (steps.has('export')) {
    log(`exporting -> ${exported}`);
    const m = await exportPipeline({
      variantDir: variant, out: exported, int8Weights: jobs.export.reduceRange ? 's7' : jobs.export.int8Weights, fuseAttention: jobs.export.fuseAttention, calibrationImages: jobs.export.calibrationImages,
      verify: { seeds: parseSeeds(jobs.export.verifySeeds, 'export.verifySeeds') }, onLine: log,
    });
    const x = m.export;
    res.export = { bytes: x.sizes.exportBytes, ratio: x.sizes.ratio, int8Kernels: x.summary.int8Kernels, maxAbs: x.verification?.maxAbs ?? null, meanAbs: x.verification?.meanAbs ?? null };
    log(`exported: ${x.sizes.exportBytes} bytes (ratio ${x.sizes.ratio}), verification max ${x.verification?.maxAbs} mean ${x.verification?.meanAbs}`);
  }
  if (steps.has('compare')) {
    const variants = ['fp', variant, ...(steps.has('export') ? [exported] : [])];
    log(`comparing ${variants.join(', ')}`);
    const { openPipeline } = await import('../open.js');
    const opened = (await openPipeline(job.pipeline, 'cpu')).pipeline;
    const guidance = opened.index.defaultGuidance;
    const m = await runCompare({
      pipelineDir: job.pipeline, variants, seeds: parseSeeds(jobs.compare.seeds, 'compare.seeds'), classes: [], steps: jobs.compare.steps, sampler: fallbackSampler(opened.scheduler),
      guidance, fidSamples: jobs.compare.fidSamples, video: jobs.compare.video, out: join(job.dir, 'compare'),
    });
    const v = m.variants[1];
    if (v) res.compare = { psnrDb: v.psnrDb.mean, ssim: v.ssim.mean, classAgreement: v.classAgreement.requested };
    log(`compared: PSNR ${v?.psnrDb.mean ?? '-'} dB`);
  }
  return res;
}

function firstLine(s: string): string {
  return s.split('\n', 1)[0]!.trim();
}
