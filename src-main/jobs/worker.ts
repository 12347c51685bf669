/**
 * One job in its own process, so that the host's main thread (Electron main, the browser-mode server) stays
 * free: runs the engine function for the task, posts throttled progress, honours cancel (AbortSignal), and
 * ends with exactly one `done` or `error` message.
 */
import { copyFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { computeComparison, writeComparison } from '../core/compare/compare.js';
import { promptLabel, RAMP } from '../core/compare/render.js';
import { encodeAnimatedWebp, frameSheet, joinColumns } from '../core/compare/video.js';
import { compareVideos, sheetsOf } from '../core/compare/video-compare.js';
import { makeDirs, writeFileAtomic } from '../core/fsutil.js';
import { locatePipeline } from '../core/pipeline/pipeline.js';
import { encodePng, layoutGrid } from '../core/image/grid.js';
import type { SamplerName } from '../core/pipeline/schedulers.js';
import { calibrate, readRecord, type TimestepSelection } from '../core/quant/calibrate.js';
import { quantizePipeline } from '../core/quant/quantize.js';
import { exportPipeline } from '../core/export/export.js';
import { parseRecipe } from '../core/quant/recipe.js';
import type { CompareResult, ExportResult, ParetoResult, QuantizeResult, SampleResult, SensitivityResult } from '../contract/api.js';
import { measureFront } from '../core/quant/pareto.js';
import { readManifest } from '../core/quant/variant.js';
import { measureSensitivity, readSensitivity } from '../core/quant/sensitivity.js';
import { DqError } from '../core/errors.js';
import { runSampleJob } from '../core/jobs/sample-job.js';
import { openPipeline } from '../core/open.js';
import { toApiError } from './errors.js';
import type { FromWorker, ToWorker, WorkerTask } from './protocol.js';

/** The diff heatmaps' colour ramp as CSS colours (the renderer's colour bars). */
const DIFF_RAMP = RAMP.map(([x, c]) => [x, `rgb(${c.join(',')})`] as [number, string]);

const controller = new AbortController();
let lastProgress = 0;

/**
 * The runner's channel: Electron's parentPort in a utility process (the app), else Node's IPC (fork). Both carry the
 * same structured-clone messages.
 */
const port = (process as { parentPort?: { postMessage(m: unknown): void; on(e: 'message', l: (ev: { data: unknown }) => void): void } }).parentPort;

function post(m: FromWorker): Promise<void> {
  if (port) {
    port.postMessage(m);
    return Promise.resolve();
  }
  return new Promise((ok) => {
    if (!process.send) return ok();
    process.send(m, undefined, undefined, () => ok());
  });
}

function onRunnerMessage(listener: (m: ToWorker) => void): void {
  if (port) port.on('message', (ev) => listener(ev.data as ToWorker));
  else process.on('message', listener);
}

/** Leaves once the runner has the last message (its ack), or after a moment without one. */
function leaveAfterAck(): void {
  if (!port) {
    process.exit(0); // Node's IPC called back when the message was out
    return;
  }
  acked.then(() => process.exit(0), () => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
let ack: () => void = () => {};
const acked = new Promise<void>((ok) => (ack = ok));

function progress(phase: string, done: number, total: number): void {
  const now = Date.now();
  if (done < total && now - lastProgress < 100) return;
  lastProgress = now;
  void post({ type: 'progress', phase, done, total });
}

/** A square image's channels and side from its length (1 or 3 channels). */
function shapeOf(n: number): { channels: number; side: number } {
  for (const channels of [1, 3]) {
    const side = Math.round(Math.sqrt(n / channels));
    if (side * side * channels === n) return { channels, side };
  }
  throw new Error(`cannot lay out an image of ${n} values`);
}

/**
 * What an export of a pipeline folder says about its layout and components, where the engine reports them
 * (export.layout / export.components, or the variant's component reports carried into the manifest).
 */
function exportLayout(m: Record<string, unknown>): Pick<ExportResult, 'layout' | 'components'> {
  const e = (m.export ?? {}) as Record<string, unknown>;
  const layout = typeof e.layout === 'string' ? e.layout : e.layout && typeof e.layout === 'object' && typeof (e.layout as { name?: unknown }).name === 'string' ? (e.layout as { name: string }).name : null;
  const out: Pick<ExportResult, 'layout' | 'components'> = { layout };
  const raw = e.components;
  if (Array.isArray(raw)) {
    out.components = raw
      .filter((c): c is Record<string, unknown> => !!c && typeof c === 'object' && typeof (c as { name?: unknown }).name === 'string')
      .map((c) => ({ name: c.name as string, how: typeof c.how === 'string' ? c.how : typeof c.action === 'string' ? c.action : typeof c.mode === 'string' ? c.mode : 'exported' }));
  } else if (raw && typeof raw === 'object') {
    out.components = Object.entries(raw as Record<string, unknown>).map(([name, c]) => ({ name, how: typeof c === 'string' ? c : c && typeof c === 'object' && typeof (c as { how?: unknown }).how === 'string' ? (c as { how: string }).how : 'exported' }));
  } else if (m.components && typeof m.components === 'object') {
    out.components = Object.keys(m.components).map((name) => ({ name, how: 'int8 weights' }));
  }
  return out;
}

async function run(task: WorkerTask): Promise<unknown> {
  const signal = controller.signal;
  if (task.kind === 'calibrate') {
    const rec = await calibrate(task.pipelineDir, task.out, {
      ...task.opts,
      sampler: task.opts.sampler as SamplerName | undefined,
      timesteps: task.opts.timesteps as TimestepSelection,
      signal,
      onProgress: (p) => progress(p.phase, p.done, p.total),
    });
    return { kind: 'calibrate', sites: rec.sites.length, steps: rec.steps, seconds: rec.seconds };
  }
  if (task.kind === 'export') {
    const m = await exportPipeline({
      variantDir: task.variantDir, out: task.out, int8Weights: task.int8Weights, fuseAttention: task.fuseAttention, verify: { seeds: task.verifySeeds, steps: task.verifySteps },
      signal, onProgress: (p) => progress(p.phase, p.done, p.total),
    });
    const e = m.export;
    const result: ExportResult = {
      kind: 'export',
      name: m.recipe.name,
      int8Weights: e.options.int8Weights,
      sizes: { fp32UnetBytes: e.sizes.fp32UnetBytes, exportBytes: e.sizes.exportBytes, ratio: e.sizes.ratio },
      summary: { layers: e.summary.layers, int8Kernels: e.summary.int8Kernels, lowBitStorage: e.summary.lowBitStorage, keptFloat: e.summary.keptFloat, fusedAttention: e.summary.fusedAttention, unfusedAttention: e.summary.unfusedAttention ?? [] },
      real: e.real,
      simulated: e.simulated,
      verification: e.verification
        ? { maxAbs: e.verification.maxAbs, meanAbs: e.verification.meanAbs, p99Abs: e.verification.p99Abs, images: e.verification.perImageMax.length, step: e.verification.step, ...(e.verification.int8WeightsAsRun ? { asRun: e.verification.int8WeightsAsRun } : {}), ...(e.verification.verdict ? { verdict: e.verification.verdict } : {}) }
        : null,
      notes: e.notes,
      ...exportLayout(m as unknown as Record<string, unknown>),
    };
    return result;
  }
  if (task.kind === 'sample') {
    const { pipeline } = await openPipeline(task.pipelineDir, 'cpu');
    if (!pipeline.text) {
      const what = pipeline.io.classLabels ? 'class-conditional: compare it by class in Samples' : 'unconditional';
      throw new DqError('BAD_ARGUMENT', `${task.modelId} takes no prompts (it is ${what})`);
    }
    const variantCount = task.variants.length;
    const part = (k: number) => (p: { phase: string; done: number; total: number }) =>
      progress(variantCount ? `${p.phase} (${k === 0 ? 'FP' : task.variants[k - 1]!.name}, ${k + 1}/${variantCount + 1})` : p.phase, p.done, p.total);
    // FP and every variant: the same prompts, seeds and size
    const same = {
      classes: [],
      prompts: task.prompts.map((prompt) => ({ prompt })),
      negativePrompt: task.negativePrompt,
      ...(task.height !== undefined ? { height: task.height } : {}),
      ...(task.width !== undefined ? { width: task.width } : {}),
      seeds: task.seeds,
      provider: 'cpu' as const,
      signal,
    };
    // a video model: every model's videos, kept to compare them frame by frame
    const videos: Float32Array[][] = [];
    const keep = pipeline.index.frames ? { onImages: (images: Float32Array[]) => void videos.push(images) } : {};
    const rec = await runSampleJob({
      ...same,
      ...keep,
      pipelineDir: task.pipelineDir,
      steps: task.steps,
      ...(task.sampler ? { sampler: task.sampler as SamplerName } : {}),
      guidance: task.guidance ?? pipeline.index.defaultGuidance,
      out: task.out,
      ...(pipeline.index.frames ? { name: 'FP' } : {}),
      onProgress: part(0),
    });
    // each variant: the same prompts, seeds and settings as FP ran with, its grid beside FP's (same layout)
    const variants: NonNullable<SampleResult['variants']> = [];
    for (const [k, v] of task.variants.entries()) {
      const dir = join(task.out, `variant-${k}`);
      const vr = await runSampleJob({
        ...same,
        ...keep,
        pipelineDir: v.dir,
        steps: rec.settings.steps,
        sampler: rec.settings.sampler,
        guidance: rec.settings.guidance,
        out: dir,
        ...(pipeline.index.frames ? { name: v.name } : {}),
        onProgress: part(k + 1),
      });
      const grid = `variant-${k}-${vr.grid}`;
      copyFileSync(join(dir, vr.grid), join(task.out, grid));
      variants.push({ jobId: v.jobId, name: v.name, grid, seconds: vr.seconds, warnings: [...(vr.warnings ?? []), ...(vr.provider.fallback ? [vr.provider.fallback] : [])] });
    }
    // a video model, from the samples in memory: FP's videos and every variant's side by side, frame by frame, in
    // one animation; each model's frames as a sheet (the A/B wipe plays two of them in step), |variant - FP|
    // heatmaps and per-frame numbers
    let video: SampleResult['video'];
    if (rec.video) {
      const names = ['FP', ...variants.map((v) => v.name)];
      const [C, H, W] = rec.imageShape as [number, number, number];
      const cmp = compareVideos({
        models: videos.map((v, k) => ({ name: names[k]!, videos: v })),
        frames: rec.video.frames,
        frameShape: [C, H, W],
        rows: task.prompts.map((p) => promptLabel(p, 24)),
        cols: rec.seeds.map((s) => `S${s}`),
      });
      const frames = cmp.frames[0]!.map((_, k) => joinColumns(cmp.frames.map((m) => m[k]!)));
      writeFileAtomic(join(task.out, 'videos-side.webp'), await encodeAnimatedWebp(frames, frames.map(() => 1000 / rec.video!.fps)));
      writeFileAtomic(join(task.out, 'videos-side-frames.png'), await encodePng(frameSheet(frames)!));
      const sheets = sheetsOf(cmp);
      const sheetFiles = sheets.models.map((_, k) => `videos-${k === 0 ? 'fp' : `variant-${k - 1}`}-frames.png`);
      for (const [k, img] of sheets.models.entries()) writeFileAtomic(join(task.out, sheetFiles[k]!), await encodePng(img));
      const diffs: NonNullable<SampleResult['video']>['diffs'] = [];
      for (const [j, img] of sheets.diffs.entries()) {
        const file = `videos-diff-${j}-frames.png`;
        writeFileAtomic(join(task.out, file), await encodePng(img));
        const st = cmp.stats[j]!;
        diffs.push({ name: st.name, sheet: file, psnrDb: st.psnrDb, ssim: st.ssim, meanAbs: st.meanAbs, flickerRatio: st.flickerRatio });
      }
      video = {
        frames: rec.video.frames, fps: rec.video.fps, side: 'videos-side.webp', sheet: 'videos-side-frames.png', columns: names,
        sheets: sheetFiles, diffs, diffScale: cmp.scale, diffRamp: DIFF_RAMP,
      };
    }
    const result: SampleResult = {
      kind: 'sample',
      files: { grid: rec.grid, record: 'samples.json' },
      prompts: rec.prompts ?? [],
      tokenLimits: pipeline.text.tokenizers.map((t) => t.maxLength - 2),
      seeds: rec.seeds,
      settings: { steps: rec.settings.steps, sampler: rec.settings.sampler, guidance: rec.settings.guidance },
      imageShape: rec.imageShape,
      warnings: [...(rec.warnings ?? []), ...(rec.provider.fallback ? [rec.provider.fallback] : [])],
      provider: rec.provider.used,
      seconds: rec.seconds,
      ...(variants.length ? { variants } : {}),
      ...(video ? { video } : {}),
    };
    return result;
  }
  if (task.kind === 'sensitivity') {
    const r = await measureSensitivity({ variantDir: task.variantDir, samples: task.samples, steps: task.steps, ranges: task.ranges, seed: task.seed, prompts: task.prompts, signal, onProgress: (p) => progress(`layer ${p.layer}`, p.done, p.total) });
    makeDirs(task.out, 'the job folder');
    writeFileAtomic(join(task.out, 'sensitivity.json'), JSON.stringify(r, null, 1) + '\n');
    const result: SensitivityResult = {
      kind: 'sensitivity', name: r.recipe, settings: { samples: r.settings.samples, steps: r.settings.steps, sampler: r.settings.sampler, guidance: r.settings.guidance },
      ranges: r.ranges, base: r.base, layers: r.layers, seconds: r.seconds,
    };
    return result;
  }
  if (task.kind === 'pareto') {
    const manifest = readManifest(task.variantDir);
    if (!manifest) throw new DqError('NOT_FOUND', `${task.variantDir} is not a variant`);
    const sensitivity = readSensitivity(task.sensitivityPath);
    const points = await measureFront({
      pipelineDir: task.pipelineDir, recipe: manifest.recipe, record: task.recordPath ? readRecord(task.recordPath) : null, recordPath: task.recordPath ?? undefined,
      sensitivity, sensitivityPath: task.sensitivityPath, budgets: task.budgets, out: task.out, signal,
      onProgress: (p) => progress(`quantize and sample at ${p.budget} bits`, p.done, p.total),
    });
    const result: ParetoResult = {
      kind: 'pareto', name: manifest.recipe.name, points: points.map(({ budget, bits, layers, error, fidToFp }) => ({ budget, bits, layers, error, fidToFp })),
      settings: { samples: sensitivity.settings.samples, steps: sensitivity.settings.steps },
    };
    return result;
  }
  if (task.kind === 'quantize') {
    progress('quantizing', 0, 1);
    const raw = { ...(task.recipe as Record<string, unknown>) };
    if (task.keepLayers.length) raw.keepLayers = task.keepLayers; // per-layer overrides from the Recipe view
    const recipe = parseRecipe(raw, 'recipe');
    const record = task.recordPath ? readRecord(task.recordPath) : null;
    const m = await quantizePipeline({
      pipelineDir: task.pipelineDir, recipe, record, recordPath: task.recordPath ?? undefined, out: task.out,
      ...(task.components.length ? { components: task.components } : {}),
      ...(task.budget ? { budget: { bits: task.budget.bits, sensitivity: readSensitivity(task.budget.sensitivityPath), path: task.budget.sensitivityPath, perRange: task.budget.perRange === true } } : {}),
    });
    progress('quantizing', 1, 1);
    const result: QuantizeResult = {
      kind: 'quantize',
      name: recipe.name,
      recipe: recipe as QuantizeResult['recipe'],
      summary: m.summary,
      layers: m.layers.map((l) => ({ name: l.name, op: l.op, weightBits: l.weight?.bits ?? null, activation: l.activation, spared: l.spared ?? null })),
      bytes: statSync(locatePipeline(task.out).unetPath).size,
      temporal: m.temporal ?? null,
      text: m.text ?? null,
      components: Object.entries(m.components ?? {}).map(([name, c]) => ({ name, ...c })),
    };
    return result;
  }
  // the sampler and guidance the pipeline samples with unless given (text-to-image: its own; otherwise ddim, 2)
  let defaults: { sampler: SamplerName; guidance: number } = { sampler: 'ddim', guidance: 2 };
  if (task.sampler === undefined || task.guidance === undefined) {
    const { pipeline } = await openPipeline(task.pipelineDir, 'cpu');
    if (pipeline.text || pipeline.index.defaultSampler === 'flow-euler') defaults = { sampler: pipeline.index.defaultSampler, guidance: pipeline.index.defaultGuidance };
  }
  const job = {
    pipelineDir: task.pipelineDir,
    variants: task.variants,
    seeds: task.seeds,
    classes: task.classes,
    ...(task.prompts ? { prompts: task.prompts.map((prompt) => ({ prompt })) } : {}),
    ...(task.negativePrompt !== undefined ? { negativePrompt: task.negativePrompt } : {}),
    ...(task.height !== undefined ? { height: task.height } : {}),
    ...(task.width !== undefined ? { width: task.width } : {}),
    steps: task.steps,
    sampler: (task.sampler as SamplerName | undefined) ?? defaults.sampler,
    guidance: task.guidance ?? defaults.guidance,
    fidSamples: task.fidSamples,
    walkFrames: task.walkFrames,
    video: task.video,
    walk: task.walk,
    out: task.out,
    signal,
    onProgress: (p: { phase: string; done: number; total: number }) => progress(p.phase, p.done, p.total),
  };
  const c = await computeComparison(job);
  progress('writing', 0, 1);
  const metrics = await writeComparison(c, job);
  // each variant's grid images side by side, laid out identically, for the A/B wipe
  makeDirs(task.out, 'output');
  const strips: string[] = [];
  for (let v = 0; v < c.images.length; v++) {
    const imgs = c.images[v]!;
    if (!imgs.length) continue;
    const shape = metrics.settings.imageShape;
    const { channels, height, width } = shape ? { channels: shape[0]!, height: shape[1]!, width: shape[2]! } : ((s) => ({ channels: s.channels, height: s.side, width: s.side }))(shapeOf(imgs[0]!.length));
    const zoom = Math.max(1, Math.min(4, Math.floor(128 / Math.max(height, width))));
    const png = await encodePng(layoutGrid({ cells: [imgs], channels, height, width, rowLabels: [''], colLabels: [], zoom }));
    const file = `strip-${v}.png`;
    writeFileAtomic(join(task.out, file), png);
    strips.push(file);
  }
  progress('writing', 1, 1);
  const result: Omit<CompareResult, 'temporal'> = {
    kind: 'compare',
    images: metrics.images,
    variants: metrics.variants.map((v) => ({
      name: v.name,
      isFp: v.isFp,
      otherSource: v.otherSource ?? null,
      modelBytes: v.modelBytes,
      weightBitsPerParameter: v.weightBitsPerParameter,
      estimatedDeployedBytes: v.estimatedDeployedBytes,
      psnrDb: v.psnrDb,
      ssim: v.ssim,
      fid: v.fid,
      classAgreement: v.classAgreement,
      epsError: v.epsError,
      temporalFeatureError: v.temporalFeatureError,
    })),
    files: { grid: metrics.files.grid, diffs: metrics.files.diffs, diffScale: metrics.files.diffScale ?? null, diffRamp: DIFF_RAMP, trajectory: metrics.files.trajectory, walk: metrics.files.walk, strips, report: metrics.files.report, metrics: metrics.files.metrics },
    notes: metrics.notes,
  };
  return result;
}

onRunnerMessage((m) => {
  if (m.type === 'ack') {
    ack();
    return;
  }
  if (m.type === 'cancel') {
    controller.abort();
    return;
  }
  if (m.type === 'start') {
    run(m.task)
      .then(
        (result) => post({ type: 'done', result }),
        (e) => post({ type: 'error', error: toApiError(e) }),
      )
      // the message is out: leave (onnxruntime sessions need not be released one by one)
      .finally(leaveAfterAck);
  }
});
// the runner going away ends the job (a utility process ends with the app by itself)
if (!port) process.on('disconnect', () => process.exit(0));
