/**
 * `dq sample`: images for every (class or prompt, seed), a labelled grid PNG (a row per class or prompt, a column per
 * seed) and samples.json.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DqError } from '../errors.js';
import { prepareOutput, writeFileAtomic } from '../fsutil.js';
import { MAX_GRID_IMAGES } from '../ranges.js';
import { encodePng, layoutGrid } from '../image/grid.js';
import { openPipeline } from '../open.js';
import { withFrames, withImageSize } from '../pipeline/pipeline.js';
import { frameOf } from '../pipeline/codec.js';
import { encodeAnimatedWebp, encodeMp4, findFfmpeg } from '../compare/video.js';
import { MAX_PROMPTS, type PromptEntry } from '../pipeline/prompt-file.js';

export { MAX_PROMPTS, readPromptFile, type PromptEntry } from '../pipeline/prompt-file.js';
import { sample, type SampleProgress } from '../pipeline/sample.js';
import type { SamplerName } from '../pipeline/schedulers.js';
import type { Provider } from '../runtime/onnx.js';

/** Characters of a prompt shown as a grid row label. */
const LABEL_CHARS = 28;

export interface SampleJob {
  pipelineDir: string;
  classes: number[];
  /** Text-to-image: the prompts (a grid row each). */
  prompts?: PromptEntry[];
  /** The negative prompt for prompts that give none. */
  negativePrompt?: string;
  /** Text-to-image: image size in pixels (default: the pipeline's). */
  height?: number;
  width?: number;
  /** Text-to-video: frames per video (default: the pipeline's). */
  frames?: number;
  /** Text-to-video: frames per second of the written videos (default 8). */
  fps?: number;
  /** A name for the grids' titles (the studio's side-by-side videos name each model's column). */
  name?: string;
  seeds: number[];
  steps: number;
  /** Default: the sampler of the pipeline's scheduler config. */
  sampler?: SamplerName;
  guidance: number;
  eta?: number;
  provider: Provider;
  out: string;
  batchSize?: number;
  signal?: AbortSignal;
  onProgress?: (p: SampleProgress) => void;
  /** Called with the samples ([C, H, W] each, a video [C, frames*H, W]; in grid order: a row per class or prompt,
   * a column per seed) before the files are written; what the studio compares frame by frame. */
  onImages?: (images: Float32Array[]) => void;
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
  /** Text-to-image: the prompts, with their token counts (per tokenizer) and what truncation dropped. */
  prompts?: { prompt: string; negative: string; tokens: number[]; truncated: boolean; dropped: string }[];
  /** [channels, height, width] of each image. */
  imageShape: number[];
  grid: string;
  /** Text-to-video: frames per video, and the files: every video of the grid played together (animated WebP;
   * MP4 when ffmpeg is installed, else why not); grid.png is then the contact sheet (a row per video, a column per frame). */
  video?: { frames: number; fps: number; webp: string; mp4: string | null; note?: string };
  images: { seed: number; class: number | null; className: string | null; prompt?: number; row: number; col: number }[];
}

