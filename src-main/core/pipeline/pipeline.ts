/**
 * A diffusion pipeline on disk, in the diffusers ONNX layout: model_index.json names the components, each in its
 * folder (`unet/`, `scheduler/`, and for latent text-to-image pipelines `tokenizer(_2)/`, `text_encoder(_2)/`,
 * `vae_decoder/`). A pipeline is its components: a conditioner (none, class labels, or text: tokenizers + encoders,
 * text.ts), the denoiser, a latent codec (none, or the VAE decoder, codec.ts) and the scheduler. Shapes come from the
 * graphs and the component configs (unet/config.json's sample_size, the VAE's factor), never from a private field.
 * Loading validates the layout and the denoiser's inputs and says exactly what is wrong when it is not one.
 *
 * This layer knows nothing of quantized variants or exports: a variant or an export replaces the denoiser component
 * and nothing else, and how its denoiser is loaded is decided above (core/open.ts, with quant/variant.ts and
 * export/load.ts) and handed in as a DenoiserLoader.
 */
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DqError } from '../errors.js';
import { readJson } from '../fsutil.js';
import { familyOf, type Family } from './components.js';
import { Session, type Provider, type IoMeta } from '../runtime/onnx.js';
import { defaultSampler, isFlowConfig, parseSchedulerConfig, type SamplerName, type SchedulerConfig } from './schedulers.js';
import { MAX_GUIDANCE, type ExtraFeeds } from './sample.js';
import { resolveCodec, type LatentCodec } from './codec.js';
import { isFloatType, type FloatType } from './dtypes.js';
import { loadPipelineTokenizer, resolveEncoder, TextConditioner, tokenizerFolder, type TextEncoderSpec, type TextKind } from './text.js';
import { loadT5Tokenizer } from './t5-tokenizer.js';

export interface PipelineIndex {
  className: string;
  family: Family | null;
  /** Class names, index = class label; empty for unconditional models. */
  classes: string[];
  /** Label fed for the unconditional branch of classifier-free guidance (null when the model has none). */
  nullClass: number | null;
  /** [C, H, W] of one sample as the denoiser sees it (latents for a latent pipeline), at the pipeline's size. A video
   * pipeline's sample is its frames stacked along H ([C, F h, w]: the same values in the same order as the denoiser's
   * [C, F, h, w]), so that samplers, noise and image tools take a video as one tall image, a filmstrip. */
  sampleShape: [number, number, number];
  /** A video pipeline's frames per sample (F); absent for images. */
  frames?: number;
  /** Where sampleShape came from (the graph, unet/config.json, --height/--width, ...), for messages. */
  shapeSource: string;
  defaultGuidance: number;
  /** The sampler scheduler_config.json's _class_name names (ddim when it names none of ours). */
  defaultSampler: SamplerName;
  components: Record<string, [string, string]>;
}

export interface UnetIO {
  sample: string;
  /** float32 unless the graph is fp16 (absent in manifests written before fp16 support: float32). */
  sampleType?: FloatType;
  timestep: string;
  timestepType: 'float32' | 'float16' | 'int64' | 'int32';
  /** 0: a scalar timestep (Optimum); 1 (or absent): one per row. */
  timestepRank?: 0 | 1;
  classLabels: string | null;
  /** Text conditioning: per-token states [rows, tokens, width]. */
  encoderHiddenStates?: string | null;
  /** SDXL: the pooled text projection [rows, n] and the size conditioning [rows, 6]. */
  textEmbeds?: string | null;
  timeIds?: string | null;
  /** LCM: the guidance embedding [rows, n]. */
  timestepCond?: string | null;
  /** Static widths where the graph states them. */
  widths?: { encoderHiddenStates: number | null; textEmbeds: number | null; timeIds: number | null; timestepCond: number | null };
  output: string;
  /** Flux: latents packed 2x2 into tokens ([rows, (h/2)(w/2), 4C] in and out), rotary position ids and the
   * guidance input; the timestep is fed as sigma (t / 1000). */
  packed?: boolean;
  imgIds?: string | null;
  txtIds?: string | null;
  /** [n, 3] (diffusers >= 0.31) or [rows, n, 3] (earlier exports); int64 (Optimum) or float32 (TensorRT, ModelOpt). */
  idsRank?: 2 | 3;
  idsType?: 'int64' | 'float32';
  /** A guidance-distilled transformer's guidance input (Flux-dev): fed the guidance scale, no CFG batch. */
  guidanceInput?: string | null;
  /** What the timestep input is fed: t x timestepScale (Flux: 1/1000, sigma). */
  timestepScale?: number;
  /** PixArt: the text's attention mask [rows, tokens] (1 up to and including </s>), and its type. */
  textMask?: string | null;
  textMaskType?: 'int64' | 'float32';
  /** PixArt-α at 1024 px: the size conditioning ([H, W] pixels, H / W). */
  resolution?: string | null;
  aspectRatio?: string | null;
  /** The output holds the noise and a learned variance (2C channels, PixArt): the sampler reads the first C. */
  learnedSigma?: boolean;
  /** A video denoiser: sample [B, C, F, H, W] (diffusers' UNet3DConditionModel), frames on axis 2. */
  video?: boolean;
  /** False when a variant's denoiser no longer reads the input (its time-only region was cut out). */
  feedsTimestep?: boolean;
  feedsClassLabels?: boolean;
}

