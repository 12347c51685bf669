/**
 * Running a quantized variant: its extra runtime inputs per network evaluation, i.e. activation parameters for
 * the current timestep (the set calibrated nearest to it) and, in TFMQ cache mode, the FP temporal features
 * computed by the variant's temporal/model.onnx (cached per timestep and class labels).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DqError } from '../errors.js';
import { timestepFeed, type ExtraFeeds } from '../pipeline/sample.js';
import type { FeedValue, Provider } from '../runtime/onnx.js';
import { Session } from '../runtime/onnx.js';
import type { Manifest, ParamsFile } from './quantize.js';

export function readManifest(dir: string): Manifest | null {
  const p = join(dir, 'manifest.json');
  if (!existsSync(p)) return null;
  try {
    const m = JSON.parse(readFileSync(p, 'utf8')) as Manifest;
    return m.kind === 'dq-variant' ? m : null;
  } catch (e) {
    throw new DqError('BAD_CONFIG', `${p} is not valid JSON: ${(e as Error).message}`);
  }
}

/** The activation parameters' runtime inputs at model timestep t (the set calibrated nearest to t). */
export function paramFeeds(activations: ParamsFile['activations'], t: number): Record<string, FeedValue> {
  const pick = (table: ParamsFile['activations'][number]['table']) => {
    if (table.length === 1 || table[0]!.t === null) return table[0]!;
    let best = table[0]!;
    for (const e of table) if (Math.abs(e.t! - t) < Math.abs(best.t! - t)) best = e;
    return best;
  };
  const feeds: Record<string, FeedValue> = {};
  for (const a of activations) {
    const e = pick(a.table);
    feeds[a.scaleInput] = { type: 'float32', data: Float32Array.of(e.scale), dims: [] };
    if (a.zeroPointInput) feeds[a.zeroPointInput] = { type: 'float32', data: Float32Array.of(e.zeroPoint), dims: [] };
  }
  return feeds;
}

export async function variantFeeds(dir: string, provider: Provider, timestepInput: string, classInput: string | null): Promise<ExtraFeeds | undefined> {
  const pf = join(dir, 'quant', 'params.json');
  if (!existsSync(pf)) return undefined;
  const params = JSON.parse(readFileSync(pf, 'utf8')) as ParamsFile;
  const temporal = params.temporal ? await Session.create(join(dir, params.temporal.model), provider) : null;
  const featureCache = new Map<string, Record<string, FeedValue>>();
  return async (t, labels, rows) => {
    const feeds = paramFeeds(params.activations, t);
    if (temporal && params.temporal) {
      const key = `${t}|${labels ? labels.join(',') : rows}`;
      let f = featureCache.get(key);
      if (!f) {
        const tin: Record<string, FeedValue> = {};
        for (const name of params.temporal.inputs) {
          if (name === timestepInput) {
            tin[name] = timestepFeed(temporal.inputs.find((m) => m.name === name)?.type === 'int64', t, rows);
          }
          else if (name === classInput && labels) tin[name] = { type: 'int64', data: labels, dims: [rows] };
          else throw new DqError('BAD_MODEL', `${dir}: the temporal model needs input '${name}', which the sampler cannot provide`);
        }
        const out = await temporal.run(tin, params.temporal.features);
        f = {};
        for (const name of params.temporal.features) f[name] = { type: 'float32', data: out[name]!.data as Float32Array, dims: out[name]!.dims };
        if (featureCache.size > 4096) featureCache.clear();
        featureCache.set(key, f);
      }
      Object.assign(feeds, f);
    }
    return feeds;
  };
}
