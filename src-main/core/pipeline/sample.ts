/**
 * The sampling loop: seeded initial noise per image, a scheduler, classifier-free guidance, batching, progress
 * and cancellation. Image i is determined by (seeds[i], classes[i], settings) alone, whatever the batch.
 */
import { DqError } from '../errors.js';
import type { FeedValue, IoMeta, Session, TensorOut } from '../runtime/onnx.js';
import { decodeLatents, overflowWarning } from './codec.js';
import { asFloat32, floatFeed } from './dtypes.js';
import { Rng } from './noise.js';
import type { Pipeline } from './pipeline.js';
import { createScheduler, evaluationCount, type SamplerName, schedulerOptions } from './schedulers.js';
import { guidanceEmbedding, type TokenReport } from './text.js';

export interface SampleSettings {
  steps: number;
  sampler: SamplerName;
  guidance: number;
  eta?: number;
  /** Images per network batch (each is doubled for guidance). */
  batchSize?: number;
}

export interface SampleProgress {
  done: number;
  total: number;
  /** Network evaluations finished / planned. */
  phase: 'sampling';
}

export interface SampleRequest extends SampleSettings {
  seeds: number[];
  /** Class label per image (same length as seeds); empty for unconditional and text-conditioned models. */
  classes: number[];
  /** Text-to-image: the prompt per image (same length as seeds). */
  prompts?: string[];
  /** Text-to-image: the negative prompt per image ('' or absent: none). */
  negativePrompts?: string[];
  signal?: AbortSignal;
  onProgress?: (p: SampleProgress) => void;
  /** Keep the predicted x0 of every step (for trajectory views). */
  keepTrajectory?: boolean;
  /** Calibration: at the listed step indices, run `session` (the model with statistics outputs) instead. */
  tap?: StepTap;
  /** Inputs a quantized variant needs besides sample/timestep/labels (activation parameters, temporal features). */
  extraFeeds?: ExtraFeeds;
}

export interface StepTap {
  session: Session;
  steps: ReadonlySet<number>;
  fetch: string[];
  /** Run the statistics model on at most this many rows at a time (its live memory grows with the rows). */
  maxRows?: number;
  /** Called for every chunk of rows with the statistics model's outputs and the feeds it ran on (awaited). */
  onOutputs: (step: number, timestep: number, outputs: Record<string, TensorOut>, feeds: Record<string, FeedValue>) => void | Promise<void>;
}

/**
 * Extra inputs for one network evaluation at model timestep t, for the batch's class labels. `batch.feeds` are the
 * feeds built so far (the text states among them), which a variant may read (its cached text features are computed
 * from them) and prune (inputs its cut graph no longer takes); `batch.key` names the batch's conditioning (the prompt
 * pairs, guided or not, and the image size): equal keys mean equal text inputs.
 */
export type ExtraFeeds = (t: number, labels: BigInt64Array | null, rows: number, batch: { feeds: Record<string, FeedValue>; key: string }) => Promise<Record<string, FeedValue>>;

export interface SampleOutput {
  /** One Float32Array [C*H*W] per image (p.imageShape), about [-1, 1]: decoded by the VAE for a latent pipeline. */
  images: Float32Array[];
  /** A latent pipeline's final latents (p.index.sampleShape), before decoding. */
  latents?: Float32Array[];
  /** Text-to-image: tokens per prompt and what truncation dropped, per image. */
  tokens?: TokenReport[];
  /** Things the user should know about these images (an fp16 VAE that overflowed, a truncated prompt). */
  warnings?: string[];
  /** trajectory[i][step] = predicted x0 of image i after that step, when asked for. */
  trajectory?: Float32Array[][];
  timesteps: number[];
  seconds: number;
  /** Seconds in each component: encoding the prompts, the denoiser loop (scheduler included), VAE decoding. */
  timing: { text: number; denoise: number; decode: number };
}

