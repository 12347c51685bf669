/**
 * The one typed contract between the renderer and its host (Electron main via preload, or browser mode).
 * Requests go in, results and errors come back as data; long jobs (calibrate, quantize, compare, export, sample) are started
 * by a request and report through events (progress, done, error); nothing here imports Node or the engine.
 */
import { z } from 'zod';

/** An error crossing the boundary: a code a UI can branch on and a message a person can read. */
export interface ApiError {
  code: string;
  message: string;
}

export type Result<T> = { ok: true; value: T } | { ok: false; error: ApiError };

export interface EmbeddedModel {
  /** Folder name under models/. */
  id: string;
  /** Absolute path of the pipeline folder on the host. */
  path: string;
  kind: 'diffusion-pipeline' | 'classifier';
  title: string;
  summary: string;
  /** Class names of a class-conditional pipeline. */
  classes: string[];
  sampleShape: number[] | null;
  /** A video pipeline's frames per video (model_index.json's default_frames); absent for images. */
  frames?: number;
}

export interface HostInfo {
  shell: 'electron' | 'browser' | 'mock';
  version: string;
  providers: string[];
  /** The host CPU's int8 dot products, which decide whether int8 weights 's8' are exact there. */
  cpuInt8?: 'vnni' | 'avx2' | 'other' | 'unknown';
  /** True where the host can show native UI (Electron): revealJob opens a folder, pickFolder a folder picker. */
  desktop?: boolean;
}

/* ------------------------------------------------------------------ models -- */

/** One quantizable layer of a denoiser, as the layer map shows it. */
export interface LayerRow {
  name: string;
  op: string;
  weightShape: number[];
  parameters: number;
  /** The activation tensor it reads. */
  input: string;
  /** In the time-only region (TFMQ-DM's temporal features feed from here). */
  temporal: boolean;
  /** Where quantizers usually spare it: first or last layer. */
  sensitive: 'first' | 'last' | null;
  /** Reads a decoder skip concat: the channel where the encoder half starts. */
  splitAt: number | null;
  /**
   * Text-to-image: in the text-only region (reads the text, not the sample or the timestep): a cross-attention key or
   * value projection, or SDXL's added embedding (pooled text, size ids); null elsewhere.
   */
  text?: 'cross-attention' | 'added-embedding' | null;
}

/** An input or output of an ONNX graph as onnxruntime reports it: symbolic names for dynamic dimensions. */
export interface IoRow {
  name: string;
  type: string;
  shape: (number | string)[] | null;
}

/** One component of a diffusers pipeline folder (model_index.json's entries; an ONNX VAE is its two halves). */
export interface ComponentRow {
  name: string;
  folder: string;
  role: 'conditioner' | 'tokenizer' | 'denoiser' | 'latent codec' | 'scheduler' | 'other';
  /** [library, class] as model_index.json declares it. */
  declared: [string | null, string | null] | null;
  present: boolean;
  files: string[];
  /** An ONNX component: bytes with its external weights, the weights file (if any) and the graph's I/O. */
  onnx: { bytes: number; externalData: string | null; inputs: IoRow[]; outputs: IoRow[] } | null;
}

