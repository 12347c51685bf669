import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  SAMPLERS,
  alphasCumprod,
  createScheduler,
  defaultSampler,
  parseSchedulerConfig,
  spacedTimesteps,
  type SamplerName,
} from '../../../../src-main/core/pipeline/schedulers';

const linear = parseSchedulerConfig({ beta_schedule: 'linear', beta_start: 0.0001, beta_end: 0.02, num_train_timesteps: 1000, steps_offset: 1 });

describe('alphas_cumprod', () => {
  // Reference values: numpy float64, np.cumprod(1 - np.linspace(1e-4, 0.02, 1000)) and the analogous
  // scaled_linear (SD: 0.00085..0.012) and squaredcos_cap_v2 formulas, computed outside this code base.
  it.each([
    ['linear', { beta_start: 0.0001, beta_end: 0.02 }, [0.9999, 0.07858724288177824, 4.035829765375676e-5]],
    ['scaled_linear', { beta_start: 0.00085, beta_end: 0.012 }, [0.99915, 0.27766965045646763, 0.004660098513077238]],
    ['squaredcos_cap_v2', {}, [0.999958715775178, 0.4938435904406382, 2.4287669070348567e-9]],
  ] as const)('%s matches numpy', (schedule, extra, [a0, a499, a999]) => {
    const ac = alphasCumprod(parseSchedulerConfig({ beta_schedule: schedule, ...extra }));
    expect(ac[0]).toBeCloseTo(a0, 14);
    expect(ac[499]! / a499).toBeCloseTo(1, 12);
    expect(ac[999]! / a999).toBeCloseTo(1, 10);
  });

  it('equals exp(sum(log(1 - beta)))', () => {
    const ac = alphasCumprod(linear);
    let s = 0;
    for (let i = 0; i < 1000; i++) {
      s += Math.log1p(-(0.0001 + ((0.02 - 0.0001) * i) / 999));
      expect(ac[i]! / Math.exp(s)).toBeCloseTo(1, 11);
    }
  });
});