/** Classifier-free guidance above this is refused: the prediction is then mostly the amplified difference (black or saturated images), and far above it float overflow. */
export const MAX_GUIDANCE = 100;
/** DDIM's eta above this is refused (1 is DDPM-like; beyond, the added noise outgrows the signal). */
export const MAX_ETA = 10;
/** Sample values in one network batch (a larger --batch is split; images do not depend on the split). */
export const MAX_BATCH_VALUES = 1 << 26;

/**
 * The pipeline's sample_shape against the denoiser's declared inputs, where they are static: the sample's
 * [C, H, W], and the types we feed (float32 sample, int64 labels). Says which file is wrong, before any work.
 */
export function checkShapes(p: Pipeline): void {
  const input = (name: string | null) => (name === null ? undefined : p.unetInputs.find((m) => m.name === name));
  // the batch changes from call to call (and doubles for guidance): a fixed one cannot be fed
  for (const m of [input(p.io.sample), p.io.feedsTimestep === false ? undefined : input(p.io.timestep), p.io.feedsClassLabels === false ? undefined : input(p.io.classLabels)]) {
    const b = m?.shape?.[0];
    if (m && m.shape && m.shape.length > 0 && typeof b === 'number' && b > 0) {
      throw new DqError('BAD_MODEL', `${p.dir}: unet/model.onnx: its input '${m.name}' has a fixed batch size of ${b}; dq needs a dynamic batch dimension (re-export the model with one)`);
    }
  }
  const sample = input(p.io.sample);
  if (sample) {
    if (sample.type !== 'float32' && sample.type !== 'float16') {
      throw new DqError('BAD_MODEL', `${p.dir}: unet/model.onnx: its sample input '${sample.name}' has type ${sample.type}; float32 or float16 expected`);
    }
    const shape = sample.shape;
    if (p.io.packed) {
      const [C, H, W] = p.index.sampleShape;
      const want = [null, (H / 2) * (W / 2), 4 * C];
      if (shape && (shape.length !== 3 || shape.some((d, k) => k > 0 && typeof d === 'number' && d > 0 && d !== want[k]))) {
        throw new DqError('BAD_MODEL', `${p.dir}: ${p.denoiser ?? 'unet'}/model.onnx: its packed sample input '${sample.name}' [${shape.join(', ')}] does not take ${C}x${H}x${W} latents packed 2x2 ([batch, ${want[1]}, ${want[2]}])`);
      }
    } else if (shape && shape.length !== (p.io.video ? 5 : 4)) {
      throw new DqError('BAD_MODEL', `${p.dir}: unet/model.onnx: its sample input '${sample.name}' has ${shape.length} dimensions; [batch, channels, ${p.io.video ? 'frames, ' : ''}height, width] expected`);
    }
    const F = p.index.frames ?? 1;
    const want = p.io.video ? [p.index.sampleShape[0], F, p.index.sampleShape[1] / F, p.index.sampleShape[2]] : p.index.sampleShape;
    if (!p.io.packed && shape && shape.slice(1).some((d, k) => typeof d === 'number' && d > 0 && d !== want[k])) {
      throw new DqError(
        'BAD_CONFIG',
        `${p.dir}: ${p.index.shapeSource} [${want.join(', ')}] disagrees with the unet's sample input '${sample.name}' [${shape.join(', ')}]`,
      );
    }
  }
  const labels = p.io.feedsClassLabels === false ? undefined : input(p.io.classLabels);
  if (labels && labels.type !== 'int64') {
    throw new DqError('BAD_MODEL', `${p.dir}: unet/model.onnx: its class-label input '${labels.name}' has type ${labels.type}; int64 expected`);
  }
}

