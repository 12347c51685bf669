/**
 * Timestep-aware calibration (Q-Diffusion): run the FP sampler over a calibration set and, at the selected
 * steps, collect in-graph statistics of every quantization site's activation. The result is a versioned record
 * (site x step x statistics) that quantization and the UI read.
 *
 * The record does not depend on the batch size: statistics are per tensor row and merge exactly (taps.ts, stats.ts).
 *
 * Streaming: one batch at a time; only small statistic tensors leave onnxruntime. Progress events, cancel
 * (AbortSignal), and resume: finished batches are checkpointed beside the output; a cancelled run leaves no
 * record, and running again with the same settings picks up where it stopped.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { z } from 'zod';
import { DqError, fieldPath } from '../errors.js';
import { sha256File, writeFileAtomic } from '../fsutil.js';
import { analyzeGraph } from '../onnx/analysis.js';
import { encodeModel, inlineExternalData, loadOnnx } from '../onnx/io.js';
import type { ModelMsg } from '../onnx/model.js';
import { releaseSession, type Pipeline } from '../pipeline/pipeline.js';
import { readPromptFile } from '../pipeline/prompt-file.js';
import { openPipeline } from '../open.js';
import { buildFeeds, guidedRun, sample, sliceRows, type SampleRequest } from '../pipeline/sample.js';
import { createScheduler, evaluationCount, SAMPLERS, type SamplerName, schedulerOptions } from '../pipeline/schedulers.js';
import { Rng } from '../pipeline/noise.js';
import { Session, type FeedValue, type Provider, type TensorOut } from '../runtime/onnx.js';
import { buildSites, type Site } from './sites.js';
import { mergeStat, type Stat } from './stats.js';
import { probeSiteShapes, readTap, statSessions, type TapNames } from './taps.js';
import { buildGramModel, gramOutput, gramTargets, GramSums, type GramEntry } from './gram.js';

export const RECORD_VERSION = 1;
/** Rows per statistics-model run: bounds calibration's live memory near FP sampling's, whatever the batch. */
const TAP_ROWS = 32;
/** Gram matrices (GPTQ): collected at this many of the calibrated steps, from this many rows of each chunk. */
export const GRAM_STEPS = 5;
export const GRAM_ROWS = 8;

export type TimestepSelection = 'all' | 'uniform' | 'normal';

export interface CalibrationSettings {
  samples: number;
  steps: number;
  sampler: SamplerName;
  guidance: number;
  timesteps: TimestepSelection;
  /** uniform: number of steps; normal: number of draws. */
  count: number;
  seed: number;
  batchSize: number;
  /** Also collect the Gram matrices of the layers' inputs (GPTQ needs them). */
  gram: boolean;
  /** Text-to-image: the calibration prompts, cycled over the samples (image i gets prompts[i % n]). */
  prompts?: string[];
  /** Text-to-image: the negative prompt of every sample ('' : none, the unconditional half sees the empty prompt). */
  negativePrompt?: string;
  /** Text-to-image: a negative prompt per entry of `prompts` (a JSON prompt file's negative_prompt), over negativePrompt. */
  negativePrompts?: string[];
}

export const DEFAULT_CALIBRATION: CalibrationSettings = {
  samples: 64, steps: 25, sampler: 'ddim', guidance: 2, timesteps: 'all', count: 10, seed: 0, batchSize: 32, gram: false,
};

/** The calibration prompts a text-to-image pipeline folder may ship (one a line): used when none are given. */
export const DEFAULT_PROMPTS_FILE = 'calibration_prompts.txt';

export interface CalibrationRecord {
  version: number;
  kind: 'dq-calibration';
  pipeline: string;
  unetSha256: string;
  settings: CalibrationSettings;
  /** Model timesteps of the schedule, by step index. */
  timesteps: number[];
  /** Step indices that were calibrated. */
  steps: number[];
  sites: Site[];
  /** stats[site][half][step index] */
  stats: Record<number, Record<number, Record<number, Stat>>>;
  seconds: number;
  /** Gram matrices for GPTQ (settings.gram): entries and row counts; the float64 sums live in `file` beside the record. */
  gram?: { file: string; steps: number[]; entries: GramEntry[]; rows: number[]; skipped: Record<string, string> };
}

