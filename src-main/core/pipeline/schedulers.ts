/**
 * Noise schedulers following the diffusers formulas: DDPMScheduler, DDIMScheduler, PNDMScheduler (PLMS, with or
 * without the Runge-Kutta warm-up), EulerDiscreteScheduler, EulerAncestralDiscreteScheduler,
 * DPMSolverMultistepScheduler (algorithm_type "dpmsolver++", solver order 1 or 2, optional Karras sigmas) and
 * LCMScheduler, configured by a pipeline's scheduler/scheduler_config.json. Arithmetic is float64 on flat arrays
 * holding the whole batch (every coefficient is a scalar per step).
 *
 * A config field diffusers writes for these classes is honoured, or refused with a one-line error naming it; fields
 * we do not know pass through untouched. Fields missing from the file take the defaults of the class named by
 * `_class_name` (as diffusers' from_config does), then ours.
 */
import { z } from 'zod';
import { DqError } from '../errors.js';

export const SAMPLERS = ['ddpm', 'ddim', 'dpm++2m', 'euler', 'pndm', 'euler-a', 'dpm++2m-karras', 'lcm', 'flow-euler'] as const;
export type SamplerName = (typeof SAMPLERS)[number];

/** Training timesteps a scheduler config may declare (diffusers' models use 1000; a few 4000). */
export const MAX_TRAIN_TIMESTEPS = 100_000;
/** A beta is a variance fraction: strictly between 0 and 1. */
const beta = z.number().gt(0, { error: (i) => `must be > 0 and < 1 (a beta is a variance fraction), got ${String(i.input)}` }).lt(1, { error: (i) => `must be > 0 and < 1 (a beta is a variance fraction), got ${String(i.input)}` });
const positive = z.number().positive();

export const SchedulerConfigSchema = z
  .object({
    num_train_timesteps: z.number().int().positive().max(MAX_TRAIN_TIMESTEPS, { error: `must be at most ${MAX_TRAIN_TIMESTEPS}` }).default(1000),
    beta_start: beta.default(0.0001),
    beta_end: beta.default(0.02),
    beta_schedule: z.enum(['linear', 'scaled_linear', 'squaredcos_cap_v2']).default('linear'),
    trained_betas: z.array(beta).nullish(),
    prediction_type: z.enum(['epsilon', 'v_prediction', 'sample']).default('epsilon'),
    clip_sample: z.boolean().default(false),
    clip_sample_range: z.number().positive().default(1.0),
    set_alpha_to_one: z.boolean().default(true),
    steps_offset: z.number().int().nonnegative().default(0),
    timestep_spacing: z.enum(['leading', 'trailing', 'linspace']).default('leading'),
    /** DDPM's posterior variance; DPMSolverMultistepScheduler writes null here. */
    variance_type: z
      .enum(['fixed_small', 'fixed_large'])
      .nullish()
      .transform((v) => v ?? 'fixed_small'),
    /** Zero terminal SNR (Lin et al. 2023): betas rescaled so the last timestep is pure noise. */
    rescale_betas_zero_snr: z.boolean().default(false),
    /** Dynamic thresholding (pixel-space models); not supported, refused by the samplers that read it. */
    thresholding: z.boolean().default(false),
    // PNDMScheduler
    skip_prk_steps: z.boolean().default(false),
    // EulerDiscreteScheduler / DPMSolverMultistepScheduler
    use_karras_sigmas: z.boolean().nullish().transform((v) => v ?? false),
    use_exponential_sigmas: z.boolean().nullish().transform((v) => v ?? false),
    use_beta_sigmas: z.boolean().nullish().transform((v) => v ?? false),
    use_lu_lambdas: z.boolean().nullish().transform((v) => v ?? false),
    use_flow_sigmas: z.boolean().nullish().transform((v) => v ?? false),
    sigma_min: positive.nullish(),
    sigma_max: positive.nullish(),
    interpolation_type: z.enum(['linear', 'log_linear']).default('linear'),
    timestep_type: z.enum(['discrete', 'continuous']).default('discrete'),
    final_sigmas_type: z.enum(['zero', 'sigma_min']).default('zero'),
    // DPMSolverMultistepScheduler
    solver_order: z.number().int().min(1).max(3).default(2),
    algorithm_type: z.string().default('dpmsolver++'),
    solver_type: z.string().default('midpoint'),
    lower_order_final: z.boolean().default(true),
    euler_at_final: z.boolean().default(false),
    /** JSON cannot write -inf: null (diffusers' default) means no clipping. */
    lambda_min_clipped: z.number().nullish(),
    // FlowMatchEulerDiscreteScheduler (SD3, Flux): sigma from 1 (noise) to 0, timestep = sigma x 1000
    shift: positive.default(1.0),
    use_dynamic_shifting: z.boolean().default(false),
    base_shift: z.number().default(0.5),
    max_shift: z.number().default(1.15),
    base_image_seq_len: z.number().int().positive().default(256),
    max_image_seq_len: z.number().int().positive().default(4096),
    time_shift_type: z.enum(['exponential', 'linear']).default('exponential'),
    shift_terminal: z.number().gt(0).lt(1).nullish(),
    invert_sigmas: z.boolean().default(false),
    stochastic_sampling: z.boolean().default(false),
    // LCMScheduler
    original_inference_steps: z.number().int().positive().default(50),
    timestep_scaling: z.number().nonnegative().default(10.0),
  })
  .passthrough();
export type SchedulerConfig = z.infer<typeof SchedulerConfigSchema>;

/**
 * The __init__ defaults of each diffusers scheduler class where they differ from the schema's: a config file lacks
 * a field when it was written before the field existed, and diffusers then uses the class default.
 */
const CLASS_DEFAULTS: Record<string, Record<string, unknown>> = {
  DDPMScheduler: { clip_sample: true, timestep_spacing: 'leading' },
  DDIMScheduler: { clip_sample: true, set_alpha_to_one: true, timestep_spacing: 'leading' },
  PNDMScheduler: { set_alpha_to_one: false, skip_prk_steps: false, timestep_spacing: 'leading' },
  EulerDiscreteScheduler: { timestep_spacing: 'linspace' },
  EulerAncestralDiscreteScheduler: { timestep_spacing: 'linspace' },
  DPMSolverMultistepScheduler: { timestep_spacing: 'linspace' },
  LCMScheduler: {
    beta_start: 0.00085,
    beta_end: 0.012,
    beta_schedule: 'scaled_linear',
    set_alpha_to_one: true,
    timestep_spacing: 'leading',
  },
};

/** The sampler a scheduler class stands for (the pipeline's default sampler). */
const CLASS_SAMPLER: Record<string, SamplerName> = {
  DDPMScheduler: 'ddpm',
  DDIMScheduler: 'ddim',
  PNDMScheduler: 'pndm',
  EulerDiscreteScheduler: 'euler',
  EulerAncestralDiscreteScheduler: 'euler-a',
  DPMSolverMultistepScheduler: 'dpm++2m',
  LCMScheduler: 'lcm',
  FlowMatchEulerDiscreteScheduler: 'flow-euler',
};

