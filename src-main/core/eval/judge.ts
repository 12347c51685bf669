/**
 * Bring your own judge: any ONNX image model with a per-image feature output (a CLIP image encoder, Inception's
 * pool3, the embedded MNIST classifier, ...) as the feature space for FID-to-FP and per-image feature cosine between
 * FP's images and a variant's (same prompts and seeds, so image i of one set pairs with image i of the other).
 *
 * The judge's input: the one float (float32 or float16) rank-4 input, NCHW, or NHWC when only the last axis is 1 or
 * 3 (TensorFlow exports). A model with any other input (a full CLIP model also takes input_ids) is refused: export
 * its vision tower alone. Static batch sizes are honoured (the last batch is padded with copies and the extra rows
 * dropped). Dynamic height/width: the `size` option, else DEFAULT_JUDGE_SIZE (224, what CLIP and most ImageNet models
 * take); a model that really takes any size still sees every image at one size, so features compare across runs.
 *
 * The feature output: `output` when given; otherwise chosen from the outputs of one probe run (mid-grey images), among
 * the per-image vectors ([batch, width], or [batch, width, 1, 1], flattened: Inception's pool3):
 *   1. by name, in this order: `image_embeds`; a name with "embed"; "pooler_output"/"pooled"; "feat"; "pool"
 *      (case-insensitive; several matches of one rule: the widest, then the first in the graph's order);
 *   2. else the only one that is not named like a classification head (logit, prob, softmax, score, class, pred);
 *   3. else the widest of those; 4. else the only or widest head (with a warning: features before the head are better).
 * The embedded classifier's pick is `features`, its 128-d penultimate layer: the features classify() returns.
 *
 * Preprocessing, per image (a Float32Array [C*H*W] in model space [-1, 1], as sample() returns them):
 *   1. to pixels: min(1, max(0, (x + 1) / 2)) (a saved PNG's clamp; classify()'s own formula);
 *   2. channels: RGB -> grey by BT.601 luma (0.299 R + 0.587 G + 0.114 B) for a 1-channel judge, grey -> RGB by
 *      repetition for a 3-channel one;
 *   3. size: `fit` 'stretch' (default: the whole image, resized to the judge's size) or 'center-crop' (the largest
 *      centred region with the judge's aspect ratio, then resized, as CLIP's processor does for non-square images);
 *      resizing is bilinear with half-pixel centres, antialiased when shrinking (the triangle filter widened by the
 *      scale factor, as PIL and torch's antialias=True do), so large images are not aliased on their way down;
 *      an image already at the judge's size is passed through unchanged;
 *   4. range (`normalize`): '[0,1]' (default), '[-1,1]', '[0,255]', 'clip' (OpenAI CLIP's mean/std), 'imagenet'
 *      (torchvision's mean/std); the last two only for 3-channel judges.
 *
 * FID-to-FP: the Frechet distance between Gaussians fitted to the two feature sets (metrics.ts's formula). With n
 * samples at most the feature width it is computed exactly in the n-dimensional span of the samples (trace of the
 * matrix square root = nuclear norm of the cross-Gram matrix), which costs O(n^2 d + n^3) instead of O(d^3); the
 * covariances are then singular, and the result says so in `note`: such FIDs compare only at equal n.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fromHalfArray, toHalfArray } from '../../../kernels/half.js';
import { DqError } from '../errors.js';
import { cachedSession } from '../pipeline/pipeline.js';
import type { ConcreteProvider, FeedValue, IoMeta, Provider, Session, TensorOut } from '../runtime/onnx.js';
import { fitGaussian, frechetDistance, symmetricEigen } from './metrics.js';

export const JUDGE_NORMALIZE = ['[0,1]', '[-1,1]', '[0,255]', 'clip', 'imagenet'] as const;
export type JudgeNormalize = (typeof JUDGE_NORMALIZE)[number];
export const JUDGE_FIT = ['stretch', 'center-crop'] as const;
export type JudgeFit = (typeof JUDGE_FIT)[number];

/** The size a judge with dynamic height or width sees images at, unless told otherwise. */
export const DEFAULT_JUDGE_SIZE = 224;
/** Images per judge evaluation by default. */
export const DEFAULT_JUDGE_BATCH = 32;