export interface Pipeline {
  dir: string;
  /** The folder as the user named it (for messages). */
  label?: string;
  provider?: Provider;
  index: PipelineIndex;
  /** Text conditioning (tokenizers + encoders), or null. */
  text: TextConditioner | null;
  /** The VAE decoder for a latent pipeline, or null (the denoiser works in pixel space). */
  codec: LatentCodec | null;
  /** [C, H, W] of one output image. */
  imageShape: [number, number, number];
  /** How many times the unet halves its input (0 when its config does not say); a transformer: log2 of its patch size. */
  unetHalvings: number;
  /** The denoiser's folder: 'unet' or 'transformer' (a DiT). */
  denoiser?: 'unet' | 'transformer';
  /** A transformer's patch size (1 for a unet): the image's token count is (h / patch) (w / patch). */
  patchSize?: number;
  scheduler: SchedulerConfig;
  /** The VAE decoder's session (null without a codec). */
  decoderSession: Session | null;
  unetPath: string;
  /** Inputs and outputs as onnxruntime reports them. */
  unetInputs: IoMeta[];
  unetOutputs: IoMeta[];
  io: UnetIO;
  /** A quantized variant's extra inputs per network evaluation (activation parameters, temporal features). */
  extraFeeds?: ExtraFeeds;
  /** The variant's manifest, when this pipeline is a quantized variant. */
  variant?: { recipe: string; simulated: boolean };
  /** Things the user should know about running this pipeline here (e.g. an export whose kernels are wrong on this CPU). */
  warnings?: string[];
  /** An export with int8-kernel layers: the weight storage it was exported with, the one it runs with here, and why. */
  int8Weights?: { exported: string; loaded: string; why: string };
}

const SAMPLE_NAMES = ['sample', 'x', 'latent', 'latents', 'noisy_sample', 'hidden_states'];
const TIMESTEP_NAMES = ['timestep', 'timesteps', 't', 'time', 'sigma'];
const CLASS_NAMES = ['class_labels', 'class_label', 'labels', 'y', 'class'];


/** A family that model_index.json names and the studio cannot sample yet: one line that says which (components.ts). */
function unsupportedFamily(dir: string, index: unknown): void {
  const raw = index as { _class_name?: unknown } | null;
  const cls = raw && typeof raw === 'object' && typeof raw._class_name === 'string' ? raw._class_name : undefined;
  const family = familyOf(cls);
  if (family && !family.sampled) {
    throw new DqError('UNSUPPORTED', `${dir} is a ${family.name} pipeline (${cls}, ${family.task}): DQ Studio cannot sample or quantize ${family.task} pipelines yet; dq info ${dir} shows its components`);
  }
}

/**
 * The denoiser's folder: `transformer/` for a DiT pipeline (SD3, Flux: model_index.json names a transformer, or only
 * that folder exists), `unet/` otherwise.
 */
export function denoiserFolder(dir: string, index?: unknown): 'unet' | 'transformer' {
  const named = index && typeof index === 'object' && Array.isArray((index as Record<string, unknown>).transformer) && ((index as Record<string, unknown[]>).transformer![1] ?? null) !== null;
  if (named || (!existsSync(join(dir, 'unet', 'model.onnx')) && existsSync(join(dir, 'transformer', 'model.onnx')))) return 'transformer';
  return 'unet';
}

/** Validates the folder layout (no model is loaded); `index` is model_index.json as read, for the loader to parse. */
export function locatePipeline(dir: string): { dir: string; unetPath: string; denoiser: 'unet' | 'transformer'; schedulerPath: string; indexPath: string; index: unknown } {
  const abs = resolve(dir);
  if (!existsSync(abs)) throw new DqError('NOT_FOUND', `no such file or folder: ${dir}`);
  if (!statSync(abs).isDirectory()) {
    const hint = abs.endsWith('.onnx')
      ? 'a single ONNX file is not a pipeline; pass the folder that holds model_index.json, unet/model.onnx and scheduler/scheduler_config.json'
      : 'a pipeline is a folder with model_index.json, unet/model.onnx and scheduler/scheduler_config.json';
    throw new DqError('NOT_A_PIPELINE', `${dir} is a file: ${hint}`);
  }
  const indexPath = join(abs, 'model_index.json');
  if (!existsSync(indexPath)) {
    throw new DqError('NOT_A_PIPELINE', `${dir} is not a diffusion pipeline: model_index.json is missing (expected the diffusers ONNX layout)`);
  }
  const index = readJson(indexPath, 'model_index.json');
  unsupportedFamily(dir, index);
  const denoiser = denoiserFolder(abs, index);
  const unetPath = join(abs, denoiser, 'model.onnx');
  if (!existsSync(unetPath)) throw new DqError('MISSING_COMPONENT', `${dir}: component '${denoiser}' is missing (no ${denoiser}/model.onnx)`);
  const schedulerPath = join(abs, 'scheduler', 'scheduler_config.json');
  if (!existsSync(schedulerPath)) {
    throw new DqError('MISSING_COMPONENT', `${dir}: component 'scheduler' is missing (no scheduler/scheduler_config.json)`);
  }
  return { dir: abs, unetPath, denoiser, schedulerPath, indexPath, index };
}

/** Largest sample a pipeline may declare: values per image, and per dimension. */
export const MAX_SAMPLE_VALUES = 1 << 24;
export const MAX_SAMPLE_DIM = 16384;