/** Whether a scheduler config is a flow-matching one (the model predicts a velocity; sigma runs from 1 to 0). */
export function isFlowConfig(cfg: object): boolean {
  const cls = (cfg as Record<string, unknown>)._class_name;
  return typeof cls === 'string' && cls.startsWith('FlowMatch');
}

/**
 * The sampler a scheduler config's `_class_name` names (DPMSolverMultistepScheduler with use_karras_sigmas gives
 * 'dpm++2m-karras'), or undefined when the class is absent or not one of ours (the caller picks its own default).
 */
export function defaultSampler(cfg: { _class_name?: unknown; use_karras_sigmas?: unknown }): SamplerName | undefined {
  const cls = typeof cfg._class_name === 'string' ? cfg._class_name : undefined;
  const s = cls !== undefined && Object.hasOwn(CLASS_SAMPLER, cls) ? CLASS_SAMPLER[cls] : undefined;
  return s === 'dpm++2m' && cfg.use_karras_sigmas === true ? 'dpm++2m-karras' : s;
}

export function parseSchedulerConfig(raw: unknown, where = 'scheduler_config.json'): SchedulerConfig {
  let input = raw;
  if (raw !== null && typeof raw === 'object' && !Array.isArray(raw)) {
    const cls = (raw as Record<string, unknown>)._class_name;
    if (typeof cls === 'string' && Object.hasOwn(CLASS_DEFAULTS, cls)) input = { ...CLASS_DEFAULTS[cls], ...raw };
  }
  const r = SchedulerConfigSchema.safeParse(input);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new DqError('BAD_CONFIG', `${where}: field '${issue.path.join('.')}': ${issue.message}`);
  }
  const cfg = r.data;
  const T = cfg.num_train_timesteps;
  if (cfg.trained_betas && cfg.trained_betas.length !== T) {
    throw new DqError('BAD_CONFIG', `${where}: trained_betas has ${cfg.trained_betas.length} values, num_train_timesteps is ${T}`);
  }
  if (!cfg.trained_betas && cfg.beta_schedule !== 'squaredcos_cap_v2' && !(cfg.beta_start < cfg.beta_end)) {
    throw new DqError('BAD_CONFIG', `${where}: beta_start (${cfg.beta_start}) must be below beta_end (${cfg.beta_end}): noise grows over the timesteps`);
  }
  if (cfg.steps_offset >= T) {
    throw new DqError('BAD_CONFIG', `${where}: field 'steps_offset': ${cfg.steps_offset} is not below num_train_timesteps (${T}): every timestep would be past the last trained one`);
  }
  const sigmaKinds = (['use_karras_sigmas', 'use_exponential_sigmas', 'use_beta_sigmas'] as const).filter((k) => cfg[k]);
  if (sigmaKinds.length > 1) throw new DqError('BAD_CONFIG', `${where}: only one of ${sigmaKinds.join(', ')} can be set`);
  for (const k of ['use_exponential_sigmas', 'use_beta_sigmas', 'use_lu_lambdas', 'use_flow_sigmas'] as const) {
    if (cfg[k]) throw new DqError('BAD_CONFIG', `${where}: field '${k}': not supported (use_karras_sigmas is)`);
  }
  if (isFlowConfig(cfg)) {
    if (cfg._class_name !== 'FlowMatchEulerDiscreteScheduler') throw new DqError('BAD_CONFIG', `${where}: ${String(cfg._class_name)} is not supported (FlowMatchEulerDiscreteScheduler is)`);
    for (const k of ['invert_sigmas', 'stochastic_sampling', 'use_karras_sigmas'] as const) {
      if (cfg[k]) throw new DqError('BAD_CONFIG', `${where}: field '${k}': not supported for flow matching`);
    }
    return cfg;
  }
  let p = 1;
  for (const b of rawBetas(cfg)) p *= 1 - b;
  if (!(p > 0)) {
    throw new DqError('BAD_CONFIG', `${where}: the betas leave no signal at all (cumulative alpha underflows to 0 by timestep ${T - 1}): lower beta_end or num_train_timesteps`);
  }
  return cfg;
}

/** The configured schedule's betas before any zero-SNR rescaling. */
function rawBetas(cfg: SchedulerConfig): Float64Array {
  const n = cfg.num_train_timesteps;
  const b = new Float64Array(n);
  if (cfg.trained_betas) {
    b.set(cfg.trained_betas);
    return b;
  }
  if (cfg.beta_schedule === 'linear') {
    for (let i = 0; i < n; i++) b[i] = n === 1 ? cfg.beta_start : cfg.beta_start + ((cfg.beta_end - cfg.beta_start) * i) / (n - 1);
  } else if (cfg.beta_schedule === 'scaled_linear') {
    const s = Math.sqrt(cfg.beta_start);
    const e = Math.sqrt(cfg.beta_end);
    for (let i = 0; i < n; i++) b[i] = (n === 1 ? s : s + ((e - s) * i) / (n - 1)) ** 2;
  } else {
    // squaredcos_cap_v2: betas_for_alpha_bar with the cosine alpha_bar and max_beta 0.999
    const ab = (t: number) => Math.cos(((t + 0.008) / 1.008) * Math.PI * 0.5) ** 2;
    for (let i = 0; i < n; i++) b[i] = Math.min(1 - ab((i + 1) / n) / ab(i / n), 0.999);
  }
  return b;
}

/**
 * betas for the configured schedule (diffusers' formulas, computed in float64). With rescale_betas_zero_snr the
 * square roots of the cumulative alphas are shifted and scaled so the first keeps its value and the last is 0
 * (the last beta becomes 1).
 */
export function betas(cfg: SchedulerConfig): Float64Array {
  const b = rawBetas(cfg);
  if (!cfg.rescale_betas_zero_snr) return b;
  const n = b.length;
  const root = new Float64Array(n);
  let p = 1;
  for (let i = 0; i < n; i++) {
    p *= 1 - b[i]!;
    root[i] = Math.sqrt(p);
  }
  const first = root[0]!;
  const last = root[n - 1]!;
  const bar = root.map((r) => ((r - last) * first) / (first - last)).map((r) => r * r);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = 1 - (i === 0 ? bar[0]! : bar[i]! / bar[i - 1]!);
  return out;
}

export function alphasCumprod(cfg: SchedulerConfig): Float64Array {
  const b = betas(cfg);
  const ac = new Float64Array(b.length);
  let p = 1;
  for (let i = 0; i < b.length; i++) {
    p *= 1 - b[i]!;
    ac[i] = p;
  }
  return ac;
}

