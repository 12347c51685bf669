/**
 * `dq compare`: the same seeds and classes (or prompts) through every variant of a pipeline (FP, INT, FP4, ...), with
 * image metrics against FP, Frechet distances in the MNIST classifier's feature space or a user's judge's (--judge),
 * error curves along the FP trajectory, videos, a metrics.json and a self-contained HTML report.
 *
 * Text-to-image pipelines: every variant samples the same prompts and seeds (each pipeline object encodes the prompts
 * with its own conditioner, so each has its own prompt ids); images are decoded by each variant's own VAE decoder
 * (a variant may carry an int8 one); the grid has a row per prompt and a column per seed and variant; the trajectory
 * video's frames (predicted x0 latents) and the walk's latents are decoded too.
 *
 * Everything is computed in memory first; files are written at the end, each atomically (temporary file, then
 * rename), the report last. A cancelled or failed run leaves the output folder as it was.
 */
import { existsSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { DqError } from '../errors.js';
import { agreement, classifierPath, classify } from '../eval/classifier.js';
import { fitGaussian, frechetDistance, psnr, ssim, type Gaussian } from '../eval/metrics.js';
import { makeDirs, sha256File, writeFileAtomic } from '../fsutil.js';
import { encodePng, layoutGrid, type RasterImage } from '../image/grid.js';
import { externalRef, loadOnnx } from '../onnx/io.js';
import { withFrames, withImageSize, type Pipeline } from '../pipeline/pipeline.js';
import { openPipeline } from '../open.js';
import { decodeLatents, overflowWarning } from '../pipeline/codec.js';
import { MAX_PROMPTS, readPromptFile, type PromptEntry } from '../pipeline/prompt-file.js';
import { guidedRun, sample, validateRequest, type SampleOutput, type SampleRequest } from '../pipeline/sample.js';
import { compareFeatures, judgeFeatures, openJudge, type FeatureComparison, type Judge, type JudgeNormalize } from '../eval/judge.js';
import type { SamplerName } from '../pipeline/schedulers.js';
import type { Provider, Session } from '../runtime/onnx.js';
import { heldOutDigit, HELD_OUT_PER_DIGIT, mnistDigitsDir } from './data.js';
import { runLoop, seedNoise, slerp } from './loop.js';
import { probeTrajectory, setupFpTemporal, setupVariantTemporal, type TemporalProbe } from './probe.js';
import { absDiff, heatImage, label, layoutRgb, padEven, promptLabel, toRgbPlanes } from './render.js';
import { renderReport } from './report.js';
import { METRICS_SCHEMA_ID, METRICS_VERSION, type CompareMetrics, type VariantMetrics } from './schema.js';
import { encodeAnimatedWebp, encodeMp4, findFfmpeg, frameSheet, joinColumns } from './video.js';
import { compareVideos, type VideoComparison } from './video-compare.js';

export const FP = 'fp';
/** FID image i uses seed FID_SEED_START + i (away from the small seeds people pick for grids). */
export const FID_SEED_START = 1_000_000;
const MAX_TRAJECTORY_COLUMNS = 8;
const MAX_WALK_SEEDS = 4;
const MAX_WALK_CLASSES = 4;
/** Prompts a text-to-image comparison takes from the pipeline's calibration_prompts.txt when none are given. */
export const DEFAULT_COMPARE_PROMPTS = 4;
/** The prompt file a text-to-image pipeline may ship (quant/calibrate.ts reads the same file). */
const PROMPTS_FILE = 'calibration_prompts.txt';
/** Frames per second of a video pipeline's videos in the comparison (dq sample's default). */
const VIDEO_FPS = 8;
/** A latent pipeline's trajectory video decodes at most this many steps (each frame is a VAE decode per image). */
const MAX_LATENT_TRAJECTORY_FRAMES = 10;
/** Characters of a prompt shown as a grid row label. */
const PROMPT_LABEL_CHARS = 28;

export interface CompareProgress {
  phase: 'loading' | 'grid' | 'fid' | 'probe' | 'walk' | 'writing';
  /** Network evaluations (batches x steps) done / planned, over all phases. */
  done: number;
  total: number;
}

export interface CompareJob {
  pipelineDir: string;
  /** 'fp' (the base pipeline) or variant folders; FP is always the reference and the first row. */
  variants: string[];
  seeds: number[];
  /** Class labels; empty = every class (conditional pipelines). */
  classes: number[];
  /** Text-to-image: the prompts (a grid row each; default: the first DEFAULT_COMPARE_PROMPTS of calibration_prompts.txt). */
  prompts?: PromptEntry[];
  /** Text-to-image: the negative prompt of prompts that give none. */
  negativePrompt?: string;
  /** Text-to-image: image size in pixels (default: the pipeline's). */
  height?: number;
  width?: number;
  /** Text-to-video: frames per video (default: the pipeline's) and frames per second of the frame-by-frame videos (default 8). */
  frames?: number;
  fps?: number;
  /** Bring your own judge: an ONNX image model whose features give FID-to-FP and feature cosine (eval/judge.ts). */
  judge?: JudgeSpec;
  steps: number;
  sampler: SamplerName;
  guidance: number;
  eta?: number;
  batchSize?: number;
  provider?: Provider;
  /** Generated images per variant for FID (0 = no FID). */
  fidSamples: number;
  /** Frames per segment of the seed walk (default 8). */
  walkFrames?: number;
  /** Write videos (trajectory, and the walk unless `walk` is false). */
  video: boolean;
  /** The seed walk (with video; default true): walkFrames x seeds x columns more images per variant. */
  walk?: boolean;
  out: string;
  /** ffmpeg executable (default: `ffmpeg` on PATH). */
  ffmpeg?: string;
  signal?: AbortSignal;
  onProgress?: (p: CompareProgress) => void;
}

export interface JudgeSpec {
  path: string;
  /** Its feature output (default: picked from the graph). */
  output?: string;
  normalize?: JudgeNormalize;
}

interface Variant {
  name: string;
  file: string;
  isFp: boolean;
  dir: string;
  pipeline: Pipeline;
  session: Session;
  manifest: unknown;
  /** The manifest's source pipeline when it was another model (its denoiser hash differs from the base's). */
  otherSource: string | null;
}

export interface Video {
  frames: RasterImage[];
  delays: number[];
}

export interface Comparison {
  metrics: CompareMetrics;
  /** images[v][i]: grid image i of variant v (model space). */
  images: Float32Array[][];
  /** walk[v][f * walkColumns + c]: walk frame f, column c of variant v; empty without video. */
  walk: Float32Array[][];
  walkColumns: number;
  grid: RasterImage;
  diffs: { name: string; file: string; image: RasterImage }[];
  trajectoryVideo: Video | null;
  walkVideo: Video | null;
  /** A video pipeline: the grid's videos frame by frame (every variant's, and |variant - FP|). */
  videoFrames: { comparison: VideoComparison; fps: number } | null;
  notes: string[];
}

function fileSafe(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '') || 'variant';
}