export function validateRequest(p: Pipeline, req: SampleRequest): void {
  if (!req.seeds.length) throw new DqError('BAD_ARGUMENT', 'no seeds given');
  for (const s of req.seeds) {
    if (!Number.isSafeInteger(s) || s < 0) throw new DqError('BAD_ARGUMENT', `seed ${s} is not an integer from 0 to ${Number.MAX_SAFE_INTEGER}`);
  }
  if (req.batchSize !== undefined && !(Number.isSafeInteger(req.batchSize) && req.batchSize >= 1)) {
    throw new DqError('BAD_ARGUMENT', `batch size must be a positive integer, got ${req.batchSize}`);
  }
  if (req.eta !== undefined && !(req.eta >= 0 && req.eta <= MAX_ETA)) throw new DqError('BAD_ARGUMENT', `eta must be a number from 0 to ${MAX_ETA}, got ${req.eta}`);
  checkShapes(p);
  const { classes, nullClass } = p.index;
  if (p.text) {
    if (req.classes.length) throw new DqError('BAD_ARGUMENT', 'this is a text-to-image pipeline: it takes prompts, not classes');
    if (!req.prompts || req.prompts.length !== req.seeds.length) throw new DqError('BAD_ARGUMENT', `${req.prompts?.length ?? 0} prompts for ${req.seeds.length} seeds: give one prompt per image`);
    if (req.negativePrompts && req.negativePrompts.length !== req.seeds.length) throw new DqError('BAD_ARGUMENT', 'give one negative prompt per image');
  } else if (req.prompts?.length) {
    throw new DqError('BAD_ARGUMENT', `${p.label ?? p.dir} takes no text: it is ${p.io.classLabels ? 'class-conditional (use classes)' : 'unconditional'}`);
  }
  if (p.io.classLabels) {
    if (req.classes.length !== req.seeds.length) throw new DqError('BAD_ARGUMENT', `${req.classes.length} classes for ${req.seeds.length} seeds: give one class per image`);
    for (const c of req.classes) {
      if (!Number.isInteger(c) || c < 0 || c >= classes.length) {
        throw new DqError('BAD_ARGUMENT', `class ${c} is out of range: this model has classes 0-${classes.length - 1}`);
      }
    }
  } else if (req.classes.length) {
    throw new DqError('BAD_ARGUMENT', 'this model is unconditional: it takes no classes');
  }
  if (!(req.guidance >= 0 && req.guidance <= MAX_GUIDANCE)) throw new DqError('BAD_ARGUMENT', `guidance must be a number from 0 to ${MAX_GUIDANCE}, got ${req.guidance}`);
  if (req.guidance !== 1 && p.io.classLabels && nullClass === null) {
    throw new DqError('BAD_ARGUMENT', 'this model has no null class, so classifier-free guidance is unavailable: use --guidance 1');
  }
}

