/**
 * Running a quantized variant: its extra runtime inputs per network evaluation, i.e. activation parameters for
 * the current timestep (the set calibrated nearest to it) and, in TFMQ cache mode, the FP temporal features
 * computed by the variant's temporal/model.onnx (cached per timestep and class labels).
 *
 * A variant's manifest.json and quant/params.json are validated when read: every command (sample, info, compare,
 * export, the studio) gets one clear line naming the file and the field, never a TypeError at the first step.
 */
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, join, normalize } from 'node:path';
import { z } from 'zod';
import { DqError, fieldPath } from '../errors.js';
import { cachedSession, type DenoiserContext, type DenoiserLoad, type UnetIO } from '../pipeline/pipeline.js';
import { timestepFeed, type ExtraFeeds } from '../pipeline/sample.js';
import type { FeedValue, Provider } from '../runtime/onnx.js';
import { Session } from '../runtime/onnx.js';
import type { Manifest, ParamsFile } from './quantize.js';
import { rangedFeeds } from './ranged.js';
import { FormatSchema } from './recipe.js';

const finite = (what: string) => z.number({ error: (i) => (i.input === undefined ? `${what} is missing` : `${what} must be a number, got ${JSON.stringify(i.input)}`) }).finite();

const ActParamSchema = z.object({
  t: finite('t').nullable(),
  scale: finite('a scale').positive({ error: (i) => `a scale must be > 0, got ${String(i.input)}` }),
  zeroPoint: finite('a zero point'),
});

const ParamsSchema = z.looseObject({
  version: z.number().int(),
  activations: z.array(
    z.looseObject({
      site: z.number().int(),
      half: z.number().int(),
      scaleInput: z.string().min(1),
      zeroPointInput: z.string().min(1).nullable(),
      table: z.array(ActParamSchema).min(1, { error: 'the table of parameter sets is empty' }),
    }),
  ),
  temporal: z
    .looseObject({ model: z.string().min(1), features: z.array(z.string().min(1)), inputs: z.array(z.string().min(1)) })
    .nullable()
    .default(null),
  text: z
    .looseObject({ model: z.string().min(1), features: z.array(z.string().min(1)), inputs: z.array(z.string().min(1)) })
    .nullable()
    .default(null),
  weights: z
    .array(
      z.looseObject({
        layer: z.string().min(1),
        input: z.string().min(1),
        dims: z.array(z.number().int().positive()),
        gate: z.string().min(1).nullable(),
        sets: z
          .array(z.looseObject({ timesteps: z.tuple([finite('a timestep'), finite('a timestep')]), file: z.string().min(1), format: z.string(), fpInput: z.boolean() }))
          .min(1, { error: 'a layer with no weight sets' }),
      }),
    )
    .optional(),
});

const LayerSchema = z.looseObject({
  name: z.string(),
  op: z.string(),
  weight: z.looseObject({ granularity: z.string(), bits: z.number(), params: z.number(), format: FormatSchema.optional() }).nullable(),
  activation: z.string().nullable().default(null),
});

const IoSchema = z.looseObject({
  sample: z.string().min(1),
  timestep: z.string().min(1),
  timestepType: z.enum(['float32', 'int64']),
  classLabels: z.string().min(1).nullable(),
  output: z.string().min(1),
});

const ManifestSchema = z.looseObject({
  kind: z.literal('dq-variant'),
  recipe: z.looseObject({
    name: z.string().min(1),
    weights: z.looseObject({ format: FormatSchema }),
    activations: z.looseObject({ format: FormatSchema }).nullable(),
  }),
  simulated: z.boolean(),
  layers: z.array(LayerSchema),
  summary: z.looseObject({
    quantized: z.number(),
    spared: z.number(),
    weightBitsPerParameter: z.number(),
    activationFormat: z.string().nullable(),
  }),
  runtimeInputs: z.array(z.string()).default([]),
  sourceIo: IoSchema.optional(),
});

/** `field 'a[0].b': message` for the first problem zod found. */
function firstIssue(e: z.ZodError): string {
  const issue = e.issues[0]!;
  const path = fieldPath(issue.path);
  const missing = /^Invalid input: expected (\w+), received undefined$/.exec(issue.message);
  const message = missing ? `is missing (${missing[1]} expected)` : issue.message.replace(/^Invalid input: expected (\w+), received (\w+)$/, 'must be of type $1, not $2');
  return path ? `field '${path}' ${missing ? '' : ': '}${message}`.replace(' : ', ': ') : message;
}