/** Cumulative alphas as the sigma-space schedulers see them: a zero terminal SNR becomes 2^-24 (sigma finite). */
function sigmaSpaceAlphasCumprod(cfg: SchedulerConfig): Float64Array {
  const ac = alphasCumprod(cfg);
  if (cfg.rescale_betas_zero_snr) ac[ac.length - 1] = 2 ** -24;
  return ac;
}

function checkSteps(cfg: SchedulerConfig, steps: number): void {
  const T = cfg.num_train_timesteps;
  if (!Number.isInteger(steps) || steps < 1 || steps > T) {
    throw new DqError('BAD_ARGUMENT', `steps must be an integer from 1 to ${T}, got ${steps}`);
  }
}

/** Discrete timesteps for `steps` inference steps per timestep_spacing (DDPM/DDIM/Euler convention). */
export function spacedTimesteps(cfg: SchedulerConfig, steps: number, roundLinspace = true): number[] {
  checkSteps(cfg, steps);
  const out = spaced(cfg, steps, roundLinspace);
  checkTimesteps(cfg, out, steps);
  return out;
}

/** Every timestep within the trained range [0, T-1] (a steps_offset can push 'leading' past it). */
function checkTimesteps(cfg: SchedulerConfig, ts: readonly number[], steps: number): void {
  const T = cfg.num_train_timesteps;
  const k = ts.findIndex((t) => !(t >= 0 && t <= T - 1));
  if (k >= 0 || ts.length !== steps) {
    throw new DqError(
      'BAD_ARGUMENT',
      `${steps} steps reach timestep ${ts[k] ?? '?'}, outside the trained 0-${T - 1} (timestep_spacing '${cfg.timestep_spacing}', steps_offset ${cfg.steps_offset}): use fewer steps`,
    );
  }
}

/** numpy's arange(T, 0, -T/steps): T - i*T/steps while positive. */
function trailingPoints(start: number, T: number, steps: number): number[] {
  const ratio = T / steps;
  const out: number[] = [];
  for (let i = 0; start - i * ratio > 0; i++) out.push(start - i * ratio);
  return out;
}

/** Descending timesteps (diffusers' set_timesteps of DDPM, DDIM, Euler). */
function spaced(cfg: SchedulerConfig, steps: number, roundLinspace: boolean): number[] {
  const T = cfg.num_train_timesteps;
  const out: number[] = [];
  if (cfg.timestep_spacing === 'leading') {
    const ratio = Math.floor(T / steps);
    for (let i = steps - 1; i >= 0; i--) out.push(i * ratio + cfg.steps_offset);
  } else if (cfg.timestep_spacing === 'trailing') {
    for (const v of trailingPoints(T, T, steps)) out.push(roundHalfEven(v) - 1);
  } else {
    for (let i = steps - 1; i >= 0; i--) {
      const v = steps === 1 ? 0 : ((T - 1) * i) / (steps - 1);
      out.push(roundLinspace ? roundHalfEven(v) : v);
    }
  }
  return out;
}

/** numpy's round(): halves to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export interface StepResult {
  prevSample: Float64Array;
  /** The step's x0 estimate (for LCM: its boundary-condition "denoised", what the LCM pipeline decodes). */
  predOriginal: Float64Array;
}

export interface Scheduler {
  readonly name: SamplerName;
  /**
   * Model timesteps, in sampling order: one network evaluation each (PNDM repeats one, and its Runge-Kutta warm-up
   * adds more, so there can be more than the requested steps). Sigma-space samplers may give fractional ones.
   */
  readonly timesteps: number[];
  /** Scale of the initial noise (1 except for sigma-space samplers). */
  readonly initNoiseSigma: number;
  /** What the network sees at step i (identity except for sigma-space samplers). */
  scaleModelInput(sample: Float64Array, i: number): Float64Array;
  /** One denoising step (steps must be taken in order); `noise` supplies fresh Gaussian noise for stochastic samplers. */
  step(modelOutput: Float64Array, i: number, sample: Float64Array, noise?: () => Float64Array): StepResult;
}

export interface SchedulerOptions {
  /** Flow matching with use_dynamic_shifting: the image's token count (SD3: patches; Flux: packed 2x2 latents). */
  imageSeqLen?: number;
  /** Flow matching: the sigmas the pipeline passes (Flux: linspace(1, 1/N, N)); default: the scheduler's own. */
  flowSigmas?: 'scheduler' | 'flux';
  /** DDIM: eta (0 = deterministic DDIM, 1 = DDPM-like variance). */
  eta?: number;
  /** DDIM: recompute epsilon from the clipped x0 (diffusers' use_clipped_model_output). */
  useClippedModelOutput?: boolean;
}

type Prediction = SchedulerConfig['prediction_type'];

/** x0 and epsilon from the model output at cumulative alpha `a` (VP space). */
function predictVP(pred: Prediction, out: Float64Array, x: Float64Array, a: number): { x0: Float64Array; eps: Float64Array } {
  const sa = Math.sqrt(a);
  const sb = Math.sqrt(1 - a);
  const x0 = new Float64Array(x.length);
  const eps = new Float64Array(x.length);
  for (let k = 0; k < x.length; k++) {
    if (pred === 'epsilon') {
      x0[k] = (x[k]! - sb * out[k]!) / sa;
      eps[k] = out[k]!;
    } else if (pred === 'sample') {
      x0[k] = out[k]!;
      eps[k] = (x[k]! - sa * out[k]!) / sb;
    } else {
      x0[k] = sa * x[k]! - sb * out[k]!;
      eps[k] = sa * out[k]! + sb * x[k]!;
    }
  }
  return { x0, eps };
}

function clip(cfg: SchedulerConfig, x0: Float64Array): void {
  if (!cfg.clip_sample) return;
  const r = cfg.clip_sample_range;
  for (let k = 0; k < x0.length; k++) x0[k] = Math.min(r, Math.max(-r, x0[k]!));
}

function predict(cfg: SchedulerConfig, out: Float64Array, x: Float64Array, a: number): { x0: Float64Array; eps: Float64Array } {
  const r = predictVP(cfg.prediction_type, out, x, a);
  clip(cfg, r.x0);
  return r;
}

function refuse(cond: boolean, sampler: SamplerName, field: string, why: string): void {
  if (cond) throw new DqError('BAD_CONFIG', `sampler '${sampler}': scheduler config field '${field}': ${why}`);
}

/** Epsilon prediction at a timestep with no signal left divides by sqrt(alpha_cumprod) = 0. */
function refuseZeroSignal(cfg: SchedulerConfig, ac: Float64Array, ts: readonly number[], sampler: SamplerName): void {
  refuse(
    cfg.prediction_type === 'epsilon' && ts.some((t) => ac[Math.round(t)] === 0),
    sampler,
    'rescale_betas_zero_snr',
    `a zero terminal SNR leaves no signal at timestep ${cfg.num_train_timesteps - 1}, where an epsilon prediction gives no x0 (use prediction_type v_prediction, or timestep_spacing 'leading')`,
  );
}