export async function sample(p: Pipeline, session: Session, req: SampleRequest): Promise<SampleOutput> {
  validateRequest(p, req);
  const t0 = performance.now();
  const [C, H, W] = p.index.sampleShape;
  const size = C * H * W;
  const n = req.seeds.length;
  // at most MAX_BATCH_VALUES sample values per network batch (rows doubled when guided); images do not depend on it
  const bs = Math.max(1, Math.min(req.batchSize ?? 16, Math.floor(MAX_BATCH_VALUES / (2 * size))));
  const guided = guidedRun(p, req.guidance);
  // text: each (prompt, negative) pair encoded once; the rows refer to it by id, as class labels do
  const conds = p.text ? await p.text.ids(req.prompts!, req.negativePrompts ?? req.prompts!.map(() => ''), guided) : req.classes;
  const tText = performance.now();
  const images: Float32Array[] = new Array(n);
  const trajectory: Float32Array[][] | undefined = req.keepTrajectory ? Array.from({ length: n }, () => []) : undefined;
  let timesteps: number[] = [];
  // network evaluations per image: PNDM evaluates its first timestep twice (and more with the Runge-Kutta warm-up)
  const totalEvals = Math.ceil(n / bs) * evaluationCount(req.sampler, p.scheduler, req.steps);
  let evals = 0;

  for (let start = 0; start < n; start += bs) {
    const idx = Array.from({ length: Math.min(bs, n - start) }, (_, k) => start + k);
    const b = idx.length;
    const sched = createScheduler(req.sampler, p.scheduler, req.steps, { ...schedulerOptions(p), eta: req.eta ?? 0 });
    timesteps = sched.timesteps;
    const rngs = idx.map((i) => new Rng(req.seeds[i]!));
    let x: Float64Array = new Float64Array(b * size);
    idx.forEach((_, k) => {
      const z = rngs[k]!.normal(new Float64Array(size));
      for (let j = 0; j < size; j++) x[k * size + j] = z[j]! * sched.initNoiseSigma;
    });
    const noise = () => {
      const z = new Float64Array(b * size);
      rngs.forEach((r, k) => z.set(r.normal(new Float64Array(size)), k * size));
      return z;
    };
    const labels = idx.map((i) => conds[i] ?? 0);
    for (let s = 0; s < sched.timesteps.length; s++) {
      if (req.signal?.aborted) throw new DqError('CANCELLED', 'sampling was cancelled');
      const t = sched.timesteps[s]!;
      const xin = sched.scaleModelInput(x, s);
      const eps = await denoise(p, session, xin, t, labels, req.guidance, guided, b, size, req, s);
      const { prevSample, predOriginal } = sched.step(eps, s, x, noise);
      x = prevSample;
      if (trajectory) idx.forEach((i, k) => trajectory[i]!.push(Float32Array.from(predOriginal.subarray(k * size, (k + 1) * size))));
      evals++;
      req.onProgress?.({ done: evals, total: totalEvals, phase: 'sampling' });
    }
    idx.forEach((i, k) => (images[i] = Float32Array.from(x.subarray(k * size, (k + 1) * size))));
  }
  const tLoop = performance.now();
  const out: SampleOutput = { images, trajectory, timesteps, seconds: 0, timing: { text: (tText - t0) / 1000, denoise: (tLoop - tText) / 1000, decode: 0 } };
  const warnings: string[] = [];
  if (p.text && !guided && req.negativePrompts?.some((n) => n !== '')) {
    warnings.push(
      p.io.timestepCond || p.io.packed
        ? `the negative prompt has no effect: this ${p.io.packed ? "transformer takes guidance as an input (Flux's pipeline" : 'UNet takes guidance as an embedding (LCM'}) and runs no unconditional branch`
        : `the negative prompt has no effect at guidance ${req.guidance}: it steers only when guidance is above 1`,
    );
  }
  if (p.text) {
    // each pair was tokenized when it was encoded
    const pairs = conds.map((id) => p.text!.pair(id));
    out.tokens = pairs.map((pp) => pp.report);
    const cut = new Map(pairs.filter((x) => x.report.truncated).map((x) => [x.prompt, x.report]));
    for (const r of cut.values()) {
      warnings.push(`prompt truncated to ${p.text.tokenizers[0]!.maxLength - 2} tokens (it has ${Math.max(...r.tokens)}): dropped "${r.dropped}"`);
    }
  }
  if (p.codec && p.decoderSession) {
    out.latents = images;
    const dec = await decodeLatents(p.codec, p.decoderSession, images, p.index.sampleShape, req.signal, p.index.frames);
    out.images = dec.images;
    if (dec.nonFinite) warnings.push(overflowWarning(p.codec, dec.nonFinite, images.length));
    if (trajectory) {
      for (const [i, tr] of trajectory.entries()) trajectory[i] = (await decodeLatents(p.codec, p.decoderSession, tr, p.index.sampleShape, req.signal, p.index.frames)).images;
    }
  }
  if (warnings.length) out.warnings = warnings;
  out.timing.decode = (performance.now() - tLoop) / 1000;
  out.seconds = (performance.now() - t0) / 1000;
  return out;
}

/**
 * Whether a run doubles the batch for classifier-free guidance: class-conditional models when guidance != 1; text
 * models as diffusers does, when guidance > 1 and the unet takes no guidance embedding (LCM).
 */
export function guidedRun(p: Pipeline, guidance: number): boolean {
  // LCM and Flux take guidance as an input (Flux's pipeline runs no CFG batch, guidance-distilled or not)
  if (p.text) return guidance > 1 && !p.io.timestepCond && !p.io.packed;
  return p.io.classLabels !== null && guidance !== 1;
}

