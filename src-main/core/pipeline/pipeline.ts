/**
 * A diffusion pipeline on disk, in the diffusers ONNX layout:
 *   model_index.json, unet/model.onnx, scheduler/scheduler_config.json
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
import { familyOf } from './components.js';
import { Session, type Provider, type IoMeta } from '../runtime/onnx.js';
import { parseSchedulerConfig, type SchedulerConfig } from './schedulers.js';
import { MAX_GUIDANCE, type ExtraFeeds } from './sample.js';

export interface PipelineIndex {
  className: string;
  /** Class names, index = class label; empty for unconditional models. */
  classes: string[];
  /** Label fed for the unconditional branch of classifier-free guidance (null when the model has none). */
  nullClass: number | null;
  /** [C, H, W] of one sample. */
  sampleShape: [number, number, number];
  defaultGuidance: number;
  components: Record<string, [string, string]>;
}

export interface UnetIO {
  sample: string;
  timestep: string;
  timestepType: 'float32' | 'int64';
  classLabels: string | null;
  output: string;
  /** False when a variant's denoiser no longer reads the input (its time-only region was cut out). */
  feedsTimestep?: boolean;
  feedsClassLabels?: boolean;
}

export interface Pipeline {
  dir: string;
  index: PipelineIndex;
  scheduler: SchedulerConfig;
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

/** Validates the folder layout (no model is loaded); `index` is model_index.json as read, for the loader to parse. */
export function locatePipeline(dir: string): { dir: string; unetPath: string; schedulerPath: string; indexPath: string; index: unknown } {
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
  const unetPath = join(abs, 'unet', 'model.onnx');
  if (!existsSync(unetPath)) throw new DqError('MISSING_COMPONENT', `${dir}: component 'unet' is missing (no unet/model.onnx)`);
  const schedulerPath = join(abs, 'scheduler', 'scheduler_config.json');
  if (!existsSync(schedulerPath)) {
    throw new DqError('MISSING_COMPONENT', `${dir}: component 'scheduler' is missing (no scheduler/scheduler_config.json)`);
  }
  return { dir: abs, unetPath, schedulerPath, indexPath, index };
}

/** Largest sample a pipeline may declare: values per image, and per dimension. */
export const MAX_SAMPLE_VALUES = 1 << 24;
export const MAX_SAMPLE_DIM = 16384;

function parseIndex(raw: unknown, path: string): PipelineIndex {
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
  const dims = o.sample_shape;
  if (!Array.isArray(dims) || dims.length !== 3 || !dims.every((n) => Number.isSafeInteger(n) && n > 0)) {
    throw new DqError('BAD_CONFIG', `${path}: field 'sample_shape' must be [channels, height, width] (positive integers)`);
  }
  const shape = dims as [number, number, number];
  if (shape.some((n) => n > MAX_SAMPLE_DIM) || shape[0] * shape[1] * shape[2] > MAX_SAMPLE_VALUES) {
    throw new DqError('BAD_CONFIG', `${path}: field 'sample_shape' [${shape.join(', ')}] is too large (at most ${MAX_SAMPLE_DIM} per dimension and ${MAX_SAMPLE_VALUES} values per sample)`);
  }
  let defaultGuidance = 1;
  if (o.default_guidance !== undefined && o.default_guidance !== null) {
    const g = o.default_guidance;
    if (typeof g !== 'number' || !(g >= 0 && g <= MAX_GUIDANCE)) throw bad('default_guidance', `must be a number from 0 to ${MAX_GUIDANCE}`, g);
    defaultGuidance = g;
  }
  if (o._class_name !== undefined && typeof o._class_name !== 'string') throw bad('_class_name', 'must be a string', o._class_name);
  return {
    className: typeof o._class_name === 'string' ? o._class_name : 'unknown',
    classes,
    nullClass,
    sampleShape: shape,
    defaultGuidance,
    components,
  };
}

/** Finds the denoiser's inputs by name, then by rank and type. */
export function resolveUnetIO(inputs: IoMeta[], outputs: IoMeta[], where: string, runtimeInputs: string[] = []): UnetIO {
  const extraAllowed = new Set(runtimeInputs);
  inputs = inputs.filter((m) => !extraAllowed.has(m.name));
  const byName = (names: string[]) => inputs.find((m) => names.includes(m.name.toLowerCase()));
  const rank = (m: IoMeta) => m.shape?.length ?? -1;
  const sample = byName(SAMPLE_NAMES) ?? inputs.find((m) => rank(m) === 4 && m.type.startsWith('float'));
  const timestep =
    byName(TIMESTEP_NAMES) ?? inputs.find((m) => m !== sample && rank(m) <= 1 && (m.type === 'float32' || m.type === 'int64'));
  if (!sample || !timestep) {
    const have = inputs.map((m) => `${m.name}${m.shape ? `[${m.shape.join(',')}]` : ''}`).join(', ');
    throw new DqError(
      'NOT_DIFFUSION',
      `${where} is not a diffusion denoiser: it needs a sample input [B,C,H,W] and a timestep input [B]; its inputs are ${have || 'none'}`,
    );
  }
  if (timestep.type !== 'float32' && timestep.type !== 'int64') {
    throw new DqError('NOT_DIFFUSION', `${where}: timestep input '${timestep.name}' has type ${timestep.type}; float32 or int64 expected`);
  }
  const classLabels = byName(CLASS_NAMES) ?? inputs.find((m) => m !== timestep && m !== sample && m.type === 'int64' && rank(m) === 1);
  const extra = inputs.filter((m) => m !== sample && m !== timestep && m !== classLabels);
  if (extra.length) {
    throw new DqError('NOT_DIFFUSION', `${where}: unsupported extra inputs ${extra.map((m) => m.name).join(', ')} (text-conditioned pipelines are not supported yet)`);
  }
  const output = outputs[0];
  if (!output) throw new DqError('NOT_DIFFUSION', `${where} has no outputs`);
  return { sample: sample.name, timestep: timestep.name, timestepType: timestep.type, classLabels: classLabels?.name ?? null, output: output.name };
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
 * Loads a pipeline: its config, scheduler and denoiser session. `denoiser` decides how the denoiser component is
 * loaded when it is not the plain graph (core/open.ts passes the one that knows variants and exports).
 */
export async function loadPipeline(dir: string, provider: Provider = 'cpu', denoiser?: DenoiserLoader): Promise<{ pipeline: Pipeline; session: Session }> {
  const loc = locatePipeline(dir);
  const index = parseIndex(loc.index, loc.indexPath);
  const scheduler = parseSchedulerConfig(readJson(loc.schedulerPath, 'scheduler_config.json'), loc.schedulerPath);
  const custom = denoiser ? await denoiser({ dir: loc.dir, label: dir, unetPath: loc.unetPath, provider }) : null;
  const session = custom?.session ?? (await cachedSession(loc.unetPath, provider, { label: `${dir}: unet/model.onnx` }));
  const io = custom?.io ?? resolveUnetIO(session.inputs, session.outputs, `${dir}/unet/model.onnx`, custom?.runtimeInputs ?? []);
  if (index.nullClass !== null && !io.classLabels) {
    throw new DqError('BAD_CONFIG', `${dir}: model_index.json names a null class but the unet has no class-label input`);
  }
  const pipeline: Pipeline = { dir: loc.dir, index, scheduler, unetPath: loc.unetPath, unetInputs: session.inputs, unetOutputs: session.outputs, io };
  await custom?.complete?.(pipeline);
  return { pipeline, session };
}