/** Path of a record's Gram matrices. */
export function gramPath(recordPath: string): string {
  return `${recordPath}.gram`;
}

export interface CalibrateProgress {
  phase: 'calibrating';
  done: number;
  total: number;
}

/** Which step indices to calibrate. */
export function selectSteps(n: number, sel: TimestepSelection, count: number, seed: number): number[] {
  if (sel === 'all') return Array.from({ length: n }, (_, i) => i);
  if (sel === 'uniform') {
    const k = Math.min(n, Math.max(1, count));
    // every n/k steps, as Q-Diffusion's cali_st (step indices in sampling order)
    return [...new Set(Array.from({ length: k }, (_, i) => Math.floor((i * n) / k)))];
  }
  // PTQ4DM: timesteps drawn from N(0.4 T, 0.4 T) over the sampling steps (step 0 = t = T)
  const rng = new Rng(seed);
  const out = new Set<number>();
  for (let i = 0; i < count * 20 && out.size < Math.min(count, n); i++) {
    const u1 = rng.uniform();
    const u2 = rng.uniform();
    const z = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
    const frac = 0.4 + 0.4 * z; // fraction of T
    const t = Math.round((1 - frac) * (n - 1));
    if (t >= 0 && t < n) out.add(t);
  }
  return [...out].sort((a, b) => a - b);
}

/** The negative prompt of calibration sample i (its prompt's own, else the common one, else none). */
export function negativeOf(s: CalibrationSettings, i: number): string {
  const n = s.prompts?.length ?? 1;
  return s.negativePrompts?.[i % n] || s.negativePrompt || '';
}

/** A text-to-image pipeline calibrates with its own sampler and guidance unless told otherwise. */
function calibrationDefaults(p: Pipeline): Partial<CalibrationSettings> {
  return p.text ? { sampler: p.index.defaultSampler, guidance: p.index.defaultGuidance } : {};
}

/** The pipeline folder's calibration prompts (calibration_prompts.txt), or a one-line error asking for --prompts. */
export function defaultPrompts(dir: string): string[] {
  const file = join(dir, DEFAULT_PROMPTS_FILE);
  if (!existsSync(file)) throw new DqError('BAD_ARGUMENT', `${dir} is a text-to-image pipeline: give calibration prompts (--prompts <file>; the folder has no ${DEFAULT_PROMPTS_FILE})`);
  return readPromptFile(file).map((e) => e.prompt);
}

interface Checkpoint {
  key: string;
  batchesDone: number;
  stats: CalibrationRecord['stats'];
  seconds: number;
  gramRows?: number[];
}

