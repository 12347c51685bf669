/**
 * Probes along the FP trajectory: at every step of the FP sampler, each variant's noise prediction on the very same
 * input (so errors do not compound and steps are comparable), and the temporal features (where the time-only
 * region of the network meets the rest; they depend on the timestep and class only) of each variant against FP's.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { analyzeGraph } from '../onnx/analysis.js';
import { indexGraph } from '../onnx/graph.js';
import { encodeModel, externalRef, loadOnnx, saveOnnx, type LoadedModel } from '../onnx/io.js';
import { exposeTensors } from '../onnx/rewrite.js';
import type { Pipeline } from '../pipeline/pipeline.js';
import { Session, type Provider } from '../runtime/onnx.js';
import { buildFeeds, guidedRun, predictEps, runLoop, seedNoise, type LoopSettings } from './loop.js';
import type { StepErrorRow } from './schema.js';

export interface TemporalProbe {
  features: string[];
  /** 'graph': tapped from the denoiser itself; 'fed': what the variant's feature model feeds a cut denoiser. */
  source: 'graph' | 'fed';
  /** The features for one batch (feeds built with `p`), in `features` order. */
  read(p: Pipeline, x: Float64Array, t: number, labels: number[], guided: boolean, b: number): Promise<Float32Array[]>;
  /** Frees what the probe holds (a tapped session). */
  release(): Promise<void>;
}

export type TemporalSetup = { ok: true; probe: TemporalProbe } | { ok: false; reason: string };