/**
 * Denoiser feeds for a batch (rows doubled with the null class, or the negative prompt, when guided). `labels` are
 * class labels, or for a text pipeline the ids of encoded prompt pairs (TextConditioner.ids). A quantized variant may
 * no longer read the timestep or labels directly (its time-only region was cut out) and may need extra inputs per
 * evaluation (activation parameters, cached temporal features). Float inputs take the graph's type (float16 too).
 */
export async function buildFeeds(p: Pipeline, x: Float64Array, t: number, labels: number[], guided: boolean, b: number, extra: ExtraFeeds | undefined = p.extraFeeds, guidance = 1): Promise<Record<string, FeedValue>> {
  const [C, H, W] = p.index.sampleShape;
  const size = C * H * W;
  const rows = guided ? 2 * b : b;
  const sampleData = new Float32Array(rows * size);
  sampleData.set(x);
  if (guided) sampleData.set(x, b * size);
  const feeds: Record<string, FeedValue> = {
    [p.io.sample]: p.io.packed
      ? floatFeed(p.io.sampleType ?? 'float32', packLatents(sampleData, rows, C, H, W), [rows, (H / 2) * (W / 2), 4 * C])
      : floatFeed(p.io.sampleType ?? 'float32', sampleData, p.io.video ? [rows, C, p.index.frames ?? 1, H / (p.index.frames ?? 1), W] : [rows, C, H, W]),
  };
  if (p.io.feedsTimestep !== false) feeds[p.io.timestep] = timestepInput(p, t * (p.io.timestepScale ?? 1), rows);
  if (p.io.guidanceInput) feeds[p.io.guidanceInput] = floatFeed(p.io.sampleType ?? 'float32', new Float32Array(rows).fill(guidance), [rows]);
  let lab: BigInt64Array | null = null;
  if (p.io.classLabels) {
    lab = new BigInt64Array(rows);
    labels.forEach((c, k) => (lab![k] = BigInt(c)));
    if (guided) lab.fill(BigInt(p.index.nullClass!), b);
    if (p.io.feedsClassLabels !== false) feeds[p.io.classLabels] = { type: 'int64', data: lab, dims: [rows] };
  }
  if (p.text) Object.assign(feeds, textFeeds(p, labels, guided, guidance));
  if (p.io.imgIds && p.io.txtIds) Object.assign(feeds, positionIds(p, feeds[p.io.encoderHiddenStates!]!.dims[1]!, rows));
  // a guidance input (Flux) feeds the same per-run region as the text: it keys the cached text features too
  const key = p.text ? `${labels.join(',')}|${guided || p.io.guidanceInput ? `g${guidance}` : 'u'}|${p.imageShape.join('x')}` : `${rows}`;
  if (extra) Object.assign(feeds, await extra(t, lab, rows, { feeds, key }));
  return feeds;
}