export async function calibrate(
  pipelineDir: string,
  out: string,
  opts: Partial<CalibrationSettings> & { provider?: Provider; signal?: AbortSignal; onProgress?: (p: CalibrateProgress) => void } = {},
): Promise<CalibrationRecord> {
  const given = Object.fromEntries(Object.entries(opts).filter(([k, v]) => (k in DEFAULT_CALIBRATION || k === 'prompts' || k === 'negativePrompt' || k === 'negativePrompts') && v !== undefined)) as Partial<CalibrationSettings>;
  if (given.samples !== undefined && (!Number.isInteger(given.samples) || given.samples < 1)) throw new DqError('BAD_ARGUMENT', `--samples must be a positive integer, got ${given.samples}`);
  const loaded = await openPipeline(pipelineDir, opts.provider ?? 'cpu');
  const { pipeline } = loaded;
  const settings: CalibrationSettings = { ...DEFAULT_CALIBRATION, ...calibrationDefaults(pipeline), ...given };
  if (pipeline.text) {
    if (!settings.prompts?.length) settings.prompts = defaultPrompts(pipeline.dir);
    settings.negativePrompt ??= '';
    if (settings.negativePrompts && settings.negativePrompts.length !== settings.prompts.length) {
      throw new DqError('BAD_ARGUMENT', `${settings.negativePrompts.length} negative prompts for ${settings.prompts.length} prompts: give one per prompt`);
    }
  } else if (given.prompts?.length || given.negativePrompt || given.negativePrompts?.length) {
    throw new DqError('BAD_ARGUMENT', `${pipelineDir} takes no text (it is ${pipeline.io.classLabels ? 'class-conditional' : 'unconditional'}): leave out --prompts`);
  }
  let session = loaded.session;
  const unetSha256 = sha256File(pipeline.unetPath);
  // the statistics and Gram models go to onnxruntime as bytes: external weights are read in
  const unetDir = dirname(pipeline.unetPath);
  const model = inlineExternalData(loadOnnx(pipeline.unetPath).model, unetDir);
  const map = analyzeGraph(model, { sampleInput: pipeline.io.sample, timestepInput: pipeline.io.timestep });
  const layers = map.quantizable;
  const sites = buildSites(map, layers, true);
  const sched = createScheduler(settings.sampler, pipeline.scheduler, settings.steps, schedulerOptions(pipeline));
  // the statistics model (small site tensors of one shape tapped together, in slices of sites on large models: taps.ts)
  const create = (m: ModelMsg) => Session.create(encodeModel(m), opts.provider ?? 'cpu');
  const shapes = await probeSiteShapes(model, sites, await probeFeeds(pipeline, settings, sched.timesteps[0]!), create);
  const stats = await statSessions(model, sites, create, { shapes });
  const { taps, fetch, session: tapSession } = stats;
  // GPTQ's Gram matrices: a separate model, run on a few rows at a few of the calibrated steps
  let gram: { entries: GramEntry[]; skipped: Record<string, string>; session: Session; fetch: string[] } | null = null;
  if (settings.gram) {
    const gm = inlineExternalData(loadOnnx(pipeline.unetPath).model, unetDir);
    // time-only layers see one input per timestep (a handful at the Gram steps): GPTQ rounds them to nearest
    const temporal = new Set(map.temporal);
    const targets = gramTargets(gm, layers.filter((l) => !temporal.has(l.name)));
    for (const l of layers) if (temporal.has(l.name)) targets.skipped[l.name] = 'time-only layer (its input takes one value per timestep)';
    if (!targets.entries.length) throw new DqError('BAD_CONFIG', `no layer of this model can have a Gram matrix (${Object.values(targets.skipped)[0] ?? 'no quantizable layers'})`);
    buildGramModel(gm, targets.entries);
    const session = await Session.create(encodeModel(gm), opts.provider ?? 'cpu');
    gram = { ...targets, session, fetch: targets.entries.flatMap((e) => Object.values(gramOutput(e))) };
  }

  const steps = selectSteps(sched.timesteps.length, settings.timesteps, settings.count, settings.seed);
  const gramSteps = steps.length <= GRAM_STEPS ? steps : [...new Set(Array.from({ length: GRAM_STEPS }, (_, i) => steps[Math.floor((i * steps.length) / GRAM_STEPS)]!))];
  if (steps.length === sched.timesteps.length) {
    // every step runs the statistics model: drop the plain denoiser session (and its memory arena)
    await releaseSession(pipeline.unetPath);
    session = tapSession;
  }
  const all = Array.from({ length: settings.samples }, (_, i) => i);
  const batches: number[][] = [];
  for (let i = 0; i < all.length; i += settings.batchSize) batches.push(all.slice(i, i + settings.batchSize));

  // resume from a checkpoint made with the same model and settings
  const ckPath = `${out}.partial.json`;
  const key = createHash('sha256').update(JSON.stringify({ unetSha256, settings })).digest('hex');
  let ck: Checkpoint = { key, batchesDone: 0, stats: {}, seconds: 0 };
  let sums = gram ? new GramSums(gram.entries) : null;
  if (existsSync(ckPath)) {
    try {
      const prev = JSON.parse(readFileSync(ckPath, 'utf8')) as Checkpoint;
      if (prev.key === key) {
        if (gram) sums = GramSums.read(gramPath(ckPath), gram.entries, prev.gramRows ?? []);
        ck = prev;
      }
    } catch {
      /* a damaged checkpoint is ignored: start over */
      sums = gram ? new GramSums(gram.entries) : null;
    }
  }
  const t0 = performance.now() - ck.seconds * 1000;
  const total = batches.length * evaluationCount(settings.sampler, pipeline.scheduler, settings.steps);
  for (let bi = ck.batchesDone; bi < batches.length; bi++) {
    const idx = batches[bi]!;
    const batchStats: CalibrationRecord['stats'] = {};
    await sample(pipeline, session, {
      ...calibrationImages(pipeline, settings, idx),
      signal: opts.signal,
      onProgress: (p) => opts.onProgress?.({ phase: 'calibrating', done: bi * settings.steps + p.done, total }),
      tap: {
        session: tapSession,
        steps: new Set(steps),
        fetch,
        maxRows: TAP_ROWS,
        onOutputs: async (step, _t, res, feeds) => {
          collect(batchStats, taps, step, { ...res, ...(await stats.more(feeds)) });
          if (!gram || !sums || !gramSteps.includes(step)) return;
          const rows = feeds[pipeline.io.sample]!.dims[0]!;
          const g = await gram.session.run(sliceRows(feeds, 0, Math.min(GRAM_ROWS, rows)), gram.fetch);
          for (const e of gram.entries) {
            const o = gramOutput(e);
            sums.add(e, g[o.gram]!.data as Float32Array, Number((g[o.rows]!.data as BigInt64Array)[0]));
          }
        },
      },
    });
    for (const [site, halves] of Object.entries(batchStats)) {
      for (const [half, bySteps] of Object.entries(halves)) {
        for (const [step, st] of Object.entries(bySteps)) {
          const s = (ck.stats[+site] ??= {});
          const h = (s[+half] ??= {});
          h[+step] = mergeStat(h[+step], st);
        }
      }
    }
    ck.batchesDone = bi + 1;
    ck.seconds = (performance.now() - t0) / 1000;
    if (sums) {
      // the matrices first: a checkpoint never names sums that were not written
      writeFileAtomic(gramPath(ckPath), sums.bytes());
      ck.gramRows = [...sums.rows];
    }
    writeFileAtomic(ckPath, JSON.stringify(ck));
  }
  await stats.release();
  await gram?.session.release();
  const record: CalibrationRecord = {
    version: RECORD_VERSION,
    kind: 'dq-calibration',
    pipeline: pipeline.dir,
    unetSha256,
    settings,
    timesteps: sched.timesteps,
    steps,
    sites,
    stats: ck.stats,
    seconds: Math.round(((performance.now() - t0) / 1000) * 1000) / 1000,
  };
  if (gram && sums) {
    writeFileAtomic(gramPath(out), sums.bytes());
    record.gram = { file: basename(gramPath(out)), steps: gramSteps, entries: gram.entries, rows: [...sums.rows], skipped: gram.skipped };
  }
  writeFileAtomic(out, JSON.stringify(record));
  rmSync(ckPath, { force: true });
  rmSync(gramPath(ckPath), { force: true });
  return record;
}