/** model_index.json, parsed: everything but the sample shape, which comes from the components (sampleShapeOf). */
function parseIndex(raw: unknown, path: string): Omit<PipelineIndex, 'sampleShape' | 'shapeSource' | 'defaultSampler' | 'frames'> & { legacyShape: [number, number, number] | null; defaultFrames: number | null } {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new DqError('BAD_CONFIG', `${path}: expected a JSON object`);
  const o = raw as Record<string, unknown>;
  const bad = (field: string, why: string, got: unknown) => new DqError('BAD_CONFIG', `${path}: field '${field}' ${why}, got ${JSON.stringify(got) ?? String(got)}`);
  const components: Record<string, [string, string]> = {};
  for (const [k, v] of Object.entries(o)) {
    if (!k.startsWith('_') && Array.isArray(v) && v.length === 2 && v.every((s) => typeof s === 'string')) components[k] = v as [string, string];
  }
  let classes: string[] = [];
  if (o.classes !== undefined && o.classes !== null) {
    if (!Array.isArray(o.classes) || !o.classes.every((c) => typeof c === 'string' || (typeof c === 'number' && Number.isFinite(c)))) {
      throw bad('classes', 'must be a list of class names', o.classes);
    }
    classes = o.classes.map(String);
  }
  let nullClass: number | null = null;
  if (o.null_class !== undefined && o.null_class !== null) {
    if (typeof o.null_class !== 'number' || !Number.isSafeInteger(o.null_class) || o.null_class < 0) {
      throw bad('null_class', 'must be a label (an integer >= 0) or null', o.null_class);
    }
    if (o.null_class < classes.length) {
      throw bad('null_class', `must be a label of its own, not one of the classes 0-${classes.length - 1}`, o.null_class);
    }
    nullClass = o.null_class;
  }
  // folders written by DQ Studio before components carried the shape: read, never written
  let legacyShape: [number, number, number] | null = null;
  const dims = o.sample_shape;
  if (dims !== undefined) {
    if (!Array.isArray(dims) || dims.length !== 3 || !dims.every((n) => Number.isSafeInteger(n) && n > 0)) {
      throw new DqError('BAD_CONFIG', `${path}: field 'sample_shape' must be [channels, height, width] (positive integers)`);
    }
    legacyShape = dims as [number, number, number];
  }
  if (o._class_name !== undefined && typeof o._class_name !== 'string') throw bad('_class_name', 'must be a string', o._class_name);
  const className = typeof o._class_name === 'string' ? o._class_name : 'unknown';
  const family = familyOf(className);
  const textual = family?.task === 'text-to-image' || family?.task === 'text-to-video';
  let defaultGuidance = textual ? (DEFAULT_TEXT_GUIDANCE[className] ?? 7.5) : 1;
  if (o.default_guidance !== undefined && o.default_guidance !== null) {
    const g = o.default_guidance;
    if (typeof g !== 'number' || !(g >= 0 && g <= MAX_GUIDANCE)) throw bad('default_guidance', `must be a number from 0 to ${MAX_GUIDANCE}`, g);
    defaultGuidance = g;
  }
  let defaultFrames: number | null = null;
  if (o.default_frames !== undefined && o.default_frames !== null) {
    const f = o.default_frames;
    if (typeof f !== 'number' || !Number.isSafeInteger(f) || f < 1 || f > MAX_FRAMES) throw bad('default_frames', `must be a whole number of frames from 1 to ${MAX_FRAMES}`, f);
    defaultFrames = f;
  }
  return { className, family, classes, nullClass, legacyShape, defaultGuidance, defaultFrames, components };
}

/** The most frames a video sample may have. */
export const MAX_FRAMES = 256;
/** diffusers' TextToVideoSDPipeline samples 16 frames unless told otherwise. */
const DEFAULT_VIDEO_FRAMES = 16;

/** diffusers' default guidance_scale per pipeline class (StableDiffusionPipeline and the legacy ONNX one: 7.5). */
const DEFAULT_TEXT_GUIDANCE: Record<string, number> = { TextToVideoSDPipeline: 9, StableDiffusionXLPipeline: 5, LatentConsistencyModelPipeline: 8.5, StableDiffusion3Pipeline: 7, FluxPipeline: 3.5, PixArtAlphaPipeline: 4.5, PixArtSigmaPipeline: 4.5 };

function checkShapeSize(shape: number[], where: string): void {
  if (shape.some((n) => n > MAX_SAMPLE_DIM) || shape.reduce((a, b) => a * b, 1) > MAX_SAMPLE_VALUES) {
    throw new DqError('BAD_CONFIG', `${where} [${shape.join(', ')}] is too large (at most ${MAX_SAMPLE_DIM} per dimension and ${MAX_SAMPLE_VALUES} values per sample)`);
  }
}

/**
 * The denoiser's sample [C, h, w] at the pipeline's default size: the graph's static dimensions first, then
 * unet/config.json (in_channels, sample_size, as diffusers derives the default size), then the legacy ONNX
 * pipeline's 512x512 images.
 */
function sampleShapeOf(dir: string, label: string, sample: IoMeta, legacyShape: [number, number, number] | null, codec: LatentCodec | null, legacyPipeline: boolean, cfg: Record<string, unknown> | null, folder = 'unet', packed = false): { shape: [number, number, number]; source: string } {
  if (packed) {
    // Flux: in_channels counts the packed 2x2 channels; the default size is diffusers' default_sample_size (128
    // latents, 1024-pixel images) unless the config names a sample_size
    const inC = typeof cfg?.in_channels === 'number' ? cfg.in_channels : (sample.shape?.[2] as number | undefined);
    const C = typeof inC === 'number' && inC > 0 && inC % 4 === 0 ? inC / 4 : (codec?.latentChannels ?? null);
    if (C === null) throw new DqError('BAD_MODEL', `${label}: cannot tell the latent channels: ${folder}/config.json gives no in_channels`);
    const ss = cfg?.sample_size;
    const n = typeof ss === 'number' && Number.isSafeInteger(ss) && ss > 0 ? ss : 128;
    const shape: [number, number, number] = [C, n, n];
    checkShapeSize(shape, `${label}: the sample`);
    return { shape, source: typeof ss === 'number' ? `${folder}/config.json: sample_size` : "Flux's default (128 latents, diffusers' default_sample_size)" };
  }
  // a video sample [B, C, F, H, W]: its height and width are axes 3 and 4
  const video = sample.shape?.length === 5;
  const st = (k: number) => {
    const d = sample.shape?.[video && k >= 2 ? k + 1 : k];
    return typeof d === 'number' && d > 0 ? d : null;
  };
  const cfgNum = (v: unknown) => (typeof v === 'number' && Number.isSafeInteger(v) && v > 0 ? v : null);
  const size = cfg ? cfg.sample_size : undefined;
  const cfgHW: [number, number] | null =
    cfgNum(size) !== null ? [size as number, size as number] : Array.isArray(size) && size.length === 2 && size.every((v) => cfgNum(v) !== null) ? (size as [number, number]) : null;
  // the legacy ONNX pipeline hard-codes 4 latent channels and 512x512 images (height // 8)
  const C = st(1) ?? (cfg ? cfgNum(cfg.in_channels) : null) ?? codec?.latentChannels ?? (legacyPipeline && codec ? 4 : null);
  // an explicit sample_shape (folders of earlier DQ Studio versions) is taken as stated, and checked against the graph
  if (legacyShape) {
    checkShapeSize(legacyShape, `${join(dir, 'model_index.json')}: field 'sample_shape'`);
    return { shape: legacyShape, source: 'model_index.json: sample_shape' };
  }
  let hw: [number, number] | null = st(2) && st(3) ? [st(2)!, st(3)!] : null;
  let source = `${folder}/model.onnx`;
  if (!hw && cfgHW) [hw, source] = [cfgHW, `${folder}/config.json: sample_size`];
  if (!hw && legacyPipeline && codec) [hw, source] = [[512 / codec.factor, 512 / codec.factor], 'the legacy ONNX pipeline default (512x512 images)'];
  if (C === null || !hw) {
    throw new DqError('BAD_MODEL', `${label}: cannot tell the sample size: ${folder}/model.onnx has dynamic dimensions and ${folder}/config.json gives no ${C === null ? 'in_channels' : 'sample_size'}${codec ? ' (pass --height and --width)' : ''}`);
  }
  const shape: [number, number, number] = [C, hw[0], hw[1]];
  checkShapeSize(shape, `${label}: the sample`);
  return { shape, source };
}