function readManifest(dir: string, notes: string[]): unknown {
  const path = join(dir, 'manifest.json');
  if (!existsSync(path)) return null;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as unknown;
  } catch (e) {
    notes.push(`${path} is not valid JSON (${(e as Error).message}); it was ignored`);
    return null;
  }
}

/** Bytes of the unet file and the external data files it references. */
export function modelBytes(unetPath: string): number {
  const loaded = loadOnnx(unetPath);
  let total = loaded.size;
  const seen = new Set<string>();
  for (const t of loaded.model.graph?.initializer ?? []) {
    const ref = externalRef(t);
    if (!ref || seen.has(ref.location)) continue;
    seen.add(ref.location);
    total += statSync(join(loaded.dir, ref.location)).size;
  }
  return total;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

async function loadVariants(job: CompareJob, fp: { pipeline: Pipeline; session: Session }, notes: string[]): Promise<Variant[]> {
  const list = job.variants.map((v) => v.trim()).filter(Boolean);
  if (!list.length) throw new DqError('BAD_ARGUMENT', '--variants: give at least one variant (fp or a pipeline folder)');
  if (!list.some((v) => v.toLowerCase() === FP)) notes.push('fp was not in --variants; it is shown anyway, as the reference every metric compares against');
  const out: Variant[] = [{ name: FP, file: FP, isFp: true, dir: fp.pipeline.dir, pipeline: fp.pipeline, session: fp.session, manifest: null, otherSource: null }];
  let baseSha: string | null = null;
  const names = new Set([FP]);
  const files = new Set([FP]);
  for (const entry of list) {
    if (entry.toLowerCase() === FP) continue;
    let loaded: { pipeline: Pipeline; session: Session };
    try {
      loaded = await openPipeline(entry, job.provider ?? 'cpu');
    } catch (e) {
      if (e instanceof DqError && e.code !== 'CANCELLED') throw new DqError(e.code, `variant ${entry}: ${e.message.startsWith(`${entry}: `) ? e.message.slice(entry.length + 2) : e.message}`);
      throw e;
    }
    const base = fp.pipeline;
    const where = `variant ${entry}`;
    if ((loaded.pipeline.text === null) !== (base.text === null) || loaded.pipeline.text?.kind !== base.text?.kind) {
      const kind = (q: Pipeline) => (q.text ? `text-to-image (${q.text.kind === 'sdxl' ? 'SDXL' : 'CLIP'} text)` : q.io.classLabels ? 'class-conditional' : 'unconditional');
      throw new DqError('BAD_ARGUMENT', `${where} is ${kind(loaded.pipeline)} and the pipeline is ${kind(base)}: compare variants of one pipeline`);
    }
    const p = withFrames(withImageSize(loaded.pipeline, job.height, job.width), job.frames);
    if (!sameShape(p.index.sampleShape, base.index.sampleShape)) {
      throw new DqError('BAD_ARGUMENT', `${where}: sample shape [${p.index.sampleShape.join(',')}] differs from the pipeline's [${base.index.sampleShape.join(',')}]`);
    }
    if (p.index.classes.length !== base.index.classes.length || (p.io.classLabels === null) !== (base.io.classLabels === null)) {
      throw new DqError('BAD_ARGUMENT', `${where}: its classes (${p.index.classes.length}) differ from the pipeline's (${base.index.classes.length})`);
    }
    if (p.index.nullClass !== base.index.nullClass) {
      throw new DqError('BAD_ARGUMENT', `${where}: its null class (${p.index.nullClass}) differs from the pipeline's (${base.index.nullClass})`);
    }
    if (JSON.stringify(p.scheduler) !== JSON.stringify(base.scheduler)) {
      notes.push(`${where} has a different scheduler config; the base pipeline's is used for every variant, so they share their trajectories' conditions`);
    }
    // an export whose int8 kernels are wrong on this CPU, or that runs on other int8 weights than it stores, says so
    for (const w of p.warnings ?? []) notes.push(`${where}: ${w}`);
    if (p.int8Weights && p.int8Weights.loaded !== p.int8Weights.exported) notes.push(`${where}: ${p.int8Weights.why}`);
    const manifest = readManifest(p.dir, notes);
    const mName = manifestName(manifest);
    // a variant quantized from another model compares that model's quantization against this one's FP: flagged
    const source = (manifest as { source?: { pipeline?: unknown; unetSha256?: unknown } } | null)?.source;
    let otherSource: string | null = null;
    if (typeof source?.unetSha256 === 'string') {
      baseSha ??= sha256File(fp.pipeline.unetPath);
      if (source.unetSha256 !== baseSha) {
        otherSource = typeof source.pipeline === 'string' ? source.pipeline : 'another pipeline';
        notes.push(`${where} was quantized from another model (${otherSource}), not from ${fp.pipeline.dir}: its differences from FP are not quantization's alone`);
      }
    }
    let name = (mName ?? basename(p.dir)).trim() || 'variant';
    for (let k = 2; names.has(name); k++) name = `${mName ?? basename(p.dir)}-${k}`;
    names.add(name);
    let file = fileSafe(name);
    for (let k = 2; files.has(file); k++) file = `${fileSafe(name)}-${k}`;
    files.add(file);
    out.push({ name, file, isFp: false, dir: p.dir, pipeline: { ...p, scheduler: base.scheduler }, session: loaded.session, manifest, otherSource });
  }
  return out;
}

function manifestName(m: unknown): string | null {
  if (!m || typeof m !== 'object') return null;
  const o = m as { name?: unknown; recipe?: { name?: unknown } };
  if (typeof o.name === 'string' && o.name.trim()) return o.name.trim();
  if (typeof o.recipe?.name === 'string' && o.recipe.name.trim()) return o.recipe.name.trim();
  return null;
}

/** Bits per quantized weight and the deployed-size estimate, from a quantizer manifest's summary. */
function sizeFromManifest(m: unknown, bytes: number): { bits: number | null; deployed: number | null } {
  const sum = m && typeof m === 'object' ? (m as { summary?: Record<string, unknown>; simulated?: unknown }).summary : undefined;
  const bits = sum?.weightBitsPerParameter;
  const q = sum?.quantizedParameters;
  if (typeof bits !== 'number' || !(bits > 0) || typeof q !== 'number' || !(q >= 0)) return { bits: null, deployed: null };
  const simulated = (m as { simulated?: unknown }).simulated === true;
  return { bits, deployed: simulated ? Math.max(0, Math.round(bytes - q * (4 - bits / 8))) : null };
}

function summary(values: number[]): { mean: number | null; min: number | null; perImage: (number | null)[] } {
  const finite = values.filter((v) => Number.isFinite(v));
  return {
    mean: finite.length ? finite.reduce((a, b) => a + b, 0) / finite.length : null,
    min: finite.length ? Math.min(...finite) : null,
    perImage: values.map((v) => (Number.isFinite(v) ? v : null)),
  };
}

/** Repeats frames so a fixed frame rate shows each for (about) its delay. */
function atFps(v: Video, fps: number): RasterImage[] {
  const out: RasterImage[] = [];
  v.frames.forEach((f, i) => {
    const n = Math.max(1, Math.round((v.delays[i]! / 1000) * fps));
    for (let k = 0; k < n; k++) out.push(f);
  });
  return out;
}

/** The prompts of a text-to-image comparison: the job's, else the first few of the pipeline's calibration_prompts.txt. */
function comparePrompts(job: CompareJob, dir: string, notes: string[]): { prompt: string; negative: string }[] {
  let entries = job.prompts ?? [];
  if (!entries.length) {
    const file = join(dir, PROMPTS_FILE);
    if (!existsSync(file)) {
      throw new DqError('BAD_ARGUMENT', `${job.pipelineDir} is a text-to-image pipeline: give --prompt "..." or --prompts <file> (it has no ${PROMPTS_FILE} to take default prompts from)`);
    }
    entries = readPromptFile(file).slice(0, DEFAULT_COMPARE_PROMPTS);
    notes.push(`prompts: the first ${entries.length} of ${file} (--prompt or --prompts to choose others)`);
  }
  if (entries.length > MAX_PROMPTS) throw new DqError('BAD_ARGUMENT', `${entries.length} prompts; at most ${MAX_PROMPTS} in one run`);
  return entries.map((e) => ({ prompt: e.prompt, negative: e.negative ?? job.negativePrompt ?? '' }));
}

/** Step indices a trajectory video shows: every step, or for a latent pipeline (a VAE decode per frame) at most `max`, evenly spaced, the last included. */
export function trajectoryFrames(steps: number, latent: boolean, max = MAX_LATENT_TRAJECTORY_FRAMES): number[] {
  if (!latent || steps <= max) return Array.from({ length: steps }, (_, i) => i);
  const out = new Set<number>();
  for (let k = 0; k < max; k++) out.add(Math.round((k * (steps - 1)) / (max - 1)));
  return [...out].sort((a, b) => a - b);
}

interface Sampled {
  /** Images (decoded by the variant's VAE for a latent pipeline). */
  images: Float32Array[];
  /** trajectory[i][f]: predicted x0 of image i (< trajectoryImages) at frame f (decoded). */
  trajectory: Float32Array[][];
  timesteps: number[];
  /** Seconds of the sampling loop (decoding excluded). */
  seconds: number;
  warnings: string[];
}

/**
 * Samples through a variant; a latent pipeline's denoiser runs without its decoder, then the images and the
 * trajectory frames of the first `trajectoryImages` images are decoded here (all frames would be a decode per step
 * and image).
 */
async function sampleVariant(p: Pipeline, session: Session, req: SampleRequest, trajectoryImages: number, frames: number[]): Promise<Sampled> {
  const keep = trajectoryImages > 0;
  if (!p.codec || !p.decoderSession) {
    const res = await sample(p, session, { ...req, keepTrajectory: keep });
    const trajectory = (res.trajectory ?? []).slice(0, trajectoryImages).map((tr) => frames.map((f) => tr[f]!));
    return { images: res.images, trajectory, timesteps: res.timesteps, seconds: res.seconds, warnings: res.warnings ?? [] };
  }
  const res: SampleOutput = await sample({ ...p, decoderSession: null }, session, { ...req, keepTrajectory: keep });
  const warnings = res.warnings ?? [];
  const dec = await decodeLatents(p.codec, p.decoderSession, res.images, p.index.sampleShape, req.signal, p.index.frames);
  if (dec.nonFinite) warnings.push(overflowWarning(p.codec, dec.nonFinite, res.images.length));
  const trajectory: Float32Array[][] = [];
  for (const tr of (res.trajectory ?? []).slice(0, trajectoryImages)) {
    trajectory.push((await decodeLatents(p.codec, p.decoderSession, frames.map((f) => tr[f]!), p.index.sampleShape, req.signal, p.index.frames)).images);
  }
  return { images: dec.images, trajectory, timesteps: res.timesteps, seconds: res.seconds, warnings };
}

/** Prompt ids of a pipeline's own conditioner for images whose prompts are prompts[q] (guided as the run will be). */
async function promptIds(p: Pipeline, prompts: { prompt: string; negative: string }[], idx: number[], guidance: number): Promise<number[]> {
  return p.text!.ids(idx.map((q) => prompts[q]!.prompt), idx.map((q) => prompts[q]!.negative), guidedRun(p, guidance));
}

/** Cell zoom for images of this size: `want` for small images, less for large ones (at least 1). */
function zoomFor(shape: [number, number, number], want: number): number {
  return Math.max(1, Math.min(want, Math.floor(192 / Math.max(shape[1], shape[2]))));
}

export async function computeComparison(job: CompareJob): Promise<Comparison> {
  const notes: string[] = [];
  const provider = job.provider ?? 'cpu';
  const eta = job.eta ?? 0;
  const bs = Math.max(1, job.batchSize ?? 32);
  const walkFrames = job.walkFrames ?? 8;
  if (!Number.isInteger(job.fidSamples) || job.fidSamples < 0) throw new DqError('BAD_ARGUMENT', `--fid-samples must be an integer >= 0, got ${job.fidSamples}`);
  if (job.fidSamples === 1) throw new DqError('BAD_ARGUMENT', '--fid-samples: FID needs at least 2 samples (or 0 for none)');
  if (!Number.isInteger(walkFrames) || walkFrames < 1) throw new DqError('BAD_ARGUMENT', `walk frames must be an integer >= 1, got ${walkFrames}`);
  const check = () => {
    if (job.signal?.aborted) throw new DqError('CANCELLED', 'comparison was cancelled');
  };

  job.onProgress?.({ phase: 'loading', done: 0, total: 1 });
  const opened = await openPipeline(job.pipelineDir, provider);
  const text = opened.pipeline.text !== null;
  const conditional = opened.pipeline.io.classLabels !== null;
  if (!text && (job.prompts?.length || job.negativePrompt)) {
    throw new DqError('BAD_ARGUMENT', `${job.pipelineDir} takes no text (it is ${conditional ? 'class-conditional: use --class' : 'unconditional'}): leave out --prompt, --prompts and --negative-prompt`);
  }
  if (text && job.classes.length) throw new DqError('BAD_ARGUMENT', `${job.pipelineDir} is a text-to-image pipeline: give --prompt or --prompts, not --class`);
  if (!conditional && !text && job.classes.length) throw new DqError('BAD_ARGUMENT', 'this model is unconditional: leave out --class');
  if (!opened.pipeline.codec && (job.height !== undefined || job.width !== undefined)) {
    throw new DqError('BAD_ARGUMENT', `${job.pipelineDir} is not a latent pipeline: leave out --height and --width (it makes ${opened.pipeline.imageShape.slice(1).join('x')} images)`);
  }
  const base = withFrames(withImageSize(opened.pipeline, job.height, job.width), job.frames);
  const fp = { pipeline: base, session: opened.session };
  const classes = conditional ? (job.classes.length ? job.classes : base.index.classes.map((_, i) => i)) : [];
  const prompts = text ? comparePrompts(job, base.dir, notes) : [];
  // a judge that cannot be used fails before any sampling
  const judge: Judge | null = job.judge ? await openJudge(job.judge.path, { output: job.judge.output, normalize: job.judge.normalize, provider }) : null;
  const variants = await loadVariants(job, fp, notes);
  check();

  // grid images: class pipelines a column per (class, seed); text pipelines a row per prompt (image order: prompt, seed)
  const gridSeeds: number[] = [];
  const gridClasses: number[] = [];
  const gridPrompts: number[] = [];
  if (text) {
    prompts.forEach((_, q) => job.seeds.forEach((s) => (gridSeeds.push(s), gridPrompts.push(q))));
  } else {
    for (const c of conditional ? classes : [null]) {
      for (const s of job.seeds) {
        gridSeeds.push(s);
        if (c !== null) gridClasses.push(c);
      }
    }
  }
  /** The conditioning part of a sample request for images conditioned on classes, or on prompts[q]. */
  const cond = (labels: number[]): Pick<SampleRequest, 'classes' | 'prompts' | 'negativePrompts'> =>
    text ? { classes: [], prompts: labels.map((q) => prompts[q]!.prompt), negativePrompts: labels.map((q) => prompts[q]!.negative) } : { classes: labels };
  const gridLabels = text ? gridPrompts : gridClasses;
  const settings = { steps: job.steps, sampler: job.sampler, guidance: job.guidance, eta, batchSize: bs };
  validateRequest(base, { ...settings, seeds: gridSeeds, ...cond(gridLabels) });
  const [C, H, W] = base.index.sampleShape;
  const size = C * H * W;
  const shape: [number, number, number] = [...base.imageShape];
  const [IC, IH, IW] = shape;
  const latent = base.codec !== null;
  const nGrid = gridSeeds.length;

  // what the classifier can judge
  const mnistShaped = IC === 1 && IH === 28 && IW === 28;
  const classifierFile = classifierPath();
  const canClassify = mnistShaped && existsSync(classifierFile);
  const classifyReason = !mnistShaped
    ? `no feature extractor for [${shape.join(',')}] images (the embedded classifier takes 1x28x28 digits${judge ? '' : '; --judge <onnx> gives FID-to-FP and feature cosine in any image model\'s features'})`
    : canClassify
      ? null
      : `the MNIST classifier is missing (${classifierFile})`;
  const digitClasses = base.index.classes.length === 10 && base.index.classes.every((n, i) => n === String(i));
  const fidN = canClassify || judge ? job.fidSamples : 0;
  const fidSeeds = Array.from({ length: fidN }, (_, i) => FID_SEED_START + i);
  const fidClasses = conditional ? fidSeeds.map((_, i) => classes[i % classes.length]!) : [];
  const fidPrompts = text ? fidSeeds.map((_, i) => i % prompts.length) : [];
  const fidLabels = text ? fidPrompts : fidClasses;

  // the walk: a closed loop through the initial noises of the first seeds
  const walkOn = job.video && job.walk !== false;
  const walkSeeds = walkOn ? (job.seeds.length >= 2 ? job.seeds.slice(0, MAX_WALK_SEEDS) : [job.seeds[0]!, job.seeds[0]! + 1]) : [];
  const walkCols: (number | null)[] = text ? prompts.slice(0, MAX_WALK_CLASSES).map((_, q) => q) : conditional ? classes.slice(0, MAX_WALK_CLASSES) : [null];
  const walkInit: Float64Array[] = [];
  const walkRngSeeds: number[] = [];
  const walkLabels: number[] = [];
  const walkTitles: string[] = [];
  if (walkOn) {
    const noise = walkSeeds.map((s) => seedNoise(s, size).z);
    for (let a = 0; a < walkSeeds.length; a++) {
      const b = (a + 1) % walkSeeds.length;
      for (let k = 0; k < walkFrames; k++) {
        const z = slerp(noise[a]!, noise[b]!, k / walkFrames);
        walkTitles.push(`WALK S${walkSeeds[a]}-S${walkSeeds[b]} ${k}/${walkFrames}`);
        for (const c of walkCols) {
          walkInit.push(z);
          walkRngSeeds.push(walkSeeds[a]!);
          walkLabels.push(c ?? 0);
        }
      }
    }
  }

  const V = variants.length;
  const batches = (n: number) => Math.ceil(n / bs);
  const total = V * (1 + job.steps * (batches(nGrid) + batches(fidN) + batches(walkInit.length))) + job.steps * batches(nGrid) * (V + 1);
  let done = 0;
  const tick = (phase: CompareProgress['phase'], k = 1) => {
    done += k;
    job.onProgress?.({ phase, done: Math.min(done, total), total });
  };
  const warnings = new Set<string>();

  // 1. grid images (and the trajectories of the first columns), timed after a warm-up evaluation
  const cols = Math.min(MAX_TRAJECTORY_COLUMNS, nGrid);
  const frames = trajectoryFrames(job.steps, latent);
  const images: Float32Array[][] = [];
  const trajectories: Float32Array[][][] = [];
  const timing: { secondsPerStep: number; imagesPerStep: number }[] = [];
  let timesteps: number[] = [];
  for (const v of variants) {
    await sample(v.pipeline, v.session, { ...settings, steps: 1, seeds: [gridSeeds[0]!], ...cond(gridLabels.slice(0, 1)), signal: job.signal });
    tick('grid');
    let last = 0;
    const res = await sampleVariant(
      v.pipeline,
      v.session,
      {
        ...settings,
        seeds: gridSeeds,
        ...cond(gridLabels),
        signal: job.signal,
        onProgress: (p) => {
          tick('grid', p.done - last);
          last = p.done;
        },
      },
      job.video ? cols : 0,
      frames,
    );
    for (const w of res.warnings) warnings.add(v.isFp ? w : `${v.name}: ${w}`);
    images.push(res.images);
    trajectories.push(res.trajectory);
    timesteps = res.timesteps;
    timing.push({ secondsPerStep: res.seconds / job.steps, imagesPerStep: nGrid });
  }

  // 2. FID sets, classifier and judge features
  let featureDim: number | null = null;
  const fidGaussians: (Gaussian | null)[] = [];
  const labelsByVariant: number[][] = [];
  const judged: Float32Array[][] = [];
  for (const v of variants) {
    check();
    let fidImages: Float32Array[] = [];
    if (fidN > 0) {
      let last = 0;
      const res = await sample(v.pipeline, v.session, {
        ...settings,
        seeds: fidSeeds,
        ...cond(fidLabels),
        signal: job.signal,
        onProgress: (p) => {
          tick('fid', p.done - last);
          last = p.done;
        },
      });
      for (const w of res.warnings ?? []) warnings.add(v.isFp ? `FID set: ${w}` : `${v.name}, FID set: ${w}`);
      fidImages = res.images;
    }
    if (canClassify) {
      const judgedByClassifier = await classify([...images[variants.indexOf(v)]!, ...fidImages], { provider });
      featureDim = judgedByClassifier.features[0]?.length ?? null;
      labelsByVariant.push(judgedByClassifier.labels);
      fidGaussians.push(fidN >= 2 ? fitGaussian(judgedByClassifier.features.slice(nGrid)) : null);
    } else {
      labelsByVariant.push([]);
      fidGaussians.push(null);
    }
    if (judge) judged.push(await judgeFeatures(judge, [...images[variants.indexOf(v)]!, ...fidImages], { shape, signal: job.signal }));
  }
  const judgeComparisons: (FeatureComparison | null)[] = variants.map((_, k) => (judge ? compareFeatures(judged[0]!, judged[k]!) : null));

  // the data reference: held-out MNIST digits of the compared classes
  let dataGaussian: Gaussian | null = null;
  let dataImages = 0;
  let dataReason: string | null = null;
  if (fidN >= 2 && canClassify) {
    const digitsDir = mnistDigitsDir();
    if (!digitClasses && conditional) dataReason = 'no data reference for this pipeline (FID-to-data needs an MNIST digit pipeline, classes 0-9)';
    else if (!digitsDir) dataReason = 'the mnist package (the data reference) is not installed';
    else {
      const digits = conditional ? classes : [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
      const ref = digits.flatMap((d) => heldOutDigit(d, digitsDir));
      dataImages = ref.length;
      dataGaussian = fitGaussian((await classify(ref, { provider })).features);
    }
  }
  const fidReason = classifyReason ?? (job.fidSamples === 0 ? 'FID was not asked for (--fid-samples 0)' : null);

  // prompt ids: each pipeline object's own conditioner encodes the grid's prompts
  const gridIds: number[][] = [];
  for (const v of variants) gridIds.push(text ? await promptIds(v.pipeline, prompts, gridPrompts, job.guidance) : gridClasses);

  // 3. errors along the FP trajectory
  check();
  const fpTemporal = await setupFpTemporal(base.unetPath, provider);
  const temporalProbes: ({ ok: true; probe: TemporalProbe } | { ok: false; reason: string })[] = [];
  let probe: Awaited<ReturnType<typeof probeTrajectory>>;
  try {
    for (const [k, v] of variants.entries()) {
      if (!fpTemporal.ok) temporalProbes.push(fpTemporal);
      else if (v.isFp) temporalProbes.push(fpTemporal);
      else temporalProbes.push(await setupVariantTemporal(v.pipeline.unetPath, fpTemporal.probe.features, provider, v.pipeline, gridIds[k]![0] ?? 0));
    }
    probe = await probeTrajectory(
      base,
      fp.session,
      fpTemporal.ok ? fpTemporal.probe : null,
      variants.map((v, k) => {
        const t = temporalProbes[k]!;
        return { pipeline: v.pipeline, session: v.session, temporal: t.ok ? t.probe : null, ...(text ? { labels: gridIds[k]! } : {}) };
      }),
      { ...settings, seeds: gridSeeds, labels: gridIds[0]!, signal: job.signal, onEval: () => tick('probe') },
    );
  } finally {
    const held = new Set([fpTemporal, ...temporalProbes].flatMap((t) => (t.ok ? [t.probe] : [])));
    await Promise.allSettled([...held].map((p) => p.release()));
  }

  // 4. the walk (decoded by each variant's VAE for a latent pipeline)
  const walk: Float32Array[][] = [];
  if (job.video) {
    for (const v of variants) {
      const labels = text ? await promptIds(v.pipeline, prompts, walkLabels, job.guidance) : walkLabels;
      const res = await runLoop(v.pipeline, v.session, {
        ...settings,
        init: walkInit,
        rngs: walkRngSeeds.map((s) => seedNoise(s, size).rng),
        labels,
        signal: job.signal,
        cancelMessage: 'comparison was cancelled',
        onStep: () => tick('walk'),
      });
      const p = v.pipeline;
      walk.push(p.codec && p.decoderSession ? (await decodeLatents(p.codec, p.decoderSession, res.images, p.index.sampleShape, job.signal, p.index.frames)).images : res.images);
    }
  }
  check();

  // 5. metrics
  const fpLabels = labelsByVariant[0]!;
  const fpGauss = fidGaussians[0] ?? null;
  const variantMetrics: VariantMetrics[] = variants.map((v, k) => {
    const imgs = images[k]!;
    const t = temporalProbes[k]!;
    const tr = probe.temporal[k];
    const labels = labelsByVariant[k]!;
    const requested = [...gridClasses, ...fidClasses];
    const g = fidGaussians[k] ?? null;
    const bytes = modelBytes(v.pipeline.unetPath);
    const size = v.isFp ? { bits: 32, deployed: bytes } : sizeFromManifest(v.manifest, bytes);
    const jc = judgeComparisons[k];
    return {
      name: v.name,
      isFp: v.isFp,
      dir: v.dir,
      manifest: v.manifest ?? null,
      otherSource: v.otherSource,
      modelBytes: bytes,
      weightBitsPerParameter: size.bits,
      estimatedDeployedBytes: size.deployed,
      psnrDb: summary(imgs.map((img, i) => psnr(images[0]![i]!, img, 2))),
      ssim: summary(imgs.map((img, i) => ssim(images[0]![i]!, img, shape, 2))),
      fid: {
        toFp: g && fpGauss ? frechetDistance(g, fpGauss) : null,
        toData: g && dataGaussian ? frechetDistance(g, dataGaussian) : null,
        samples: canClassify ? fidN : 0,
        reason: !g ? (fidReason ?? 'FID needs at least 2 samples') : !dataGaussian ? dataReason : null,
      },
      classAgreement: {
        requested: canClassify && conditional ? agreement(requested, labels) : null,
        withFp: canClassify ? agreement(fpLabels, labels) : null,
        samples: canClassify ? labels.length : 0,
        reason: !canClassify ? classifyReason : conditional ? null : 'requested-class agreement needs a class-conditional pipeline',
      },
      ...(judge ? { judge: jc ? { fidToFp: jc.fidToFp, cosine: jc.cosine, samples: jc.n, note: jc.note } : null } : {}),
      epsError: probe.eps[k]!,
      temporalFeatureError: t.ok && tr
        ? { available: true, reason: null, source: t.probe.source, features: t.probe.features, perStep: tr.perStep, perFeature: tr.perFeature }
        : { available: false, reason: t.ok ? 'not computed' : t.reason, source: null, features: fpTemporal.ok ? fpTemporal.probe.features : [], perStep: [], perFeature: [] },
      timing: { secondsPerStep: timing[k]!.secondsPerStep, imagesPerStep: timing[k]!.imagesPerStep },
    };
  });
  for (const w of warnings) notes.push(w);
  if (fidN >= 2 && canClassify) {
    notes.push(
      `FID uses ${fidN} generated images per variant in the classifier's ${featureDim}-dimensional feature space. FID from few samples is biased upwards ` +
        `(two sample sets of one model do not give 0)${featureDim !== null && fidN <= featureDim ? ', and with no more samples than dimensions the covariance is singular' : ''}; ` +
        'compare variants with each other at equal sample counts, and use several hundred samples or more before reading small differences.',
    );
  }
  if (judge) {
    const n = judgeComparisons[0]!.n;
    notes.push(
      `judge ${judge.path}: output '${judge.output.name}' (${judge.output.width} values per image), over ${n} images per variant (${nGrid} grid${fidN ? ` + ${fidN} FID set` : ''}); preprocessing: ${judge.preprocessing}`,
    );
    for (const w of judge.warnings) notes.push(`judge: ${w}`);
    const jn = judgeComparisons.find((c) => c?.note)?.note;
    if (jn) notes.push(`judge FID: ${jn}`);
  }
  if (dataReason && fidN >= 2) notes.push(`FID-to-data not computed: ${dataReason}`);
  if (classifyReason) notes.push(`${text ? 'class agreement and classifier FID' : 'FID and class agreement'} not computed: ${classifyReason}`);
  if (!fpTemporal.ok) notes.push(`temporal-feature error not computed: ${fpTemporal.reason}`);
  for (const m of variantMetrics) {
    if (!m.temporalFeatureError.available && fpTemporal.ok) notes.push(`temporal-feature error of ${m.name} is null: ${m.temporalFeatureError.reason}`);
  }
  if (job.video && latent && frames.length < job.steps) notes.push(`the trajectory video shows ${frames.length} of the ${job.steps} steps (each frame is decoded by the VAE)`);

  // 6. pictures
  const className = (c: number) => base.index.classes[c] ?? String(c);
  /** A short column label of grid image i (class/prompt and seed). */
  const imageLabel = (i: number, max: number) => label(text ? `P${gridPrompts[i]! + 1} S${gridSeeds[i]}` : conditional ? `${className(gridClasses[i]!)} S${gridSeeds[i]}` : `S${gridSeeds[i]}`, max);
  const colLabels = gridSeeds.map((_, i) => imageLabel(i, 7));
  const title = `${job.sampler} ${job.steps} steps cfg ${job.guidance}`;
  let grid: RasterImage;
  if (text) {
    // a row per prompt; per seed, a column per variant (the variants of one seed side by side)
    const zoom = zoomFor(shape, 3);
    const nSeeds = job.seeds.length;
    const chars = Math.max(4, Math.floor((IW * zoom) / 8));
    grid = layoutGrid({
      cells: prompts.map((_, q) => job.seeds.flatMap((_, si) => variants.map((_, k) => images[k]![q * nSeeds + si]!))),
      channels: IC,
      height: IH,
      width: IW,
      rowLabels: prompts.map((e) => promptLabel(e.prompt, PROMPT_LABEL_CHARS)),
      colLabels: job.seeds.flatMap((s) => variants.map((v) => label(`S${s} ${v.name}`, chars))),
      zoom,
      title,
    });
  } else {
    grid = layoutGrid({
      cells: images,
      channels: IC,
      height: IH,
      width: IW,
      rowLabels: variants.map((v) => label(v.name)),
      colLabels,
      zoom: 2,
      title,
    });
  }
  const diffMaps = variants.map((_, k) => images[k]!.map((img, i) => absDiff(img, images[0]![i]!, shape)));
  let scale = 0;
  for (const maps of diffMaps.slice(1)) for (const d of maps) for (const x of d) if (x > scale) scale = x;
  const diffZoom = zoomFor(shape, 2);
  const diffs = variants.slice(1).map((v, j) => ({
    name: v.name,
    file: `diff-${v.file}.png`,
    image: layoutRgb({
      cells: [images[0]!.map((img) => toRgbPlanes(img, IC)), images[j + 1]!.map((img) => toRgbPlanes(img, IC)), diffMaps[j + 1]!.map((d) => heatImage(d, scale))],
      channels: 3,
      height: IH,
      width: IW,
      rowLabels: ['FP', label(v.name), 'DIFF'],
      colLabels,
      zoom: diffZoom,
      title: `DIFF SCALE 0-${scale.toPrecision(2)}`,
    }),
  }));

  let trajectoryVideo: Video | null = null;
  let walkVideo: Video | null = null;
  if (job.video) {
    const videoZoom = zoomFor(shape, 3);
    const vframes: RasterImage[] = [];
    frames.forEach((s, f) => {
      vframes.push(
        padEven(
          layoutRgb({
            cells: trajectories.map((tr) => tr.slice(0, cols).map((fr) => fr[f]!)),
            channels: IC,
            height: IH,
            width: IW,
            rowLabels: variants.map((v) => label(v.name)),
            colLabels: colLabels.slice(0, cols),
            zoom: videoZoom,
            title: `PREDICTED X0 STEP ${s + 1}/${timesteps.length} T=${Math.round(timesteps[s]!)}`,
          }),
        ),
      );
    });
    trajectoryVideo = { frames: vframes, delays: vframes.map((_, i) => (i === vframes.length - 1 ? 1500 : frames.length < job.steps ? 400 : 200)) };
    const wcols = walkCols.length;
    const wframes = walkTitles.map((t, f) =>
      padEven(
        layoutRgb({
          cells: walk.map((imgs) => imgs.slice(f * wcols, (f + 1) * wcols)),
          channels: IC,
          height: IH,
          width: IW,
          rowLabels: variants.map((v) => label(v.name)),
          colLabels: walkCols.map((c) => (c === null ? '' : text ? `P${c + 1}` : label(className(c), 6))),
          zoom: videoZoom,
          title: t,
        }),
      ),
    );
    walkVideo = wframes.length ? { frames: wframes, delays: wframes.map(() => 120) } : null;
  }

  // a video pipeline: every variant's grid videos side by side, frame by frame, and |variant - FP| per frame
  const F = base.index.frames;
  const videoFrames =
    F && text
      ? {
          fps: job.fps ?? VIDEO_FPS,
          comparison: compareVideos({
            models: variants.map((v, k) => ({ name: v.name, videos: images[k]! })),
            frames: F,
            frameShape: [IC, IH / F, IW],
            rows: prompts.map((e) => promptLabel(e.prompt, PROMPT_LABEL_CHARS)),
            cols: job.seeds.map((sd) => `S${sd}`),
          }),
        }
      : null;

  const metrics: CompareMetrics = {
    schema: METRICS_SCHEMA_ID,
    version: METRICS_VERSION,
    tool: 'dq compare',
    pipeline: base.dir,
    settings: {
      seeds: job.seeds,
      classes,
      steps: job.steps,
      sampler: job.sampler,
      guidance: job.guidance,
      eta,
      batchSize: bs,
      fidSamples: fidN,
      fidSeedStart: FID_SEED_START,
      walkSeeds,
      walkFramesPerSegment: job.video ? walkFrames : 0,
      video: job.video,
      ...(text ? { prompts } : {}),
      imageShape: [...shape],
      sampleShape: [C, H, W],
    },
    provider: { requested: fp.session.info.requested, used: fp.session.info.provider, fallback: fp.session.info.fallback ?? null },
    images: gridSeeds.map((s, i) => ({
      index: i,
      seed: s,
      class: conditional ? gridClasses[i]! : null,
      className: conditional ? className(gridClasses[i]!) : null,
      ...(text ? { prompt: prompts[gridPrompts[i]!]!.prompt, negativePrompt: prompts[gridPrompts[i]!]!.negative } : {}),
    })),
    reference: {
      data: dataGaussian ? { source: `mnist package, held-out images (last ${HELD_OUT_PER_DIGIT} per digit, never used in training)`, images: dataImages } : null,
      featureExtractor: canClassify ? 'models/mnist-classifier (penultimate layer)' : null,
      featureDim: canClassify ? featureDim : null,
      ...(judge ? { judge: { path: judge.path, output: judge.output.name, width: judge.output.width, preprocessing: judge.preprocessing, warnings: judge.warnings } } : {}),
    },
    variants: variantMetrics,
    files: {
      grid: 'grid.png',
      diffs: Object.fromEntries(diffs.map((d) => [d.name, d.file])),
      diffScale: scale,
      trajectory: { webp: job.video ? 'trajectory.webp' : null, mp4: null, frames: trajectoryVideo?.frames.length ?? 0 },
      walk: { webp: walkVideo ? 'walk.webp' : null, mp4: null, frames: walkVideo?.frames.length ?? 0 },
      report: 'report.html',
      metrics: 'metrics.json',
    },
    ...(videoFrames
      ? {
          videoFrames: {
            frames: F!,
            fps: videoFrames.fps,
            side: 'videos-side.webp',
            diffs: Object.fromEntries(videoFrames.comparison.stats.map((st, j) => [st.name, `videos-diff-${variants[j + 1]!.file}.webp`])),
            diffScale: videoFrames.comparison.scale,
            perFrame: videoFrames.comparison.stats.map((st) => ({ ...st, psnrDb: st.psnrDb.map((x) => (x === null ? null : Math.round(x * 1e4) / 1e4)), ssim: st.ssim.map((x) => Math.round(x * 1e6) / 1e6) })),
          },
        }
      : {}),
    notes,
  };
  return { metrics, images, walk, walkColumns: walkCols.length, grid, diffs, trajectoryVideo, walkVideo, videoFrames, notes };
}

/** Encodes and writes everything; returns the metrics as written. */
export async function writeComparison(c: Comparison, job: Pick<CompareJob, 'out' | 'video' | 'ffmpeg' | 'signal'>): Promise<CompareMetrics> {
  const out = resolve(job.out);
  // videos left by an earlier comparison in this folder are removed below; a folder without one keeps its files
  const earlier = existsSync(join(out, 'metrics.json'));
  const metrics: CompareMetrics = structuredClone(c.metrics);
  const gridPng = await encodePng(c.grid);
  const diffPngs = await Promise.all(c.diffs.map(async (d) => ({ ...d, png: await encodePng(d.image) })));
  const webps: Record<string, Buffer> = {};
  const mp4s: { name: string; tmp: string }[] = [];
  const written: string[] = [];
  try {
    let sheetPng: Uint8Array | null = null;
    if (job.video && c.trajectoryVideo) {
      const videos = [['trajectory', c.trajectoryVideo], ...(c.walkVideo ? [['walk', c.walkVideo] as const] : [])] as const;
      for (const [key, video] of videos) webps[`${key}.webp`] = await encodeAnimatedWebp(video.frames, video.delays);
      // the trajectory's frames one under another: a step scrubber shows any one of them
      const sheet = frameSheet(c.trajectoryVideo.frames);
      if (sheet) {
        sheetPng = await encodePng(sheet);
        metrics.files.trajectory.sheet = 'trajectory-frames.png';
      }
      if (!c.walkVideo) metrics.notes.push('seed walk not computed (walk off)');
      const ff = findFfmpeg(job.ffmpeg);
      if (!ff.found) metrics.notes.push(`MP4 not written: ${ff.reason} (the animated WebP files have the same frames)`);
      else {
        for (const [key, video] of videos) {
          const tmp = join(out, `.${key}.${process.pid}.${Date.now()}.mp4.tmp`);
          written.push(tmp);
          makeDirs(out, '--out');
          const err = await encodeMp4(ff.path, atFps(video, 20), 20, tmp, job.signal);
          if (job.signal?.aborted) throw new DqError('CANCELLED', 'comparison was cancelled');
          if (err) metrics.notes.push(`MP4 not written for the ${key} video: ${err}`);
          else {
            mp4s.push({ name: `${key}.mp4`, tmp });
            metrics.files[key].mp4 = `${key}.mp4`;
          }
        }
      }
    } else {
      metrics.notes.push(c.videoFrames ? 'trajectory and seed-walk videos not written (--no-video)' : 'videos not written (--no-video)');
    }
    // a video pipeline: the grid's videos of every variant side by side, and the heatmaps, frame by frame
    const vf = c.videoFrames;
    const vm = metrics.videoFrames;
    if (vf && vm) {
      const delays = vf.comparison.frames[0]!.map(() => 1000 / vf.fps);
      const side = vf.comparison.frames[0]!.map((_, k) => joinColumns(vf.comparison.frames.map((m) => m[k]!)));
      webps[vm.side] = await encodeAnimatedWebp(side, delays);
      for (const [j, st] of vf.comparison.stats.entries()) webps[vm.diffs[st.name]!] = await encodeAnimatedWebp(vf.comparison.diffFrames[j]!, delays);
    }
    // every file lands by rename; the report goes last
    writeFileAtomic(join(out, 'grid.png'), gridPng);
    for (const d of diffPngs) writeFileAtomic(join(out, d.file), d.png);
    for (const [name, buf] of Object.entries(webps)) writeFileAtomic(join(out, name), buf);
    if (sheetPng) writeFileAtomic(join(out, 'trajectory-frames.png'), sheetPng);
    for (const m of mp4s) renameSync(m.tmp, join(out, m.name));
    const json = JSON.stringify(metrics, null, 2) + '\n';
    writeFileAtomic(join(out, 'metrics.json'), json);
    writeFileAtomic(
      join(out, 'report.html'),
      renderReport(metrics, {
        gridPng,
        diffs: diffPngs.map((d) => ({ name: d.name, file: d.file, png: d.png })),
        trajectoryWebp: webps['trajectory.webp'] ?? null,
        walkWebp: webps['walk.webp'] ?? null,
        videoFrames: vm ? { side: webps[vm.side]!, diffs: Object.fromEntries(Object.entries(vm.diffs).map(([n, f]) => [n, webps[f]!])) } : null,
      }),
    );
  } finally {
    for (const t of written) rmSync(t, { force: true });
  }
  // files of an earlier run in this folder that this run did not write would contradict the report
  if (earlier) for (const key of ['trajectory', 'walk'] as const) {
    if (!metrics.files[key].mp4) rmSync(join(out, `${key}.mp4`), { force: true });
    if (!metrics.files[key].webp) rmSync(join(out, `${key}.webp`), { force: true });
  }
  if (earlier && !metrics.files.trajectory.sheet) rmSync(join(out, 'trajectory-frames.png'), { force: true });
  if (earlier && !metrics.videoFrames) rmSync(join(out, 'videos-side.webp'), { force: true });
  return metrics;
}

export async function runCompare(job: CompareJob): Promise<CompareMetrics> {
  const c = await computeComparison(job);
  job.onProgress?.({ phase: 'writing', done: 1, total: 1 });
  return writeComparison(c, job);
}