/** The text inputs of a batch: per-token states (and SDXL's pooled text and size ids, LCM's guidance embedding). */
function textFeeds(p: Pipeline, ids: number[], guided: boolean, guidance: number): Record<string, FeedValue> {
  const text = p.text!;
  const type = p.io.sampleType ?? 'float32';
  const pairs = ids.map((id) => text.pair(id));
  const rowsOf = <T>(pick: (pp: (typeof pairs)[number], uncond: boolean) => T) => [...pairs.map((pp) => pick(pp, false)), ...(guided ? pairs.map((pp) => pick(pp, true)) : [])];
  const feeds: Record<string, FeedValue> = {};
  const hidden = rowsOf((pp, u) => (u ? pp.uncond : pp.cond));
  const { seq, width } = hidden[0]!;
  const hs = new Float32Array(hidden.length * seq * width);
  hidden.forEach((e, r) => hs.set(e.hidden, r * seq * width));
  feeds[p.io.encoderHiddenStates!] = floatFeed(type, hs, [hidden.length, seq, width]);
  if (p.io.textMask) {
    const masks = hidden.map((e) => e.mask ?? new Uint8Array(seq).fill(1));
    const dims = [hidden.length, seq];
    if (p.io.textMaskType === 'float32') {
      const m = new Float32Array(hidden.length * seq);
      masks.forEach((v, r) => m.set(v, r * seq));
      feeds[p.io.textMask] = { type: 'float32', data: m, dims };
    } else {
      const m = new BigInt64Array(hidden.length * seq);
      masks.forEach((v, r) => v.forEach((x, k) => (m[r * seq + k] = BigInt(x))));
      feeds[p.io.textMask] = { type: 'int64', data: m, dims };
    }
  }
  if (p.io.resolution) feeds[p.io.resolution] = floatFeed(type, Float32Array.from({ length: 2 * hidden.length }, (_, k) => p.imageShape[1 + (k % 2)]!), [hidden.length, 2]);
  if (p.io.aspectRatio) feeds[p.io.aspectRatio] = floatFeed(type, new Float32Array(hidden.length).fill(p.imageShape[1] / p.imageShape[2]), [hidden.length, 1]);
  if (p.io.textEmbeds) {
    const n = hidden[0]!.pooled?.length ?? 0;
    const te = new Float32Array(hidden.length * n);
    hidden.forEach((e, r) => te.set(e.pooled!, r * n));
    feeds[p.io.textEmbeds] = floatFeed(type, te, [hidden.length, n]);
  }
  if (p.io.timeIds) {
    // [original H, W, crop top, crop left, target H, W] in pixels: diffusers' defaults for a plain text-to-image call
    const [, Hpx, Wpx] = p.imageShape;
    const n = p.io.widths?.timeIds ?? 6;
    const one = [Hpx, Wpx, 0, 0, Hpx, Wpx].slice(0, n);
    const ti = new Float32Array(hidden.length * n);
    for (let r = 0; r < hidden.length; r++) ti.set(one, r * n);
    feeds[p.io.timeIds] = floatFeed(type, ti, [hidden.length, n]);
  }
  if (p.io.timestepCond) {
    const n = p.io.widths?.timestepCond;
    if (!n) throw new DqError('BAD_MODEL', `${p.label ?? p.dir}: unet/model.onnx: the width of '${p.io.timestepCond}' is not fixed in the graph`);
    const emb = guidanceEmbedding(guidance, n);
    const tc = new Float32Array(hidden.length * n);
    for (let r = 0; r < hidden.length; r++) tc.set(emb, r * n);
    feeds[p.io.timestepCond] = floatFeed(type, tc, [hidden.length, n]);
  }
  return feeds;
}

/**
 * Flux's 2x2 packing: latents [rows, C, H, W] -> tokens [rows, (H/2)(W/2), 4C], token (i, j) holding channel c's
 * 2x2 patch at c*4 + 2*dy + dx (diffusers' _pack_latents: view (C, H/2, 2, W/2, 2), permute (H/2, W/2, C, 2, 2)).
 */
export function packLatents(x: Float32Array, rows: number, C: number, H: number, W: number): Float32Array {
  return repack(x, rows, C, H, W, true);
}

/** The inverse of packLatents. */
export function unpackLatents(t: Float32Array, rows: number, C: number, H: number, W: number): Float32Array {
  return repack(t, rows, C, H, W, false);
}

function repack(src: Float32Array, rows: number, C: number, H: number, W: number, pack: boolean): Float32Array {
  const out = new Float32Array(src.length);
  const w2 = W / 2;
  for (let r = 0; r < rows; r++) {
    const base = r * C * H * W;
    for (let i = 0; i < H / 2; i++) {
      for (let j = 0; j < w2; j++) {
        const tok = base + (i * w2 + j) * 4 * C;
        for (let c = 0; c < C; c++) {
          for (let dy = 0; dy < 2; dy++) {
            for (let dx = 0; dx < 2; dx++) {
              const packed = tok + c * 4 + dy * 2 + dx;
              const plain = base + c * H * W + (2 * i + dy) * W + 2 * j + dx;
              if (pack) out[packed] = src[plain]!;
              else out[plain] = src[packed]!;
            }
          }
        }
      }
    }
  }
  return out;
}