describe('timestep spacing (diffusers conventions)', () => {
  it('leading with steps_offset', () => {
    expect(spacedTimesteps(linear, 10)).toEqual([901, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
  });
  it('trailing', () => {
    expect(spacedTimesteps({ ...linear, timestep_spacing: 'trailing' }, 4)).toEqual([999, 749, 499, 249]);
  });
  it('linspace rounds half to even', () => {
    expect(spacedTimesteps({ ...linear, timestep_spacing: 'linspace' }, 5)).toEqual([999, 749, 500, 250, 0]);
  });
  it('rejects impossible step counts', () => {
    expect(() => spacedTimesteps(linear, 0)).toThrow(/steps/);
    expect(() => spacedTimesteps(linear, 1001)).toThrow(/steps/);
  });
});

describe('DDIM step', () => {
  it('is the closed form x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps (eta 0)', () => {
    const s = createScheduler('ddim', linear, 25);
    const ac = alphasCumprod(linear);
    const x = Float64Array.from([0.3, -1.2, 2.5]);
    const eps = Float64Array.from([0.1, 0.7, -0.4]);
    const t = s.timesteps[3]!;
    const tp = t - 40;
    const { prevSample } = s.step(eps, 3, x);
    for (let k = 0; k < 3; k++) {
      const x0 = (x[k]! - Math.sqrt(1 - ac[t]!) * eps[k]!) / Math.sqrt(ac[t]!);
      expect(prevSample[k]).toBeCloseTo(Math.sqrt(ac[tp]!) * x0 + Math.sqrt(1 - ac[tp]!) * eps[k]!, 12);
    }
  });

  it('uses alpha 1 after the last step when set_alpha_to_one', () => {
    const s = createScheduler('ddim', linear, 25);
    const x = Float64Array.from([0.5]);
    const eps = Float64Array.from([0.2]);
    const ac = alphasCumprod(linear);
    const { prevSample } = s.step(eps, 24, x);
    expect(prevSample[0]).toBeCloseTo((0.5 - Math.sqrt(1 - ac[1]!) * 0.2) / Math.sqrt(ac[1]!), 12);
  });

  it('clips x0 when clip_sample is set', () => {
    const s = createScheduler('ddim', { ...linear, clip_sample: true }, 25);
    const { predOriginal } = s.step(Float64Array.from([-50]), 0, Float64Array.from([0]));
    expect(predOriginal[0]).toBe(1);
  });

  it('adds eta-scaled noise with the DDIM variance', () => {
    const s0 = createScheduler('ddim', linear, 10, { eta: 0 });
    const s1 = createScheduler('ddim', linear, 10, { eta: 1 });
    const ac = alphasCumprod(linear);
    const x = Float64Array.from([0.1]);
    const e = Float64Array.from([0.3]);
    const z = Float64Array.from([1]);
    const a = s0.step(e, 2, x).prevSample[0]!;
    const b = s1.step(e, 2, x, () => z).prevSample[0]!;
    const t = s1.timesteps[2]!;
    const tp = t - 100;
    const variance = ((1 - ac[tp]!) / (1 - ac[t]!)) * (1 - ac[t]! / ac[tp]!);
    const x0 = (0.1 - Math.sqrt(1 - ac[t]!) * 0.3) / Math.sqrt(ac[t]!);
    const expected = Math.sqrt(ac[tp]!) * x0 + Math.sqrt(1 - ac[tp]! - variance) * 0.3 + Math.sqrt(variance);
    expect(b).toBeCloseTo(expected, 12);
    expect(a).not.toBeCloseTo(b, 3);
  });
});

describe('DPM-Solver++ 2M', () => {
  const cfg = parseSchedulerConfig({ beta_schedule: 'linear', timestep_spacing: 'linspace' });
  it('uses diffusers timesteps (steps + 1 points, last dropped)', () => {
    expect(createScheduler('dpm++2m', cfg, 4).timesteps).toEqual([999, 749, 500, 250]);
  });

  it('second-order update equals the exponential-integrator form', () => {
    // x_t = (sigma_t / sigma_s) x + alpha_t (1 - e^-h) [(1 + 1/(2 r)) D_s - 1/(2 r) D_{s-1}]
    const s = createScheduler('dpm++2m', cfg, 4);
    const ac = alphasCumprod(cfg);
    const x1 = Float64Array.from([1.3]);
    const eps1 = Float64Array.from([0.9]);
    const r1 = s.step(eps1, 0, x1);
    const x2 = r1.prevSample;
    const eps2 = Float64Array.from([0.4]);
    const r2 = s.step(eps2, 1, x2);
    const ab = (t: number) => ({ a: Math.sqrt(ac[t]!), s: Math.sqrt(1 - ac[t]!) });
    const lam = (t: number) => Math.log(ab(t).a / ab(t).s);
    const [t0, t1, t2] = [999, 749, 500];
    const d0 = (x1[0]! - ab(t0).s * 0.9) / ab(t0).a;
    // first step: first order (DDIM in x0 form)
    const h1 = lam(t1) - lam(t0);
    expect(x2[0]).toBeCloseTo((ab(t1).s / ab(t0).s) * x1[0]! + ab(t1).a * (1 - Math.exp(-h1)) * d0, 12);
    const d1 = (x2[0]! - ab(t1).s * 0.4) / ab(t1).a;
    const h = lam(t2) - lam(t1);
    const r = h1 / h;
    const expected = (ab(t2).s / ab(t1).s) * x2[0]! + ab(t2).a * (1 - Math.exp(-h)) * ((1 + 1 / (2 * r)) * d1 - (1 / (2 * r)) * d0);
    expect(r2.prevSample[0]).toBeCloseTo(expected, 12);
  });

  it('lands on its x0 prediction at the final step (final sigma 0)', () => {
    const s = createScheduler('dpm++2m', cfg, 3);
    const ac = alphasCumprod(cfg);
    let x: Float64Array = Float64Array.from([0.7]);
    for (let i = 0; i < 2; i++) x = s.step(Float64Array.from([0.2]), i, x).prevSample;
    const t = s.timesteps[2]!;
    const last = s.step(Float64Array.from([0.2]), 2, x);
    expect(last.prevSample[0]).toBe(last.predOriginal[0]);
    expect(last.predOriginal[0]).toBeCloseTo((x[0]! - Math.sqrt(1 - ac[t]!) * 0.2) / Math.sqrt(ac[t]!), 12);
  });
});

describe('every deterministic sampler solves a problem with a known answer', () => {
  // Data distribution N(0, s^2): the exact noise prediction is eps(x_t) = sqrt(1-a) x_t / (a s^2 + 1 - a), and the
  // probability-flow ODE keeps x_t / std_t constant, so x_0 = x_T * s / sqrt(a_T s^2 + 1 - a_T) exactly.
  const s2 = 0.25;
  const cfg = parseSchedulerConfig({ beta_schedule: 'linear', steps_offset: 1 });
  const ac = alphasCumprod(cfg);
  const sigAt = (t: number) => {
    const lo = Math.floor(t);
    const f = t - lo;
    const hi = Math.min(999, lo + 1);
    return Math.sqrt((1 - ac[lo]!) / ac[lo]!) * (1 - f) + Math.sqrt((1 - ac[hi]!) / ac[hi]!) * f;
  };
  /** Relative error of the sampler's end point for a start z (VP space) at its first timestep. */
  const solve = (name: SamplerName, steps: number) => {
    const sched = createScheduler(name, cfg, steps);
    const a0 = 1 / (1 + sigAt(sched.timesteps[0]!) ** 2);
    const z = 1.7;
    let x: Float64Array = Float64Array.from([name === 'euler' ? z / Math.sqrt(a0) : z]); // Euler works in sigma space
    for (let i = 0; i < sched.timesteps.length; i++) {
      const a = 1 / (1 + sigAt(sched.timesteps[i]!) ** 2);
      const eps = sched.scaleModelInput(x, i).map((v) => (Math.sqrt(1 - a) * v) / (a * s2 + 1 - a));
      x = sched.step(eps, i, x).prevSample;
    }
    const expected = (z * Math.sqrt(s2)) / Math.sqrt(a0 * s2 + 1 - a0);
    return { x: x[0]!, err: Math.abs(x[0]! - expected) / expected };
  };

  it('DDIM and Euler are the same first-order ODE step (identical paths)', () => {
    expect(solve('ddim', 50).x).toBeCloseTo(solve('euler', 50).x, 10);
  });
  it.each(['ddim', 'euler'] as SamplerName[])('%s converges at first order', (name) => {
    const e50 = solve(name, 50).err;
    const e250 = solve(name, 250).err;
    expect(e250).toBeLessThan(0.015);
    expect(e50 / e250).toBeGreaterThan(4); // 5x the steps, ~5x less error
  });
  it('DPM-Solver++ 2M is far more accurate than DDIM at 50 steps', () => {
    expect(solve('dpm++2m', 50).err).toBeLessThan(0.003);
    expect(solve('dpm++2m', 50).err * 10).toBeLessThan(solve('ddim', 50).err);
  });
});

describe('DDPM', () => {
  it('posterior mean coefficients follow the DDPM paper', () => {
    const s = createScheduler('ddpm', linear, 1000 / 40);
    const ac = alphasCumprod(linear);
    const x = Float64Array.from([0.4]);
    const eps = Float64Array.from([-0.3]);
    const i = 5;
    const t = s.timesteps[i]!;
    const tp = t - 40;
    const { prevSample } = s.step(eps, i, x, () => Float64Array.from([0]));
    const x0 = (0.4 + Math.sqrt(1 - ac[t]!) * 0.3) / Math.sqrt(ac[t]!);
    const beta = 1 - ac[t]! / ac[tp]!;
    const mean = ((Math.sqrt(ac[tp]!) * beta) / (1 - ac[t]!)) * x0 + ((Math.sqrt(1 - beta) * (1 - ac[tp]!)) / (1 - ac[t]!)) * 0.4;
    expect(prevSample[0]).toBeCloseTo(mean, 12);
  });
});

describe('config validation', () => {
  it('names the bad field', () => {
    expect(() => parseSchedulerConfig({ beta_schedule: 'quadratic' })).toThrow(/beta_schedule/);
    expect(() => parseSchedulerConfig({ num_train_timesteps: -3 })).toThrow(/num_train_timesteps/);
  });
});

describe('config ranges (configs that sampled black images with exit 0)', () => {
  const bad = (cfg: Record<string, unknown>) => () => parseSchedulerConfig(cfg, 'cfg.json');
  it('betas must lie in (0, 1)', () => {
    expect(bad({ beta_end: 2 })).toThrow(/^cfg\.json: field 'beta_end': must be > 0 and < 1/);
    expect(bad({ beta_end: 1 })).toThrow(/field 'beta_end'/);
    expect(bad({ beta_start: 0 })).toThrow(/field 'beta_start'/);
    expect(bad({ num_train_timesteps: 3, trained_betas: [0.1, 0.2, 1.5] })).toThrow(/field 'trained_betas\.2'/);
    expect(bad({ num_train_timesteps: 3, trained_betas: [0.1, -0.2, 0.5] })).toThrow(/field 'trained_betas\.1'/);
  });
  it('beta_start below beta_end for the linear schedules; the cosine schedule does not read them', () => {
    expect(bad({ beta_start: 0.02, beta_end: 0.02 })).toThrow(/beta_start \(0\.02\) must be below beta_end \(0\.02\)/);
    expect(bad({ beta_schedule: 'scaled_linear', beta_start: 0.5, beta_end: 0.1 })).toThrow(/beta_start \(0\.5\) must be below beta_end/);
    expect(parseSchedulerConfig({ beta_schedule: 'squaredcos_cap_v2', beta_start: 0.5, beta_end: 0.1 }).beta_schedule).toBe('squaredcos_cap_v2');
  });
  it('steps_offset below num_train_timesteps', () => {
    expect(bad({ steps_offset: 5000 })).toThrow(/field 'steps_offset': 5000 is not below num_train_timesteps \(1000\)/);
    expect(bad({ num_train_timesteps: 10, steps_offset: 10 })).toThrow(/steps_offset/);
    expect(parseSchedulerConfig({ num_train_timesteps: 10, steps_offset: 9 }).steps_offset).toBe(9);
  });
  it('num_train_timesteps has a limit (it allocated V8 arrays until "Invalid typed array length")', () => {
    expect(bad({ num_train_timesteps: 1e9 })).toThrow(/field 'num_train_timesteps': must be at most 100000/);
    expect(parseSchedulerConfig({ num_train_timesteps: 100_000 }).num_train_timesteps).toBe(100_000);
  });
  it('betas that leave no signal (cumulative alpha underflows to 0)', () => {
    expect(bad({ num_train_timesteps: 100_000, beta_start: 0.5, beta_end: 0.9 })).toThrow(/leave no signal/);
  });
  it('non-finite numbers are refused (JSON 1e999 parses to Infinity)', () => {
    expect(bad(JSON.parse('{"clip_sample_range": 1e999}'))).toThrow(/clip_sample_range/);
  });
});

describe('timesteps stay within the trained range', () => {
  it("'leading' with steps_offset 1 and as many steps as trained timesteps reaches timestep T: refused, not NaN", () => {
    expect(() => spacedTimesteps(linear, 1000)).toThrow(/1000 steps reach timestep 1000, outside the trained 0-999 \(timestep_spacing 'leading', steps_offset 1\)/);
    expect(() => createScheduler('ddim', linear, 1000)).toThrow(/outside the trained 0-999/);
    expect(spacedTimesteps(linear, 500)[0]).toBe(999);
  });
  it('every sampler gives finite timesteps and coefficients at its limits', () => {
    for (const name of ['ddpm', 'ddim', 'euler', 'dpm++2m'] as const) {
      const s = createScheduler(name, linear, 500);
      expect(Math.max(...s.timesteps)).toBeLessThanOrEqual(999);
      expect(Number.isFinite(s.initNoiseSigma)).toBe(true);
    }
  });
  it('eta must be finite', () => {
    expect(() => createScheduler('ddim', linear, 10, { eta: Infinity })).toThrow(/eta must be a finite number >= 0/);
    expect(() => createScheduler('ddim', linear, 10, { eta: NaN })).toThrow(/eta/);
  });
});

// ------------------------------------------------------------------------------------------------------------
// Reference trajectories from tools/scheduler_reference.py (an independent numpy implementation of diffusers'
// scheduler formulas, float64): same configs, fake model, initial noise and noise stream.

interface RefCase {
  name: string;
  sampler: SamplerName;
  config: Record<string, unknown>;
  steps: number;
  timesteps: number[];
  sigmas?: number[];
  init_noise_sigma: number;
  scales: number[];
  noise_draws: number;
  first: number[];
  final: number[];
}
const reference = JSON.parse(readFileSync(join(__dirname, '../../../fixtures/schedulers/reference.json'), 'utf8')) as {
  elements: number;
  cases: RefCase[];
};

function runReference(c: RefCase) {
  const n = reference.elements;
  const k = Array.from({ length: n }, (_, j) => j);
  const sched = createScheduler(c.sampler, parseSchedulerConfig(c.config), c.steps);
  let x: Float64Array = Float64Array.from(k, (j) => 1.2 * Math.sin(2.1 * j + 0.3) * sched.initNoiseSigma);
  let draws = 0;
  const noise = () => {
    const z = Float64Array.from(k, (j) => Math.cos(1.3 * draws + 0.7 * j + 0.1));
    draws++;
    return z;
  };
  const scales: number[] = [];
  let first: Float64Array | null = null;
  for (let i = 0; i < sched.timesteps.length; i++) {
    const t = sched.timesteps[i]!;
    const xin = sched.scaleModelInput(x, i);
    scales.push(xin[0]! / x[0]!);
    const out = xin.map((v, j) => 0.1 * v + 0.5 * Math.sin(0.013 * t + 0.7 * j));
    x = sched.step(out, i, x, noise).prevSample;
    first ??= x;
  }
  return { sched, scales, draws, first: first!, final: x };
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(1e-12, Math.abs(b));
function expectClose(actual: ArrayLike<number>, expected: number[], tol: number, what: string) {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  const worst = Math.max(0, ...expected.map((e, i) => (Math.abs(e) < 1e-6 ? Math.abs(actual[i]! - e) : rel(actual[i]!, e))));
  expect(worst, `${what}: ${Array.from(actual).join(', ')} vs ${expected.join(', ')}`).toBeLessThan(tol);
}

describe('every sampler matches the independent diffusers-formula reference', () => {
  it('the reference covers every sampler but ddpm, every prediction type and every spacing', () => {
    const samplers = new Set(reference.cases.map((c) => c.sampler));
    for (const s of SAMPLERS.filter((s) => s !== 'ddpm')) expect(samplers.has(s), s).toBe(true);
    const vp = reference.cases.filter((c) => c.sampler !== 'flow-euler');
    const preds = new Set(vp.map((c) => c.config.prediction_type));
    expect([...preds].sort()).toEqual(['epsilon', 'sample', 'v_prediction']);
    const spacings = new Set(vp.map((c) => c.config.timestep_spacing));
    expect([...spacings].sort()).toEqual(['leading', 'linspace', 'trailing']);
  });

  it.each(reference.cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const r = runReference(c);
    expectClose(r.sched.timesteps, c.timesteps, 1e-9, 'timesteps');
    expect(rel(r.sched.initNoiseSigma, c.init_noise_sigma), 'init_noise_sigma').toBeLessThan(1e-9);
    expectClose(r.scales, c.scales, 1e-9, 'scale_model_input factors');
    expect(r.draws, 'noise draws').toBe(c.noise_draws);
    expectClose(r.first, c.first, 1e-9, 'x after the first step');
    expectClose(r.final, c.final, 1e-9, 'final x');
  });
});

describe('PNDM (PLMS)', () => {
  const sd15 = parseSchedulerConfig({
    _class_name: 'PNDMScheduler', beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear',
    set_alpha_to_one: false, skip_prk_steps: true, steps_offset: 1, num_train_timesteps: 1000,
  });
  it('repeats the first timestep (one more network evaluation than steps)', () => {
    expect(createScheduler('pndm', sd15, 5).timesteps).toEqual([801, 601, 601, 401, 201, 1]);
  });
  it('the first step is the DDIM step; the repeated one redoes it with the mean of both predictions', () => {
    const s = createScheduler('pndm', sd15, 5);
    const ac = alphasCumprod(sd15);
    const x = Float64Array.from([0.8]);
    const e1 = Float64Array.from([0.3]);
    const ddim = (xt: number, e: number, t: number, tp: number) =>
      Math.sqrt(ac[tp]!) * ((xt - Math.sqrt(1 - ac[t]!) * e) / Math.sqrt(ac[t]!)) + Math.sqrt(1 - ac[tp]!) * e;
    const x1 = s.step(e1, 0, x).prevSample;
    expect(x1[0]).toBeCloseTo(ddim(0.8, 0.3, 801, 601), 12);
    const x2 = s.step(Float64Array.from([0.5]), 1, x1).prevSample;
    expect(x2[0]).toBeCloseTo(ddim(0.8, 0.4, 801, 601), 12);
  });
  it('PNDMScheduler defaults apply when the file omits them (skip_prk_steps false: Runge-Kutta warm-up)', () => {
    const c = parseSchedulerConfig({ _class_name: 'PNDMScheduler', steps_offset: 1 });
    expect(c.skip_prk_steps).toBe(false);
    expect(c.set_alpha_to_one).toBe(false);
    const s = createScheduler('pndm', c, 10);
    expect(s.timesteps.slice(0, 5)).toEqual([901, 851, 851, 801, 801]);
    expect(s.timesteps).toHaveLength(10 - 3 + 12);
    expect(() => createScheduler('pndm', c, 3)).toThrow(/needs at least 4 steps/);
  });
  it('steps out of order are an error (it keeps a history)', () => {
    const s = createScheduler('pndm', sd15, 5);
    expect(() => s.step(Float64Array.from([0]), 2, Float64Array.from([0]))).toThrow(/in order/);
  });
  it('refuses zero-SNR rescaling (PNDMScheduler has none)', () => {
    expect(() => createScheduler('pndm', { ...sd15, rescale_betas_zero_snr: true }, 10)).toThrow(/'pndm'.*rescale_betas_zero_snr/);
  });
});

describe('Euler Ancestral', () => {
  const cfg = parseSchedulerConfig({ beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012, timestep_spacing: 'trailing' });
  it('splits each step into a deterministic part down to sigma_down and noise of std sigma_up', () => {
    const s = createScheduler('euler-a', cfg, 4);
    const x = Float64Array.from([2]);
    const eps = Float64Array.from([0.5]);
    const a = s.step(eps, 1, x, () => Float64Array.from([0])).prevSample[0]!;
    const s2 = createScheduler('euler-a', cfg, 4);
    const b = s2.step(eps, 1, x, () => Float64Array.from([1])).prevSample[0]!;
    const sig = (t: number) => {
      const ac = alphasCumprod(cfg)[t]!;
      return Math.sqrt((1 - ac) / ac);
    };
    const [from, to] = [sig(s.timesteps[1]!), sig(s.timesteps[2]!)];
    const up = Math.sqrt((to ** 2 * (from ** 2 - to ** 2)) / from ** 2);
    expect(b - a).toBeCloseTo(up, 12);
    expect(a).toBeCloseTo(2 + 0.5 * (Math.sqrt(to ** 2 - up ** 2) - from), 12);
    // sigma_up^2 + sigma_down^2 = sigma_to^2: the marginal variance is the deterministic Euler step's
    expect(up ** 2 + (Math.sqrt(to ** 2 - up ** 2)) ** 2).toBeCloseTo(to ** 2, 12);
  });
  it('needs the noise stream', () => {
    expect(() => createScheduler('euler-a', cfg, 4).step(Float64Array.from([0]), 0, Float64Array.from([1]))).toThrow(/noise/);
  });
});

describe('DPM-Solver++ 2M with Karras sigmas', () => {
  const sd15 = parseSchedulerConfig({ beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', steps_offset: 1 });
  it('the karras sampler and use_karras_sigmas in the config give the same schedule', () => {
    const a = createScheduler('dpm++2m-karras', sd15, 20);
    const b = createScheduler('dpm++2m', { ...sd15, use_karras_sigmas: true }, 20);
    expect(a.timesteps).toEqual(b.timesteps);
    expect(createScheduler('dpm++2m', sd15, 20).timesteps).not.toEqual(a.timesteps);
  });
  it('starts at the largest trained sigma and rounds timesteps (999 first)', () => {
    expect(createScheduler('dpm++2m-karras', sd15, 20).timesteps[0]).toBe(999);
  });
  it('refuses what it does not implement, naming the field', () => {
    expect(() => createScheduler('dpm++2m', { ...sd15, algorithm_type: 'sde-dpmsolver++' }, 10)).toThrow(/field 'algorithm_type': 'sde-dpmsolver\+\+' is not supported/);
    expect(() => createScheduler('dpm++2m', { ...sd15, solver_order: 3 }, 10)).toThrow(/solver_order/);
    expect(() => createScheduler('dpm++2m', { ...sd15, thresholding: true }, 10)).toThrow(/thresholding/);
    expect(() => parseSchedulerConfig({ use_exponential_sigmas: true })).toThrow(/use_exponential_sigmas/);
    expect(() => parseSchedulerConfig({ use_karras_sigmas: true, use_beta_sigmas: true })).toThrow(/only one of/);
  });
  it('reads a DPMSolverMultistepScheduler file as diffusers writes it (variance_type null, timestep_spacing default linspace)', () => {
    const c = parseSchedulerConfig({
      _class_name: 'DPMSolverMultistepScheduler', variance_type: null, lambda_min_clipped: null, sigma_min: null,
      use_karras_sigmas: true, algorithm_type: 'dpmsolver++', some_future_field: 3,
    });
    expect(c.timestep_spacing).toBe('linspace');
    expect(c.variance_type).toBe('fixed_small');
    expect((c as Record<string, unknown>).some_future_field).toBe(3);
  });
});

describe('LCM', () => {
  const cfg = parseSchedulerConfig({ _class_name: 'LCMScheduler', original_inference_steps: 50 });
  it('takes its timesteps from the distillation schedule of original_inference_steps', () => {
    // k = 1000 // 50 = 20; schedule 999, 979, ..., 19; 4 evenly spaced indices 0, 12, 25, 37
    expect(createScheduler('lcm', cfg, 4).timesteps).toEqual([999, 759, 499, 259]);
    expect(() => createScheduler('lcm', cfg, 51)).toThrow(/original_inference_steps \(50\)/);
  });
  it('LCMScheduler defaults: SD betas', () => {
    expect(cfg.beta_schedule).toBe('scaled_linear');
    expect(cfg.beta_start).toBe(0.00085);
  });
  it('the last step returns the boundary-condition denoised sample; earlier ones re-noise it to the next timestep', () => {
    const s = createScheduler('lcm', cfg, 2);
    const ac = alphasCumprod(cfg);
    const x = Float64Array.from([0.6]);
    const e = Float64Array.from([0.2]);
    const t = s.timesteps[0]!;
    const x0 = (0.6 - Math.sqrt(1 - ac[t]!) * 0.2) / Math.sqrt(ac[t]!);
    const st = t * 10;
    const den = (st / Math.sqrt(st * st + 0.25)) * x0 + (0.25 / (st * st + 0.25)) * 0.6;
    const r = s.step(e, 0, x, () => Float64Array.from([1.5]));
    expect(r.predOriginal[0]).toBeCloseTo(den, 12);
    const tp = s.timesteps[1]!;
    expect(r.prevSample[0]).toBeCloseTo(Math.sqrt(ac[tp]!) * den + Math.sqrt(1 - ac[tp]!) * 1.5, 12);
    const last = s.step(e, 1, x, () => {
      throw new Error('no noise at the last step');
    });
    expect(last.prevSample).toEqual(last.predOriginal);
  });
});

describe('scheduler config: class defaults and defaultSampler', () => {
  it('maps diffusers scheduler classes to our samplers', () => {
    expect(defaultSampler({ _class_name: 'PNDMScheduler' })).toBe('pndm');
    expect(defaultSampler({ _class_name: 'LCMScheduler' })).toBe('lcm');
    expect(defaultSampler({ _class_name: 'EulerAncestralDiscreteScheduler' })).toBe('euler-a');
    expect(defaultSampler({ _class_name: 'EulerDiscreteScheduler' })).toBe('euler');
    expect(defaultSampler({ _class_name: 'DDIMScheduler' })).toBe('ddim');
    expect(defaultSampler({ _class_name: 'DDPMScheduler' })).toBe('ddpm');
    expect(defaultSampler({ _class_name: 'DPMSolverMultistepScheduler' })).toBe('dpm++2m');
    expect(defaultSampler({ _class_name: 'DPMSolverMultistepScheduler', use_karras_sigmas: true })).toBe('dpm++2m-karras');
    expect(defaultSampler({ _class_name: 'FlowMatchEulerDiscreteScheduler' })).toBe('flow-euler');
    expect(defaultSampler({ _class_name: 'toString' })).toBeUndefined();
    expect(defaultSampler({})).toBeUndefined();
  });
  it('fills absent fields with the class defaults, never overriding the file', () => {
    expect(parseSchedulerConfig({ _class_name: 'EulerDiscreteScheduler' }).timestep_spacing).toBe('linspace');
    expect(parseSchedulerConfig({ _class_name: 'EulerDiscreteScheduler', timestep_spacing: 'leading' }).timestep_spacing).toBe('leading');
    expect(parseSchedulerConfig({ _class_name: 'DDIMScheduler' }).clip_sample).toBe(true);
    expect(parseSchedulerConfig({}).timestep_spacing).toBe('leading');
  });
  it('Euler accepts every prediction type now (x0 predictions are used directly, as diffusers does)', () => {
    const s = createScheduler('euler', parseSchedulerConfig({ prediction_type: 'sample' }), 10);
    expect(s.step(Float64Array.from([0.25]), 0, Float64Array.from([3])).predOriginal[0]).toBe(0.25);
  });
  it('zero terminal SNR: last cumulative alpha 0; epsilon models refused where a step would divide by it', () => {
    const c = parseSchedulerConfig({ rescale_betas_zero_snr: true, timestep_spacing: 'trailing', beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012 });
    const ac = alphasCumprod(c);
    expect(ac[999]).toBe(0);
    expect(ac[0]).toBeCloseTo(1 - 0.00085, 12);
    expect(() => createScheduler('ddim', c, 10)).toThrow(/rescale_betas_zero_snr.*v_prediction/);
    expect(() => createScheduler('ddim', { ...c, prediction_type: 'v_prediction' }, 10)).not.toThrow();
    // sigma-space samplers use 2^-24 instead of 0 (finite sigma)
    expect(createScheduler('euler', c, 10).initNoiseSigma).toBeCloseTo(Math.sqrt((1 - 2 ** -24) / 2 ** -24), 6);
  });
  it('trailing spacing rounds halves to even like numpy (16 steps: 812.5 -> 812)', () => {
    expect(spacedTimesteps({ ...linear, timestep_spacing: 'trailing' }, 16).slice(0, 4)).toEqual([999, 937, 874, 811]);
  });
});

describe('FlowMatchEulerDiscreteScheduler (flow-euler)', () => {
  // Reference values: diffusers' set_timesteps replayed in numpy float32 outside this code base (the training sigmas
  // 1000/1000 .. 1/1000, the static shift applied at init and again after the linspace, or the dynamic shift with
  // mu = calculate_shift(1024) = 0.63 over the sigmas Flux passes, linspace(1, 1/4, 4)).
  const flow = (extra: Record<string, unknown> = {}) => parseSchedulerConfig({ _class_name: 'FlowMatchEulerDiscreteScheduler', num_train_timesteps: 1000, ...extra });
  const close = (got: number[], want: number[]) => got.forEach((g, i) => expect(g).toBeCloseTo(want[i]!, 3));
  it('shift 1: timesteps = sigma x 1000 from 1000 to 1, a final sigma 0', () => {
    const s = createScheduler('flow-euler', flow(), 4);
    close(s.timesteps, [1000, 667, 334, 1]);
    expect(s.initNoiseSigma).toBe(1);
  });
  it('static shift 3 (sigma_min shifted twice, as diffusers does)', () => {
    close(createScheduler('flow-euler', flow({ shift: 3 }), 4).timesteps, [1000, 857.6923, 602.1506, 8.92857]);
  });
  it('dynamic shift from the image token count, over the sigmas Flux passes', () => {
    const cfg = flow({ use_dynamic_shifting: true });
    close(createScheduler('flow-euler', cfg, 4, { imageSeqLen: 1024, flowSigmas: 'flux' }).timesteps, [1000, 849.2348, 652.4894, 384.9447]);
    expect(() => createScheduler('flow-euler', cfg, 4)).toThrow(/image token count/);
  });
  it('a step moves along the velocity: x + (sigma_next - sigma) v; x0 = x - sigma v', () => {
    const s = createScheduler('flow-euler', flow(), 2);
    // sigmas 1, 0.001, 0
    const x = Float64Array.from([1, -2]);
    const v = Float64Array.from([0.5, 4]);
    const r = s.step(v, 0, x);
    expect(r.prevSample[0]).toBeCloseTo(1 + (0.001 - 1) * 0.5, 6);
    expect(r.predOriginal[1]).toBeCloseTo(-2 - 4, 6);
    const end = s.step(v, 1, r.prevSample);
    expect(end.prevSample[0]).toBeCloseTo(r.prevSample[0]! - Math.fround(0.001) * 0.5, 6);
  });
  it('noise-prediction samplers refuse a flow pipeline and flow-euler refuses the others, in one line', () => {
    expect(() => createScheduler('ddim', flow(), 4)).toThrow(/trained with flow matching .*use --sampler flow-euler/);
    expect(() => createScheduler('flow-euler', linear, 4)).toThrow(/flow-euler' is for flow-matching pipelines/);
    expect(() => parseSchedulerConfig({ _class_name: 'FlowMatchEulerDiscreteScheduler', invert_sigmas: true })).toThrow(/invert_sigmas': not supported/);
    expect(() => parseSchedulerConfig({ _class_name: 'FlowMatchHeunDiscreteScheduler' })).toThrow(/FlowMatchHeunDiscreteScheduler is not supported/);
  });
});