/** OpenAI CLIP's image mean and std (its processor's image_mean / image_std). */
export const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
export const CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;
/** torchvision's ImageNet mean and std. */
export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;
/** ITU-R BT.601 luma weights (PIL's RGB -> L). */
export const LUMA = [0.299, 0.587, 0.114] as const;

export interface JudgeOptions {
  /** The feature output's name (default: picked from the graph, see the module doc). */
  output?: string;
  provider?: Provider;
  normalize?: JudgeNormalize;
  fit?: JudgeFit;
  /** Height and width for a judge whose input size is dynamic (a number: square). Refused when it disagrees with a static size. */
  size?: number | [number, number];
}

/** How images reach the judge's input. */
export interface JudgeInputSpec {
  channels: 1 | 3;
  /** [height, width] the judge sees. */
  size: [number, number];
  layout: 'NCHW' | 'NHWC';
  fit: JudgeFit;
  normalize: JudgeNormalize;
}

export interface Judge {
  /** The ONNX file. */
  path: string;
  input: JudgeInputSpec & {
    name: string;
    type: 'float32' | 'float16';
    /** [C, H, W] of one image at the judge's input. */
    shape: [number, number, number];
    /** Where the size came from: the graph's static dimensions, the size option, or DEFAULT_JUDGE_SIZE. */
    sizeSource: 'graph' | 'option' | 'default';
    /** The graph's static batch size, or null when dynamic. */
    batch: number | null;
  };
  output: {
    name: string;
    /** Feature width (values per image). */
    width: number;
    /** The shape seen for one image in the probe run, e.g. [1, 2048, 1, 1] (then flattened). */
    probeShape: number[];
    type: 'float32' | 'float16';
    pickedBy: 'option' | 'name' | 'only' | 'widest';
  };
  /** Every output with its probe shape, for messages and reports. */
  outputs: { name: string; type: string; shape: number[] }[];
  /** One line saying what is done to images before the judge sees them. */
  preprocessing: string;
  /** The provider asked for, and the one the session was created with. */
  requestedProvider: Provider;
  provider: ConcreteProvider;
  warnings: string[];
}

const FLOAT_TYPES = new Set(['float32', 'float16']);

function fmtShape(s: readonly (number | string)[] | null): string {
  return s ? `[${s.join(', ')}]` : '[?]';
}

function listOutputs(outs: { name: string; type: string; shape: readonly (number | string)[] | null }[]): string {
  return outs.map((o) => `${o.name} ${fmtShape(o.shape)} ${o.type}`).join(', ');
}

/** The judge's model file: a path to an .onnx file, or a folder holding model.onnx. */
function resolveModelPath(path: string): string {
  if (!existsSync(path)) throw new DqError('NOT_FOUND', `judge model not found: ${path}`);
  if (statSync(path).isDirectory()) {
    const inner = join(path, 'model.onnx');
    if (!existsSync(inner)) throw new DqError('NOT_FOUND', `judge ${path} is a folder without model.onnx: give the judge's .onnx file`);
    return inner;
  }
  return path;
}

interface InputFound {
  name: string;
  type: 'float32' | 'float16';
  layout: 'NCHW' | 'NHWC';
  /** Static channel count, batch, height, width; null where dynamic. */
  c: number | null;
  b: number | null;
  h: number | null;
  w: number | null;
}

function staticDim(d: number | string | undefined): number | null {
  return typeof d === 'number' && d > 0 ? d : null;
}

