/**
 * Noise schedulers following the diffusers formulas (DDPMScheduler, DDIMScheduler,
 * DPMSolverMultistepScheduler with algorithm_type "dpmsolver++" and solver_order 2, EulerDiscreteScheduler),
 * configured by a pipeline's scheduler/scheduler_config.json. Arithmetic is float64 on flat arrays holding the
 * whole batch (every coefficient is a scalar per step).
 */
import { z } from 'zod';
import { DqError } from '../errors.js';

export const SAMPLERS = ['ddpm', 'ddim', 'dpm++2m', 'euler'] as const;
export type SamplerName = (typeof SAMPLERS)[number];

/** Training timesteps a scheduler config may declare (diffusers' models use 1000; a few 4000). */
export const MAX_TRAIN_TIMESTEPS = 100_000;
/** A beta is a variance fraction: strictly between 0 and 1. */
const beta = z.number().gt(0, { error: (i) => `must be > 0 and < 1 (a beta is a variance fraction), got ${String(i.input)}` }).lt(1, { error: (i) => `must be > 0 and < 1 (a beta is a variance fraction), got ${String(i.input)}` });

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
    variance_type: z.enum(['fixed_small', 'fixed_large']).default('fixed_small'),
  })
  .passthrough();
export type SchedulerConfig = z.infer<typeof SchedulerConfigSchema>;

export function parseSchedulerConfig(raw: unknown, where = 'scheduler_config.json'): SchedulerConfig {
  const r = SchedulerConfigSchema.safeParse(raw);
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
  const last = alphasCumprod(cfg)[T - 1]!;
  if (!(last > 0)) {
    throw new DqError('BAD_CONFIG', `${where}: the betas leave no signal at all (cumulative alpha underflows to 0 by timestep ${T - 1}): lower beta_end or num_train_timesteps`);
  }
  return cfg;
}