class DDPM implements Scheduler {
  readonly name = 'ddpm' as const;
  readonly timesteps: number[];
  readonly initNoiseSigma = 1;
  private readonly ac: Float64Array;
  private readonly stepRatio: number;
  constructor(private readonly cfg: SchedulerConfig, steps: number) {
    refuse(cfg.thresholding, this.name, 'thresholding', 'dynamic thresholding is not supported');
    this.ac = alphasCumprod(cfg);
    this.timesteps = spacedTimesteps(cfg, steps);
    this.stepRatio = Math.floor(cfg.num_train_timesteps / steps);
    refuseZeroSignal(cfg, this.ac, this.timesteps, this.name);
  }
  scaleModelInput(sample: Float64Array): Float64Array {
    return sample;
  }
  step(out: Float64Array, i: number, x: Float64Array, noise?: () => Float64Array): StepResult {
    const t = this.timesteps[i]!;
    const prev = t - this.stepRatio;
    const aT = this.ac[t]!;
    const aP = prev >= 0 ? this.ac[prev]! : 1;
    const curAlpha = aT / aP;
    const curBeta = 1 - curAlpha;
    const { x0 } = predict(this.cfg, out, x, aT);
    const c0 = (Math.sqrt(aP) * curBeta) / (1 - aT);
    const cx = (Math.sqrt(curAlpha) * (1 - aP)) / (1 - aT);
    const prevSample = new Float64Array(x.length);
    for (let k = 0; k < x.length; k++) prevSample[k] = c0 * x0[k]! + cx * x[k]!;
    if (t > 0) {
      const variance =
        this.cfg.variance_type === 'fixed_large' ? curBeta : Math.max(((1 - aP) / (1 - aT)) * curBeta, 1e-20);
      const std = Math.sqrt(variance);
      const z = requireNoise(noise, x.length);
      for (let k = 0; k < x.length; k++) prevSample[k] = prevSample[k]! + std * z[k]!;
    }
    return { prevSample, predOriginal: x0 };
  }
}

class DDIM implements Scheduler {
  readonly name = 'ddim' as const;
  readonly timesteps: number[];
  readonly initNoiseSigma = 1;
  private readonly ac: Float64Array;
  private readonly stepRatio: number;
  constructor(private readonly cfg: SchedulerConfig, steps: number, private readonly opts: SchedulerOptions) {
    refuse(cfg.thresholding, this.name, 'thresholding', 'dynamic thresholding is not supported');
    this.ac = alphasCumprod(cfg);
    this.timesteps = spacedTimesteps(cfg, steps);
    this.stepRatio = Math.floor(cfg.num_train_timesteps / steps);
    refuseZeroSignal(cfg, this.ac, this.timesteps, this.name);
    const eta = opts.eta ?? 0;
    if (!(eta >= 0) || !Number.isFinite(eta)) throw new DqError('BAD_ARGUMENT', `eta must be a finite number >= 0, got ${eta}`);
  }
  scaleModelInput(sample: Float64Array): Float64Array {
    return sample;
  }
  step(out: Float64Array, i: number, x: Float64Array, noise?: () => Float64Array): StepResult {
    const t = this.timesteps[i]!;
    const prev = t - this.stepRatio;
    const aT = this.ac[t]!;
    const aP = prev >= 0 ? this.ac[prev]! : this.cfg.set_alpha_to_one ? 1 : this.ac[0]!;
    const { x0, eps: e } = predict(this.cfg, out, x, aT);
    let eps = e;
    if (this.opts.useClippedModelOutput) {
      eps = new Float64Array(x.length);
      for (let k = 0; k < x.length; k++) eps[k] = (x[k]! - Math.sqrt(aT) * x0[k]!) / Math.sqrt(1 - aT);
    }
    const eta = this.opts.eta ?? 0;
    const variance = ((1 - aP) / (1 - aT)) * (1 - aT / aP);
    const std = eta * Math.sqrt(variance);
    const dirCoef = Math.sqrt(Math.max(0, 1 - aP - std * std));
    const sP = Math.sqrt(aP);
    const prevSample = new Float64Array(x.length);
    for (let k = 0; k < x.length; k++) prevSample[k] = sP * x0[k]! + dirCoef * eps[k]!;
    if (eta > 0) {
      const z = requireNoise(noise, x.length);
      for (let k = 0; k < x.length; k++) prevSample[k] = prevSample[k]! + std * z[k]!;
    }
    return { prevSample, predOriginal: x0 };
  }
}

/**
 * PNDMScheduler: pseudo linear multistep (PLMS) on the noise prediction with the PNDM transfer formula; with
 * skip_prk_steps false, three Runge-Kutta steps (four evaluations each) warm it up. With skip_prk_steps the second
 * evaluation repeats the first timestep: it re-runs the first step with the average of both predictions (Heun-like).
 * diffusers accepts epsilon and v_prediction; 'sample' (an x0 prediction) is converted to epsilon at the same
 * timestep here.
 */