function findImageInput(label: string, inputs: IoMeta[]): InputFound {
  const images = inputs.filter((m) => FLOAT_TYPES.has(m.type) && m.shape?.length === 4);
  const describe = inputs.map((m) => `${m.name} ${fmtShape(m.shape)} ${m.type}`).join(', ');
  if (images.length === 0) {
    throw new DqError('BAD_MODEL', `judge ${label} has no image input (a float tensor of rank 4, [batch, channels, height, width]); its inputs: ${describe || 'none'}`);
  }
  if (inputs.length > 1) {
    throw new DqError('BAD_MODEL', `judge ${label} takes ${inputs.length} inputs (${describe}): a judge takes images only (export the image encoder alone)`);
  }
  const m = images[0]!;
  const s = m.shape!;
  const d = s.map(staticDim);
  let layout: 'NCHW' | 'NHWC' = 'NCHW';
  if (!(d[1] === 1 || d[1] === 3) && (d[3] === 1 || d[3] === 3)) layout = 'NHWC';
  const c = layout === 'NCHW' ? d[1]! : d[3]!;
  if (c !== null && c !== 1 && c !== 3) {
    throw new DqError('BAD_MODEL', `judge ${label}: its input ${m.name} ${fmtShape(s)} has ${c} channels; a judge takes 1 (grey) or 3 (RGB)`);
  }
  const [h, w] = layout === 'NCHW' ? [d[2]!, d[3]!] : [d[1]!, d[2]!];
  return { name: m.name, type: m.type as 'float32' | 'float16', layout, c, b: d[0]!, h, w };
}

/** A per-image feature vector: [batch, width] or [batch, width, 1, 1]; its width, or null. */
function vectorWidth(dims: readonly number[], batch: number): number | null {
  if (dims[0] !== batch) return null;
  if (dims.length === 2 && dims[1]! > 0) return dims[1]!;
  if (dims.length === 4 && dims[2] === 1 && dims[3] === 1 && dims[1]! > 0) return dims[1]!;
  return null;
}

const NAME_RULES: RegExp[] = [/^image_embeds$/i, /embed/i, /pooler_output|pooled/i, /feat/i, /pool/i];
const HEAD = /logit|prob|softmax|score|class|pred/i;

export interface OutputCandidate {
  name: string;
  type: string;
  /** Shape in a probe run with `batch` images. */
  dims: readonly number[];
}

/**
 * Which output holds the features (module doc, rules 1-4). `requested`: the user's choice, checked. Pure: the outputs
 * with their shapes from a probe run of `batch` images.
 */
export function pickFeatureOutput(label: string, outputs: OutputCandidate[], batch: number, requested?: string): { name: string; width: number; pickedBy: Judge['output']['pickedBy']; warning?: string } {
  const usable = outputs
    .map((o) => ({ o, width: FLOAT_TYPES.has(o.type) ? vectorWidth(o.dims, batch) : null }))
    .filter((x): x is { o: OutputCandidate; width: number } => x.width !== null);
  const all = () => listOutputs(outputs.map((o) => ({ ...o, shape: [...o.dims] })));
  if (requested !== undefined) {
    const o = outputs.find((x) => x.name === requested);
    if (!o) throw new DqError('BAD_ARGUMENT', `judge ${label} has no output '${requested}'; its outputs: ${all()}`);
    const u = usable.find((x) => x.o === o);
    if (!u) {
      const why = !FLOAT_TYPES.has(o.type)
        ? `its type is ${o.type}, not float`
        : `its shape ${fmtShape(o.dims)} for ${batch} image${batch === 1 ? '' : 's'} is not one vector per image ([batch, width] or [batch, width, 1, 1])`;
      throw new DqError('BAD_ARGUMENT', `judge ${label}: output '${requested}' cannot be used as features: ${why}`);
    }
    return { name: o.name, width: u.width, pickedBy: 'option' };
  }
  if (usable.length === 0) {
    throw new DqError('BAD_MODEL', `judge ${label} has no output that is one feature vector per image ([batch, width] or [batch, width, 1, 1]); its outputs: ${all()}`);
  }
  const widest = (xs: typeof usable) => xs.reduce((a, b) => (b.width > a.width ? b : a));
  for (const rule of NAME_RULES) {
    const hits = usable.filter((x) => rule.test(x.o.name));
    if (hits.length) {
      const h = widest(hits);
      return { name: h.o.name, width: h.width, pickedBy: 'name' };
    }
  }
  const notHeads = usable.filter((x) => !HEAD.test(x.o.name));
  const pool = notHeads.length ? notHeads : usable;
  const h = widest(pool);
  const pickedBy = pool.length === 1 ? 'only' : 'widest';
  const warning = notHeads.length
    ? undefined
    : `judge ${label}: the feature output '${h.o.name}' looks like a classification head; features from the layer before it are better (name one as the output)`;
  return { name: h.o.name, width: h.width, pickedBy, ...(warning ? { warning } : {}) };
}