export interface ModelInfo {
  /** Absolute path of the pipeline folder. */
  path: string;
  className: string;
  /** The family model_index.json's `_class_name` names (null for a class the engine does not know). */
  family: { name: string; task: string; sampled: boolean } | null;
  /** What conditions a sample: prompts (text-to-image), class labels, or nothing. */
  conditioning: 'text' | 'class' | 'none';
  /** The denoiser's sample [C, H, W] (latents for a latent pipeline, at the default size). */
  sampleShape: number[];
  /** [C, H, W] of the images it makes (decoded by the VAE for a latent pipeline). */
  imageShape: number[];
  /** [C, h, w] of the latents, or null for a pixel-space pipeline. */
  latentShape: number[] | null;
  /** The I/O convention its graphs follow (legacy diffusers script, Optimum, TensorRT demo), and why. */
  convention: { name: string; why: string } | null;
  /** Every component with its role, declared class, files and ONNX I/O; null for our pixel-space pipelines. */
  components: ComponentRow[] | null;
  /** How prompts become the denoiser's inputs: CLIP (SD 1.x/2.x) or SDXL's two encoders. */
  text: {
    kind: string;
    /** How the denoiser's text inputs are made, in one line (SD3 and Flux read this). */
    summary?: string;
    encoders: { component: string; input: string; idsType: string; hidden: string; pooled: string | null }[];
    tokenizers: { folder: string; source: string; vocab: number; maxLength: number; padId: number }[];
    /** The cross-attention width. */
    width: number | null;
    zerosForEmptyNegative: boolean;
  } | null;
  /** The VAE decoder: factor, scaling and shift, input dtype, and where they were read. */
  /** sizeMultiple: image sizes the pipeline takes are multiples of it (the VAE's factor times what the unet halves). */
  vae: { factor: number; scalingFactor: number; shiftFactor: number; dtype: string; source: string; sizeMultiple: number } | null;
  /** The pipeline's own sampler (its scheduler config) and guidance. */
  defaults: { sampler: string; guidance: number };
  /** Why the studio cannot calibrate, quantize or export this pipeline yet; null when it can. */
  quantizeUnavailable: string | null;
  /** Text-to-image: the prompts calibration uses when given none (the folder's calibration_prompts.txt); null without it. */
  calibrationPrompts?: string[] | null;
  /** Text-to-image: the tensors where the text-only region meets the rest (what a text-feature cache feeds). */
  textFeatures?: string[];
  /** Text-to-image: components besides the denoiser a quantize job may give int8 weights (present in the folder). */
  quantizableComponents?: string[];
  classes: string[];
  scheduler: { trainSteps: number; betaSchedule: string; prediction: string };
  /** The denoiser (folder: 'unet', or 'transformer' for a DiT; absent from older hosts: unet). */
  unet: { folder?: 'unet' | 'transformer'; bytes: number; parameters: number; nodes: number; ops: Record<string, number> };
  /** Null for a quantized variant (its source has the map). */
  layers: LayerRow[] | null;
  attention: number;
  temporalFeatures: string[];
  shortcutSplits: { concat: string; splitAt: number | null; consumers: string[] }[];
  variant: { recipe: string; quantized: number; spared: number; weightBitsPerParameter: number } | null;
}

/* ----------------------------------------------------------------- recipes -- */

export type FloatElement = 'e4m3fn' | 'e5m2' | 'e3m2' | 'e2m3' | 'e2m1';
export type FormatSpec =
  | { kind: 'int'; bits: number; symmetric: boolean }
  | { kind: 'float'; element: FloatElement }
  | { kind: 'mx'; element: FloatElement | 'int8' }
  | { kind: 'nvfp4' };

/** A quantization recipe (presets/*.json); the host validates it with the engine's schema before use. */
export interface RecipeSpec {
  name: string;
  description?: string;
  weights: {
    format: FormatSpec;
    granularity?: 'tensor' | 'channel' | { group: number };
    rounding?: 'nearest' | 'gptq';
    clipping?: 'minmax' | 'mse';
    scale?: 'float32' | 'float16';
  };
  activations: null | {
    format: FormatSpec;
    clipping?: 'minmax' | 'percentile' | 'mse';
    percentile?: number;
    perTimestep?: boolean;
    /** ViDiT-Q: 'token' computes each token's scale in the graph (symmetric INT). */
    dynamic?: 'none' | 'token';
  };
  calibration?: { timesteps: 'single' | 'all' | 'uniform' | 'normal'; count?: number; step?: number };
  splitShortcut?: boolean;
  /** ViDiT-Q's channel balancing (SmoothQuant scales from the activations' RMS; needs Gram matrices and per-token activations). */
  balance?: { alpha: number | 'search'; ranges?: number } | null;
  /** ViDiT-Q's rotation: block Hadamard on each balanced layer's input, its inverse in the weights. */
  rotate?: boolean;
  /** Attention output projections: their input's scales (and rotation, 'all') computed by the value projection's weights. */
  fold?: 'none' | 'scales' | 'all';
  /** SVDQuant's low-rank branch: each layer's rank-r part in float16 on its FP input, the residual quantized. */
  lowRank?: { rank: number } | null;
  temporal?: 'none' | 'calibrate' | 'cache' | 'auto';
  temporalThreshold?: number;
  /** Text-to-image: the text-only region (cross-attention K/V, SDXL's added embedding) quantized, cached in FP, or per feature by disturbance. */
  text?: 'quantize' | 'cache' | 'auto';
  textThreshold?: number;
  keepFormat?: FormatSpec | null;
  keepFp?: ('first' | 'last' | 'temporal' | 'added-embedding')[];
  keepLayers?: string[];
}