export async function runSampleJob(job: SampleJob): Promise<SampleRecord> {
  prepareOutput(job.out, 'folder');
  const opened = await openPipeline(job.pipelineDir, job.provider);
  const session = opened.session;
  const pipeline = withFrames(withImageSize(opened.pipeline, job.height, job.width), job.frames);
  const frames = pipeline.index.frames;
  const text = pipeline.text !== null;
  const conditional = pipeline.io.classLabels !== null;
  if (!text && job.prompts?.length) throw new DqError('BAD_ARGUMENT', `${job.pipelineDir} takes no text (it is ${conditional ? 'class-conditional: use --class' : 'unconditional'}): leave out --prompt`);
  if (!text && (job.height !== undefined || job.width !== undefined) && !pipeline.codec) {
    const meta = pipeline.unetInputs.find((m) => m.name === pipeline.io.sample);
    if (meta?.shape?.slice(2).some((d) => typeof d === 'number')) throw new DqError('BAD_ARGUMENT', `${job.pipelineDir} makes ${pipeline.imageShape.slice(1).join('x')} images only (its unet's size is fixed)`);
  }
  if (text && job.classes.length) throw new DqError('BAD_ARGUMENT', 'this is a text-to-image pipeline: give --prompt or --prompts, not --class');
  if (text && !job.prompts?.length) throw new DqError('BAD_ARGUMENT', 'this is a text-to-image pipeline: give --prompt "..." or --prompts <file>');
  if (!conditional && !text && job.classes.length) throw new DqError('BAD_ARGUMENT', 'this model is unconditional: leave out --class');
  if ((job.prompts?.length ?? 0) > MAX_PROMPTS) throw new DqError('BAD_ARGUMENT', `${job.prompts!.length} prompts; at most ${MAX_PROMPTS} in one run`);
  const classes = conditional ? (job.classes.length ? job.classes : pipeline.index.classes.map((_, i) => i)) : [];
  const rows: (number | null)[] = text ? job.prompts!.map((_, i) => i) : conditional ? classes : [null];
  if (rows.length * job.seeds.length > MAX_GRID_IMAGES) {
    throw new DqError('BAD_ARGUMENT', `${rows.length} ${text ? 'prompts' : 'classes'} x ${job.seeds.length} seeds is ${rows.length * job.seeds.length} images, more than a grid holds (at most ${MAX_GRID_IMAGES})`);
  }
  const seeds: number[] = [];
  const cls: number[] = [];
  const prompts: string[] = [];
  const negatives: string[] = [];
  for (const c of rows) {
    for (const s of job.seeds) {
      seeds.push(s);
      if (text) {
        prompts.push(job.prompts![c!]!.prompt);
        negatives.push(job.prompts![c!]!.negative ?? job.negativePrompt ?? '');
      } else if (c !== null) cls.push(c);
    }
  }
  const sampler = job.sampler ?? pipeline.index.defaultSampler;
  const batchSize = job.batchSize ?? 16;
  const res = await sample(pipeline, session, {
    seeds,
    classes: cls,
    ...(text ? { prompts, negativePrompts: negatives } : {}),
    steps: job.steps,
    sampler,
    guidance: job.guidance,
    eta: job.eta ?? 0,
    batchSize,
    signal: job.signal,
    onProgress: job.onProgress,
  });
  job.onImages?.(res.images);
  const [C, H0, W] = pipeline.imageShape;
  const H = frames ? H0 / frames : H0;
  const name = (c: number | null) => (c === null ? null : (pipeline.index.classes[c] ?? String(c)));
  const label = (c: number | null) => {
    if (c === null) return '';
    if (!text) return name(c)!;
    const t = job.prompts![c]!.prompt;
    return t.length > LABEL_CHARS ? `${t.slice(0, LABEL_CHARS - 1)}…` : t;
  };
  const title = `${job.name ? `${job.name}: ` : ''}${sampler} ${job.steps} steps cfg ${job.guidance}`;
  const zoom = H >= 128 ? 1 : 2;
  // a row per class or prompt, a column per seed; `cell` picks what each sample shows (a video: one of its frames)
  const seedGrid = (cell: (img: Float32Array) => Float32Array, t: string) =>
    layoutGrid({ cells: rows.map((_, r) => job.seeds.map((_, c) => cell(res.images[r * job.seeds.length + c]!))), channels: C, height: H, width: W, rowLabels: rows.map(label), colLabels: job.seeds.map((s) => `s${s}`), zoom, title: t });
  const grid = frames
    ? layoutGrid({
        cells: rows.flatMap((_, r) => job.seeds.map((_, c) => Array.from({ length: frames }, (_, k) => frameOf(res.images[r * job.seeds.length + c]!, frames, k, C)))),
        channels: C,
        height: H,
        width: W,
        rowLabels: rows.flatMap((c) => job.seeds.map((s) => `${label(c)} s${s}`)),
        colLabels: Array.from({ length: frames }, (_, k) => `f${k}`),
        zoom,
        title,
      })
    : seedGrid((img) => img, title);
  let video: SampleRecord['video'];
  const videoFiles: Record<string, Buffer> = {};
  if (frames) {
    // every video of the grid, played together: frame k of each in its cell
    const fps = job.fps ?? 8;
    const sheets = Array.from({ length: frames }, (_, k) => seedGrid((img) => frameOf(img, frames, k, C), `${title} frame ${k + 1}/${frames}`));
    videoFiles['videos.webp'] = await encodeAnimatedWebp(sheets, sheets.map(() => 1000 / fps));
    const ff = findFfmpeg();
    const even = sheets[0]!.width % 2 === 0 && sheets[0]!.height % 2 === 0;
    if (ff.found && even) mkdirSync(job.out, { recursive: true });
    const failed = !ff.found ? ff.reason : !even ? 'the grid has an odd width or height' : await encodeMp4(ff.path, sheets, fps, join(job.out, 'videos.mp4'), job.signal);
    const note = failed ? `MP4 not written: ${failed} (videos.webp has the same frames)` : undefined;
    video = { frames, fps, webp: 'videos.webp', mp4: failed ? null : 'videos.mp4', ...(note ? { note } : {}) };
  }
  const png = await encodePng(grid);
  const warnings = [...(pipeline.warnings ?? []), ...(res.warnings ?? [])];
  const record: SampleRecord = {
    version: 1,
    pipeline: pipeline.dir,
    settings: { steps: job.steps, sampler, guidance: job.guidance, eta: job.eta ?? 0, batchSize },
    provider: { requested: session.info.requested, used: session.info.provider, ...(session.info.fallback ? { fallback: session.info.fallback } : {}) },
    ...(warnings.length ? { warnings } : {}),
    ...(pipeline.int8Weights ? { int8Weights: pipeline.int8Weights } : {}),
    seconds: Math.round(res.seconds * 1000) / 1000,
    seeds: job.seeds,
    classes,
    ...(text
      ? {
          prompts: job.prompts!.map((e, i) => {
            const r = res.tokens![i * job.seeds.length]!;
            return { prompt: e.prompt, negative: e.negative ?? job.negativePrompt ?? '', tokens: r.tokens, truncated: r.truncated, dropped: r.dropped };
          }),
        }
      : {}),
    imageShape: [C, H, W],
    grid: 'grid.png',
    ...(video ? { video } : {}),
    images: rows.flatMap((c, r) => job.seeds.map((s, col) => (text ? { seed: s, class: null, className: null, prompt: c!, row: r, col } : { seed: s, class: c, className: name(c), row: r, col }))),
  };
  writeFileAtomic(join(job.out, 'grid.png'), png);
  for (const [f, buf] of Object.entries(videoFiles)) writeFileAtomic(join(job.out, f), buf);
  writeFileAtomic(join(job.out, 'samples.json'), JSON.stringify(record, null, 2) + '\n');
  return record;
}