const TEXT_NAMES = ['encoder_hidden_states', 'text_embeddings', 'context'];

/** Finds the denoiser's inputs by name, then by rank and type. */
export function resolveUnetIO(inputs: IoMeta[], outputs: IoMeta[], where: string, runtimeInputs: string[] = []): UnetIO {
  const extraAllowed = new Set(runtimeInputs);
  inputs = inputs.filter((m) => !extraAllowed.has(m.name));
  const byName = (names: string[]) => inputs.find((m) => names.includes(m.name.toLowerCase()));
  const rank = (m: IoMeta) => m.shape?.length ?? -1;
  const sample = byName(SAMPLE_NAMES) ?? inputs.find((m) => (rank(m) === 4 || rank(m) === 5) && isFloatType(m.type));
  // Flux: rotary ids and a guidance input beside packed latents
  const imgIds = inputs.find((m) => m.name === 'img_ids');
  const txtIds = inputs.find((m) => m.name === 'txt_ids');
  const guidanceIn = imgIds ? inputs.find((m) => m.name === 'guidance') : undefined;
  // PixArt: the caption's attention mask and (PixArt-α 1024) the size conditioning
  const textMask = inputs.find((m) => m.name === 'encoder_attention_mask');
  const resolution = inputs.find((m) => m.name === 'resolution');
  const aspectRatio = inputs.find((m) => m.name === 'aspect_ratio');
  inputs = inputs.filter((m) => m !== imgIds && m !== txtIds && m !== guidanceIn && m !== textMask && m !== resolution && m !== aspectRatio);
  const timestep =
    byName(TIMESTEP_NAMES) ?? inputs.find((m) => m !== sample && rank(m) <= 1 && (isFloatType(m.type) || m.type === 'int64'));
  if (sample && rank(sample) === 3 && !imgIds) {
    throw new DqError('NOT_DIFFUSION', `${where}: its sample input '${sample.name}' is packed tokens [B, tokens, channels] but it has no img_ids input (Flux's convention)`);
  }
  if (imgIds && (!txtIds || (sample && rank(sample) !== 3))) {
    throw new DqError('NOT_DIFFUSION', `${where}: img_ids without ${txtIds ? `packed latents (its '${sample?.name}' is not [B, tokens, channels])` : 'txt_ids'}: not Flux's convention`);
  }
  if (!sample || !timestep) {
    const have = inputs.map((m) => `${m.name}${m.shape ? `[${m.shape.join(',')}]` : ''}`).join(', ');
    throw new DqError(
      'NOT_DIFFUSION',
      `${where} is not a diffusion denoiser: it needs a sample input [B,C,H,W] and a timestep input [B]; its inputs are ${have || 'none'}`,
    );
  }
  if (!['float32', 'float16', 'int64', 'int32'].includes(timestep.type)) {
    throw new DqError('NOT_DIFFUSION', `${where}: timestep input '${timestep.name}' has type ${timestep.type}; float32, float16 or int64 expected`);
  }
  const named = (n: string) => inputs.find((m) => m.name === n && m !== sample && m !== timestep);
  const text = byName(TEXT_NAMES) ?? inputs.find((m) => m !== sample && rank(m) === 3 && isFloatType(m.type));
  // SDXL's pooled text projection; a transformer's (SD3, Flux) pooled_projections plays the same part
  const textEmbeds = named('text_embeds') ?? named('pooled_projections');
  const timeIds = named('time_ids');
  const timestepCond = named('timestep_cond');
  const taken = new Set([sample, timestep, text, textEmbeds, timeIds, timestepCond]);
  const classLabels = byName(CLASS_NAMES) ?? inputs.find((m) => !taken.has(m) && m.type === 'int64' && rank(m) === 1);
  const extra = inputs.filter((m) => !taken.has(m) && m !== classLabels);
  if (extra.length) {
    throw new DqError('NOT_DIFFUSION', `${where}: unsupported extra inputs ${extra.map((m) => m.name).join(', ')}`);
  }
  const output = outputs[0];
  if (!output) throw new DqError('NOT_DIFFUSION', `${where} has no outputs`);
  const last = (m: IoMeta | undefined) => {
    const d = m?.shape?.[m.shape.length - 1];
    return typeof d === 'number' && d > 0 ? d : null;
  };
  const io: UnetIO = {
    sample: sample.name,
    sampleType: sample.type as FloatType,
    timestep: timestep.name,
    timestepType: timestep.type as UnetIO['timestepType'],
    timestepRank: rank(timestep) === 0 ? 0 : 1,
    classLabels: classLabels?.name ?? null,
    output: output.name,
  };
  if (rank(sample) === 5) io.video = true;
  if (textMask) {
    if (!['int64', 'float32'].includes(textMask.type)) throw new DqError('NOT_DIFFUSION', `${where}: encoder_attention_mask has type ${textMask.type}; int64 or float32 expected`);
    Object.assign(io, { textMask: textMask.name, textMaskType: textMask.type });
  }
  if (resolution || aspectRatio) Object.assign(io, { resolution: resolution?.name ?? null, aspectRatio: aspectRatio?.name ?? null });
  if (imgIds && txtIds) {
    if (rank(imgIds) !== rank(txtIds) || ![2, 3].includes(rank(imgIds)) || imgIds.type !== txtIds.type || !['int64', 'float32'].includes(imgIds.type)) {
      throw new DqError('NOT_DIFFUSION', `${where}: img_ids and txt_ids must both be [n, 3] (or [batch, n, 3]) int64 or float32; they are ${imgIds.type}[${imgIds.shape?.join(',') ?? '?'}] and ${txtIds.type}[${txtIds.shape?.join(',') ?? '?'}]`);
    }
    Object.assign(io, { packed: true, imgIds: imgIds.name, txtIds: txtIds.name, idsRank: rank(imgIds) as 2 | 3, idsType: imgIds.type, guidanceInput: guidanceIn?.name ?? null, timestepScale: 1 / 1000 });
  }
  if (text || textEmbeds || timeIds || timestepCond) {
    Object.assign(io, {
      encoderHiddenStates: text?.name ?? null,
      textEmbeds: textEmbeds?.name ?? null,
      timeIds: timeIds?.name ?? null,
      timestepCond: timestepCond?.name ?? null,
      widths: { encoderHiddenStates: last(text), textEmbeds: last(textEmbeds), timeIds: last(timeIds), timestepCond: last(timestepCond) },
    });
  }
  return io;
}

