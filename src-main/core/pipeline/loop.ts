/**
 * A sampling loop that starts from given initial noise (for seed-interpolation walks) and can look at every step
 * (for probing other denoisers on the same trajectory, e.g. an export against its simulated variant). It follows
 * sample.ts step for step: with the initial noise and noise stream of a seed it gives exactly the images `sample`
 * gives for that seed.
 */
import { buildFeeds, combineGuided, guidedRun, outputLayout } from './sample.js';
import { DqError } from '../errors.js';
import { Rng } from './noise.js';
import type { Pipeline } from './pipeline.js';
import { createScheduler, type SamplerName, schedulerOptions } from './schedulers.js';
import type { Session } from '../runtime/onnx.js';

export interface LoopSettings {
  steps: number;
  sampler: SamplerName;
  guidance: number;
  eta: number;
  batchSize: number;
}

/** Initial noise of a seed and the generator positioned after it (what `sample` draws later steps from). */
export function seedNoise(seed: number, size: number): { z: Float64Array; rng: Rng } {
  const rng = new Rng(seed);
  const z = rng.normal(new Float64Array(size)) as Float64Array;
  return { z, rng };
}


export async function predictEps(p: Pipeline, session: Session, x: Float64Array, t: number, labels: number[], guidance: number, b: number): Promise<Float64Array> {
  const [C, H, W] = p.index.sampleShape;
  const guided = guidedRun(p, guidance);
  const out = (await session.run(await buildFeeds(p, x, t, labels, guided, b, p.extraFeeds, guidance), [p.io.output]))[p.io.output]!;
  return combineGuided(out, guidance, guided, b, C * H * W, outputLayout(p));
}

export interface StepView {
  /** Indices (into the request's images) of this batch. */
  idx: number[];
  step: number;
  timestep: number;
  /** What the network saw (scaled model input), the whole batch. */
  modelInput: Float64Array;
  /** The guided noise prediction used for the step. */
  eps: Float64Array;
  /** Predicted x0 after the step. */
  predOriginal: Float64Array;
}

export interface LoopRequest extends LoopSettings {
  /** Standard-normal initial noise per image (scaled by the scheduler's initial sigma here). */
  init: Float64Array[];
  /** Noise stream per image for stochastic samplers. */
  rngs: Rng[];
  /** Class label per image (ignored by unconditional pipelines); for a text pipeline, encoded prompt ids (TextConditioner.ids). */
  labels: number[];
  signal?: AbortSignal;
  /** The CANCELLED error's message when `signal` aborts. */
  cancelMessage?: string;
  /** Called after every network evaluation (one per batch and step). */
  onStep?: (v: StepView) => void | Promise<void>;
}

/** Runs the sampler from the given initial noise; returns the final images (model space). */
export async function runLoop(p: Pipeline, session: Session, req: LoopRequest): Promise<{ images: Float32Array[]; timesteps: number[] }> {
  const [C, H, W] = p.index.sampleShape;
  const size = C * H * W;
  const n = req.init.length;
  const bs = Math.max(1, req.batchSize);
  const images: Float32Array[] = new Array(n);
  let timesteps: number[] = [];
  for (let start = 0; start < n; start += bs) {
    const idx = Array.from({ length: Math.min(bs, n - start) }, (_, k) => start + k);
    const b = idx.length;
    const sched = createScheduler(req.sampler, p.scheduler, req.steps, { ...schedulerOptions(p), eta: req.eta });
    timesteps = sched.timesteps;
    let x: Float64Array = new Float64Array(b * size);
    idx.forEach((i, k) => {
      const z = req.init[i]!;
      if (z.length !== size) throw new Error(`initial noise has ${z.length} values, expected ${size}`);
      for (let j = 0; j < size; j++) x[k * size + j] = z[j]! * sched.initNoiseSigma;
    });
    const noise = () => {
      const z = new Float64Array(b * size);
      idx.forEach((i, k) => z.set(req.rngs[i]!.normal(new Float64Array(size)), k * size));
      return z;
    };
    const labels = idx.map((i) => req.labels[i] ?? 0);
    for (let s = 0; s < sched.timesteps.length; s++) {
      if (req.signal?.aborted) throw new DqError('CANCELLED', req.cancelMessage ?? 'sampling was cancelled');
      const t = sched.timesteps[s]!;
      const xin = sched.scaleModelInput(x, s);
      const eps = await predictEps(p, session, xin, t, labels, req.guidance, b);
      const { prevSample, predOriginal } = sched.step(eps, s, x, noise);
      x = prevSample;
      await req.onStep?.({ idx, step: s, timestep: t, modelInput: xin, eps, predOriginal });
    }
    idx.forEach((i, k) => (images[i] = Float32Array.from(x.subarray(k * size, (k + 1) * size))));
  }
  return { images, timesteps };
}

export { buildFeeds, combineGuided, guidedRun, outputLayout };