function sizeOf(s: JudgeOptions['size']): [number, number] | null {
  if (s === undefined) return null;
  const hw: [number, number] = typeof s === 'number' ? [s, s] : s;
  if (!hw.every((v) => Number.isInteger(v) && v >= 1 && v <= 8192)) throw new DqError('BAD_ARGUMENT', `judge size must be whole numbers 1..8192, got ${hw.join('x')}`);
  return hw;
}

/** One line: what images go through on their way into the judge (the image's own size and channels aside). */
export function describePreprocessing(spec: JudgeInputSpec, from?: [number, number, number]): string {
  const [h, w] = spec.size;
  const parts = ['clamp to [-1, 1]'];
  if (from) {
    if (from[0] === 3 && spec.channels === 1) parts.push('RGB -> grey (BT.601 luma)');
    if (from[0] === 1 && spec.channels === 3) parts.push('grey -> RGB (repeated)');
    const same = from[1] === h && from[2] === w;
    if (!same) parts.push(`${spec.fit === 'center-crop' ? 'centre-crop and ' : ''}resize ${from[1]}x${from[2]} -> ${h}x${w} (bilinear, antialiased)`);
  } else {
    parts.push(`${spec.channels === 1 ? 'grey (BT.601 luma)' : 'RGB'}`, `${spec.fit === 'center-crop' ? 'centre-crop and ' : ''}resize to ${h}x${w} (bilinear, antialiased)`);
  }
  const norm: Record<JudgeNormalize, string> = {
    '[0,1]': 'pixels in [0, 1]',
    '[-1,1]': 'pixels in [-1, 1]',
    '[0,255]': 'pixels in [0, 255]',
    clip: "CLIP's mean/std",
    imagenet: "ImageNet's mean/std",
  };
  parts.push(norm[spec.normalize]);
  return `${parts.join(', ')}; ${spec.layout}`;
}