const sessions = new Map<string, Promise<Session>>();

/**
 * One cached inference session per (model file, provider, form). `form` names a different way of loading the same
 * file (e.g. 's8': an export's int8 weights rewritten at load) and `make` creates that session; without them the file
 * is loaded as it is.
 */
export function cachedSession(path: string, provider: Provider, opts: { label?: string; form?: string; make?: () => Promise<Session> } = {}): Promise<Session> {
  const key = `${provider}\0${resolve(path)}\0${statSync(path).mtimeMs}${opts.form ? `\0${opts.form}` : ''}`;
  let s = sessions.get(key);
  if (!s) {
    s = opts.make ? opts.make() : Session.create(path, provider, { label: opts.label ?? path });
    sessions.set(key, s);
    s.catch(() => sessions.delete(key));
  }
  return s;
}

/** One cached inference session per (model file, provider). */
export async function sessionFor(path: string, provider: Provider): Promise<Session> {
  return cachedSession(path, provider);
}

/** Releases the cached sessions of one model file (every provider and form): the others stay usable. */
export async function releaseSession(path: string): Promise<void> {
  const file = resolve(path);
  const mine = [...sessions.entries()].filter(([k]) => k.split('\0')[1] === file);
  for (const [k] of mine) sessions.delete(k);
  await Promise.allSettled(mine.map(async ([, p]) => (await p).release()));
}

export async function releaseSessions(): Promise<void> {
  const all = [...sessions.values()];
  sessions.clear();
  await Promise.allSettled(all.map(async (p) => (await p).release()));
}

/** What a DenoiserLoader is given: the pipeline's folder and its denoiser file. */
export interface DenoiserContext {
  /** Absolute folder. */
  dir: string;
  /** The folder as the user named it (for messages). */
  label: string;
  unetPath: string;
  provider: Provider;
}

/** A denoiser component loaded some other way than as the plain graph (a quantized variant's, an export's). */
export interface DenoiserLoad {
  session: Session;
  /** Its inputs and outputs when they are not to be found from the graph (a variant keeps its source's). */
  io?: UnetIO;
  /** Inputs the component feeds itself per evaluation (left out when the graph's I/O is searched). */
  runtimeInputs?: string[];
  /** Completes the pipeline once its I/O is known: extra feeds, what the variant is, warnings. */
  complete?: (p: Pipeline) => Promise<void>;
}

/** Loads the denoiser of the pipeline at `ctx.dir`, or returns null for the plain graph. */
export type DenoiserLoader = (ctx: DenoiserContext) => Promise<DenoiserLoad | null>;

/**
 * Loads a pipeline: its config, scheduler, denoiser session, and for a text-to-image pipeline its tokenizers, text
 * encoders and VAE decoder. `denoiser` decides how the denoiser component is loaded when it is not the plain graph
 * (core/open.ts passes the one that knows variants and exports).
 */