class PNDM implements Scheduler {
  readonly name = 'pndm' as const;
  readonly timesteps: number[];
  readonly initNoiseSigma = 1;
  private readonly ac: Float64Array;
  private readonly finalAlpha: number;
  private readonly ratio: number;
  private readonly prk: number[];
  private counter = 0;
  private ets: Float64Array[] = [];
  private acc: Float64Array | null = null;
  private curSample: Float64Array | null = null;
  constructor(private readonly cfg: SchedulerConfig, steps: number) {
    refuse(cfg.rescale_betas_zero_snr, this.name, 'rescale_betas_zero_snr', 'PNDMScheduler has no zero-terminal-SNR rescaling (use ddim, euler or dpm++2m)');
    checkSteps(cfg, steps);
    const T = cfg.num_train_timesteps;
    this.ac = alphasCumprod(cfg);
    this.finalAlpha = cfg.set_alpha_to_one ? 1 : this.ac[0]!;
    this.ratio = Math.floor(T / steps);
    // ascending base timesteps
    let base: number[];
    if (cfg.timestep_spacing === 'linspace') {
      base = Array.from({ length: steps }, (_, i) => roundHalfEven(steps === 1 ? 0 : ((T - 1) * i) / (steps - 1)));
    } else if (cfg.timestep_spacing === 'leading') {
      base = Array.from({ length: steps }, (_, i) => i * this.ratio + cfg.steps_offset);
    } else {
      base = trailingPoints(T, T, steps)
        .map((v) => roundHalfEven(v) - 1)
        .reverse();
    }
    let plms: number[];
    if (cfg.skip_prk_steps) {
      this.prk = [];
      plms = [...base.slice(0, -1), ...base.slice(-2, -1), ...base.slice(-1)].reverse();
    } else {
      if (steps < 4) {
        throw new DqError('BAD_ARGUMENT', `pndm: the Runge-Kutta warm-up (skip_prk_steps false) needs at least 4 steps, got ${steps}`);
      }
      const half = Math.floor(this.ratio / 2);
      const pairs = base.slice(-4).flatMap((b) => [b, b + half]);
      const doubled = pairs.slice(0, -1).flatMap((v) => [v, v]);
      this.prk = doubled.slice(1, -1).reverse();
      plms = base.slice(0, Math.max(0, base.length - 3)).reverse();
    }
    this.timesteps = [...this.prk, ...plms];
    const bad = this.timesteps.find((t) => !(t >= 0 && t <= T - 1));
    if (bad !== undefined) {
      throw new DqError('BAD_ARGUMENT', `${steps} steps reach timestep ${bad}, outside the trained 0-${T - 1} (timestep_spacing '${cfg.timestep_spacing}', steps_offset ${cfg.steps_offset}): use fewer steps`);
    }
    refuseZeroSignal(cfg, this.ac, this.timesteps, this.name);
  }
  scaleModelInput(sample: Float64Array): Float64Array {
    return sample;
  }
  step(out: Float64Array, i: number, x: Float64Array): StepResult {
    if (i !== this.counter) throw new Error(`pndm steps must be taken in order: expected step ${this.counter}, got ${i}`);
    const t = this.timesteps[i]!;
    const predOriginal = predictVP(this.cfg.prediction_type, out, x, this.ac[t]!).x0;
    // 'sample' models: the epsilon their x0 implies, at this timestep (PLMS combines noise predictions).
    const mo = this.cfg.prediction_type === 'sample' ? predictVP('sample', out, x, this.ac[t]!).eps : out;
    const prevSample = this.counter < this.prk.length && !this.cfg.skip_prk_steps ? this.stepPrk(mo, t, x) : this.stepPlms(mo, t, x);
    this.counter++;
    return { prevSample, predOriginal };
  }
  private stepPrk(mo: Float64Array, t: number, x: Float64Array): Float64Array {
    const c = this.counter;
    const prev = t - (c % 2 ? 0 : Math.floor(this.ratio / 2));
    const from = this.prk[Math.floor(c / 4) * 4]!;
    let use = mo;
    if (c % 4 === 0) {
      this.acc = mo.map((v) => v / 6);
      this.ets.push(mo);
      this.curSample = x;
    } else if (c % 4 === 3) {
      use = mo.map((v, k) => this.acc![k]! + v / 6);
      this.acc = null;
    } else {
      this.acc = this.acc!.map((v, k) => v + mo[k]! / 3);
    }
    return this.transfer(this.curSample ?? x, from, prev, use);
  }
  private stepPlms(mo: Float64Array, t: number, x: Float64Array): Float64Array {
    let from = t;
    let prev = t - this.ratio;
    if (this.counter !== 1) {
      this.ets = [...this.ets.slice(-3), mo];
    } else {
      prev = t;
      from = t + this.ratio;
    }
    const e = this.ets;
    const n = e.length;
    let sample = x;
    let use: Float64Array;
    if (n === 1 && this.counter === 0) {
      use = mo;
      this.curSample = x;
    } else if (n === 1 && this.counter === 1) {
      use = mo.map((v, k) => (v + e[0]![k]!) / 2);
      sample = this.curSample!;
      this.curSample = null;
    } else if (n === 2) {
      use = e[1]!.map((v, k) => (3 * v - e[0]![k]!) / 2);
    } else if (n === 3) {
      use = e[2]!.map((v, k) => (23 * v - 16 * e[1]![k]! + 5 * e[0]![k]!) / 12);
    } else {
      use = e[3]!.map((v, k) => (55 * v - 59 * e[2]![k]! + 37 * e[1]![k]! - 9 * e[0]![k]!) / 24);
    }
    return this.transfer(sample, from, prev, use);
  }
  /** PNDM's transfer from timestep t to tPrev given a (combined) model output (formula 9 of the PNDM paper). */
  private transfer(x: Float64Array, t: number, tPrev: number, mo: Float64Array): Float64Array {
    const a = this.ac[t]!;
    const ap = tPrev >= 0 ? this.ac[tPrev]! : this.finalAlpha;
    const eps = this.cfg.prediction_type === 'v_prediction' ? mo.map((v, k) => Math.sqrt(a) * v + Math.sqrt(1 - a) * x[k]!) : mo;
    const cs = Math.sqrt(ap / a);
    const den = a * Math.sqrt(1 - ap) + Math.sqrt(a * (1 - a) * ap);
    const ce = (ap - a) / den;
    return x.map((v, k) => cs * v - ce * eps[k]!);
  }
}

/** sigma = sqrt((1 - a) / a) at (fractional) timestep positions, linearly interpolated (np.interp). */
function interpSigmas(all: readonly number[], ts: readonly number[]): number[] {
  return ts.map((t) => {
    if (t <= 0) return all[0]!;
    if (t >= all.length - 1) return all[all.length - 1]!;
    const lo = Math.floor(t);
    const f = t - lo;
    return all[lo]! * (1 - f) + all[lo + 1]! * f;
  });
}

function trainSigmas(ac: Float64Array): number[] {
  return Array.from(ac, (a) => Math.sqrt((1 - a) / a));
}

/** Karras et al. (2022) sigmas: rho = 7 ramp from sigmaMax down to sigmaMin. */
function karrasSigmas(sigmaMin: number, sigmaMax: number, n: number): number[] {
  const lo = sigmaMin ** (1 / 7);
  const hi = sigmaMax ** (1 / 7);
  return Array.from({ length: n }, (_, i) => (hi + (n === 1 ? 0 : i / (n - 1)) * (lo - hi)) ** 7);
}

/** The fractional training timestep of a sigma: linear interpolation in log sigma between its neighbours. */
function sigmaToT(sigma: number, logSigmas: readonly number[]): number {
  const ls = Math.log(Math.max(sigma, 1e-10));
  let count = 0;
  while (count < logSigmas.length && logSigmas[count]! <= ls) count++;
  const low = Math.min(Math.max(count - 1, 0), logSigmas.length - 2);
  const lowV = logSigmas[low]!;
  const highV = logSigmas[low + 1]!;
  const w = Math.min(1, Math.max(0, (lowV - ls) / (lowV - highV)));
  return (1 - w) * low + w * (low + 1);
}

/** Fractional descending timesteps of the Euler schedulers (linspace unrounded). */
function eulerTimesteps(cfg: SchedulerConfig, steps: number): number[] {
  checkSteps(cfg, steps);
  const ts = spaced(cfg, steps, false);
  checkTimesteps(cfg, ts, steps);
  return ts;
}