export interface PresetInfo {
  name: string;
  recipe: RecipeSpec;
}

/* -------------------------------------------------------------------- jobs -- */

/** The samplers (core/pipeline/schedulers.ts SAMPLERS; the contract imports no core, a unit test keeps them equal). */
export const SAMPLER_NAMES = ['ddpm', 'ddim', 'dpm++2m', 'euler', 'pndm', 'euler-a', 'dpm++2m-karras', 'lcm', 'flow-euler'] as const;
export type SamplerName = (typeof SAMPLER_NAMES)[number];
const id = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'not an id');
const modelRef = z.string().min(1).max(4096);
const smallInts = z.array(z.number().int().min(0).max(1_000_000)).max(256);

/** The longest prompt the studio sends, and how many in one run (a grid row each). */
export const MAX_PROMPT_CHARS = 2000;
export const MAX_STUDIO_PROMPTS = 64;
/** Calibration prompts in one job (core's prompt-file limit). */
export const MAX_CALIBRATION_PROMPTS = 1024;
/** Components besides the denoiser a quantize job may give int8 weights (core QUANTIZABLE_COMPONENTS; a unit test keeps them equal). */
export const QUANTIZABLE_COMPONENT_NAMES = ['text_encoder', 'text_encoder_2', 'vae_decoder'] as const;

export const CalibrateJob = z
  .object({
    kind: z.literal('calibrate'),
    /** An embedded model id, or the absolute path of a pipeline folder. */
    model: modelRef,
    samples: z.number().int().min(1).max(100_000),
    steps: z.number().int().min(1).max(1000),
    /** Default: the pipeline's (a text-to-image pipeline's scheduler and guidance; ddim and 2 otherwise). */
    sampler: z.enum(SAMPLER_NAMES).optional(),
    guidance: z.number().min(0).max(100).optional(),
    timesteps: z.enum(['all', 'uniform', 'normal']).default('all'),
    count: z.number().int().min(1).max(1000).default(10),
    batchSize: z.number().int().min(1).max(1024).default(32),
    /** Also collect Gram matrices of the layers' inputs (GPTQ recipes need them). */
    gram: z.boolean().default(false),
    /**
     * Text-to-image: the calibration prompts (cycled over the images), or a prompt file on the host (one a line, or a
     * JSON list; an absolute path). Neither: the pipeline's calibration_prompts.txt.
     */
    prompts: z.array(z.string().max(MAX_PROMPT_CHARS, `a prompt is at most ${MAX_PROMPT_CHARS} characters`)).max(MAX_CALIBRATION_PROMPTS, `at most ${MAX_CALIBRATION_PROMPTS} calibration prompts`).optional(),
    promptFile: z.string().min(1).max(4096).optional(),
    negativePrompt: z.string().max(MAX_PROMPT_CHARS, `a prompt is at most ${MAX_PROMPT_CHARS} characters`).optional(),
  })
  .strict();

export const QuantizeJob = z
  .object({
    kind: z.literal('quantize'),
    model: modelRef,
    /** The recipe (the host validates it with the engine's schema). */
    recipe: z.record(z.string(), z.unknown()),
    /** The calibrate job whose record to use; null for weight-only recipes. */
    calibration: id.nullable(),
    /** Layers kept in FP beyond the recipe's keepFp groups. */
    keepLayers: z.array(z.string().max(1024)).max(10_000).default([]),
    /** Text-to-image: other components whose weights become int8 (each verified against FP); none by default. */
    components: z.array(z.enum(QUANTIZABLE_COMPONENT_NAMES)).max(QUANTIZABLE_COMPONENT_NAMES.length).default([]),
    /** Mixed precision: at most `bits` per weight, the layers a sensitivity job found most worth it in the recipe's keepFormat. */
    /** perRange: bits per layer and per timestep range (per-step parameter sets, exported as float32 sets fed per step). */
    budget: z.object({ bits: z.number().min(1).max(32), sensitivity: id, perRange: z.boolean().optional() }).strict().optional(),
  })
  .strict();