/** Opens a judge: finds its image input and its feature output (one probe run). */
export async function openJudge(path: string, opts: JudgeOptions = {}): Promise<Judge> {
  const file = resolveModelPath(path);
  const normalize = opts.normalize ?? '[0,1]';
  const fit = opts.fit ?? 'stretch';
  if (!(JUDGE_NORMALIZE as readonly string[]).includes(normalize)) throw new DqError('BAD_ARGUMENT', `judge normalization must be one of ${JUDGE_NORMALIZE.join(', ')}, got '${normalize}'`);
  if (!(JUDGE_FIT as readonly string[]).includes(fit)) throw new DqError('BAD_ARGUMENT', `judge fit must be one of ${JUDGE_FIT.join(', ')}, got '${fit}'`);
  const asked = sizeOf(opts.size);
  const session = await cachedSession(file, opts.provider ?? 'cpu', { label: `judge ${path}` });
  const inp = findImageInput(path, session.inputs);
  const channels = (inp.c ?? 3) as 1 | 3;
  if (channels === 1 && (normalize === 'clip' || normalize === 'imagenet')) {
    throw new DqError('BAD_ARGUMENT', `judge ${path} takes 1-channel images; '${normalize}' normalization is for RGB judges`);
  }
  let size: [number, number];
  let sizeSource: Judge['input']['sizeSource'];
  if (inp.h !== null && inp.w !== null) {
    if (asked && (asked[0] !== inp.h || asked[1] !== inp.w)) {
      throw new DqError('BAD_ARGUMENT', `judge ${path} takes ${inp.h}x${inp.w} images (its input ${inp.name}); a size of ${asked.join('x')} cannot be used`);
    }
    size = [inp.h, inp.w];
    sizeSource = 'graph';
  } else {
    size = [inp.h ?? asked?.[0] ?? DEFAULT_JUDGE_SIZE, inp.w ?? asked?.[1] ?? DEFAULT_JUDGE_SIZE];
    sizeSource = asked ? 'option' : 'default';
  }
  const spec: JudgeInputSpec = { channels, size, layout: inp.layout, fit, normalize };
  // probe: mid-grey images, every output fetched, to see real shapes (dynamic widths included)
  const batch = inp.b ?? 1;
  const grey = new Float32Array(channels * size[0] * size[1]);
  const feed = makeFeed(inp, spec, Array.from({ length: batch }, () => prepareImage(grey, [channels, size[0], size[1]], spec)));
  let probe: Record<string, TensorOut>;
  try {
    probe = await session.run({ [inp.name]: feed });
  } catch (e) {
    if (e instanceof DqError) throw new DqError(e.code, `${e.message} (run on ${batch}x${channels}x${size[0]}x${size[1]} images${sizeSource === 'default' ? `, the default size for a dynamic input` : ''})`, e.detail);
    throw e;
  }
  const outputs = session.outputNames.map((name) => ({ name, type: probe[name]?.type ?? 'missing', dims: [...(probe[name]?.dims ?? [])] }));
  const pick = pickFeatureOutput(path, outputs, batch, opts.output);
  const chosen = outputs.find((o) => o.name === pick.name)!;
  const judge: Judge = {
    path: file,
    input: { ...spec, name: inp.name, type: inp.type, shape: [channels, size[0], size[1]], sizeSource, batch: inp.b },
    output: { name: pick.name, width: pick.width, probeShape: chosen.dims, type: chosen.type as 'float32' | 'float16', pickedBy: pick.pickedBy },
    outputs: outputs.map((o) => ({ name: o.name, type: o.type, shape: o.dims })),
    preprocessing: describePreprocessing(spec),
    requestedProvider: opts.provider ?? 'cpu',
    provider: session.info.provider,
    warnings: pick.warning ? [pick.warning] : [],
  };
  return judge;
}

/** Per-axis resampling: for each output index, the first source index and the weights from there. */
function axisWeights(nIn: number, nOut: number): { start: Int32Array; weights: Float64Array[] } {
  const scale = nIn / nOut;
  const support = Math.max(scale, 1);
  const start = new Int32Array(nOut);
  const weights: Float64Array[] = [];
  for (let o = 0; o < nOut; o++) {
    const centre = (o + 0.5) * scale;
    const lo = Math.max(0, Math.floor(centre - support));
    const hi = Math.min(nIn, Math.ceil(centre + support));
    const w = new Float64Array(hi - lo);
    let sum = 0;
    for (let i = lo; i < hi; i++) sum += w[i - lo] = Math.max(0, 1 - Math.abs(i + 0.5 - centre) / support);
    for (let k = 0; k < w.length; k++) w[k]! /= sum;
    start[o] = lo;
    weights.push(w);
  }
  return { start, weights };
}

/** Resamples the window (y0, x0, ch, cw) of an H x W plane to h x w (triangle filter, see the module doc). */
function resizePlane(src: Float64Array, W: number, win: [number, number, number, number], h: number, w: number): Float64Array {
  const [y0, x0, ch, cw] = win;
  const ax = axisWeights(cw, w);
  const ay = axisWeights(ch, h);
  const tmp = new Float64Array(ch * w);
  for (let y = 0; y < ch; y++) {
    const row = (y0 + y) * W + x0;
    for (let o = 0; o < w; o++) {
      const wt = ax.weights[o]!;
      const s0 = row + ax.start[o]!;
      let s = 0;
      for (let k = 0; k < wt.length; k++) s += wt[k]! * src[s0 + k]!;
      tmp[y * w + o] = s;
    }
  }
  const out = new Float64Array(h * w);
  for (let o = 0; o < h; o++) {
    const wt = ay.weights[o]!;
    const s0 = ay.start[o]!;
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let k = 0; k < wt.length; k++) s += wt[k]! * tmp[(s0 + k) * w + x]!;
      out[o * w + x] = s;
    }
  }
  return out;
}

