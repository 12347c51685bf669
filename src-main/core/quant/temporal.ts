/**
 * TFMQ-DM's disturbance-aware temporal feature maintenance (journal version): for every temporal feature (where the
 * time-only region meets the rest of the network), measure how much quantization disturbs it, and cache only the
 * features whose disturbance is above a threshold; the others stay computed by the quantized time-only region.
 *
 * Disturbance of feature f = max over the calibrated timesteps t (and over the class labels, for class-conditioned
 * models) of ||f_q(t) - f_fp(t)|| / ||f_fp(t)||, f_q computed by the quantized graph with the activation
 * parameters it would be fed at t.
 *
 * The same measure serves the text-feature cache (cross-attention keys and values of the text, SDXL's added
 * embedding): there the features depend on the prompts, given as `conditioning`, and the max runs over those too.
 */
import { DqError } from '../errors.js';
import { dependence } from '../onnx/analysis.js';
import { indexGraph } from '../onnx/graph.js';
import { encodeModel, inlineExternalData } from '../onnx/io.js';
import { decodeModel, type ModelMsg } from '../onnx/model.js';
import { exposeTensors, pruneDead } from '../onnx/rewrite.js';
import { Session, type FeedValue } from '../runtime/onnx.js';
import type { ParamsFile } from './quantize.js';
import { paramFeeds } from './variant.js';
import { timestepFeed } from '../pipeline/sample.js';
import { applySizePlan, type SizePlan } from '../pipeline/region.js';

export interface FeatureDisturbance {
  feature: string;
  /** Max over timesteps of the relative L2 error. */
  max: number;
  /** Mean over timesteps of the relative L2 error. */
  mean: number;
}

export interface DisturbanceInput {
  quantized: ModelMsg;
  fp: ModelMsg;
  features: string[];
  activations: ParamsFile['activations'];
  timestepInput: string;
  classInput: string | null;
  /** Label rows to evaluate (every class, the null class included); ignored without a class input. */
  labels: number[];
  timesteps: number[];
  /** Folder of the models' external data (the source unet's), when they have any. */
  dir?: string;
  /** Text-to-image: the conditioning inputs of `rows` rows (text states, pooled text, size ids) the region reads. */
  conditioning?: { feeds: Record<string, FeedValue>; rows: number };
  /** Text features: the region's size reads made constants and the batch (pipeline/region.ts), in both models. */
  sizePlan?: SizePlan;
}

/** The inputs whose values (not only shapes) the features depend on. */
function valueInputs(m: ModelMsg, features: string[]): Set<string> {
  const g = indexGraph(m);
  const dep = dependence(g);
  const mask = features.reduce((a, f) => a | (dep.get(f) ?? 0n), 0n);
  return new Set(g.inputs.filter((_, i) => (mask >> BigInt(i)) & 1n));
}

/** A copy of `model` whose only outputs are `features` (and only what they need). */
function featureModel(model: ModelMsg, features: string[], dir?: string, plan?: SizePlan): ModelMsg {
  const m = decodeModel(encodeModel(model), 'temporal features');
  m.graph!.output = [];
  exposeTensors(m, features);
  pruneDead(m);
  if (plan) applySizePlan(m, plan);
  return dir ? inlineExternalData(m, dir) : m;
}

export async function measureDisturbance(o: DisturbanceInput): Promise<FeatureDisturbance[]> {
  const qm = featureModel(o.quantized, o.features, o.dir, o.sizePlan);
  const fm = featureModel(o.fp, o.features, o.dir, o.sizePlan);
  const q = await Session.create(encodeModel(qm), 'cpu');
  const fp = await Session.create(encodeModel(fm), 'cpu');
  try {
    const rows = o.conditioning?.rows ?? (o.classInput ? o.labels.length : 1);
    const stats = o.features.map(() => ({ max: 0, sum: 0 }));
    // the features at a timestep whose feeds equal an earlier one's where the features read their values are that
    // one's (the text features read the text and the parameters of the text-only layers, the same at every step;
    // the sample and the timestep only through shapes): each distinct set of those feeds runs once
    const runs = new Map<string, Record<string, { data: unknown }>>();
    const byValue = new Map([[q, valueInputs(qm, o.features)], [fp, valueInputs(fm, o.features)]]);
    const runOnce = async (s: Session, feeds: Record<string, FeedValue>) => {
      const read = byValue.get(s)!;
      const key = `${s === q ? 'q' : 'fp'}|${Object.entries(feeds).map(([k, v]) => `${k}:${v.dims.join('x')}${!read.has(k) ? '' : v.data === o.conditioning?.feeds[k]?.data ? '=conditioning' : `=${Array.from(v.data as ArrayLike<number | bigint>, String).join(',')}`}`).join('|')}`;
      let out = runs.get(key);
      if (!out) runs.set(key, (out = await s.run(feeds, o.features)));
      return out;
    };
    for (const t of o.timesteps) {
      const feedsFor = (s: Session, extra: Record<string, FeedValue>) => {
        const feeds: Record<string, FeedValue> = {};
        for (const meta of s.inputs) {
          if (meta.name === o.timestepInput) {
            feeds[meta.name] = timestepFeed(meta, t, rows);
          } else if (meta.name === o.classInput) {
            feeds[meta.name] = { type: 'int64', data: BigInt64Array.from(o.labels.map(BigInt)), dims: [rows] };
          } else if (extra[meta.name]) feeds[meta.name] = extra[meta.name]!;
          else if (o.conditioning?.feeds[meta.name]) feeds[meta.name] = o.conditioning.feeds[meta.name]!;
          else throw new DqError('BAD_MODEL', `measuring the cached features: their region needs input '${meta.name}'`);
        }
        return feeds;
      };
      const a = await runOnce(q, feedsFor(q, paramFeeds(o.activations, t)));
      const b = await runOnce(fp, feedsFor(fp, {}));
      o.features.forEach((f, i) => {
        const x = a[f]!.data as Float32Array;
        const y = b[f]!.data as Float32Array;
        let num = 0;
        let den = 0;
        for (let k = 0; k < y.length; k++) {
          num += (x[k]! - y[k]!) ** 2;
          den += y[k]! ** 2;
        }
        const rel = Math.sqrt(num / Math.max(den, 1e-30));
        stats[i]!.max = Math.max(stats[i]!.max, rel);
        stats[i]!.sum += rel;
      });
    }
    return o.features.map((feature, i) => ({ feature, max: stats[i]!.max, mean: stats[i]!.sum / Math.max(1, o.timesteps.length) }));
  } finally {
    await q.release();
    await fp.release();
  }
}