/** Where the bits matter: each layer of a quantize job's variant in FP alone, overall and per range of steps. */
export const SensitivityJob = z
  .object({
    kind: z.literal('sensitivity'),
    model: modelRef,
    /** The quantize job whose variant to measure. */
    variant: id,
    samples: z.number().int().min(1).max(1024).default(16),
    steps: z.number().int().min(1).max(1000).default(25),
    ranges: z.number().int().min(1).max(50).default(4),
    /** First seed: seeds seed .. seed + samples - 1 (one sample and its seed: that sample's divergence, by layer and step range). */
    seed: z.number().int().min(0).max(1_000_000_000).default(0),
    /** Text-to-image: the prompts, cycled (default: the pipeline's calibration_prompts.txt). */
    prompts: z.array(z.string().max(MAX_PROMPT_CHARS, `a prompt is at most ${MAX_PROMPT_CHARS} characters`)).min(1).max(MAX_STUDIO_PROMPTS).optional(),
  })
  .strict();

export const CompareJob = z
  .object({
    kind: z.literal('compare'),
    model: modelRef,
    /** quantize job ids; FP is always the reference row. */
    variants: z.array(id).max(16),
    seeds: smallInts.min(1),
    /** Class pipelines: the classes (empty: every class); text-to-image pipelines give prompts instead. */
    classes: smallInts,
    /** Text-to-image: the prompts (a grid row each; default: the first of the pipeline's calibration_prompts.txt). */
    prompts: z.array(z.string().max(MAX_PROMPT_CHARS, `a prompt is at most ${MAX_PROMPT_CHARS} characters`)).min(1, 'give at least one prompt').max(MAX_STUDIO_PROMPTS, `at most ${MAX_STUDIO_PROMPTS} prompts in one run`).optional(),
    negativePrompt: z.string().max(MAX_PROMPT_CHARS, `a prompt is at most ${MAX_PROMPT_CHARS} characters`).optional(),
    height: z.number().int().min(8).max(2048).optional(),
    width: z.number().int().min(8).max(2048).optional(),
    steps: z.number().int().min(1).max(1000),
    /** Default: the pipeline's (a text-to-image pipeline's scheduler and guidance; ddim and 2 otherwise). */
    sampler: z.enum(SAMPLER_NAMES).optional(),
    guidance: z.number().min(0).max(100).optional(),
    fidSamples: z.number().int().min(0).max(100_000).default(0),
    walkFrames: z.number().int().min(1).max(64).default(2),
    video: z.boolean().default(true),
    /** The seed walk (off unless asked: it samples walkFrames x seeds x columns more images per model). */
    walk: z.boolean().default(false),
  })
  .strict();

export const ExportJob = z
  .object({
    kind: z.literal('export'),
    model: modelRef,
    /** The quantize job whose variant to export. */
    variant: id,
    /**
     * INT8 weights on integer kernels: 'u8' (uint8 + zero point 128, exact on every CPU), 's8' (fastest, exact only
     * on CPUs with VNNI), 's7' (7-bit codes, onnxruntime's reduce_range).
     */
    int8Weights: z.enum(['u8', 's8', 's7']).default('u8'),
    /** Attention blocks as one MultiHeadAttention node each (a float fusion, outputs unchanged to ~1e-6). */
    fuseAttention: z.boolean().default(true),
    /** Seeds for the verification against the simulated variant. */
    verifySeeds: smallInts.min(1).default([0, 1]),
    verifySteps: z.number().int().min(1).max(1000).default(5),
  })
  .strict();

const promptText = z.string().max(MAX_PROMPT_CHARS, `a prompt is at most ${MAX_PROMPT_CHARS} characters`);

/** Text-to-image sampling: a grid with a row per prompt and a column per seed. */
export const SampleJob = z
  .object({
    kind: z.literal('sample'),
    model: modelRef,
    prompts: z.array(promptText).min(1, 'give at least one prompt').max(MAX_STUDIO_PROMPTS, `at most ${MAX_STUDIO_PROMPTS} prompts in one run`),
    negativePrompt: promptText.default(''),
    seeds: smallInts.min(1).max(64),
    steps: z.number().int().min(1).max(1000),
    /** Default: the pipeline's (its model_index.json or family). */
    guidance: z.number().min(0).max(100).optional(),
    /** Default: the sampler of the pipeline's scheduler config. */
    sampler: z.enum(SAMPLER_NAMES).optional(),
    /** Image size in pixels (default: the pipeline's); a multiple of the VAE's factor. */
    height: z.number().int().min(8).max(2048).optional(),
    width: z.number().int().min(8).max(2048).optional(),
    /** Quantize jobs whose variants sample the same prompts and seeds (a grid each, below FP's). */
    variants: z.array(id).max(8).default([]),
  })
  .strict();