/** x0 of an Euler-family step from the model output at sigma (sigma-space sample x). */
function eulerX0(pred: Prediction, out: Float64Array, x: Float64Array, sigma: number): Float64Array {
  const x0 = new Float64Array(x.length);
  const c = -sigma / Math.sqrt(sigma * sigma + 1);
  const s = 1 / (sigma * sigma + 1);
  for (let k = 0; k < x.length; k++) {
    if (pred === 'epsilon') x0[k] = x[k]! - sigma * out[k]!;
    else if (pred === 'sample') x0[k] = out[k]!;
    else x0[k] = out[k]! * c + x[k]! * s;
  }
  return x0;
}

function eulerInitSigma(cfg: SchedulerConfig, sigmas: readonly number[]): number {
  const max = Math.max(...sigmas);
  return cfg.timestep_spacing === 'leading' ? Math.sqrt(max * max + 1) : max;
}

function scaleBySigma(sample: Float64Array, sigma: number): Float64Array {
  const s = 1 / Math.sqrt(sigma * sigma + 1);
  return sample.map((v) => v * s);
}

/** EulerDiscreteScheduler (deterministic: s_churn 0), with interpolation_type, Karras sigmas and final_sigmas_type. */
class Euler implements Scheduler {
  readonly name = 'euler' as const;
  readonly timesteps: number[];
  readonly initNoiseSigma: number;
  private readonly sigmas: number[];
  constructor(private readonly cfg: SchedulerConfig, steps: number) {
    const ac = sigmaSpaceAlphasCumprod(cfg);
    const all = trainSigmas(ac);
    const logAll = all.map(Math.log);
    let ts = eulerTimesteps(cfg, steps);
    let sig =
      cfg.interpolation_type === 'linear'
        ? interpSigmas(all, ts)
        : Array.from({ length: steps + 1 }, (_, i) => Math.exp(Math.log(all[all.length - 1]!) + ((Math.log(all[0]!) - Math.log(all[all.length - 1]!)) * i) / steps));
    if (cfg.use_karras_sigmas) {
      sig = karrasSigmas(cfg.sigma_min ?? sig[sig.length - 1]!, cfg.sigma_max ?? sig[0]!, steps);
      ts = sig.map((s) => sigmaToT(s, logAll));
    }
    this.sigmas = [...sig, cfg.final_sigmas_type === 'sigma_min' ? all[0]! : 0];
    if (cfg.timestep_type === 'continuous' && cfg.prediction_type === 'v_prediction') {
      ts = this.sigmas.slice(0, -1).map((s) => 0.25 * Math.log(s));
    }
    this.timesteps = ts;
    this.initNoiseSigma = eulerInitSigma(cfg, this.sigmas);
  }
  scaleModelInput(sample: Float64Array, i: number): Float64Array {
    return scaleBySigma(sample, this.sigmas[i]!);
  }
  step(out: Float64Array, i: number, x: Float64Array): StepResult {
    const sigma = this.sigmas[i]!;
    const dt = this.sigmas[i + 1]! - sigma;
    const x0 = eulerX0(this.cfg.prediction_type, out, x, sigma);
    const prevSample = new Float64Array(x.length);
    for (let k = 0; k < x.length; k++) prevSample[k] = x[k]! + ((x[k]! - x0[k]!) / sigma) * dt;
    return { prevSample, predOriginal: x0 };
  }
}

/**
 * EulerAncestralDiscreteScheduler: an Euler step down to sigma_down, then fresh noise of std sigma_up (drawn at every
 * step, as diffusers does; the last step's sigma_up is 0). diffusers refuses 'sample' predictions; here they are
 * used as x0 directly, as EulerDiscreteScheduler does.
 */
class EulerAncestral implements Scheduler {
  readonly name = 'euler-a' as const;
  readonly timesteps: number[];
  readonly initNoiseSigma: number;
  private readonly sigmas: number[];
  constructor(private readonly cfg: SchedulerConfig, steps: number) {
    const all = trainSigmas(sigmaSpaceAlphasCumprod(cfg));
    this.timesteps = eulerTimesteps(cfg, steps);
    this.sigmas = [...interpSigmas(all, this.timesteps), 0];
    this.initNoiseSigma = eulerInitSigma(cfg, this.sigmas);
  }
  scaleModelInput(sample: Float64Array, i: number): Float64Array {
    return scaleBySigma(sample, this.sigmas[i]!);
  }
  step(out: Float64Array, i: number, x: Float64Array, noise?: () => Float64Array): StepResult {
    const from = this.sigmas[i]!;
    const to = this.sigmas[i + 1]!;
    const x0 = eulerX0(this.cfg.prediction_type, out, x, from);
    const up = Math.sqrt((to * to * (from * from - to * to)) / (from * from));
    const down = Math.sqrt(to * to - up * up);
    const dt = down - from;
    const z = requireNoise(noise, x.length);
    const prevSample = new Float64Array(x.length);
    for (let k = 0; k < x.length; k++) prevSample[k] = x[k]! + ((x[k]! - x0[k]!) / from) * dt + z[k]! * up;
    return { prevSample, predOriginal: x0 };
  }
}

/**
 * DPMSolverMultistepScheduler, algorithm_type dpmsolver++ ("deis" maps to it, as in diffusers), solver_order 1 or 2,
 * solver_type midpoint or heun, lower_order_final / euler_at_final / final_sigmas_type, lambda_min_clipped, and
 * Karras sigmas (use_karras_sigmas, or the 'dpm++2m-karras' sampler).
 */