/** The source window for `fit`: the whole image, or its largest centred region with the target's aspect ratio. */
function cropWindow(H: number, W: number, h: number, w: number, fit: JudgeFit): [number, number, number, number] {
  if (fit === 'stretch') return [0, 0, H, W];
  const aspect = w / h;
  if (W / H > aspect) {
    const cw = Math.max(1, Math.min(W, Math.round(H * aspect)));
    return [0, Math.floor((W - cw) / 2), H, cw];
  }
  const ch = Math.max(1, Math.min(H, Math.round(W / aspect)));
  return [Math.floor((H - ch) / 2), 0, ch, W];
}

/**
 * One image (model space [-1, 1], [C, H, W] with C 1 or 3) as the judge's input wants it: [channels, h, w] for NCHW,
 * [h, w, channels] for NHWC (module doc, steps 1-4).
 */
export function prepareImage(image: ArrayLike<number>, shape: [number, number, number], spec: JudgeInputSpec): Float32Array {
  const [C, H, W] = shape;
  if (C !== 1 && C !== 3) throw new DqError('BAD_ARGUMENT', `a judge takes grey or RGB images, got ${C} channels`);
  if (image.length !== C * H * W) throw new DqError('BAD_ARGUMENT', `an image has ${image.length} values, not ${C}x${H}x${W}`);
  const n = H * W;
  const px = (v: number) => Math.min(1, Math.max(0, (v + 1) / 2));
  const planes: Float64Array[] = [];
  if (C === 3 && spec.channels === 1) {
    const g = new Float64Array(n);
    for (let i = 0; i < n; i++) g[i] = LUMA[0] * px(image[i]!) + LUMA[1] * px(image[n + i]!) + LUMA[2] * px(image[2 * n + i]!);
    planes.push(g);
  } else {
    for (let c = 0; c < C; c++) planes.push(Float64Array.from({ length: n }, (_, i) => px(image[c * n + i]!)));
    if (C === 1 && spec.channels === 3) planes.push(planes[0]!, planes[0]!);
  }
  const [h, w] = spec.size;
  const win = cropWindow(H, W, h, w, spec.fit);
  const resized = win[2] === h && win[3] === w && win[0] === 0 && win[1] === 0 ? planes : planes.map((p) => resizePlane(p, W, win, h, w));
  const out = new Float32Array(spec.channels * h * w);
  const m = h * w;
  const [mean, std] =
    spec.normalize === 'clip' ? [CLIP_MEAN, CLIP_STD] : spec.normalize === 'imagenet' ? [IMAGENET_MEAN, IMAGENET_STD] : [null, null];
  for (let c = 0; c < spec.channels; c++) {
    const p = resized[c]!;
    for (let i = 0; i < m; i++) {
      const v = p[i]!;
      const y =
        spec.normalize === '[0,1]' ? v : spec.normalize === '[-1,1]' ? 2 * v - 1 : spec.normalize === '[0,255]' ? 255 * v : (v - mean![c]!) / std![c]!;
      out[spec.layout === 'NCHW' ? c * m + i : i * spec.channels + c] = y;
    }
  }
  return out;
}

function makeFeed(inp: { type: 'float32' | 'float16' }, spec: JudgeInputSpec, prepared: Float32Array[]): FeedValue {
  const per = prepared[0]!.length;
  const data = new Float32Array(prepared.length * per);
  prepared.forEach((p, k) => data.set(p, k * per));
  const [h, w] = spec.size;
  const dims = spec.layout === 'NCHW' ? [prepared.length, spec.channels, h, w] : [prepared.length, h, w, spec.channels];
  return inp.type === 'float16' ? { type: 'float16', data: toHalfArray(data), dims } : { type: 'float32', data, dims };
}