export async function loadPipeline(dir: string, provider: Provider = 'cpu', denoiser?: DenoiserLoader): Promise<{ pipeline: Pipeline; session: Session }> {
  const loc = locatePipeline(dir);
  const parsed = parseIndex(loc.index, loc.indexPath);
  const schedulerRaw = readJson(loc.schedulerPath, 'scheduler_config.json');
  const scheduler = parseSchedulerConfig(schedulerRaw, loc.schedulerPath);
  const custom = denoiser ? await denoiser({ dir: loc.dir, label: dir, unetPath: loc.unetPath, provider }) : null;
  const folder = loc.denoiser;
  const session = custom?.session ?? (await cachedSession(loc.unetPath, provider, { label: `${dir}: ${folder}/model.onnx` }));
  const io = custom?.io ?? resolveUnetIO(session.inputs, session.outputs, `${dir}/${folder}/model.onnx`, custom?.runtimeInputs ?? []);
  const flow = isFlowConfig(scheduler);
  if (flow && parsed.family?.task === 'text-to-image' && folder !== 'transformer') {
    throw new DqError('BAD_MODEL', `${dir}: a flow-matching scheduler (${String(scheduler._class_name)}) with a unet: DQ Studio samples flow matching with transformer denoisers (SD3, Flux)`);
  }
  if (parsed.nullClass !== null && !io.classLabels) {
    throw new DqError('BAD_CONFIG', `${dir}: model_index.json names a null class but the unet has no class-label input`);
  }
  const legacy = parsed.className.startsWith('Onnx');
  const unetCfgPath = join(loc.dir, folder, 'config.json');
  const unetCfg = existsSync(unetCfgPath) ? (readJson(unetCfgPath, `${folder}/config.json`) as Record<string, unknown>) : null;
  const textKind: TextKind = io.packed ? 'flux' : folder === 'transformer' ? (parsed.className.startsWith('PixArt') || (io.textMask && !io.textEmbeds) ? 'pixart' : 'sd3') : io.textEmbeds ? 'sdxl' : 'clip';
  const text = io.encoderHiddenStates ? await loadText(loc.dir, dir, provider, io, loc.index, textKind, unetCfg) : null;
  if (!text && (io.textEmbeds || io.timeIds)) throw new DqError('NOT_DIFFUSION', `${dir}/${folder}/model.onnx: it takes ${io.textEmbeds ?? 'text_embeds'}/time_ids but no encoder_hidden_states`);
  let codec: LatentCodec | null = null;
  let decoderSession: Session | null = null;
  const vaePath = join(loc.dir, 'vae_decoder', 'model.onnx');
  if (existsSync(vaePath)) {
    decoderSession = await cachedSession(vaePath, provider, { label: `${dir}: vae_decoder/model.onnx` });
    codec = resolveCodec(loc.dir, dir, legacy, decoderSession.inputs, decoderSession.outputs);
  } else if (parsed.family?.task === 'text-to-image' || parsed.family?.task === 'text-to-video' || parsed.components.vae || parsed.components.vae_decoder) {
    throw new DqError('MISSING_COMPONENT', `${dir}: component 'vae_decoder' is missing (no vae_decoder/model.onnx): a latent pipeline needs it to make images`);
  }
  const sampleMeta = session.inputs.find((m) => m.name === io.sample) ?? { name: io.sample, type: 'float32', shape: null };
  const frameShape = sampleShapeOf(loc.dir, dir, sampleMeta, parsed.legacyShape, codec, legacy, unetCfg, folder, io.packed === true);
  // a video: frames from the graph's static axis 2, else model_index.json's default_frames, else diffusers' 16
  const fixedFrames = io.video && typeof sampleMeta.shape?.[2] === 'number' && sampleMeta.shape[2] > 0 ? sampleMeta.shape[2] : null;
  const frames = io.video ? (fixedFrames ?? parsed.defaultFrames ?? DEFAULT_VIDEO_FRAMES) : undefined;
  const shape: [number, number, number] = frames ? [frameShape.shape[0], frames * frameShape.shape[1], frameShape.shape[2]] : frameShape.shape;
  if (frames) checkShapeSize(shape, `${dir}: the video sample (${frames} frames)`);
  const source = frames ? `${frameShape.source}; ${frames} frames from ${fixedFrames ? `${folder}/model.onnx` : parsed.defaultFrames ? 'model_index.json: default_frames' : "diffusers' default (16)"}` : frameShape.source;
  // PixArt's transformers predict the noise and a variance (2C channels); the pipeline reads the noise
  const outMeta = session.outputs.find((m) => m.name === io.output);
  const outC = typeof outMeta?.shape?.[1] === 'number' && outMeta.shape[1] > 0 ? outMeta.shape[1] : typeof unetCfg?.out_channels === 'number' ? unetCfg.out_channels : null;
  if (!io.packed && outC === 2 * shape[0]) io.learnedSigma = true;
  // the unet halves the latents once per down block but the last (unet/config.json's block_out_channels); a
  // transformer cuts them into patch_size x patch_size patches
  const blocks = unetCfg?.block_out_channels;
  const patch = io.packed ? 2 : folder === 'transformer' && typeof unetCfg?.patch_size === 'number' && Number.isSafeInteger(unetCfg.patch_size) && unetCfg.patch_size > 0 ? unetCfg.patch_size : 1;
  if (folder === 'transformer' && 2 ** Math.round(Math.log2(patch)) !== patch) throw new DqError('BAD_CONFIG', `${dir}: transformer/config.json: patch_size ${patch} is not a power of two`);
  const unetHalvings = folder === 'transformer' ? Math.round(Math.log2(patch)) : Array.isArray(blocks) && blocks.length > 1 ? blocks.length - 1 : 0;
  if (codec && codec.latentChannels !== null && codec.latentChannels !== shape[0]) {
    throw new DqError('BAD_MODEL', `${dir}: the unet's samples have ${shape[0]} channels but vae_decoder/model.onnx takes ${codec.latentChannels}`);
  }
  const { legacyShape: _legacy, defaultFrames: _frames, ...rest } = parsed;
  void _legacy;
  void _frames;
  const sampler = schedulerRaw && typeof schedulerRaw === 'object' ? defaultSampler(schedulerRaw as Record<string, unknown>) : undefined;
  const index: PipelineIndex = { ...rest, sampleShape: shape, shapeSource: source, defaultSampler: sampler ?? 'ddim', ...(frames ? { frames } : {}) };
  const pipeline: Pipeline = {
    dir: loc.dir,
    label: dir,
    provider,
    index,
    text,
    codec,
    decoderSession,
    imageShape: imageShapeOf(codec, shape),
    unetHalvings,
    scheduler,
    denoiser: folder,
    patchSize: patch,
    unetPath: loc.unetPath,
    unetInputs: session.inputs,
    unetOutputs: session.outputs,
    io,
  };
  await custom?.complete?.(pipeline);
  return { pipeline, session };
}