class DPMSolverPP2M implements Scheduler {
  readonly timesteps: number[];
  readonly initNoiseSigma = 1;
  private readonly sigmas: number[];
  private readonly heun: boolean;
  private readonly history: Float64Array[] = [];
  constructor(readonly name: 'dpm++2m' | 'dpm++2m-karras', private readonly cfg: SchedulerConfig, steps: number) {
    checkSteps(cfg, steps);
    refuse(cfg.thresholding, name, 'thresholding', 'dynamic thresholding is not supported');
    refuse(!['dpmsolver++', 'deis'].includes(cfg.algorithm_type), name, 'algorithm_type', `'${cfg.algorithm_type}' is not supported (dpmsolver++ is)`);
    refuse(cfg.solver_order > 2, name, 'solver_order', `${cfg.solver_order} is not supported (1 or 2)`);
    refuse(!['midpoint', 'heun', 'logrho', 'bh1', 'bh2'].includes(cfg.solver_type), name, 'solver_type', `'${cfg.solver_type}' is not supported (midpoint or heun)`);
    this.heun = cfg.solver_type === 'heun';
    const ac = sigmaSpaceAlphasCumprod(cfg);
    const all = trainSigmas(ac);
    const T = cfg.num_train_timesteps;
    // lambda_min_clipped: drop the final timesteps whose log-SNR lies below it.
    let clipped = 0;
    if (cfg.lambda_min_clipped !== null && cfg.lambda_min_clipped !== undefined) {
      const lambdas = Array.from(ac, (a) => Math.log(Math.sqrt(a)) - Math.log(Math.sqrt(1 - a))).reverse();
      while (clipped < lambdas.length && lambdas[clipped]! < cfg.lambda_min_clipped) clipped++;
    }
    const last = T - clipped;
    // diffusers computes steps + 1 points and drops the last (t = 0 end point).
    let ts: number[] = [];
    if (cfg.timestep_spacing === 'leading') {
      const ratio = Math.floor(last / (steps + 1));
      for (let i = steps; i >= 1; i--) ts.push(i * ratio + cfg.steps_offset);
    } else if (cfg.timestep_spacing === 'trailing') {
      ts = trailingPoints(last, T, steps).map((v) => roundHalfEven(v) - 1);
    } else {
      for (let i = steps; i >= 1; i--) ts.push(roundHalfEven(((last - 1) * i) / steps));
    }
    let sig: number[];
    if (name === 'dpm++2m-karras' || cfg.use_karras_sigmas) {
      sig = karrasSigmas(all[0]!, all[all.length - 1]!, steps);
      const logAll = all.map(Math.log);
      ts = sig.map((s) => sigmaToT(s, logAll));
      if (cfg.beta_schedule !== 'squaredcos_cap_v2') ts = ts.map(roundHalfEven);
    } else {
      checkTimesteps(cfg, ts, steps);
      sig = interpSigmas(all, ts);
    }
    this.timesteps = ts;
    this.sigmas = [...sig, cfg.final_sigmas_type === 'sigma_min' ? all[0]! : 0];
  }
  scaleModelInput(sample: Float64Array): Float64Array {
    return sample;
  }
  private alphaSigma(sigma: number): [number, number] {
    const alpha = 1 / Math.sqrt(sigma * sigma + 1);
    return [alpha, sigma * alpha];
  }
  step(out: Float64Array, i: number, x: Float64Array): StepResult {
    const [aS, sS] = this.alphaSigma(this.sigmas[i]!);
    // convert_model_output for dpmsolver++: the data prediction x0 (no clip_sample: diffusers' class has none).
    const x0 = new Float64Array(x.length);
    for (let k = 0; k < x.length; k++) {
      if (this.cfg.prediction_type === 'epsilon') x0[k] = (x[k]! - sS * out[k]!) / aS;
      else if (this.cfg.prediction_type === 'sample') x0[k] = out[k]!;
      else x0[k] = aS * x[k]! - sS * out[k]!;
    }
    const n = this.timesteps.length;
    const lowerOrderFinal =
      i === n - 1 && (this.cfg.euler_at_final || (this.cfg.lower_order_final && n < 15) || this.cfg.final_sigmas_type === 'zero');
    const firstOrder = this.cfg.solver_order === 1 || this.history.length < 1 || lowerOrderFinal;
    this.history.push(x0);
    if (this.history.length > 2) this.history.shift();
    const sigmaT = this.sigmas[i + 1]!;
    const prevSample = new Float64Array(x.length);
    if (sigmaT === 0) {
      // final sigma 0 (always a first-order step): alpha_t = 1, sigma_t = 0, exp(-h) = 0, so x_t = x0.
      prevSample.set(x0);
      return { prevSample, predOriginal: x0 };
    }
    const [aT, sT] = this.alphaSigma(sigmaT);
    const lamT = Math.log(aT) - Math.log(sT);
    const lamS = Math.log(aS) - Math.log(sS);
    const h = lamT - lamS;
    const em1 = Math.expm1(-h); // exp(-h) - 1
    if (firstOrder) {
      for (let k = 0; k < x.length; k++) prevSample[k] = (sT / sS) * x[k]! - aT * em1 * x0[k]!;
    } else {
      const [aS1, sS1] = this.alphaSigma(this.sigmas[i - 1]!);
      const lamS1 = Math.log(aS1) - Math.log(sS1);
      const r0 = (lamS - lamS1) / h;
      const m1 = this.history[0]!;
      for (let k = 0; k < x.length; k++) {
        const d1 = (x0[k]! - m1[k]!) / r0;
        prevSample[k] = this.heun
          ? (sT / sS) * x[k]! - aT * em1 * x0[k]! + aT * (em1 / h + 1) * d1
          : (sT / sS) * x[k]! - aT * em1 * x0[k]! - 0.5 * aT * em1 * d1;
      }
    }
    return { prevSample, predOriginal: x0 };
  }
}

/**
 * LCMScheduler: timesteps taken evenly from the distillation schedule of original_inference_steps
 * ((1..N_orig) * floor(T / N_orig) - 1, descending); each step forms the consistency boundary-condition
 * "denoised" = c_out x0 + c_skip x (timestep scaled by timestep_scaling, sigma_data 0.5) and, except at the last
 * step, re-noises it to the next timestep with fresh noise.
 */
class LCM implements Scheduler {
  readonly name = 'lcm' as const;
  readonly timesteps: number[];
  readonly initNoiseSigma = 1;
  private readonly ac: Float64Array;
  constructor(private readonly cfg: SchedulerConfig, steps: number) {
    checkSteps(cfg, steps);
    refuse(cfg.thresholding, this.name, 'thresholding', 'dynamic thresholding is not supported');
    const orig = cfg.original_inference_steps;
    refuse(orig > cfg.num_train_timesteps, this.name, 'original_inference_steps', `${orig} is above num_train_timesteps (${cfg.num_train_timesteps})`);
    if (steps > orig) {
      throw new DqError('BAD_ARGUMENT', `lcm: ${steps} steps is more than the model's original_inference_steps (${orig}): its timesteps are a subset of those`);
    }
    const k = Math.floor(cfg.num_train_timesteps / orig);
    const origin = Array.from({ length: orig }, (_, i) => (orig - i) * k - 1);
    this.timesteps = Array.from({ length: steps }, (_, i) => origin[Math.floor((i * orig) / steps)]!);
    this.ac = alphasCumprod(cfg);
    refuseZeroSignal(cfg, this.ac, this.timesteps, this.name);
  }
  scaleModelInput(sample: Float64Array): Float64Array {
    return sample;
  }
  step(out: Float64Array, i: number, x: Float64Array, noise?: () => Float64Array): StepResult {
    const t = this.timesteps[i]!;
    const last = i === this.timesteps.length - 1;
    const aT = this.ac[t]!;
    const { x0 } = predict(this.cfg, out, x, aT);
    const st = t * this.cfg.timestep_scaling;
    const cSkip = 0.25 / (st * st + 0.25);
    const cOut = st / Math.sqrt(st * st + 0.25);
    const denoised = x0.map((v, k) => cOut * v + cSkip * x[k]!);
    if (last) return { prevSample: denoised, predOriginal: denoised };
    const aP = this.ac[this.timesteps[i + 1]!]!;
    const z = requireNoise(noise, x.length);
    const prevSample = denoised.map((v, k) => Math.sqrt(aP) * v + Math.sqrt(1 - aP) * z[k]!);
    return { prevSample, predOriginal: denoised };
  }
}