export interface JudgeRunOptions {
  /** [C, H, W] of every image (the pipeline's image shape). */
  shape: [number, number, number];
  /** Images per evaluation (default DEFAULT_JUDGE_BATCH; a static batch in the graph wins). */
  batch?: number;
  signal?: AbortSignal;
  /** Called after each batch with the images judged so far. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * The judge's inference session, from the session cache (pipeline.ts): it is not held by the Judge, so
 * releaseSessions() between variants (as dq eval does) is safe; a released one is created again.
 */
export function judgeSession(judge: Judge): Promise<Session> {
  return cachedSession(judge.path, judge.requestedProvider, { label: `judge ${judge.path}` });
}

/** The judge's feature vector for each image, in order. */
export async function judgeFeatures(judge: Judge, images: ArrayLike<number>[], opts: JudgeRunOptions): Promise<Float32Array[]> {
  const bs = judge.input.batch ?? opts.batch ?? DEFAULT_JUDGE_BATCH;
  if (!Number.isInteger(bs) || bs < 1) throw new DqError('BAD_ARGUMENT', `judge batch must be a whole number >= 1, got ${bs}`);
  const width = judge.output.width;
  const session = await judgeSession(judge);
  const out: Float32Array[] = [];
  for (let s = 0; s < images.length; s += bs) {
    if (opts.signal?.aborted) throw new DqError('CANCELLED', 'judging was cancelled');
    const chunk = images.slice(s, s + bs).map((img) => prepareImage(img, opts.shape, judge.input));
    const real = chunk.length;
    // a static batch: pad with copies of the last image, drop their rows
    while (judge.input.batch !== null && chunk.length < judge.input.batch) chunk.push(chunk[real - 1]!);
    const res = await session.run({ [judge.input.name]: makeFeed(judge.input, judge.input, chunk) }, [judge.output.name]);
    const t = res[judge.output.name]!;
    const data = t.type === 'float16' ? fromHalfArray(t.data as Uint16Array) : (t.data as Float32Array);
    if (t.dims[0] !== chunk.length || data.length !== chunk.length * width) {
      throw new DqError('BAD_MODEL', `judge ${judge.path}: output '${judge.output.name}' came back ${fmtShape(t.dims)} for ${chunk.length} images (expected ${chunk.length} x ${width} values)`);
    }
    for (let k = 0; k < real; k++) out.push(data.slice(k * width, (k + 1) * width));
    opts.onProgress?.(out.length, images.length);
  }
  return out;
}

/**
 * Frechet distance between Gaussians fitted to two feature sets (n1, n2 >= 2 vectors of one width d). When
 * min(n1, n2) < d it is computed in the span of the samples: with A (d x n1) and B (d x n2) the centred features
 * scaled by 1/sqrt(n - 1), S1 = A A^T, S2 = B B^T and Tr((S1 S2)^(1/2)) = the sum of the singular values of A^T B
 * (the nonzero eigenvalues of S1 S2 are those of (A^T B)(A^T B)^T); otherwise metrics.ts's fitGaussian and
 * frechetDistance. Both give the same number; the first costs O(n^2 d + n^3) instead of O(n d^2 + d^3).
 */
export function frechetFromFeatures(a: ArrayLike<number>[], b: ArrayLike<number>[]): number {
  if (a.length < 2 || b.length < 2) throw new DqError('BAD_ARGUMENT', 'a Frechet distance needs at least 2 images per set');
  const d = a[0]!.length;
  if ([...a, ...b].some((f) => f.length !== d)) throw new DqError('BAD_ARGUMENT', 'feature vectors of different widths cannot be compared');
  if (Math.min(a.length, b.length) >= d) return frechetDistance(fitGaussian(a), fitGaussian(b));
  const centred = (xs: ArrayLike<number>[]) => {
    const n = xs.length;
    const mean = new Float64Array(d);
    for (const f of xs) for (let i = 0; i < d; i++) mean[i]! += f[i]! / n;
    const k = 1 / Math.sqrt(n - 1);
    const rows = xs.map((f) => Float64Array.from({ length: d }, (_, i) => (f[i]! - mean[i]!) * k));
    return { mean, rows };
  };
  const A = centred(a);
  const B = centred(b);
  let dist = 0;
  for (let i = 0; i < d; i++) dist += (A.mean[i]! - B.mean[i]!) ** 2;
  for (const r of [...A.rows, ...B.rows]) for (let i = 0; i < d; i++) dist += r[i]! * r[i]!;
  // M = A^T B (n1 x n2); K = the smaller of M M^T and M^T M; Tr sqrt(S1 S2) = sum sqrt(eig(K))
  const n1 = A.rows.length;
  const n2 = B.rows.length;
  const M = new Float64Array(n1 * n2);
  for (let i = 0; i < n1; i++) {
    const ai = A.rows[i]!;
    for (let j = 0; j < n2; j++) {
      const bj = B.rows[j]!;
      let s = 0;
      for (let t = 0; t < d; t++) s += ai[t]! * bj[t]!;
      M[i * n2 + j] = s;
    }
  }
  const k = Math.min(n1, n2);
  const K = new Float64Array(k * k);
  for (let p = 0; p < k; p++) for (let q = p; q < k; q++) {
    let s = 0;
    if (n1 <= n2) for (let j = 0; j < n2; j++) s += M[p * n2 + j]! * M[q * n2 + j]!;
    else for (let i = 0; i < n1; i++) s += M[i * n2 + p]! * M[i * n2 + q]!;
    K[p * k + q] = s;
    K[q * k + p] = s;
  }
  let trSqrt = 0;
  for (const v of symmetricEigen(K, k).values) trSqrt += Math.sqrt(Math.max(0, v)); // the singular values of M
  return Math.max(0, dist - 2 * trSqrt);
}

/** Cosine similarity of two vectors; 1 when both are zero, 0 when one is. */
export function cosineSimilarity(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  if (aa === 0 && bb === 0) return 1;
  if (aa === 0 || bb === 0) return 0;
  return Math.max(-1, Math.min(1, ab / Math.sqrt(aa * bb)));
}

export interface FeatureComparison {
  /** Images per set. */
  n: number;
  /** Feature width. */
  dim: number;
  /** Frechet distance between the two sets' Gaussians (null with fewer than 2 images). */
  fidToFp: number | null;
  /** Cosine similarity of each pair (image i of FP with image i of the variant): the mean, the worst and where. */
  cosine: { mean: number; min: number; minIndex: number };
  /** Per pair, in order. */
  cosines: number[];
  /** What to keep in mind reading fidToFp (few samples), or null. */
  note: string | null;
}

/** FID-to-FP and per-image feature cosine of a variant's features against FP's (same prompts and seeds, same order). */
export function compareFeatures(fp: ArrayLike<number>[], variant: ArrayLike<number>[]): FeatureComparison {
  if (fp.length !== variant.length) throw new DqError('BAD_ARGUMENT', `FP has ${fp.length} images and the variant ${variant.length}: the sets must pair image for image`);
  if (fp.length === 0) throw new DqError('BAD_ARGUMENT', 'no images to compare');
  const dim = fp[0]!.length;
  if ([...fp, ...variant].some((f) => f.length !== dim)) throw new DqError('BAD_ARGUMENT', 'feature vectors of different widths cannot be compared');
  const cosines = fp.map((f, i) => cosineSimilarity(f, variant[i]!));
  let minIndex = 0;
  cosines.forEach((c, i) => {
    if (c < cosines[minIndex]!) minIndex = i;
  });
  const n = fp.length;
  const fidToFp = n >= 2 ? frechetFromFeatures(variant, fp) : null;
  let note: string | null = null;
  if (n < 2) note = 'one image per set: no FID (it needs at least 2)';
  else if (n <= dim) note = `${n} samples for ${dim} feature dimensions: the covariances are singular and FID is biased upwards; compare FIDs only at equal n`;
  return { n, dim, fidToFp, cosine: { mean: cosines.reduce((s, c) => s + c, 0) / n, min: cosines[minIndex]!, minIndex }, cosines, note };
}