function imageShapeOf(codec: LatentCodec | null, shape: [number, number, number]): [number, number, number] {
  return codec ? [codec.imageChannels, shape[1] * codec.factor, shape[2] * codec.factor] : shape;
}

/**
 * The pipeline at another image size (--height/--width, in pixels): both must be multiples of the VAE's factor, and
 * agree with the denoiser where its graph fixes the size. Returns a new pipeline object; the sessions are shared.
 */
export function withImageSize(p: Pipeline, height: number | undefined, width: number | undefined): Pipeline {
  if (height === undefined && width === undefined) return p;
  const f = p.codec?.factor ?? 1;
  const F = p.index.frames ?? 1;
  const [C, hs0, w0] = p.index.sampleShape;
  const h0 = hs0 / F;
  const H = height ?? h0 * f;
  const W = width ?? w0 * f;
  for (const [name, v] of [['height', H], ['width', W]] as const) {
    if (!Number.isSafeInteger(v) || v < 1) throw new DqError('BAD_ARGUMENT', `--${name} must be a positive whole number of pixels, got ${v}`);
    if (v % f !== 0) {
      throw new DqError('BAD_ARGUMENT', `--${name} ${v} is not a multiple of ${f}, the VAE's factor (latents are 1/${f} of the image each way): try ${Math.max(f, Math.round(v / f) * f)}`);
    }
  }
  const frame: [number, number] = [H / f, W / f];
  const m = sizeMultiple(p);
  for (const [name, v] of [['height', H], ['width', W]] as const) {
    if (v % m !== 0) {
      throw new DqError('BAD_ARGUMENT', `--${name} ${v} does not fit the unet: it halves the latents ${p.unetHalvings} times, so sizes must be multiples of ${m} pixels: try ${Math.max(m, Math.round(v / m) * m)}`);
    }
  }
  const meta = p.unetInputs.find((m) => m.name === p.io.sample);
  const at = p.io.video ? 3 : 2;
  const fixed = p.io.packed ? [] : [meta?.shape?.[at], meta?.shape?.[at + 1]];
  if (fixed.some((d, k) => typeof d === 'number' && d > 0 && d !== frame[k])) {
    throw new DqError('BAD_ARGUMENT', `${p.label ?? p.dir}: unet/model.onnx has a fixed sample size ${fixed.join('x')} (latents); ${H}x${W} images need ${frame[0]}x${frame[1]}`);
  }
  const shape: [number, number, number] = [C, F * frame[0], frame[1]];
  checkShapeSize(shape, `${p.label ?? p.dir}: the sample at ${H}x${W}${F > 1 ? ` x ${F} frames` : ''}`);
  return { ...p, index: { ...p.index, sampleShape: shape, shapeSource: '--height/--width' }, imageShape: imageShapeOf(p.codec, shape) };
}

/** A video pipeline with another number of frames (--frames); the graph must not fix it. */
export function withFrames(p: Pipeline, frames: number | undefined): Pipeline {
  if (frames === undefined) return p;
  const F = p.index.frames;
  if (!F || !p.io.video) throw new DqError('BAD_ARGUMENT', `--frames is for video pipelines; ${p.label ?? p.dir} makes images`);
  if (!Number.isSafeInteger(frames) || frames < 1 || frames > MAX_FRAMES) throw new DqError('BAD_ARGUMENT', `--frames must be a whole number from 1 to ${MAX_FRAMES}, got ${frames}`);
  const fixed = p.unetInputs.find((m) => m.name === p.io.sample)?.shape?.[2];
  if (typeof fixed === 'number' && fixed > 0 && fixed !== frames) throw new DqError('BAD_ARGUMENT', `${p.label ?? p.dir}: unet/model.onnx is fixed at ${fixed} frames`);
  const [C, hs, w] = p.index.sampleShape;
  const shape: [number, number, number] = [C, (hs / F) * frames, w];
  checkShapeSize(shape, `${p.label ?? p.dir}: the sample at ${frames} frames`);
  return { ...p, index: { ...p.index, sampleShape: shape, frames }, imageShape: imageShapeOf(p.codec, shape) };
}

/** Image sizes a pipeline takes are multiples of this many pixels (the VAE's factor times what the unet halves). */
export function sizeMultiple(p: Pipeline): number {
  return (p.codec?.factor ?? 1) * 2 ** p.unetHalvings;
}

/** Whether model_index.json names a component (a [library, class] pair that is not [null, null]). */
function indexNames(raw: unknown, component: string): boolean {
  const v = raw && typeof raw === 'object' ? (raw as Record<string, unknown>)[component] : undefined;
  return Array.isArray(v) && v[1] !== null && v[1] !== undefined;
}

/**
 * The text conditioner the denoiser's inputs ask for: CLIP (SD 1.x/2.x, LCM, legacy), SDXL's two encoders, or SD3's
 * CLIP encoders (text_encoder, and text_encoder_2 when the pipeline has it) with their pooled projections.
 */