/** Mixed precision's Pareto front: a variant's recipe under several budgets (from a sensitivity job), each measured. */
export const ParetoJob = z
  .object({
    kind: z.literal('pareto'),
    model: modelRef,
    /** The quantize job whose recipe to budget. */
    variant: id,
    /** The sensitivity job whose gains allocate the bits (its seeds and settings measure every point). */
    sensitivity: id,
    /** The calibrate job the recipe needs (null for weight-only recipes rounded to nearest). */
    calibration: id.nullable(),
    budgets: z.array(z.number().min(1).max(32)).min(1).max(12),
  })
  .strict();

export const JobSpec = z.discriminatedUnion('kind', [CalibrateJob, QuantizeJob, CompareJob, ExportJob, SampleJob, SensitivityJob, ParetoJob]);
export type JobSpec = z.input<typeof JobSpec>;
export type JobSpecParsed = z.output<typeof JobSpec>;
export type JobKind = JobSpec['kind'];

export interface Progress {
  phase: string;
  done: number;
  total: number;
  elapsedSeconds: number;
  /**
   * Estimated seconds left, at the current phase's own rate since its first progress message (start-up and earlier
   * phases at other rates excluded); null until the phase has moved.
   */
  etaSeconds: number | null;
}

export interface CalibrateResult {
  kind: 'calibrate';
  sites: number;
  steps: number[];
  seconds: number;
}

export interface QuantizedLayer {
  name: string;
  op: string;
  weightBits: number | null;
  activation: string | null;
  spared: string | null;
}

/** A feature's measured disturbance under quantization (relative L2 error; max and mean over timesteps/prompts). */
export interface FeatureDisturbanceView {
  feature: string;
  max: number;
  mean: number;
}

/** Feature maintenance (TFMQ-style): which features the variant feeds from an FP region, and what was measured. */
export interface FeatureCacheReport {
  mode: 'cache' | 'auto';
  threshold: number | null;
  cached: string[];
  disturbance: FeatureDisturbanceView[];
  /** Text features: whether their FP models read the batch from the text or keep the network they read sizes from. */
  sizes?: string;
}

/** A component besides the denoiser with int8 weights, verified against its FP self. */
export interface ComponentReport {
  name: string;
  format: string;
  layers: { quantized: number; kept: number };
  bytes: { before: number; after: number };
  bitsPerParam: number;
  verification: { output: string; cosine: number; relL2: number; maxAbs: number; psnr?: { mean: number; min: number } };
  notes: string[];
}

export interface QuantizeResult {
  kind: 'quantize';
  name: string;
  recipe: RecipeSpec;
  summary: { quantized: number; spared: number; weightBitsPerParameter: number; fpParameters: number; quantizedParameters: number; activationFormat: string | null };
  layers: QuantizedLayer[];
  /** Bytes of the variant folder's unet (simulated: float32 storage). */
  bytes: number;
  /** The temporal-feature cache (recipe temporal cache/auto), null without one. */
  temporal?: FeatureCacheReport | null;
  /** Text-to-image: the text-feature cache (recipe text cache/auto), null without one. */
  text?: FeatureCacheReport | null;
  /** Text-to-image: the other components quantized (recipe components), empty when none. */
  components?: ComponentReport[];
}

/** An image error against FP (model space): block means (content) plus the rest (detail). */
export interface ImageErrorView {
  mse: number;
  content: number;
  detail: number;
}

export interface SensitivityResult {
  kind: 'sensitivity';
  /** The variant's recipe name. */
  name: string;
  settings: { samples: number; steps: number; sampler: string; guidance: number };
  /** Step index ranges [first, last] and their model timesteps. */
  ranges: { steps: [number, number]; timesteps: [number, number] }[];
  /** The variant's error against FP on the same seeds. */
  base: ImageErrorView;
  /** Per layer: the error removed with it in FP at every step, and in each range of steps only. */
  layers: { name: string; op: string; params: number; bits: number; weight: string; gain: ImageErrorView; ranges: ImageErrorView[] }[];
  seconds: number;
}

export interface ParetoResult {
  kind: 'pareto';
  name: string;
  /** The recipe alone (budget null), then each budget: bits per weight, layers moved to keepFormat, error against FP, and FID-to-FP in the pipeline's judge's features (null without one). */
  points: { budget: number | null; bits: number; layers: number; error: ImageErrorView; fidToFp: number | null }[];
  settings: { samples: number; steps: number };
}