/** betas for the configured schedule (diffusers' formulas, computed in float64). */
export function betas(cfg: SchedulerConfig): Float64Array {
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

/** Discrete timesteps for `steps` inference steps per timestep_spacing (DDPM/DDIM/Euler convention). */
export function spacedTimesteps(cfg: SchedulerConfig, steps: number, roundLinspace = true): number[] {
  const T = cfg.num_train_timesteps;
  if (!Number.isInteger(steps) || steps < 1 || steps > T) {
    throw new DqError('BAD_ARGUMENT', `steps must be an integer from 1 to ${T}, got ${steps}`);
  }
  const out: number[] = [];
  spaced(cfg, steps, roundLinspace, out);
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

function spaced(cfg: SchedulerConfig, steps: number, roundLinspace: boolean, out: number[]): void {
  const T = cfg.num_train_timesteps;
  if (cfg.timestep_spacing === 'leading') {
    const ratio = Math.floor(T / steps);
    for (let i = steps - 1; i >= 0; i--) out.push(Math.round(i * ratio) + cfg.steps_offset);
  } else if (cfg.timestep_spacing === 'trailing') {
    const ratio = T / steps;
    for (let v = T; v > 0; v -= ratio) out.push(Math.round(v) - 1);
    out.length = steps;
  } else {
    for (let i = steps - 1; i >= 0; i--) {
      const v = steps === 1 ? 0 : ((T - 1) * i) / (steps - 1);
      out.push(roundLinspace ? roundHalfEven(v) : v);
    }
  }
}

/** numpy's round(): halves to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export interface StepResult {
  prevSample: Float64Array;
  predOriginal: Float64Array;
}

export interface Scheduler {
  readonly name: SamplerName;
  /** Model timesteps, in sampling order. */
  readonly timesteps: number[];
  /** Scale of the initial noise (1 except for sigma-space samplers). */
  readonly initNoiseSigma: number;
  /** What the network sees at step i (identity except for sigma-space samplers). */
  scaleModelInput(sample: Float64Array, i: number): Float64Array;
  /** One denoising step; `noise` supplies fresh Gaussian noise for stochastic samplers. */
  step(modelOutput: Float64Array, i: number, sample: Float64Array, noise?: () => Float64Array): StepResult;
}

export interface SchedulerOptions {
  /** DDIM: eta (0 = deterministic DDIM, 1 = DDPM-like variance). */
  eta?: number;
  /** DDIM: recompute epsilon from the clipped x0 (diffusers' use_clipped_model_output). */
  useClippedModelOutput?: boolean;
}

/** x0 and epsilon from the model output at cumulative alpha `a`. */
function predict(cfg: SchedulerConfig, out: Float64Array, x: Float64Array, a: number): { x0: Float64Array; eps: Float64Array } {
  const sa = Math.sqrt(a);
  const sb = Math.sqrt(1 - a);
  const x0 = new Float64Array(x.length);
  const eps = new Float64Array(x.length);
  for (let k = 0; k < x.length; k++) {
    if (cfg.prediction_type === 'epsilon') {
      x0[k] = (x[k]! - sb * out[k]!) / sa;
      eps[k] = out[k]!;
    } else if (cfg.prediction_type === 'sample') {
      x0[k] = out[k]!;
      eps[k] = (x[k]! - sa * out[k]!) / sb;
    } else {
      x0[k] = sa * x[k]! - sb * out[k]!;
      eps[k] = sa * out[k]! + sb * x[k]!;
    }
  }
  if (cfg.clip_sample) {
    const r = cfg.clip_sample_range;
    for (let k = 0; k < x0.length; k++) x0[k] = Math.min(r, Math.max(-r, x0[k]!));
  }
  return { x0, eps };
}

class DDPM implements Scheduler {
  readonly name = 'ddpm' as const;
  readonly timesteps: number[];
  readonly initNoiseSigma = 1;
  private readonly ac: Float64Array;
  private readonly stepRatio: number;
  constructor(private readonly cfg: SchedulerConfig, steps: number) {
    this.ac = alphasCumprod(cfg);
    this.timesteps = spacedTimesteps(cfg, steps);
    this.stepRatio = Math.floor(cfg.num_train_timesteps / steps);
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
    this.ac = alphasCumprod(cfg);
    this.timesteps = spacedTimesteps(cfg, steps);
    this.stepRatio = Math.floor(cfg.num_train_timesteps / steps);
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

/** sigma = sqrt((1 - a) / a) at fractional timestep positions, linearly interpolated (np.interp). */
function sigmasAt(ac: Float64Array, ts: number[]): number[] {
  const all = Array.from(ac, (a) => Math.sqrt((1 - a) / a));
  return ts.map((t) => {
    const lo = Math.max(0, Math.min(all.length - 1, Math.floor(t)));
    const hi = Math.min(all.length - 1, lo + 1);
    const f = t - lo;
    return all[lo]! * (1 - f) + all[hi]! * f;
  });
}

class Euler implements Scheduler {
  readonly name = 'euler' as const;
  readonly timesteps: number[];
  readonly initNoiseSigma: number;
  private readonly sigmas: number[];
  constructor(private readonly cfg: SchedulerConfig, steps: number) {
    if (cfg.prediction_type === 'sample') throw new DqError('BAD_CONFIG', 'euler sampler: prediction_type "sample" is not supported');
    const ac = alphasCumprod(cfg);
    this.timesteps = spacedTimesteps(cfg, steps, false); // diffusers' Euler keeps fractional linspace steps
    this.sigmas = [...sigmasAt(ac, this.timesteps), 0];
    const max = Math.max(...this.sigmas);
    this.initNoiseSigma = cfg.timestep_spacing === 'leading' ? Math.sqrt(max * max + 1) : max;
  }
  scaleModelInput(sample: Float64Array, i: number): Float64Array {
    const s = 1 / Math.sqrt(this.sigmas[i]! ** 2 + 1);
    return sample.map((v) => v * s);
  }
  step(out: Float64Array, i: number, x: Float64Array): StepResult {
    const sigma = this.sigmas[i]!;
    const dt = this.sigmas[i + 1]! - sigma;
    const x0 = new Float64Array(x.length);
    const prevSample = new Float64Array(x.length);
    for (let k = 0; k < x.length; k++) {
      x0[k] =
        this.cfg.prediction_type === 'epsilon'
          ? x[k]! - sigma * out[k]!
          : out[k]! * (-sigma / Math.sqrt(sigma * sigma + 1)) + x[k]! / (sigma * sigma + 1);
      prevSample[k] = x[k]! + ((x[k]! - x0[k]!) / sigma) * dt;
    }
    return { prevSample, predOriginal: x0 };
  }
}

class DPMSolverPP2M implements Scheduler {
  readonly name = 'dpm++2m' as const;
  readonly timesteps: number[];
  readonly initNoiseSigma = 1;
  private readonly sigmas: number[];
  private readonly history: Float64Array[] = [];
  constructor(private readonly cfg: SchedulerConfig, steps: number) {
    const ac = alphasCumprod(cfg);
    const T = cfg.num_train_timesteps;
    // diffusers computes steps + 1 points and drops the last (t = 0 end point).
    let ts: number[];
    if (cfg.timestep_spacing === 'leading') {
      const ratio = Math.floor(T / (steps + 1));
      ts = [];
      for (let i = steps; i >= 1; i--) ts.push(i * ratio + cfg.steps_offset);
    } else if (cfg.timestep_spacing === 'trailing') {
      ts = [];
      const ratio = T / steps;
      for (let v = T; v > 0 && ts.length < steps; v -= ratio) ts.push(Math.round(v) - 1);
    } else {
      ts = [];
      for (let i = steps; i >= 1; i--) ts.push(roundHalfEven(((T - 1) * i) / steps));
    }
    checkTimesteps(cfg, ts, steps);
    this.timesteps = ts;
    this.sigmas = [...sigmasAt(ac, ts), 0];
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
    // convert_model_output for dpmsolver++: the data prediction x0.
    const x0 = new Float64Array(x.length);
    for (let k = 0; k < x.length; k++) {
      if (this.cfg.prediction_type === 'epsilon') x0[k] = (x[k]! - sS * out[k]!) / aS;
      else if (this.cfg.prediction_type === 'sample') x0[k] = out[k]!;
      else x0[k] = aS * x[k]! - sS * out[k]!;
    }
    if (this.cfg.clip_sample) {
      const r = this.cfg.clip_sample_range;
      for (let k = 0; k < x0.length; k++) x0[k] = Math.min(r, Math.max(-r, x0[k]!));
    }
    this.history.push(x0);
    if (this.history.length > 2) this.history.shift();
    const last = i === this.timesteps.length - 1;
    const sigmaT = this.sigmas[i + 1]!;
    const prevSample = new Float64Array(x.length);
    if (sigmaT === 0) {
      // final sigma 0: alpha_t = 1, sigma_t = 0, exp(-h) = 0, so x_t = x0.
      prevSample.set(x0);
      return { prevSample, predOriginal: x0 };
    }
    const [aT, sT] = this.alphaSigma(sigmaT);
    const lamT = Math.log(aT) - Math.log(sT);
    const lamS = Math.log(aS) - Math.log(sS);
    const h = lamT - lamS;
    const em1 = Math.expm1(-h); // exp(-h) - 1
    const firstOrder = this.history.length < 2 || last;
    if (firstOrder) {
      for (let k = 0; k < x.length; k++) prevSample[k] = (sT / sS) * x[k]! - aT * em1 * x0[k]!;
    } else {
      const [aS1, sS1] = this.alphaSigma(this.sigmas[i - 1]!);
      const lamS1 = Math.log(aS1) - Math.log(sS1);
      const r0 = (lamS - lamS1) / h;
      const m1 = this.history[0]!;
      for (let k = 0; k < x.length; k++) {
        const d1 = (x0[k]! - m1[k]!) / r0;
        prevSample[k] = (sT / sS) * x[k]! - aT * em1 * x0[k]! - 0.5 * aT * em1 * d1;
      }
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

export function createScheduler(name: SamplerName, cfg: SchedulerConfig, steps: number, opts: SchedulerOptions = {}): Scheduler {
  spacedTimesteps(cfg, steps); // validates steps
  switch (name) {
    case 'ddpm':
      return new DDPM(cfg, steps);
    case 'ddim':
      return new DDIM(cfg, steps, opts);
    case 'euler':
      return new Euler(cfg, steps);
    case 'dpm++2m':
      return new DPMSolverPP2M(cfg, steps);
    default:
      throw new DqError('BAD_ARGUMENT', `unknown sampler '${String(name)}' (choose ${SAMPLERS.join(', ')})`);
  }
}