/** The sampling of calibration images `idx` as the settings make it: seeds, class labels or prompts, the sampler. */
export function calibrationImages(p: Pipeline, s: CalibrationSettings, idx: number[]): Omit<SampleRequest, 'signal' | 'onProgress' | 'tap'> {
  const prompts = s.prompts?.length ? s.prompts : null;
  return {
    seeds: idx.map((i) => s.seed * 1_000_003 + i),
    classes: p.io.classLabels ? idx.map((i) => i % p.index.classes.length) : [],
    ...(prompts ? { prompts: idx.map((i) => prompts[i % prompts.length]!), negativePrompts: idx.map((i) => negativeOf(s, i)) } : {}),
    steps: s.steps,
    sampler: s.sampler,
    guidance: s.guidance,
    batchSize: idx.length,
  };
}

/** A denoiser evaluation's feeds for two calibration images (their dims are what probeSiteShapes needs). */
async function probeFeeds(p: Pipeline, s: CalibrationSettings, t: number): Promise<Record<string, FeedValue>> {
  const req = calibrationImages(p, s, [0, 1]);
  const guided = guidedRun(p, req.guidance);
  const conds = p.text ? await p.text.ids(req.prompts!, req.negativePrompts ?? req.prompts!.map(() => ''), guided) : req.classes;
  return buildFeeds(p, new Float64Array(2 * p.index.sampleShape.reduce((a, d) => a * d, 1)), t, conds, guided, 2, p.extraFeeds, req.guidance);
}

