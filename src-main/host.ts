/**
 * The contract implemented over the engine, shared by every shell (Electron main, browser mode).
 * Errors become data here: DqError keeps its code; anything else is reported as INTERNAL.
 * Long jobs run in worker processes (src-main/jobs); their events reach the shells through `subscribe`.
 */
import { int8Support } from './core/runtime/cpu.js';
import { bundledProviders } from './core/runtime/onnx.js';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, isAbsolute, join, resolve } from 'node:path';
import type {
  Artifact,
  CalibrationView,
  CompareResult,
  HostInfo,
  JobEvent,
  JobInfo,
  JobSpecParsed,
  ModelInfo,
  PresetInfo,
  QuantizeResult,
  RecipeSpec,
  RequestName,
  Result,
  StudioApi,
  TweakResult,
} from './contract/api.js';
import { JobSpec, Requests, TweakSpec } from './contract/api.js';
import type { z } from 'zod';
import { closeTweaker, tweakGrid, tweakLayers, type TweakGridRequest } from './core/jobs/tweak-job.js';
import { DqError, fieldPath } from './core/errors.js';
import { runInfo } from './core/jobs/info-job.js';
import { listEmbeddedModels } from './core/models.js';
import { DEFAULT_PROMPTS_FILE, readRecord } from './core/quant/calibrate.js';
import { QUANTIZABLE_COMPONENTS } from './core/quant/quantize.js';
import { readPromptFile } from './core/pipeline/prompt-file.js';
import { isFlowConfig } from './core/pipeline/schedulers.js';
import { listPresets, loadRecipe } from './core/quant/recipe.js';
import { toApiError } from './jobs/errors.js';
import { JobRunner } from './jobs/runner.js';
import type { SpawnWorker } from './jobs/protocol.js';

export { toApiError };

async function wrap<T>(f: () => T | Promise<T>): Promise<Result<T>> {
  try {
    return { ok: true, value: await f() };
  } catch (e) {
    return { ok: false, error: toApiError(e) };
  }
}

/** The host as shells hold it: the contract, plus the job event stream and a way to stop. */
export interface Host extends StudioApi {
  subscribe(listener: (e: JobEvent) => void): () => void;
  dispose(): Promise<void>;
  readonly workspace: string;
}

export interface HostOptions {
  /** Where jobs write (default: a new folder under the OS temp folder). */
  workspace?: string;
  /** The job worker's entry (default: src-main/jobs/worker-entry.mjs). */
  workerEntry?: string;
  /** How worker processes start (default: Node's fork; the Electron shell: its utilityProcess). */
  spawnWorker?: SpawnWorker;
  /** Native UI where the shell has it (Electron): show a folder in the file manager, pick a folder. */
  desktop?: { reveal(path: string): Promise<void>; pickFolder(): Promise<string | null> };
}

const MIME: Record<string, string> = { '.png': 'image/png', '.webp': 'image/webp', '.mp4': 'video/mp4', '.json': 'application/json', '.html': 'text/html' };
const MAX_ARTIFACT = 64 << 20;

/** A text-to-image folder's own calibration prompts (calibration_prompts.txt), or null when it has none or it is unreadable. */
function ownPrompts(dir: string): string[] | null {
  const file = join(dir, DEFAULT_PROMPTS_FILE);
  if (!existsSync(file)) return null;
  try {
    return readPromptFile(file).map((e) => e.prompt);
  } catch {
    return null;
  }
}

function resolveModel(model: string): { path: string; id: string } {
  const embedded = listEmbeddedModels().find((m) => m.id === model);
  if (embedded) return { path: embedded.path, id: embedded.id };
  if (isAbsolute(model) && existsSync(model)) return { path: resolve(model), id: model };
  throw new DqError('NOT_FOUND', `no embedded model '${model}' and no pipeline folder at that absolute path`);
}