/** Flux's rotary position ids: img_ids (0, i, j) per packed token, txt_ids zeros per text token. */
function positionIds(p: Pipeline, textTokens: number, rows: number): Record<string, FeedValue> {
  const [, H, W] = p.index.sampleShape;
  const n = (H / 2) * (W / 2);
  const img = new Float64Array(n * 3);
  for (let k = 0; k < n; k++) {
    img[k * 3 + 1] = Math.floor(k / (W / 2));
    img[k * 3 + 2] = k % (W / 2);
  }
  const batched = p.io.idsRank === 3;
  const make = (v: Float64Array, m: number): FeedValue => {
    const reps = batched ? rows : 1;
    const dims = batched ? [rows, m, 3] : [m, 3];
    if (p.io.idsType === 'float32') {
      const d = new Float32Array(reps * v.length);
      for (let r = 0; r < reps; r++) d.set(v, r * v.length);
      return { type: 'float32', data: d, dims };
    }
    const d = new BigInt64Array(reps * v.length);
    for (let r = 0; r < reps; r++) v.forEach((x, k) => (d[r * v.length + k] = BigInt(x)));
    return { type: 'int64', data: d, dims };
  };
  return { [p.io.imgIds!]: make(img, n), [p.io.txtIds!]: make(new Float64Array(textTokens * 3), textTokens) };
}

/** The noise prediction the sampler uses: eps_uncond + w (eps_cond - eps_uncond) when guided. */
export function combineGuided(out: TensorOut, guidance: number, guided: boolean, b: number, size: number, layout: { packed?: [number, number, number]; learnedSigma?: boolean } = {}): Float64Array {
  let o = asFloat32(out, 'the unet output');
  const rows = guided ? 2 * b : b;
  if (layout.packed) o = unpackLatents(o, rows, ...layout.packed);
  if (layout.learnedSigma) {
    // [noise; variance] per row: the noise is the first half of each row's channels
    const noise = new Float32Array(rows * size);
    for (let r = 0; r < rows; r++) noise.set(o.subarray(2 * r * size, 2 * r * size + size), r * size);
    o = noise;
  }
  if (o.length !== rows * size) throw new DqError('BAD_MODEL', `unet output has ${o.length} values, expected ${rows * size}`);
  const eps = new Float64Array(b * size);
  if (!guided) {
    for (let j = 0; j < eps.length; j++) eps[j] = o[j]!;
  } else {
    const off = b * size;
    for (let j = 0; j < eps.length; j++) eps[j] = o[off + j]! + guidance * (o[j]! - o[off + j]!);
  }
  return eps;
}

/** One network evaluation for a batch, with classifier-free guidance when `guidance` != 1. */
async function denoise(
  p: Pipeline,
  session: Session,
  x: Float64Array,
  t: number,
  labels: number[],
  guidance: number,
  guided: boolean,
  b: number,
  size: number,
  req: SampleRequest,
  step: number,
): Promise<Float64Array> {
  const feeds = await buildFeeds(p, x, t, labels, guided, b, req.extraFeeds ?? p.extraFeeds, guidance);
  let out: TensorOut;
  try {
    out = await evaluate(p, session, feeds, req, step, t);
  } catch (e) {
    throw explainRunError(p, e, feeds);
  }
  return combineGuided(out, guidance, guided, b, size, outputLayout(p));
}

/** How the denoiser's output is laid out: Flux's packed tokens, PixArt's noise + variance channels. */
export function outputLayout(p: Pipeline): { packed?: [number, number, number]; learnedSigma?: boolean } {
  return { ...(p.io.packed ? { packed: p.index.sampleShape } : {}), ...(p.io.learnedSigma ? { learnedSigma: true } : {}) };
}