function collect(acc: CalibrationRecord['stats'], taps: TapNames[][], step: number, res: Record<string, TensorOut>): void {
  taps.forEach((halves, site) =>
    halves.forEach((names, half) => {
      const st = readTap(res, names);
      const s = (acc[site] ??= {});
      const h = (s[half] ??= {});
      h[step] = mergeStat(h[step], st);
    }),
  );
}

const finite = z.number().finite();
const count = z.number().int().nonnegative();
/** An object keyed by non-negative integers (site ids, halves, step indices). */
const indexed = <T extends z.ZodType>(v: T) => z.record(z.string().regex(/^(0|[1-9]\d*)$/), v);
const StatSchema = z.object({
  min: finite,
  max: finite,
  absmax: finite.nonnegative(),
  hist: z.object({ lo: finite, hi: finite, counts: z.array(finite.nonnegative()).min(1) }).refine((h) => h.hi >= h.lo, 'hi is below lo'),
  n: count,
});
const SiteSchema = z.object({
  id: count,
  tensor: z.string(),
  layers: z.array(z.string()),
  split: count.nullable(),
  ops: z.array(z.string()),
  temporal: z.boolean(),
  text: z.boolean().optional(),
  frames: z.boolean().optional(),
});
const AttrSchema = z.union([
  z.object({ type: z.literal('int'), value: finite }),
  z.object({ type: z.literal('float'), value: finite }),
  z.object({ type: z.literal('ints'), value: z.array(finite) }),
  z.object({ type: z.literal('string'), value: z.string() }),
]);
const GramEntrySchema = z.object({
  index: count,
  tensor: z.string(),
  layers: z.array(z.string()),
  dim: z.number().int().positive(),
  conv: z.object({ channels: z.number().int().positive(), kernel: z.array(z.number().int().positive()), attrs: z.record(z.string(), AttrSchema) }).nullable(),
  offset: count,
});
const RecordSchema = z.object({
  version: z.literal(RECORD_VERSION),
  kind: z.literal('dq-calibration'),
  pipeline: z.string(),
  unetSha256: z.string(),
  settings: z.object({
    samples: z.number().int().positive(),
    steps: z.number().int().positive(),
    sampler: z.enum(SAMPLERS),
    guidance: finite,
    timesteps: z.enum(['all', 'uniform', 'normal']),
    count: count,
    seed: finite,
    batchSize: z.number().int().positive(),
    gram: z.boolean(),
    prompts: z.array(z.string()).optional(),
    negativePrompt: z.string().optional(),
    negativePrompts: z.array(z.string()).optional(),
  }),
  timesteps: z.array(finite).min(1),
  steps: z.array(count).min(1),
  sites: z.array(SiteSchema),
  stats: indexed(indexed(indexed(StatSchema))),
  seconds: finite.nonnegative(),
  gram: z
    .object({
      file: z.string().regex(/^[^/\\]+$/, 'must be a file name beside the record').refine((f) => f !== '.' && f !== '..', 'must be a file name beside the record'),
      steps: z.array(count),
      entries: z.array(GramEntrySchema),
      rows: z.array(count),
      skipped: z.record(z.string(), z.string()),
    })
    .optional(),
});