export function createHost(shell: HostInfo['shell'], version: string, opts: HostOptions = {}): Host {
  // a workspace the host makes for itself is temporary: dispose() removes it; one given to it is the caller's
  const ownWorkspace = opts.workspace === undefined;
  const workspace = opts.workspace ?? mkdtempSync(join(tmpdir(), 'dq-studio-'));
  let runner: JobRunner | null = null;
  const jobs = () => (runner ??= new JobRunner(workspace, opts.workerEntry, opts.spawnWorker));
  const listeners = new Set<(e: JobEvent) => void>();
  let unsubscribeRunner: (() => void) | null = null;
  const ensureForwarding = () => {
    unsubscribeRunner ??= jobs().subscribe((e) => listeners.forEach((l) => l(e)));
  };

  const findJob = (id: string): JobInfo | undefined => jobs().get(id);

  function startSample(spec: Extract<JobSpecParsed, { kind: 'sample' }>, model: { path: string; id: string }): { jobId: string } {
    const count = spec.prompts.length;
    const variants = spec.variants.map((id) => {
      const v = doneJob(id, 'quantize');
      return { jobId: v.id, name: (v.result as QuantizeResult).name, dir: join(jobs().dir(v.id), 'variant') };
    });
    const also = variants.length ? ` (FP and ${variants.map((v) => v.name).join(', ')})` : '';
    const jobId = jobs().start({
      kind: 'sample',
      model: spec.model,
      label: `sample ${model.id}: ${count} prompt${count === 1 ? '' : 's'} × ${spec.seeds.length} seed${spec.seeds.length === 1 ? '' : 's'}, ${spec.steps} steps${also}`,
      task: (dir) => ({
        kind: 'sample',
        pipelineDir: model.path,
        modelId: model.id,
        prompts: spec.prompts,
        negativePrompt: spec.negativePrompt,
        ...(spec.height !== undefined ? { height: spec.height } : {}),
        ...(spec.width !== undefined ? { width: spec.width } : {}),
        seeds: spec.seeds,
        steps: spec.steps,
        ...(spec.sampler ? { sampler: spec.sampler } : {}),
        ...(spec.guidance !== undefined ? { guidance: spec.guidance } : {}),
        out: dir,
        variants,
      }),
    });
    return { jobId };
  }

  /** A calibrate job's prompts: given, read from a prompt file on the host, or (neither) the pipeline's own. */
  function calibrationPrompts(spec: Extract<JobSpecParsed, { kind: 'calibrate' }>): { prompts?: string[]; negativePrompt?: string } {
    const { prompts, promptFile, negativePrompt } = spec;
    if (prompts !== undefined && promptFile !== undefined) throw new DqError('BAD_ARGUMENT', 'give calibration prompts or a prompt file, not both');
    const neg = negativePrompt !== undefined ? { negativePrompt } : {};
    if (prompts !== undefined) {
      const lines = prompts.map((p) => p.trim()).filter((p) => p !== '');
      if (!lines.length) throw new DqError('BAD_ARGUMENT', 'the calibration prompts are empty: write at least one (one a line), or leave them out for the pipeline\'s own');
      return { prompts: lines, ...neg };
    }
    if (promptFile === undefined) return neg;
    if (!isAbsolute(promptFile)) throw new DqError('BAD_ARGUMENT', `the prompt file must be an absolute path on the host, got '${promptFile}'`);
    const entries = readPromptFile(promptFile);
    const negatives = [...new Set(entries.map((e) => e.negative ?? ''))];
    if (negatives.length > 1) throw new DqError('BAD_ARGUMENT', `${promptFile} gives different negative prompts; calibration uses one negative prompt for every image (the Negative prompt field)`);
    const fileNeg = negatives[0] ? { negativePrompt: negatives[0] } : {};
    return { prompts: entries.map((e) => e.prompt), ...fileNeg, ...neg };
  }

  function cancel(id: string): boolean {
    return jobs().cancel(id);
  }

  const doneJob = (id: string, kind: 'calibrate' | 'quantize' | 'compare' | 'sensitivity') => {
    const j = jobs().get(id);
    if (!j || j.kind !== kind) throw new DqError('NOT_FOUND', `no ${kind} job '${id}'`);
    if (j.state !== 'done') throw new DqError('BAD_ARGUMENT', `${kind} job '${id}' has not finished (${j.state})`);
    return j;
  };

  function startJob(spec: JobSpecParsed): { jobId: string } {
    ensureForwarding();
    const model = resolveModel(spec.model);
    if (spec.kind === 'sample') return startSample(spec, model);
    if (spec.kind === 'calibrate') {
      const { kind: _k, model: _m, prompts: _p, promptFile: _f, negativePrompt: _n, ...rest } = spec;
      const text = calibrationPrompts(spec);
      const o = { ...rest, ...text };
      const promptNote = text.prompts ? `, ${text.prompts.length} prompt${text.prompts.length === 1 ? '' : 's'}` : '';
      const jobId = jobs().start({
        kind: 'calibrate',
        model: spec.model,
        label: `calibrate ${model.id}: ${o.samples} images × ${o.steps} steps${promptNote}`,
        task: (dir) => ({ kind: 'calibrate', pipelineDir: model.path, out: join(dir, 'calibration.json'), opts: o }),
      });
      return { jobId };
    }
    if (spec.kind === 'quantize') {
      const recordPath = spec.calibration ? join(jobs().dir(doneJob(spec.calibration, 'calibrate').id), 'calibration.json') : null;
      const name = typeof spec.recipe.name === 'string' ? spec.recipe.name : 'recipe';
      const budget = spec.budget ? { bits: spec.budget.bits, sensitivityPath: join(jobs().dir(doneJob(spec.budget.sensitivity, 'sensitivity').id), 'sensitivity.json'), perRange: spec.budget.perRange === true } : undefined;
      const jobId = jobs().start({
        kind: 'quantize',
        model: spec.model,
        output: (dir) => join(dir, 'variant'),
        label: `quantize ${model.id} with ${name}${budget ? ` under ${budget.bits} bits${budget.perRange ? ' per timestep range' : ''}` : ''}${spec.components.length ? ` (+ int8 ${spec.components.join(', ')})` : ''}`,
        task: (dir) => ({ kind: 'quantize', pipelineDir: model.path, recipe: spec.recipe, keepLayers: spec.keepLayers, components: spec.components, recordPath, out: join(dir, 'variant'), ...(budget ? { budget } : {}) }),
      });
      return { jobId };
    }
    if (spec.kind === 'pareto') {
      const v = doneJob(spec.variant, 'quantize');
      const sens = doneJob(spec.sensitivity, 'sensitivity');
      const recordPath = spec.calibration ? join(jobs().dir(doneJob(spec.calibration, 'calibrate').id), 'calibration.json') : null;
      const jobId = jobs().start({
        kind: 'pareto',
        model: spec.model,
        label: `Pareto front of ${(v.result as QuantizeResult).name}: ${spec.budgets.length} budget${spec.budgets.length === 1 ? '' : 's'} and the recipe alone`,
        task: (dir) => ({ kind: 'pareto', pipelineDir: model.path, variantDir: join(jobs().dir(v.id), 'variant'), sensitivityPath: join(jobs().dir(sens.id), 'sensitivity.json'), recordPath, budgets: spec.budgets, out: join(dir, 'variants') }),
      });
      return { jobId };
    }
    if (spec.kind === 'sensitivity') {
      const v = doneJob(spec.variant, 'quantize');
      const jobId = jobs().start({
        kind: 'sensitivity',
        model: spec.model,
        label: `sensitivity of ${(v.result as QuantizeResult).name}: ${spec.samples} images × ${spec.steps} steps, ${spec.ranges} step range${spec.ranges === 1 ? '' : 's'}`,
        task: (dir) => ({ kind: 'sensitivity', variantDir: join(jobs().dir(v.id), 'variant'), samples: spec.samples, steps: spec.steps, ranges: spec.ranges, seed: spec.seed, ...(spec.prompts ? { prompts: spec.prompts } : {}), out: dir }),
      });
      return { jobId };
    }
    if (spec.kind === 'export') {
      const v = doneJob(spec.variant, 'quantize');
      const jobId = jobs().start({
        kind: 'export',
        model: spec.model,
        output: (dir) => join(dir, 'export'),
        label: `export ${(v.result as QuantizeResult).name}${spec.int8Weights === 'u8' ? '' : ` (int8 weights ${spec.int8Weights})`}${spec.fuseAttention ? '' : ' (no attention fusion)'}`,
        task: (dir) => ({ kind: 'export', variantDir: join(jobs().dir(v.id), 'variant'), out: join(dir, 'export'), int8Weights: spec.int8Weights, fuseAttention: spec.fuseAttention, verifySeeds: spec.verifySeeds, verifySteps: spec.verifySteps }),
      });
      return { jobId };
    }
    const variants = spec.variants.map((id) => doneJob(id, 'quantize'));
    const maintenance = (r: QuantizeResult['recipe']): CompareResult['temporal'][number] =>
      r.temporal && r.temporal !== 'none' ? r.temporal : (r.keepFp ?? []).includes('temporal') ? 'fp' : 'none';
    const temporal: CompareResult['temporal'] = ['none', ...variants.map((v) => maintenance((v.result as QuantizeResult).recipe))];
    const jobId = jobs().start({
      kind: 'compare',
      model: spec.model,
      label: `compare FP${variants.map((v) => ' | ' + (v.result as QuantizeResult).name).join('')}`,
      task: (dir) => ({
        kind: 'compare',
        pipelineDir: model.path,
        variants: ['fp', ...variants.map((v) => join(jobs().dir(v.id), 'variant'))],
        seeds: spec.seeds,
        classes: spec.classes,
        ...(spec.prompts ? { prompts: spec.prompts } : {}),
        ...(spec.negativePrompt !== undefined ? { negativePrompt: spec.negativePrompt } : {}),
        ...(spec.height !== undefined ? { height: spec.height } : {}),
        ...(spec.width !== undefined ? { width: spec.width } : {}),
        steps: spec.steps,
        ...(spec.sampler ? { sampler: spec.sampler } : {}),
        ...(spec.guidance !== undefined ? { guidance: spec.guidance } : {}),
        fidSamples: spec.fidSamples,
        walkFrames: spec.walkFrames,
        video: spec.video,
        walk: spec.walk,
        out: dir,
      }),
      finish: (raw) => ({ ...(raw as Omit<CompareResult, 'temporal'>), temporal }),
    });
    return { jobId };
  }

  async function modelInfo(ref: string): Promise<ModelInfo> {
    const { path } = resolveModel(ref);
    const i = await runInfo(path);
    const map = i.layers;
    const temporal = new Set(map?.temporal ?? []);
    const cross = new Set(map?.crossAttention ?? []);
    const added = new Set(map?.addedEmbedding ?? []);
    const first = new Set(map?.sensitive.firstLayers ?? []);
    const last = new Set(map?.sensitive.lastLayers ?? []);
    const splitOf = new Map<string, number | null>();
    for (const s of map?.shortcutSplits ?? []) for (const l of s.consumers) splitOf.set(l, s.splitAt);
    const c = i.components;
    const latent = i.text !== null || i.codec !== null;
    const family = i.pipeline.family;
    return {
      path: i.dir,
      className: i.pipeline.className,
      family: family ? { name: family.name, task: family.task, sampled: family.sampled } : null,
      conditioning: i.text ? 'text' : i.unet.io.classLabels ? 'class' : 'none',
      sampleShape: i.pipeline.sampleShape,
      imageShape: i.image,
      latentShape: i.codec ? i.pipeline.sampleShape : null,
      convention: c ? { name: c.convention, why: c.conventionWhy } : null,
      components: c
        ? c.components.map((x) => ({
            name: x.name,
            folder: x.folder,
            role: x.role,
            declared: x.declared,
            present: x.present,
            files: x.files,
            onnx: x.onnx ? { bytes: x.onnx.bytes, externalData: x.onnx.externalData, inputs: x.onnx.inputs, outputs: x.onnx.outputs } : null,
          }))
        : null,
      text: i.text,
      vae: i.codec ? { factor: i.codec.factor, scalingFactor: i.codec.scalingFactor, shiftFactor: i.codec.shiftFactor, dtype: i.codec.inputType, source: i.codec.source, sizeMultiple: i.codec.sizeMultiple } : null,
      defaults: { sampler: i.defaults.sampler, guidance: i.defaults.guidance },
      // text-to-image pipelines calibrate on prompts; a latent pipeline conditioned otherwise has no path in the engine yet
      quantizeUnavailable: latent && !i.text
        ? `${family?.name ?? i.pipeline.className} is a latent pipeline without text conditioning: the studio cannot calibrate, quantize or export it yet; Models and Samples work`
        : null,
      calibrationPrompts: i.text ? ownPrompts(i.dir) : null,
      textFeatures: map?.textFeatures ?? [],
      quantizableComponents: i.text && !i.variant ? Object.keys(QUANTIZABLE_COMPONENTS).filter((c) => existsSync(join(i.dir, c, 'model.onnx'))) : [],
      classes: i.pipeline.classes,
      scheduler: isFlowConfig(i.scheduler)
        ? { trainSteps: i.scheduler.num_train_timesteps, betaSchedule: i.scheduler.use_dynamic_shifting ? 'flow matching, dynamic shift' : `flow matching, shift ${i.scheduler.shift}`, prediction: 'velocity' }
        : { trainSteps: i.scheduler.num_train_timesteps, betaSchedule: i.scheduler.beta_schedule, prediction: i.scheduler.prediction_type },
      unet: { folder: i.unet.folder, bytes: i.unet.bytes, parameters: i.unet.parameters, nodes: i.unet.nodes, ops: i.unet.ops },
      layers: map
        ? map.quantizable.map((l) => ({
            name: l.name,
            op: l.op,
            weightShape: l.weightShape,
            parameters: l.weightShape.reduce((a, b) => a * b, 1),
            input: l.input,
            temporal: temporal.has(l.name),
            sensitive: first.has(l.name) ? 'first' : last.has(l.name) ? 'last' : null,
            splitAt: splitOf.get(l.name) ?? null,
            text: cross.has(l.name) ? ('cross-attention' as const) : added.has(l.name) ? ('added-embedding' as const) : null,
          }))
        : null,
      attention: map?.attention.length ?? 0,
      temporalFeatures: map?.temporalFeatures ?? [],
      shortcutSplits: (map?.shortcutSplits ?? []).map((s) => ({ concat: s.concat, splitAt: s.splitAt, consumers: s.consumers })),
      variant: i.variant ? { recipe: i.variant.recipe, quantized: i.variant.quantized, spared: i.variant.spared, weightBitsPerParameter: i.variant.weightBitsPerParameter } : null,
    };
  }

  function getCalibration(id: string): CalibrationView {
    const rec = readRecord(join(jobs().dir(doneJob(id, 'calibrate').id), 'calibration.json'));
    return {
      timesteps: rec.timesteps,
      steps: rec.steps,
      sites: rec.sites.map((s) => ({ id: s.id, tensor: s.tensor, layers: s.layers, split: s.split, temporal: s.temporal, text: s.text === true, frames: s.frames === true })),
      stats: rec.stats,
      gram: rec.gram !== undefined,
      settings: {
        samples: rec.settings.samples, steps: rec.settings.steps, sampler: rec.settings.sampler, timesteps: rec.settings.timesteps, guidance: rec.settings.guidance,
        ...(rec.settings.prompts ? { prompts: rec.settings.prompts, negativePrompt: rec.settings.negativePrompt ?? '' } : {}),
      },
    };
  }

  function readArtifact(id: string, file: string): Artifact {
    if (!findJob(id)) throw new DqError('NOT_FOUND', `no job '${id}'`);
    const mime = MIME[extname(file).toLowerCase()];
    if (!mime) throw new DqError('BAD_ARGUMENT', `'${file}' is not a file the studio shows`);
    const path = join(jobs().dir(id), file);
    if (!existsSync(path) || !statSync(path).isFile()) throw new DqError('NOT_FOUND', `job '${id}' wrote no '${file}'`);
    const size = statSync(path).size;
    if (size > MAX_ARTIFACT) throw new DqError('BAD_ARGUMENT', `'${file}' is too large to show (${size} bytes)`);
    return { mime, base64: readFileSync(path).toString('base64'), bytes: size };
  }

  /**
   * A request, not a job: the round trip is meant to take about 2 s (a graph edit, one session, the samples), and
   * onnxruntime runs on its own threads, so the host's thread only edits the graph and lays out the grid.
   */
  async function tweakVariant(id: string, spec: z.output<typeof TweakSpec>): Promise<TweakResult> {
    const t0 = performance.now();
    const dir = join(jobs().dir(doneJob(id, 'quantize').id), 'variant');
    const r = await tweakGrid(dir, { ...spec, choices: spec.choices as TweakGridRequest['choices'] });
    const png = Buffer.from(r.png);
    return { grid: { mime: 'image/png', base64: png.toString('base64'), bytes: png.length }, rows: r.rows, cols: r.cols, changed: r.changed, seconds: { ...r.seconds, total: (performance.now() - t0) / 1000 } };
  }

  async function revealJob(id: string): Promise<{ path: string }> {
    const job = findJob(id);
    if (!job) throw new DqError('NOT_FOUND', `no job '${id}'`);
    const path = job.output ?? jobs().dir(id);
    if (!opts.desktop) throw new DqError('UNSUPPORTED', `this host cannot open folders (browser mode); the files are in ${path}`);
    if (!existsSync(path)) throw new DqError('NOT_FOUND', `job '${id}' has no files at ${path} (yet)`);
    await opts.desktop.reveal(path);
    return { path };
  }

  async function pickFolder(): Promise<{ path: string | null }> {
    if (!opts.desktop) throw new DqError('UNSUPPORTED', "this host has no folder picker (browser mode): type the folder's path");
    return { path: await opts.desktop.pickFolder() };
  }

  return {
    workspace,
    listModels: () => wrap(() => listEmbeddedModels()),
    hostInfo: () => wrap(() => ({ shell, version, providers: bundledProviders(), cpuInt8: int8Support(), desktop: opts.desktop !== undefined })),
    modelInfo: (ref) => wrap(() => modelInfo(ref)),
    listPresets: () => wrap((): PresetInfo[] => listPresets().map((name) => ({ name, recipe: loadRecipe(name) as RecipeSpec }))),
    startJob: (spec) => wrap(() => startJob(JobSpec.parse(spec))),
    cancelJob: (id) => wrap(() => ({ cancelled: cancel(id) })),
    listJobs: () => wrap(() => jobs().list()),
    getCalibration: (id) => wrap(() => getCalibration(id)),
    readArtifact: (id, file) => wrap(() => readArtifact(id, file)),
    variantLayers: (id) => wrap(() => tweakLayers(join(jobs().dir(doneJob(id, 'quantize').id), 'variant'))),
    tweakVariant: (id, spec) => wrap(() => tweakVariant(id, TweakSpec.parse(spec))),
    revealJob: (id) => wrap(() => revealJob(id)),
    pickFolder: () => wrap(() => pickFolder()),
    subscribe(listener) {
      ensureForwarding();
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    dispose: async () => {
      await closeTweaker();
      unsubscribeRunner?.();
      listeners.clear();
      await runner?.dispose();
      if (ownWorkspace) rmSync(workspace, { recursive: true, force: true });
    },
  };
}

/**
 * One line for what a request's schema refused, naming the field as the user knows it ('samples', 'prompts[3]';
 * the argument's position only when there is no field), never zod's raw wording ('expected number, received null').
 */
function requestIssue(issue: { path: PropertyKey[]; message: string } | undefined): string {
  if (!issue) return 'bad arguments';
  const [arg, ...rest] = issue.path;
  const field = fieldPath(rest);
  const where = field ? `field '${field}'` : arg !== undefined ? `argument ${Number(arg) + 1}` : '';
  const m = issue.message;
  const type = /^Invalid input: expected (\w+), received (\w+)$/.exec(m);
  const small = /^Too small: expected (\w+) to (?:have|be) >(=?)(\d+(?:\.\d+)?)( items| characters)?$/.exec(m);
  const big = /^Too big: expected (\w+) to (?:have|be) <(=?)(\d+(?:\.\d+)?)( items| characters)?$/.exec(m);
  const what = type
    ? type[2] === 'undefined' ? `is missing (${type[1]} expected)` : type[2] === 'null' ? `is empty (${type[1]} expected)` : `must be of type ${type[1]}, not ${type[2]}`
    : small
      ? `must be ${small[2] ? 'at least' : 'more than'} ${small[3]}${small[4] ?? ''}`
      : big
        ? `must be ${big[2] ? 'at most' : 'less than'} ${big[3]}${big[4] ?? ''}`
        : null;
  const text = what ?? m.replace(/^Invalid option: expected one of /, 'must be one of ');
  return where ? `${where}${what ? ' ' : ': '}${text}` : text;
}

/** Validates raw arguments from the other side of a boundary, then calls the host. */
export async function dispatch(host: StudioApi, name: string, args: unknown[]): Promise<Result<unknown>> {
  if (!Object.hasOwn(Requests, name)) return { ok: false, error: { code: 'BAD_REQUEST', message: `unknown request '${name}'` } };
  const parsed = Requests[name as RequestName].safeParse(args);
  if (!parsed.success) return { ok: false, error: { code: 'BAD_REQUEST', message: `${name}: ${requestIssue(parsed.error.issues[0])}` } };
  const fn = host[name as RequestName] as (...a: unknown[]) => Promise<Result<unknown>>;
  return fn.call(host, ...(parsed.data as unknown[]));
}