/** The sampler a comparison or check runs when none is asked for: flow-euler on a flow-matching pipeline, else ddim. */
export function fallbackSampler(cfg: object): SamplerName {
  return isFlowConfig(cfg) ? 'flow-euler' : 'ddim';
}

/** What a scheduler needs to know of the pipeline: the image's token count (flow matching's dynamic shift). */
export function schedulerOptions(p: { index: { sampleShape: [number, number, number] }; patchSize?: number; io?: { packed?: boolean } }): SchedulerOptions {
  const [, h, w] = p.index.sampleShape;
  const ps = p.patchSize ?? 1;
  // Flux's pipeline passes its own sigmas, linspace(1, 1/N, N)
  return { imageSeqLen: Math.floor(h / ps) * Math.floor(w / ps), flowSigmas: p.io?.packed ? 'flux' : 'scheduler' };
}

/** diffusers' calculate_shift: mu linear in the image's token count between (base_seq, base_shift) and (max_seq, max_shift). */
export function flowShiftMu(cfg: SchedulerConfig, imageSeqLen: number): number {
  const m = (cfg.max_shift - cfg.base_shift) / (cfg.max_image_seq_len - cfg.base_image_seq_len);
  return imageSeqLen * m + (cfg.base_shift - m * cfg.base_image_seq_len);
}

/**
 * FlowMatchEulerDiscreteScheduler (deterministic): sigmas from sigma_max to sigma_min (the training sigmas 1..1/T
 * after the static shift), then the static shift s sigma / (1 + (s - 1) sigma) again (as diffusers does: sigma_min
 * is shifted twice), or the dynamic shift e^mu / (e^mu + (1 / sigma - 1)) with mu from the image's token count;
 * optionally stretched to end at shift_terminal; a final 0. Timesteps are sigma x T; the model predicts the velocity
 * v = noise - x0, and a step is x + (sigma_next - sigma) v.
 */
class FlowMatchEuler implements Scheduler {
  readonly name = 'flow-euler' as const;
  readonly timesteps: number[];
  readonly initNoiseSigma = 1;
  readonly sigmas: number[];
  constructor(cfg: SchedulerConfig, steps: number, opts: SchedulerOptions) {
    if (!Number.isSafeInteger(steps) || steps < 1) throw new DqError('BAD_ARGUMENT', `steps must be a whole number >= 1, got ${steps}`);
    const T = cfg.num_train_timesteps;
    const f32 = Math.fround;
    const staticShift = (x: number) => (cfg.shift * x) / (1 + (cfg.shift - 1) * x);
    let sig: number[];
    if (opts.flowSigmas === 'flux') {
      sig = Array.from({ length: steps }, (_, i) => (steps === 1 ? 1 : f32(1 + ((1 / steps - 1) * i) / (steps - 1))));
    } else {
      // the training sigmas T/T .. 1/T (float32), shifted statically unless the shift is dynamic
      const hi = cfg.use_dynamic_shifting ? 1 : f32(staticShift(1));
      const lo = cfg.use_dynamic_shifting ? f32(1 / T) : f32(staticShift(f32(1 / T)));
      sig = Array.from({ length: steps }, (_, i) => (steps === 1 ? hi * T : hi * T + ((lo * T - hi * T) * i) / (steps - 1)) / T);
    }
    if (cfg.use_dynamic_shifting) {
      if (opts.imageSeqLen === undefined) throw new Error('flow matching with use_dynamic_shifting needs the image token count');
      const mu = flowShiftMu(cfg, opts.imageSeqLen);
      sig = sig.map((x) => (cfg.time_shift_type === 'linear' ? mu / (mu + (1 / x - 1)) : Math.exp(mu) / (Math.exp(mu) + (1 / x - 1))));
    } else sig = sig.map(staticShift);
    if (cfg.shift_terminal) {
      const scale = (1 - sig[sig.length - 1]!) / (1 - cfg.shift_terminal);
      sig = sig.map((x) => 1 - (1 - x) / scale);
    }
    sig = sig.map(f32);
    this.sigmas = [...sig, 0];
    this.timesteps = sig.map((x) => f32(x * T));
  }
  scaleModelInput(sample: Float64Array): Float64Array {
    return sample;
  }
  step(out: Float64Array, i: number, x: Float64Array): StepResult {
    const sigma = this.sigmas[i]!;
    const dt = this.sigmas[i + 1]! - sigma;
    const prevSample = new Float64Array(x.length);
    const x0 = new Float64Array(x.length);
    for (let k = 0; k < x.length; k++) {
      prevSample[k] = x[k]! + dt * out[k]!;
      x0[k] = x[k]! - sigma * out[k]!;
    }
    return { prevSample, predOriginal: x0 };
  }
}

function requireNoise(noise: (() => Float64Array) | undefined, n: number): Float64Array {
  if (!noise) throw new Error('stochastic step needs a noise source');
  const z = noise();
  if (z.length !== n) throw new Error(`noise has ${z.length} values, expected ${n}`);
  return z;
}

/**
 * Network evaluations per image a sampler makes for `steps` requested steps (PNDM: steps + 1, or steps + 9 with its
 * Runge-Kutta warm-up; the others: steps). Progress totals should use this rather than `steps`.
 */
export function evaluationCount(name: SamplerName, cfg: SchedulerConfig, steps: number): number {
  if (name === 'flow-euler') return steps;
  return createScheduler(name, cfg, steps).timesteps.length;
}

export function createScheduler(name: SamplerName, cfg: SchedulerConfig, steps: number, opts: SchedulerOptions = {}): Scheduler {
  const flow = isFlowConfig(cfg);
  if (flow !== (name === 'flow-euler')) {
    throw new DqError(
      'BAD_ARGUMENT',
      flow
        ? `sampler '${name}' cannot run this pipeline: it was trained with flow matching (${String(cfg._class_name)}); use --sampler flow-euler`
        : `sampler 'flow-euler' is for flow-matching pipelines (FlowMatchEulerDiscreteScheduler); this one's scheduler is ${String(cfg._class_name ?? 'a noise-prediction one')}`,
    );
  }
  switch (name) {
    case 'flow-euler':
      return new FlowMatchEuler(cfg, steps, opts);
    case 'ddpm':
      return new DDPM(cfg, steps);
    case 'ddim':
      return new DDIM(cfg, steps, opts);
    case 'pndm':
      return new PNDM(cfg, steps);
    case 'euler':
      return new Euler(cfg, steps);
    case 'euler-a':
      return new EulerAncestral(cfg, steps);
    case 'dpm++2m':
    case 'dpm++2m-karras':
      return new DPMSolverPP2M(name, cfg, steps);
    case 'lcm':
      return new LCM(cfg, steps);
    default:
      throw new DqError('BAD_ARGUMENT', `unknown sampler '${String(name)}' (choose ${SAMPLERS.join(', ')})`);
  }
}