export interface ExportResult {
  kind: 'export';
  /** The recipe name of the exported variant. */
  name: string;
  int8Weights: 'u8' | 's8' | 's7';
  sizes: { fp32UnetBytes: number | null; exportBytes: number; ratio: number | null };
  /**
   * fusedAttention: attention blocks run as one MultiHeadAttention node each (a float fusion); unfusedAttention: the
   * attention softmax nodes left as they were, counted by the reason.
   */
  summary: { layers: number; int8Kernels: number; lowBitStorage: number; keptFloat: number; fusedAttention: number; unfusedAttention: { reason: string; count: number }[] };
  /** What runs on real low-bit kernels or storage, and what is still simulated. */
  real: string[];
  simulated: string[];
  /**
   * |exported - simulated| (model space). Images: the same seeds sampled through both (trajectories can drift apart
   * at a few pixels: read mean and p99). step: one network evaluation at a time, from the same inputs along the
   * simulated trajectory (what the kernels answer for). asRun: the int8 weight storage the verification ran with
   * (u8 exports load as s8 on CPUs with VNNI).
   */
  verification: {
    maxAbs: number;
    meanAbs: number;
    p99Abs: number;
    images: number;
    step: { meanAbs: number; p99Abs: number; maxAbs: number; evaluations: number };
    asRun?: 'u8' | 's8' | 's7';
    /**
     * Whether the deviation is what this kind of export is expected to give: expected (in words), the bounds it is
     * judged by (image p99 null: not judged), the measures above them.
     */
    verdict?: { ok: boolean; expected: string; bounds: { stepMean: number; stepP99: number; imageMean: number; imageP99: number | null }; exceeded: string[] };
  } | null;
  notes: string[];
  /** A pipeline folder's export: the layout it keeps and what happened to each component (when the engine reports it). */
  layout?: string | null;
  components?: { name: string; how: string }[];
}

export interface StepErrorRow {
  step: number;
  timestep: number;
  rmse: number;
  relative: number | null;
}

interface MetricSummary {
  mean: number | null;
  min: number | null;
  perImage: (number | null)[];
}

/** The part of compare's metrics.json (docs/metrics-schema.json) the studio shows. */
export interface CompareVariant {
  name: string;
  isFp: boolean;
  /** Set when the variant was quantized from another model (its source pipeline folder): flagged in the table. */
  otherSource: string | null;
  modelBytes: number;
  weightBitsPerParameter: number | null;
  estimatedDeployedBytes: number | null;
  psnrDb: MetricSummary;
  ssim: MetricSummary;
  fid: { toFp: number | null; toData: number | null; samples: number; reason: string | null };
  classAgreement: { requested: number | null; withFp: number | null; samples: number; reason: string | null };
  epsError: StepErrorRow[];
  temporalFeatureError: { available: boolean; reason: string | null; source: 'graph' | 'fed' | null; features: string[]; perStep: StepErrorRow[] };
}

export interface CompareResult {
  kind: 'compare';
  /** prompt: text-to-image, the image's prompt. */
  images: { index: number; seed: number; class: number | null; className: string | null; prompt?: string }[];
  variants: CompareVariant[];
  /** Per variant (same order): how its temporal features are maintained: cached FP features (TFMQ), one parameter
   * set per timestep, the time-only layers kept in FP, or not at all ('none', also for FP itself). */
  temporal: ('none' | 'calibrate' | 'cache' | 'auto' | 'fp')[];
  files: {
    grid: string;
    diffs: Record<string, string>;
    /** The diff heatmaps' colour ramp: |variant − FP| at its top (0 at the bottom), and its stops (0..1, CSS colour). */
    diffScale: number | null;
    diffRamp: [number, string][];
    /** sheet: the frames stacked top to bottom in one PNG (a step scrubber shows one at a time). */
    trajectory: { webp: string | null; mp4: string | null; frames: number; sheet?: string };
    /** The seed walk's video (null when the walk was off). */
    walk: { webp: string | null; mp4: string | null; frames: number };
    /** Per variant (same order): the grid images side by side, identically laid out (A/B wipe). */
    strips: string[];
    report: string;
    metrics: string;
  };
  notes: string[];
}