async function loadText(dir: string, label: string, provider: Provider, io: UnetIO, raw: unknown, kind: TextKind, denoiserCfg: Record<string, unknown> | null): Promise<TextConditioner> {
  const sdxl = kind === 'sdxl';
  const names = kind === 'clip' || kind === 'pixart' ? ['text_encoder'] : kind === 'sdxl' || kind === 'flux' ? ['text_encoder', 'text_encoder_2'] : ['text_encoder', ...(['text_encoder_2', 'text_encoder_3'] as const).filter((n) => indexNames(raw, n) || existsSync(join(dir, n, 'model.onnx')))];
  const specs: TextEncoderSpec[] = [];
  const sessions: Session[] = [];
  for (const [k, name] of names.entries()) {
    const path = join(dir, name, 'model.onnx');
    if (!existsSync(path)) {
      throw new DqError('MISSING_COMPONENT', `${label}: component '${name}' is missing (no ${name}/model.onnx): the unet reads text (${io.encoderHiddenStates})`);
    }
    const s = await cachedSession(path, provider, { label: `${label}: ${name}/model.onnx` });
    sessions.push(s);
    if (kind === 'flux') {
      // CLIP gives the pooled vector (pooler_output), T5 the per-token states (last_hidden_state)
      const spec = resolveEncoder(name, path, s.inputs, s.outputs, 'clip', k === 0);
      specs.push(k === 0 ? { ...spec, pooled: s.outputs.some((m) => m.name === 'pooler_output') ? 'pooler_output' : spec.pooled, pooledOnly: true } : spec);
    } else if (kind === 'pixart') {
      specs.push(resolveEncoder(name, path, s.inputs, s.outputs, 'clip', false));
    } else if (kind === 'sd3' && name === 'text_encoder_3') {
      // SD3's T5: last_hidden_state, its tokens after the CLIP tokens
      specs.push({ ...resolveEncoder(name, path, s.inputs, s.outputs, 'clip', false), sequence: true });
    } else specs.push(resolveEncoder(name, path, s.inputs, s.outputs, kind, (sdxl && k === 1) || kind === 'sd3'));
  }
  const o = raw as Record<string, unknown>;
  const hasT5 = kind === 'flux' || kind === 'pixart' || names.includes('text_encoder_3');
  // T5's token count: model_index.json's max_sequence_length (DQ Studio's field; diffusers' call argument), else the
  // pipeline's default (SD3 256, PixArt-α 120, PixArt-Σ 300, Flux 512 unless its tokenizer is limited below that);
  // a T5 needs 2 at least (a token and </s>), SD3 without T5 takes 0 (no zero tokens)
  const m = o.max_sequence_length;
  const seqLen = m === undefined || m === null ? null : typeof m === 'number' && Number.isSafeInteger(m) && m >= (hasT5 ? 2 : 0) && m <= 4096 ? m : -1;
  if (seqLen === -1) throw new DqError('BAD_CONFIG', `${label}: model_index.json: field 'max_sequence_length' must be a whole number from ${hasT5 ? 2 : 0} to 4096, got ${JSON.stringify(m)}`);
  const t5Default = () => {
    if (kind === 'pixart') return String(o._class_name ?? '').startsWith('PixArtAlpha') ? 120 : 300;
    if (kind !== 'flux') return 256;
    const cfgPath = join(dir, 'tokenizer_2', 'tokenizer_config.json');
    const cfgLen = existsSync(cfgPath) ? (readJson(cfgPath, 'tokenizer_config.json') as Record<string, unknown>).model_max_length : undefined;
    return typeof cfgLen === 'number' && cfgLen >= 2 && cfgLen < 512 ? cfgLen : 512;
  };
  const t5Length = seqLen ?? t5Default();
  const tokenizers = names.map((n) =>
    n === 'text_encoder_3' || (kind === 'flux' && n === 'text_encoder_2') || kind === 'pixart' ? loadT5Tokenizer(join(dir, tokenizerFolder(n)), t5Length) : loadPipelineTokenizer(dir, label, n),
  );
  let sd3: { width: number; t5Tokens: number } | undefined;
  if (kind === 'sd3') {
    // the CLIP states are zero-padded to the joint attention width, then T5's tokens follow (zeros without T5)
    const joint = io.widths?.encoderHiddenStates ?? (typeof denoiserCfg?.joint_attention_dim === 'number' ? denoiserCfg.joint_attention_dim : null);
    if (joint === null) throw new DqError('BAD_MODEL', `${label}: cannot tell the transformer's text width: ${io.encoderHiddenStates} is dynamic and transformer/config.json gives no joint_attention_dim`);
    // with a T5 encoder its own tokens follow (max_sequence_length of them); without one, that many zeros
    sd3 = { width: joint, t5Tokens: hasT5 ? 0 : t5Length };
  }
  const text = new TextConditioner(kind, tokenizers, specs, async () => sessions, sdxl && o.force_zeros_for_empty_prompt !== false, sd3);
  const want = kind === 'sd3' ? null : (io.widths?.encoderHiddenStates ?? null);
  if (kind === 'flux') {
    const pw = io.widths?.textEmbeds ?? null;
    const have = specs[0]!.pooledWidth;
    if (pw !== null && have !== null && pw !== have) throw new DqError('BAD_MODEL', `${label}: the transformer's ${io.textEmbeds} width ${pw} disagrees with text_encoder's pooled ${have}`);
  }
  const have = text.width;
  if (kind === 'sd3' && have !== null && sd3 && have > sd3.width) {
    throw new DqError('BAD_MODEL', `${label}: the text encoders' ${specs.map((s) => s.width).join(' + ')} = ${have} channels do not fit the transformer's text width ${sd3.width}`);
  }
  if (want !== null && have !== null && want !== have) {
    const what = sdxl ? `the text encoders' ${specs.map((s) => s.width).join(' + ')} = ${have}` : `text_encoder's ${have}`;
    throw new DqError('BAD_MODEL', `${label}: the unet's cross-attention width ${want} (${io.encoderHiddenStates}) disagrees with ${what}: the text encoder does not belong to this unet`);
  }
  const pooledWant = io.widths?.textEmbeds ?? null;
  const pooledHave = specs[1]?.pooledWidth ?? null;
  if (sdxl && pooledWant !== null && pooledHave !== null && pooledWant !== pooledHave) {
    throw new DqError('BAD_MODEL', `${label}: the unet's text_embeds width ${pooledWant} disagrees with text_encoder_2's pooled ${pooledHave}`);
  }
  const pooledSum = specs.every((s) => s.pooledWidth !== null) ? specs.reduce((a, s) => a + s.pooledWidth!, 0) : null;
  if (kind === 'sd3' && pooledWant !== null && pooledSum !== null && pooledWant !== pooledSum) {
    throw new DqError('BAD_MODEL', `${label}: the transformer's ${io.textEmbeds} width ${pooledWant} disagrees with the text encoders' pooled ${specs.map((s) => s.pooledWidth).join(' + ')} = ${pooledSum}`);
  }
  return text;
}