function readJsonFile(dir: string, rel: string): unknown {
  const p = join(dir, rel);
  let text: string;
  try {
    text = readFileSync(p, 'utf8');
  } catch (e) {
    throw new DqError('BAD_CONFIG', `${dir}: ${rel}: cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new DqError('BAD_CONFIG', `${dir}: ${rel} is not valid JSON: ${(e as Error).message}`);
  }
}

/**
 * A variant's manifest.json, validated; null when the folder has none or it is not a variant's (kind other than
 * 'dq-variant', e.g. a note of the user's).
 */
export function readManifest(dir: string): Manifest | null {
  if (!existsSync(join(dir, 'manifest.json'))) return null;
  const raw = readJsonFile(dir, 'manifest.json');
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw) || (raw as { kind?: unknown }).kind !== 'dq-variant') return null;
  const r = ManifestSchema.safeParse(raw);
  if (!r.success) throw new DqError('BAD_CONFIG', `${dir}: manifest.json: ${firstIssue(r.error)}`);
  return r.data as unknown as Manifest;
}

/** A variant's quant/params.json, validated (types, finite positive scales, a non-empty table per input); null when absent. */
export function readParams(dir: string): ParamsFile | null {
  const rel = join('quant', 'params.json');
  if (!existsSync(join(dir, rel))) return null;
  const r = ParamsSchema.safeParse(readJsonFile(dir, rel));
  if (!r.success) throw new DqError('BAD_CONFIG', `${dir}: quant/params.json: ${firstIssue(r.error)}`);
  const params = r.data as unknown as ParamsFile;
  const seen = new Set<string>();
  for (const [i, a] of params.activations.entries()) {
    if (a.table.length > 1 && a.table.some((e) => e.t === null)) {
      throw new DqError('BAD_CONFIG', `${dir}: quant/params.json: field 'activations[${i}].table': a table of several parameter sets needs a timestep 't' on each`);
    }
    for (const name of [a.scaleInput, a.zeroPointInput]) {
      if (name === null) continue;
      if (seen.has(name)) throw new DqError('BAD_CONFIG', `${dir}: quant/params.json: input '${name}' is given twice`);
      seen.add(name);
    }
  }
  for (const [i, w] of (params.weights ?? []).entries()) {
    for (const [j, set] of w.sets.entries()) {
      for (const [field, f] of [['file', set.file], ['encoding.scale', set.encoding?.scale]] as const) {
        if (f === undefined) continue;
        if (isAbsolute(f) || normalize(f).split(/[/\\]/)[0] === '..') {
          throw new DqError('BAD_CONFIG', `${dir}: quant/params.json: field 'weights[${i}].sets[${j}].${field}': '${f}' must be a path inside the variant folder`);
        }
        if (!existsSync(join(dir, f))) throw new DqError('MISSING_COMPONENT', `${dir}: ${f}, a weight set of '${w.layer}' that quant/params.json names, is missing`);
      }
    }
    for (const name of [w.input, w.gate]) {
      if (name === null) continue;
      if (seen.has(name)) throw new DqError('BAD_CONFIG', `${dir}: quant/params.json: input '${name}' is given twice`);
      seen.add(name);
    }
  }
  for (const which of ['temporal', 'text'] as const) {
    const m = params[which]?.model;
    if (m !== undefined && (isAbsolute(m) || normalize(m).split(/[/\\]/)[0] === '..')) {
      throw new DqError('BAD_CONFIG', `${dir}: quant/params.json: field '${which}.model': '${m}' must be a path inside the variant folder`);
    }
  }
  return params;
}

/**
 * Checks a variant's runtime inputs against its denoiser: every input params.json names must be an input of the
 * graph, and every graph input besides sample, timestep and labels must be one that params.json provides.
 */
export function checkVariantInputs(dir: string, params: ParamsFile | null, graphInputs: readonly string[], standard: readonly (string | null | undefined)[]): void {
  const graph = new Set(graphInputs);
  const provided = new Set<string>();
  for (const a of params?.activations ?? []) {
    for (const name of [a.scaleInput, a.zeroPointInput]) {
      if (name === null) continue;
      if (!graph.has(name)) throw new DqError('BAD_CONFIG', `${dir}: quant/params.json: input '${name}' is not an input of unet/model.onnx`);
      provided.add(name);
    }
  }
  for (const w of params?.weights ?? []) {
    for (const name of [w.input, w.gate]) {
      if (name === null) continue;
      if (!graph.has(name)) throw new DqError('BAD_CONFIG', `${dir}: quant/params.json: input '${name}' is not an input of unet/model.onnx`);
      provided.add(name);
    }
  }
  for (const f of [...(params?.temporal?.features ?? []), ...(params?.text?.features ?? [])]) provided.add(f);
  for (const s of standard) if (s) provided.add(s);
  const missing = graphInputs.filter((n) => !provided.has(n));
  if (missing.length) {
    throw new DqError('BAD_CONFIG', `${dir}: unet/model.onnx needs input${missing.length > 1 ? 's' : ''} ${missing.map((n) => `'${n}'`).join(', ')}, which quant/params.json does not provide`);
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

/** A cut-out region's FP model (temporal/ or text/): its session, checked to exist. */
async function regionSession(dir: string, region: { model: string } | null | undefined, provider: Provider, what: string): Promise<Session | null> {
  if (!region) return null;
  const path = join(dir, region.model);
  if (!existsSync(path)) throw new DqError('MISSING_COMPONENT', `${dir}: the ${what} model ${region.model} that quant/params.json names is missing`);
  return Session.create(path, provider);
}

/**
 * The extra feeds of a variant per evaluation: activation parameters at t; the temporal features (TFMQ cache) from
 * temporal/model.onnx, per (t, labels, conditioning); the text features (the text-feature cache: cross-attention keys
 * and values, SDXL's added embedding) from text/model.onnx, once per batch of prompts. `graphInputs`: the variant
 * denoiser's inputs; feeds it no longer takes (text states whose only readers were cut out) are dropped.
 */
export async function variantFeeds(
  dir: string, provider: Provider, timestepInput: string, classInput: string | null, params: ParamsFile | null = readParams(dir), graphInputs?: readonly string[],
): Promise<ExtraFeeds | undefined> {
  if (!params) return undefined;
  const temporal = await regionSession(dir, params.temporal, provider, 'temporal');
  const text = await regionSession(dir, params.text, provider, 'text-feature');
  const takes = graphInputs ? new Set(graphInputs) : null;
  const weightsAt = params.weights?.length ? rangedFeeds(dir, params.weights) : null;
  const temporalCache = new Map<string, Record<string, FeedValue>>();
  const textCache = new Map<string, Record<string, FeedValue>>();
  const outputsOf = async (s: Session, inputs: Record<string, FeedValue>, names: string[]) => {
    const out = await s.run(inputs, names);
    const f: Record<string, FeedValue> = {};
    for (const name of names) f[name] = { type: 'float32', data: out[name]!.data as Float32Array, dims: out[name]!.dims };
    return f;
  };
  return async (t, labels, rows, batch) => {
    const feeds = paramFeeds(params.activations, t);
    if (weightsAt) Object.assign(feeds, weightsAt(t));
    if (temporal && params.temporal) {
      const fromBatch = params.temporal.inputs.some((n) => n !== timestepInput && n !== classInput);
      const key = `${t}|${labels ? labels.join(',') : rows}${fromBatch ? `|${batch.key}` : ''}`;
      let f = temporalCache.get(key);
      if (!f) {
        const tin: Record<string, FeedValue> = {};
        for (const name of params.temporal.inputs) {
          if (name === timestepInput) tin[name] = timestepFeed(temporal.inputs.find((m) => m.name === name), t, rows);
          else if (name === classInput && labels) tin[name] = { type: 'int64', data: labels, dims: [rows] };
          else if (batch.feeds[name]) tin[name] = batch.feeds[name]!;
          else throw new DqError('BAD_MODEL', `${dir}: the temporal model needs input '${name}', which the sampler cannot provide`);
        }
        f = await outputsOf(temporal, tin, params.temporal.features);
        if (temporalCache.size > 4096) temporalCache.clear();
        temporalCache.set(key, f);
      }
      Object.assign(feeds, f);
    }
    if (text && params.text) {
      let f = textCache.get(batch.key);
      if (!f) {
        const tin: Record<string, FeedValue> = {};
        // the region may read the sample's or the timestep's shape (batch size), never their values
        for (const name of params.text.inputs) {
          if (batch.feeds[name]) tin[name] = batch.feeds[name]!;
          else if (name === timestepInput) tin[name] = timestepFeed(text.inputs.find((m) => m.name === name), t, rows);
          else throw new DqError('BAD_MODEL', `${dir}: the text-feature model needs input '${name}', which the pipeline does not feed`);
        }
        f = await outputsOf(text, tin, params.text.features);
        if (textCache.size > 64) textCache.clear();
        textCache.set(batch.key, f);
      }
      Object.assign(feeds, f);
    }
    if (takes) for (const name of Object.keys(batch.feeds)) if (!takes.has(name)) delete batch.feeds[name];
    return feeds;
  };
}

/**
 * A quantized variant's denoiser component: its source's I/O (some inputs may now reach the network only through its
 * temporal model), its graph checked against quant/params.json, and its activation parameters and temporal features
 * as extra feeds per evaluation. `session`: one made otherwise (an export's, with its int8 weights rewritten at load).
 */
export async function variantDenoiser(ctx: DenoiserContext, manifest: Manifest, session?: Session): Promise<DenoiserLoad> {
  const s = session ?? (await cachedSession(ctx.unetPath, ctx.provider, { label: `${ctx.label}: unet/model.onnx` }));
  let io: UnetIO | undefined;
  if (manifest.sourceIo) {
    const names = new Set(s.inputNames);
    const src = manifest.sourceIo;
    io = { ...src, feedsTimestep: names.has(src.timestep), feedsClassLabels: src.classLabels !== null && names.has(src.classLabels) };
  }
  return {
    session: s,
    ...(io ? { io } : {}),
    runtimeInputs: manifest.runtimeInputs ?? [],
    complete: async (p) => {
      const params = readParams(ctx.label);
      const io = p.io;
      checkVariantInputs(ctx.label, params, s.inputNames, [io.sample, io.timestep, io.classLabels, io.encoderHiddenStates, io.textEmbeds, io.timeIds, io.timestepCond, io.imgIds, io.txtIds, io.guidanceInput, io.textMask, io.resolution, io.aspectRatio]);
      p.extraFeeds = await variantFeeds(ctx.label, ctx.provider, io.timestep, io.classLabels, params, s.inputNames);
      p.variant = { recipe: manifest.recipe.name, simulated: manifest.simulated };
    },
  };
}