/** The network on a batch's feeds: the session, or at tapped steps the statistics model in chunks of rows. */
async function evaluate(p: Pipeline, session: Session, feeds: Record<string, FeedValue>, req: SampleRequest, step: number, t: number): Promise<TensorOut> {
  let out: TensorOut;
  if (req.tap && req.tap.steps.has(step)) {
    const rows = feeds[p.io.sample]!.dims[0]!;
    const chunk = Math.min(rows, req.tap.maxRows ?? rows);
    const parts: Float32Array[] = [];
    for (let r0 = 0; r0 < rows; r0 += chunk) {
      const part = chunk === rows ? feeds : sliceRows(feeds, r0, Math.min(rows, r0 + chunk));
      const res = await req.tap.session.run(part, [p.io.output, ...req.tap.fetch]);
      await req.tap.onOutputs(step, t, res, part);
      parts.push(res[p.io.output]!.data as Float32Array);
    }
    const data = parts.length === 1 ? parts[0]! : concat(parts);
    out = { type: 'float32', data, dims: [rows, ...feeds[p.io.sample]!.dims.slice(1)] };
  } else {
    out = (await session.run(feeds, [p.io.output]))[p.io.output]!;
  }
  return out;
}

/**
 * A failed evaluation that a label caused: a class label or the null class outside the unet's class embedding (a
 * Gather out of its table) says which label and which file, not the Gather's text.
 */
export function explainRunError(p: Pipeline, e: unknown, feeds: Record<string, FeedValue>): unknown {
  if (!(e instanceof DqError) || !e.detail || !p.io.classLabels) return e;
  const m = /Gather node[\s\S]*?out of (?:data )?bounds, idx=(-?\d+) must be within the inclusive range \[(-?\d+),\s*(-?\d+)\]/.exec(e.detail);
  if (!m) return e;
  const idx = Number(m[1]);
  const hi = Number(m[3]);
  const fed = feeds[p.io.classLabels]?.data;
  if (!(fed instanceof BigInt64Array) || !fed.includes(BigInt(idx))) return e;
  const where = idx === p.index.nullClass ? `${p.dir}: model_index.json: null_class ${idx}` : `class ${idx}`;
  return new DqError('BAD_CONFIG', `${where} is outside the unet's class embedding (labels 0-${hi})`, e.detail);
}

/** The denoiser's timestep input as its graph declares it: type (float16/int32 too) and rank (a scalar or one per row). */
export function timestepInput(p: Pipeline, t: number, rows: number): FeedValue {
  const type = p.io.timestepType;
  const n = p.io.timestepRank === 0 ? 1 : rows;
  const dims = p.io.timestepRank === 0 ? [] : [rows];
  if (type === 'int64') return { type, data: new BigInt64Array(n).fill(BigInt(Math.round(t))), dims };
  if (type === 'int32') return { type, data: new Int32Array(n).fill(Math.round(t)), dims };
  return floatFeed(type, new Float32Array(n).fill(t), dims);
}

/** A timestep input for `rows` rows as a graph's input metadata declares it (int64/int32 rounded, float16/32; a scalar when its rank is 0). */
export function timestepFeed(meta: IoMeta | undefined, t: number, rows: number): FeedValue {
  const scalar = meta?.shape?.length === 0;
  const n = scalar ? 1 : rows;
  const dims = scalar ? [] : [rows];
  const type = meta?.type ?? 'float32';
  if (type === 'int64') return { type, data: new BigInt64Array(n).fill(BigInt(Math.round(t))), dims };
  if (type === 'int32') return { type, data: new Int32Array(n).fill(Math.round(t)), dims };
  return floatFeed(type === 'float16' ? 'float16' : 'float32', new Float32Array(n).fill(t), dims);
}

/** Rows r0..r1-1 of every batched feed (rank >= 1); scalars pass through. */
export function sliceRows(feeds: Record<string, FeedValue>, r0: number, r1: number): Record<string, FeedValue> {
  const out: Record<string, FeedValue> = {};
  for (const [k, v] of Object.entries(feeds)) {
    if (v.dims.length === 0) {
      out[k] = v;
      continue;
    }
    const per = v.data.length / v.dims[0]!;
    out[k] = { ...v, data: v.data.subarray(r0 * per, r1 * per), dims: [r1 - r0, ...v.dims.slice(1)] } as FeedValue;
  }
  return out;
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