export interface SampleResult {
  kind: 'sample';
  /** The job's files: the grid (a row per prompt, a column per seed) and samples.json. */
  files: { grid: string; record: string };
  /** Per prompt: its negative prompt, token counts per tokenizer (BOS/EOS not counted), and what truncation dropped. */
  prompts: { prompt: string; negative: string; tokens: number[]; truncated: boolean; dropped: string }[];
  /** Tokens a prompt may have per tokenizer (its max length less BOS and EOS). */
  tokenLimits: number[];
  seeds: number[];
  settings: { steps: number; sampler: string; guidance: number };
  /** [C, H, W] of each image. */
  imageShape: number[];
  /** Truncated prompts, an fp16 VAE's overflow, a provider that was not used, ... */
  warnings: string[];
  provider: string;
  seconds: number;
  /** Quantized variants sampled with the same prompts and seeds: a grid each, laid out like FP's (A/B wipe). */
  variants?: { jobId: string; name: string; grid: string; seconds: number; warnings: string[] }[];
  /** A video model: the grids are contact sheets (a row per video, a column per frame); `side` plays FP's videos
   * and every variant's side by side in one animation (columns in `columns` order, so they stay in step), and
   * `sheet` holds its frames stacked top to bottom (a frame scrubber). `sheets`: each column's frames alone (frame k
   * = the grid of every video's frame k, the same layout for every model), for the A/B wipe; `diffs`: per variant,
   * |variant - FP| heatmaps frame by frame on the shared `diffScale` (model space), PSNR against FP and mean
   * |difference| per frame, and its flicker (frame-to-frame change) over FP's. */
  video?: {
    frames: number;
    fps: number;
    side: string;
    sheet: string;
    columns: string[];
    sheets: string[];
    diffs: { name: string; sheet: string; psnrDb: (number | null)[]; ssim: number[]; meanAbs: number[]; flickerRatio: number | null }[];
    diffScale: number;
    diffRamp: [number, string][];
  };
}

export type JobResult = CalibrateResult | QuantizeResult | CompareResult | ExportResult | SampleResult | SensitivityResult | ParetoResult;

export type JobState = 'running' | 'done' | 'error' | 'cancelled';

export interface JobInfo {
  id: string;
  kind: JobKind;
  /** The model the job was started on (an embedded model id or a folder path, as startJob named it). */
  model: string | null;
  /** Where the job's result lives on the host: the variant's or the export's folder, or the job's folder. */
  output: string | null;
  label: string;
  state: JobState;
  progress: Progress | null;
  startedAt: number;
  endedAt: number | null;
  result: JobResult | null;
  error: ApiError | null;
}

/** What the host reports about jobs; a cancelled job ends with `error` whose code is CANCELLED. */
export type JobEvent =
  | { jobId: string; kind: 'started'; job: JobInfo }
  | { jobId: string; kind: 'progress'; progress: Progress }
  | { jobId: string; kind: 'done'; result: JobResult }
  | { jobId: string; kind: 'error'; error: ApiError };

/* ------------------------------------------------------------ calibration -- */

export interface StatView {
  min: number;
  max: number;
  absmax: number;
  hist: { lo: number; hi: number; counts: number[] };
}

/** A calibration record as the Ranges view reads it. */
export interface CalibrationView {
  timesteps: number[];
  steps: number[];
  /** text: the site reads the text only (cross-attention keys/values, SDXL's added embedding): the same at every timestep. */
  /** `frames`: a video denoiser's site read by a layer that mixes frames (temporal convolution or attention). */
  sites: { id: number; tensor: string; layers: string[]; split: number | null; temporal: boolean; text: boolean; frames: boolean }[];
  /** stats[site][half][step] */
  stats: Record<number, Record<number, Record<number, StatView>>>;
  settings: { samples: number; steps: number; sampler: string; timesteps: string; guidance?: number; prompts?: string[]; negativePrompt?: string };
  /** Whether the record has Gram matrices (GPTQ recipes need them). */
  gram: boolean;
}

export interface Artifact {
  mime: string;
  base64: string;
  bytes: number;
}

/* ------------------------------------------------ interactive re-quantization -- */

/** A layer of a variant, as the re-quantization panel lists it. */
export interface TweakLayerView {
  name: string;
  op: string;
  /** The variant's own treatment: its weight format and granularity, or FP and why. */
  weight: string;
  activation: string | null;
  /** Null when the layer can be changed; else why not (it lives in a region cached in FP, ...). */
  fixed: string | null;
}

/** What a layer becomes: as the variant quantized it, FP (weight and input), or its weight in another format. */
export const LayerChoice = z.union([z.enum(['variant', 'fp']), z.record(z.string(), z.unknown())]);
export type LayerChoice = 'variant' | 'fp' | FormatSpec;