/** `field 'a.b[0]' is missing` / `field 'a.b': <what>` for the first problem zod found. */
function firstIssue(e: z.ZodError): string {
  const issue = e.issues[0]!;
  const path = fieldPath(issue.path);
  const missing = /^Invalid input: expected (\w+), received undefined$/.exec(issue.message);
  const message = missing
    ? `is missing (${missing[1] === 'record' ? 'object' : missing[1]} expected)`
    : issue.code === 'invalid_key'
      ? 'is not an index'
      : issue.message
          .replace(/^Invalid input: expected number, received null$/, 'must be a number, not null (NaN or infinite values are not written as numbers)')
          .replace(/^Invalid input: expected (\w+), received (\w+)$/, 'must be of type $1, not $2')
          .replace(/^Invalid option: expected one of /, 'must be one of ');
  return path ? `field '${path}' ${missing ? message : `: ${message}`}`.replace(' : ', ': ') : message;
}

/** Cross-field checks: stats name recorded sites, halves and calibrated steps; Gram rows match their entries. */
function consistency(rec: z.infer<typeof RecordSchema>): string | null {
  const n = rec.timesteps.length;
  const bad = rec.steps.find((s) => s >= n);
  if (bad !== undefined) return `field 'steps' names step ${bad}, the schedule has ${n}`;
  const sites = new Map(rec.sites.map((s) => [s.id, s]));
  const steps = new Set(rec.steps);
  for (const [site, halves] of Object.entries(rec.stats)) {
    const s = sites.get(+site);
    if (!s) return `field 'stats.${site}': no site ${site} in 'sites'`;
    for (const [half, bySteps] of Object.entries(halves)) {
      if (+half > (s.split === null ? 0 : 1)) return `field 'stats.${site}.${half}': site ${site} has no half ${half}`;
      for (const step of Object.keys(bySteps)) if (!steps.has(+step)) return `field 'stats.${site}.${half}.${step}': step ${step} is not in 'steps'`;
    }
  }
  if (rec.gram && rec.gram.rows.length !== rec.gram.entries.length) return `field 'gram.rows' has ${rec.gram.rows.length} values for ${rec.gram.entries.length} entries`;
  return null;
}

export function readRecord(path: string): CalibrationRecord {
  if (!existsSync(path)) throw new DqError('NOT_FOUND', `no calibration record at ${path}`);
  let rec: unknown;
  try {
    rec = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new DqError('BAD_CONFIG', code ? `${path}: cannot be read (${code})` : `${path} is not a calibration record: ${(e as Error).message}`);
  }
  const head = (rec ?? {}) as { kind?: unknown; version?: unknown };
  if (typeof rec !== 'object' || rec === null || Array.isArray(rec) || head.kind !== 'dq-calibration') throw new DqError('BAD_CONFIG', `${path} is not a calibration record`);
  if (head.version !== RECORD_VERSION) {
    throw new DqError('BAD_CONFIG', `${path}: calibration record version ${JSON.stringify(head.version) ?? 'missing'}, this studio reads version ${RECORD_VERSION}: recalibrate`);
  }
  const r = RecordSchema.safeParse(rec);
  if (!r.success) throw new DqError('BAD_CONFIG', `${path}: calibration record: ${firstIssue(r.error)}`);
  const problem = consistency(r.data);
  if (problem) throw new DqError('BAD_CONFIG', `${path}: calibration record: ${problem}`);
  return r.data as CalibrationRecord;
}