async function exposedSession(loaded: LoadedModel, features: string[], provider: Provider): Promise<Session> {
  exposeTensors(loaded.model, features);
  const external = (loaded.model.graph?.initializer ?? []).some((t) => externalRef(t) !== null);
  if (!external) return Session.create(encodeModel(loaded.model), provider);
  // external data is resolved relative to the model file: write the tapped copy (and its data) to a scratch folder
  const dir = mkdtempSync(join(tmpdir(), 'dq-compare-'));
  try {
    const path = join(dir, 'model.onnx');
    saveOnnx(loaded.model, path, loaded.dir);
    return await Session.create(path, provider);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function graphProbe(session: Session, features: string[]): TemporalProbe {
  return {
    features,
    source: 'graph',
    async read(p, x, t, labels, guided, b) {
      const out = await session.run(await buildFeeds(p, x, t, labels, guided, b), features);
      return features.map((f) => Float32Array.from(out[f]!.data as Float32Array));
    },
    release: () => session.release(),
  };
}

/** The FP model's temporal features, tapped as outputs. */
export async function setupFpTemporal(unetPath: string, provider: Provider): Promise<TemporalSetup> {
  let loaded: LoadedModel;
  let features: string[];
  try {
    loaded = loadOnnx(unetPath);
    features = analyzeGraph(loaded.model).temporalFeatures;
  } catch (e) {
    return { ok: false, reason: `the FP graph could not be analysed: ${(e as Error).message}` };
  }
  if (!features.length) return { ok: false, reason: 'the FP graph has no time-only region, so it has no temporal features' };
  return { ok: true, probe: graphProbe(await exposedSession(loaded, features, provider), features) };
}

/**
 * The same tensors in a variant: tapped from its graph, or, when its time-only region was cut out (TFMQ cache
 * mode), the values its pipeline feeds in their place. Refused, with the reason, when the variant has neither.
 */
export async function setupVariantTemporal(unetPath: string, features: string[], provider: Provider, pipeline?: Pipeline, trialLabel = 0): Promise<TemporalSetup> {
  let loaded: LoadedModel;
  try {
    loaded = loadOnnx(unetPath);
  } catch (e) {
    return { ok: false, reason: `the variant's graph could not be read: ${(e as Error).message}` };
  }
  const g = indexGraph(loaded.model);
  const asInputs = features.filter((f) => g.inputs.includes(f));
  if (asInputs.length) {
    const cut = `the variant's graph takes ${asInputs.length === features.length ? 'the' : `${asInputs.length} of the ${features.length}`} temporal features as inputs (a cut graph)`;
    if (asInputs.length !== features.length) return { ok: false, reason: `${cut}, and computes the others itself` };
    if (!pipeline?.extraFeeds) return { ok: false, reason: `${cut}, and nothing feeds them` };
    const [C, H, W] = pipeline.index.sampleShape;
    // one trial batch (for a text pipeline `trialLabel` is an encoded prompt id of its own conditioner)
    const trial = await buildFeeds(pipeline, new Float64Array(C * H * W), 0, [trialLabel], false, 1);
    const missing = features.filter((f) => !(f in trial));
    if (missing.length) return { ok: false, reason: `${cut}, and its pipeline does not feed ${missing.length} of them (e.g. '${missing[0]}')` };
    return {
      ok: true,
      probe: {
        features,
        source: 'fed',
        async read(p, x, t, labels, guided, b) {
          const feeds = await buildFeeds(p, x, t, labels, guided, b);
          return features.map((f) => Float32Array.from(feeds[f]!.data as Float32Array));
        },
        release: async () => {},
      },
    };
  }
  const missing = features.filter((f) => !g.producer.has(f));
  if (missing.length) {
    return {
      ok: false,
      reason: `the variant's graph differs from FP's: ${missing.length} of ${features.length} temporal feature tensors are not in it (e.g. '${missing[0]}')`,
    };
  }
  return { ok: true, probe: graphProbe(await exposedSession(loaded, features, provider), features) };
}

export interface ProbeTarget {
  /** The target's own pipeline (its input names); it samples with the FP pipeline's scheduler. */
  pipeline: Pipeline;
  session: Session;
  temporal: TemporalProbe | null;
  /**
   * The target's own labels per image when they differ from the request's: a text pipeline's prompt ids belong to
   * its own conditioner (TextConditioner.ids), so each pipeline object needs the ids it encoded itself.
   */
  labels?: number[];
}

export interface ProbeResult {
  timesteps: number[];
  /** Per target, per step. */
  eps: StepErrorRow[][];
  /** Per target: per-step and per-feature errors, or null where the target has no temporal probe. */
  temporal: ({ perStep: StepErrorRow[]; perFeature: { name: string; relative: number | null }[] } | null)[];
  /** FP images at the end of the probed trajectory (equal to `sample`'s for these seeds). */
  images: Float32Array[];
}

class Acc {
  readonly diff: Float64Array;
  readonly ref: Float64Array;
  readonly count: Float64Array;
  constructor(n: number) {
    this.diff = new Float64Array(n);
    this.ref = new Float64Array(n);
    this.count = new Float64Array(n);
  }
  add(i: number, a: ArrayLike<number>, ref: ArrayLike<number>): void {
    if (a.length !== ref.length) throw new Error('probe: tensors of different sizes');
    let d = 0;
    let r = 0;
    for (let k = 0; k < a.length; k++) {
      d += (a[k]! - ref[k]!) ** 2;
      r += ref[k]! ** 2;
    }
    this.diff[i]! += d;
    this.ref[i]! += r;
    this.count[i]! += a.length;
  }
  relative(i: number): number | null {
    return this.ref[i]! > 0 ? Math.sqrt(this.diff[i]! / this.ref[i]!) : null;
  }
  rows(timesteps: number[]): StepErrorRow[] {
    return timesteps.map((t, s) => ({
      step: s,
      timestep: t,
      rmse: this.count[s]! > 0 ? Math.sqrt(this.diff[s]! / this.count[s]!) : 0,
      relative: this.relative(s),
    }));
  }
}

export interface ProbeRequest extends LoopSettings {
  seeds: number[];
  /** Class labels per image, or for a text pipeline the FP pipeline's prompt ids (targets bring their own). */
  labels: number[];
  signal?: AbortSignal;
  onEval?: () => void;
}

export async function probeTrajectory(
  p: Pipeline,
  fpSession: Session,
  fpTemporal: TemporalProbe | null,
  targets: ProbeTarget[],
  req: ProbeRequest,
): Promise<ProbeResult> {
  const [C, H, W] = p.index.sampleShape;
  const size = C * H * W;
  const steps = req.steps;
  const epsAcc = targets.map(() => new Acc(steps));
  const temporal = targets.map((t) => (t.temporal && fpTemporal ? { step: new Acc(steps), feature: new Acc(fpTemporal.features.length) } : null));
  const guided = guidedRun(p, req.guidance);
  const noises = req.seeds.map((s) => seedNoise(s, size));
  const fetchFeatures = (pp: Pipeline, probe: TemporalProbe, x: Float64Array, t: number, labels: number[], b: number) => probe.read(pp, x, t, labels, guided, b);
  const { images, timesteps } = await runLoop(p, fpSession, {
    ...req,
    init: noises.map((n) => n.z),
    rngs: noises.map((n) => n.rng),
    labels: req.labels,
    cancelMessage: 'comparison was cancelled',
    onStep: async (v) => {
      const b = v.idx.length;
      const labels = v.idx.map((i) => req.labels[i] ?? 0);
      const fpFeatures = fpTemporal && temporal.some(Boolean) ? await fetchFeatures(p, fpTemporal, v.modelInput, v.timestep, labels, b) : null;
      for (let k = 0; k < targets.length; k++) {
        const target = targets[k]!;
        if (req.signal?.aborted) return;
        const own = target.labels ? v.idx.map((i) => target.labels![i] ?? 0) : labels;
        const eps = target.session === fpSession ? v.eps : await predictEps(target.pipeline, target.session, v.modelInput, v.timestep, own, req.guidance, b);
        epsAcc[k]!.add(v.step, eps, v.eps);
        const acc = temporal[k];
        if (acc && target.temporal && fpFeatures) {
          const feats = await fetchFeatures(target.pipeline, target.temporal, v.modelInput, v.timestep, own, b);
          feats.forEach((f, j) => {
            acc.step.add(v.step, f, fpFeatures[j]!);
            acc.feature.add(j, f, fpFeatures[j]!);
          });
        }
        req.onEval?.();
      }
      req.onEval?.();
    },
  });
  return {
    timesteps,
    images,
    eps: epsAcc.map((a) => a.rows(timesteps)),
    temporal: temporal.map((acc) =>
      acc && fpTemporal
        ? { perStep: acc.step.rows(timesteps), perFeature: fpTemporal.features.map((name, j) => ({ name, relative: acc.feature.relative(j) })) }
        : null,
    ),
  };
}