/** A same-seed grid of a variant with some layers changed: a row per class (or prompt), a column per seed. */
export const TweakSpec = z
  .object({
    choices: z.record(z.string().max(1024), LayerChoice).refine((c) => Object.keys(c).length <= 4096, 'at most 4096 layers'),
    seeds: z.array(z.number().int().min(0).max(1_000_000)).min(1).max(16),
    /** Class pipelines: a row per class; text-to-image pipelines give prompts instead. */
    classes: z.array(z.number().int().min(0).max(1_000_000)).max(16).default([]),
    prompts: z.array(z.string().max(MAX_PROMPT_CHARS)).min(1).max(8).optional(),
    steps: z.number().int().min(1).max(200),
    guidance: z.number().min(0).max(100).optional(),
    sampler: z.enum(SAMPLER_NAMES).optional(),
  })
  .strict();
export type TweakSpec = z.input<typeof TweakSpec>;

export interface TweakResult {
  /** The grid (PNG). */
  grid: Artifact;
  rows: number;
  cols: number;
  /** Layers whose graph differs from the variant's. */
  changed: string[];
  /** Where the round trip went: the graph edit, the new session, the samples; total as the host measured it. */
  seconds: { graph: number; session: number; sample: number; total: number };
}

/* ---------------------------------------------------------------- the API -- */

export interface StudioApi {
  /** The models shipped with the studio (models/). */
  listModels(): Promise<Result<EmbeddedModel[]>>;
  /** Host facts the UI shows: which shell, which providers onnxruntime offers. */
  hostInfo(): Promise<Result<HostInfo>>;
  /** A pipeline's make-up and layer map: an embedded model id or a pipeline folder path. */
  modelInfo(model: string): Promise<Result<ModelInfo>>;
  listPresets(): Promise<Result<PresetInfo[]>>;
  /** Starts a long job off the host's main thread; progress and the outcome arrive as events. */
  startJob(spec: JobSpec): Promise<Result<{ jobId: string }>>;
  cancelJob(jobId: string): Promise<Result<{ cancelled: boolean }>>;
  listJobs(): Promise<Result<JobInfo[]>>;
  /** The record a calibrate job wrote. */
  getCalibration(jobId: string): Promise<Result<CalibrationView>>;
  /** A file a job wrote (images, videos), by its name in the job's output. */
  readArtifact(jobId: string, file: string): Promise<Result<Artifact>>;
  /** A quantize job's variant, layer by layer, and which layers can be changed interactively. */
  variantLayers(jobId: string): Promise<Result<TweakLayerView[]>>;
  /** Samples a quantize job's variant with some layers changed (FP, or another weight format): ~2 s on the embedded model. */
  tweakVariant(jobId: string, spec: TweakSpec): Promise<Result<TweakResult>>;
  /** Shows a job's result folder in the file manager (desktop hosts; elsewhere UNSUPPORTED, naming the path). */
  revealJob(jobId: string): Promise<Result<{ path: string }>>;
  /** A native folder picker (desktop hosts; elsewhere UNSUPPORTED): the chosen folder, or null when cancelled. */
  pickFolder(): Promise<Result<{ path: string | null }>>;
}

/** The renderer's side: the requests plus the job event stream. */
export interface StudioClient extends StudioApi {
  /** Subscribes to job events; returns the unsubscribe function. */
  onEvent(listener: (e: JobEvent) => void): () => void;
}

/** Request names, each validated on the host side with its schema before anything runs. */
export const Requests = {
  listModels: z.tuple([]),
  hostInfo: z.tuple([]),
  modelInfo: z.tuple([modelRef]),
  listPresets: z.tuple([]),
  startJob: z.tuple([JobSpec]),
  cancelJob: z.tuple([id]),
  listJobs: z.tuple([]),
  getCalibration: z.tuple([id]),
  readArtifact: z.tuple([id, z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'not a file name')]),
  variantLayers: z.tuple([id]),
  tweakVariant: z.tuple([id, TweakSpec]),
  revealJob: z.tuple([id]),
  pickFolder: z.tuple([]),
} as const satisfies Record<keyof StudioApi, z.ZodType>;
export type RequestName = keyof typeof Requests;

export const IPC_PREFIX = 'dq:';
export const IPC_EVENT = 'dq:event';
