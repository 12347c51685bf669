/**
 * `dq quantize`: an FP pipeline + a recipe + a calibration record -> a quantized variant, written as a pipeline
 * folder in the same layout (so every command that samples a pipeline samples a variant), plus:
 *   quant/params.json      activation parameters (one set, or one per calibrated timestep) and runtime inputs
 *   temporal/model.onnx    the FP time-only region (TFMQ cache mode): its outputs are fed to the variant
 *   manifest.json          recipe, calibration hash, layers quantized and spared (with reasons), bits per parameter
 * Simulated (fake) quantization: weights hold their quantized values in float32; activation quantizers are
 * elementwise subgraphs. The variant is written to a temporary folder and renamed into place.
 */
import { cpSync, existsSync, readdirSync, rmSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { hadamard, nvfp4TensorScale, intParams, floatScale, type QuantFormat } from '../../../kernels/quant.js';
import { GPTQ_PERCDAMP } from '../../../kernels/gptq.js';
import { FORMATS } from '../../../kernels/minifloat.js';
import { DqError } from '../errors.js';
import { cleanStaleOutputs, makeDirs, prepareOutput, swapIntoPlace, writeFileAtomic, sha256File, readJson } from '../fsutil.js';
import { analyzeGraph, type LayerMap, type QuantizableLayer } from '../onnx/analysis.js';
import { encodeModel, floatTensor, inlineExternalData, loadOnnx, saveOnnx, type LoadedModel } from '../onnx/io.js';
import { applySizePlan, textSizePlan, type SizePlan } from '../pipeline/region.js';
import { nodeAttr, untieWeights } from '../onnx/graph.js';
import { decodeModel, type ModelMsg, type TensorMsg } from '../onnx/model.js';
import { cutFeatures, exposeTensors, pruneDead } from '../onnx/rewrite.js';
import { denoiserFolder, locatePipeline, type Pipeline, type UnetIO } from '../pipeline/pipeline.js';
import { buildFeeds, guidedRun } from '../pipeline/sample.js';
import type { FeedValue } from '../runtime/onnx.js';
import { openPipeline } from '../open.js';
import { insertActivationQuantizer } from './activations.js';
import { negativeOf, readRecord, selectSteps, type CalibrationRecord, type CalibrationSettings } from './calibrate.js';
import type { Recipe } from './recipe.js';
import type { Site } from './sites.js';
import { histError, histQuantile, mergeStat, type Stat } from './stats.js';
import { quantizeWeight, quantizeWeightGptq, weightAxes, weightBits, type WeightResult } from './weights.js';
import { GramSums, type GramEntry } from './gram.js';
import { allocateBits } from './budget.js';
import { insertLowRankBranch, lowRankSupport, splitLowRank, type LowRankBranch } from './lowrank.js';
import type { SensitivityRecord } from './sensitivity.js';
import { ALPHA_GRID, channelRms, joinRows, sampleSiteRowsAt, searchAlpha, searchSteps, type Candidate, type SearchLayer, type SiteRows } from './smooth.js';
import { rangeLayer, type RangedWeight } from './ranged.js';
import { findRotationFolds, foldBlock, foldIntoOutputs, setFloats, type RotationFold } from './fold.js';
import { measureDisturbance, type FeatureDisturbance } from './temporal.js';
import { quantizeComponent, verifyComponent, verifyThresholds, type ComponentKind } from './components.js';

export const PARAMS_VERSION = 1;

export interface ActParam {
  /** Model timestep this set was calibrated at (null: one set for all timesteps). */
  t: number | null;
  scale: number;
  zeroPoint: number;
}

export interface ParamsFile {
  version: number;
  /** Runtime inputs and their values by timestep. */
  activations: { site: number; half: number; scaleInput: string; zeroPointInput: string | null; table: ActParam[] }[];
  temporal: null | { model: string; features: string[]; inputs: string[] };
  /** The text-feature cache: text/model.onnx (the FP text-only region) computes these features once per batch of prompts. */
  text?: null | { model: string; features: string[]; inputs: string[] };
  /** Per-step parameter sets: layers whose weight (and activation path) changes with the timestep range (ranged.ts). */
  weights?: RangedWeight[];
}

export interface LayerReport {
  name: string;
  op: string;
  weight: {
    granularity: string;
    bits: number;
    params: number;
    rounding?: string;
    /** The weight's format when it is not the recipe's (keepFormat layers). */
    format?: Recipe['weights']['format'];
    /** Why the layer is not in the recipe's main format (keepFormat layers). */
    role?: string;
  } | null;
  activation: string | null;
  spared?: string;
  /**
   * A rotation (and balance) folded into a value projection (fold.ts): on both layers. Such a layer is fixed for
   * in-memory edits (tweak.ts): its FP weight alone no longer matches its neighbour.
   */
  fold?: string;
  /** A per-step parameter set (ranged.ts): the layer's weight is fed per timestep range. Fixed for the layer editor. */
  perStep?: string;
}

export interface Manifest {
  kind: 'dq-variant';
  version: 1;
  recipe: Recipe;
  source: { pipeline: string; unetSha256: string };
  calibration: { sha256: string; steps: number[]; settings: CalibrationRecord['settings'] } | null;
  simulated: true;
  layers: LayerReport[];
  summary: { quantized: number; spared: number; weightBitsPerParameter: number; fpParameters: number; quantizedParameters: number; activationFormat: string | null };
  runtimeInputs: string[];
  /** The source pipeline's denoiser inputs (a cut variant reads timestep and labels through its temporal model). */
  sourceIo: UnetIO;
  /** Temporal feature maintenance: which features are cached (FP) and, in 'auto' mode, each feature's measured disturbance. */
  temporal?: { mode: 'cache' | 'auto'; threshold: number | null; cached: string[]; disturbance: FeatureDisturbance[] };
  /** The text-feature cache, as for temporal features: which text features are cached (FP) and their measured disturbance. */
  text?: { mode: 'cache' | 'auto'; threshold: number | null; cached: string[]; disturbance: FeatureDisturbance[]; sizes?: string };
  /** Other components quantized (int8 weights), each with its verification against the FP component. */
  components?: Record<string, ComponentSummary>;
  /** dq quantize --budget: the layers a bits budget moved to the higher format. */
  budget?: BudgetSummary;
}

export function formatName(f: QuantFormat): string {
  switch (f.kind) {
    case 'int':
      return `int${f.bits}${f.symmetric ? '' : ' asym'}`;
    case 'float':
      return f.element === 'e4m3fn' || f.element === 'e5m2' ? `fp8 ${f.element}` : f.element === 'e2m1' ? 'fp4 e2m1' : `fp6 ${f.element}`;
    case 'mx':
      return f.element === 'int8' ? 'mxint8' : `mx ${f.element}`;
    case 'nvfp4':
      return 'nvfp4';
  }
}

/**
 * Why a recipe needs a calibration record (null: it does not), and the calibration that serves it with the
 * defaults (DEFAULT_CALIBRATION's images and steps; the recipe's timestep selection, or every step for 'single';
 * Gram matrices for GPTQ).
 */
export function recipeCalibration(recipe: Recipe): { why: string; settings: Partial<CalibrationSettings> } | null {
  const act = recipe.activations;
  const why = act && (act.format.kind === 'int' || act.format.kind === 'float' || act.format.kind === 'nvfp4')
    ? `quantizes activations (${formatName(act.format as QuantFormat)})`
    : recipe.weights.rounding === 'gptq'
      ? 'rounds weights with GPTQ (Gram matrices)'
      : recipe.temporal === 'auto' || recipe.text === 'auto'
        ? 'measures feature disturbance at the calibrated timesteps'
        : null;
  if (!why) return null;
  const c = recipe.calibration;
  const timesteps = c.timesteps === 'single' ? 'all' : c.timesteps;
  return { why, settings: { timesteps, count: c.count, gram: recipe.weights.rounding === 'gptq' || recipe.balance !== null } };
}

/** Steps of the record the recipe calibrates with. */
export function recipeSteps(rec: CalibrationRecord, recipe: Recipe): number[] {
  const c = recipe.calibration;
  const have = rec.steps;
  if (c.timesteps === 'all') return have;
  if (c.timesteps === 'single') {
    const step = c.step ?? Math.floor(rec.timesteps.length / 2);
    if (!have.includes(step)) throw new DqError('BAD_CONFIG', `the recipe calibrates at step ${step}, which the calibration record lacks (it has ${have.join(', ')}): recalibrate with --timesteps all`);
    return [step];
  }
  const want = selectSteps(rec.timesteps.length, c.timesteps, c.count, 0);
  const missing = want.filter((s) => !have.includes(s));
  if (missing.length) throw new DqError('BAD_CONFIG', `the recipe needs steps ${missing.join(', ')}, which the calibration record lacks: recalibrate with --timesteps all`);
  return want;
}

/** Parameters of an INT/FP activation quantizer from a statistic and the recipe's clipping. */
export function actParams(st: Stat, fmt: Extract<QuantFormat, { kind: 'int' | 'float' }>, act: NonNullable<Recipe['activations']>): { scale: number; zeroPoint: number } {
  const params = (lo: number, hi: number) =>
    fmt.kind === 'int' ? intParams(lo, hi, fmt.bits, fmt.symmetric) : { scale: floatScale(Math.max(Math.abs(lo), Math.abs(hi)), fmt.element), zeroPoint: 0 };
  if (act.clipping === 'minmax') return params(st.min, st.max);
  if (act.clipping === 'percentile') {
    const p = act.percentile / 100;
    return params(Math.min(0, histQuantile(st.hist, 1 - p)), Math.max(0, histQuantile(st.hist, p)));
  }
  // MSE: shrink the range and keep the parameters with the least expected squared error over the histogram
  let best = params(st.min, st.max);
  let bestErr = Infinity;
  for (let a = 1; a >= 0.3 - 1e-9; a -= 0.02) {
    const p = params(st.min * a, st.max * a);
    const q = fmt.kind === 'int' ? intQ(p, fmt) : floatQ(p.scale, fmt.element);
    const e = histError(st.hist, q);
    if (e < bestErr) {
      bestErr = e;
      best = p;
    }
  }
  return best;
}

function intQ(p: { scale: number; zeroPoint: number }, fmt: { bits: number; symmetric: boolean }): (v: number) => number {
  const lo = fmt.symmetric ? -(2 ** (fmt.bits - 1)) : 0;
  const hi = fmt.symmetric ? 2 ** (fmt.bits - 1) - 1 : 2 ** fmt.bits - 1;
  return (v) => (Math.min(hi, Math.max(lo, Math.round(v / p.scale) + p.zeroPoint)) - p.zeroPoint) * p.scale;
}

function floatQ(scale: number, element: keyof typeof FORMATS): (v: number) => number {
  const f = FORMATS[element];
  return (v) => {
    const y = Math.min(f.max, Math.abs(v / scale));
    if (y === 0) return 0;
    const e = Math.max(f.emin, Math.floor(Math.log2(y)));
    const q = 2 ** (e - f.mbits);
    return Math.sign(v) * Math.min(f.max, Math.round(y / q) * q) * scale;
  };
}

function mergedOver(rec: CalibrationRecord, site: number, half: number, steps: number[]): Stat {
  let acc: Stat | undefined;
  for (const s of steps) {
    const st = rec.stats[site]?.[half]?.[s];
    if (st) acc = mergeStat(acc, st);
  }
  if (!acc) throw new DqError('BAD_CONFIG', `the calibration record has no statistics for site ${site} at steps ${steps.join(', ')}`);
  return acc;
}

/** Statistic of a site's half, or of the whole site (merging the recorded halves) when the recipe does not split. */
function siteStat(rec: CalibrationRecord, site: Site, half: number | 'whole', steps: number[]): Stat {
  const recorded = rec.sites.find((s) => s.id === site.id);
  if (!recorded) throw new DqError('BAD_CONFIG', `the calibration record does not describe site ${site.id}: recalibrate`);
  if (half !== 'whole') return mergedOver(rec, site.id, half, steps);
  if (recorded.split === null) return mergedOver(rec, site.id, 0, steps);
  return mergeStat(mergedOver(rec, site.id, 0, steps), mergedOver(rec, site.id, 1, steps));
}

/** A model's graph inputs that are not initializers (what a caller must feed). */
function runtimeInputsOf(model: ModelMsg): string[] {
  const inits = new Set((model.graph!.initializer ?? []).map((t) => t.name ?? ''));
  return (model.graph!.input ?? []).map((v) => v.name ?? '').filter((n) => !inits.has(n));
}

/** Whether a Gemm layer reads its weight transposed (transB = 1). */
export function gemmTransB(model: ModelMsg, layer: QuantizableLayer, names: Map<string, number>): boolean {
  const i = names.get(layer.name);
  const n = i === undefined ? undefined : model.graph!.node![i];
  return n !== undefined && Number(nodeAttr(n, 'transB')?.i ?? 0) === 1;
}

/**
 * Channel balancing (recipe.balance; ViDiT-Q's channel balance, SmoothQuant's scaling) for the sites whose every
 * layer is a quantized linear layer (MatMul, Gemm) reading the whole site: s_j = a_j^alpha / w_j^(1 - alpha), a_j the
 * input channel's RMS over the calibration (sqrt of the Gram matrix's diagonal over its rows: every calibrated
 * timestep and prompt), w_j its largest |weight| over the site's layers; s in [1e-4, 1e4], 1 for a silent channel.
 * -> per layer, the site's s.
 */
function balanceSites(
  sites: Site[],
  map: LayerMap,
  spare: Map<string, string>,
  cut: ReadonlySet<string>,
  textCut: ReadonlySet<string>,
  grams: { sums: GramSums; byLayer: Map<string, GramEntry> } | null,
  inits: Map<string, { data_type?: number | null }>,
  loaded: Parameters<typeof floatTensor>[0],
  transBOf: ReadonlyMap<string, boolean>,
  alpha: number | 'search' | null,
  rotate: boolean,
  search: { rows: Map<string, SiteRows>; weights: Recipe['weights']; actBits: number } | null,
  folds: ReadonlyMap<number, RotationFold>,
  foldMode: Recipe['fold'],
  perRange: { ranges: BalanceRange[]; rows: Map<string, SiteRows[]> } | null,
): Map<string, Balance> {
  const out = new Map<string, Balance>();
  const byName = new Map(map.quantizable.map((l) => [l.name, l]));
  // the sites whose transform folds into a value projection last: the value projection's own site (q, k, v) gets
  // the balance it would get unfolded (its weights' largest values read before the fold changes them), so folding
  // the scales alone computes what the online Mul did
  const ordered = [...sites.filter((st) => !folds.has(st.id)), ...sites.filter((st) => folds.has(st.id))];
  for (const site of ordered) {
    if (site.split !== null) continue;
    const layers = site.layers.map((n) => byName.get(n));
    if (!layers.length || layers.some((l) => !l || spare.has(l.name) || cut.has(l.name) || textCut.has(l.name) || inits.get(l.weight)?.data_type !== 1)) continue;
    // linear layers only: rotating convolutions' input channels too was measured worse on tiny-t2i's W4A8
    // (FID-to-FP 0.229 against 0.171 with the linear layers alone rotated; docs/quantize.md)
    if (layers.some((l) => l!.op !== 'MatMul' && l!.op !== 'Gemm')) continue;
    const e = grams?.byLayer.get(layers[0]!.name);
    const rows = e && grams ? grams.sums.rows[e.index]! : 0;
    if (grams && (!e || e.conv || rows === 0)) continue;
    const first = layers[0]!;
    const C = e ? e.dim : transBOf.get(first.name) ? first.weightShape[1]! : first.weightShape[0]!;
    // a fold (fold.ts): the block divides the head width, and the transform is x -> (x R) diag(1/s), computed by
    // the value projection; online, x -> (x diag(1/s)) R in the graph
    const fold = folds.get(site.id)?.channels === C ? folds.get(site.id) : undefined;
    const foldAt = fold && rotate && foldMode === 'all' ? foldBlock(fold, hadamardBlock(C)) : 0;
    const rotateFirst = foldAt >= 2;
    const block = rotateFirst ? foldAt : rotate && hadamardBlock(C) >= 2 ? hadamardBlock(C) : 0;
    let H = e && grams ? grams.sums.matrix(e) : null;
    if (H && rotateFirst) {
      H = Float64Array.from(H);
      rotateGram(H, C, block);
    }
    const wmax = new Float64Array(C);
    let fits = true;
    for (const l of layers as QuantizableLayer[]) {
      const transB = transBOf.get(l.name) === true;
      const raw = floatTensor(loaded, inits.get(l.weight) as never);
      // the scales see the weights in the basis they act in
      const w = rotateFirst ? balanceWeight(raw, l.weightShape, transB, { scale: null, rotate: block, rotateFirst }) : raw;
      const [r, c] = l.weightShape as [number, number];
      const inDim = transB ? c : r;
      if (l.weightShape.length !== 2 || inDim !== C) {
        fits = false;
        break;
      }
      for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) {
        const ch = transB ? j : i;
        wmax[ch] = Math.max(wmax[ch]!, Math.abs(w[i * c + j]!));
      }
    }
    if (!fits) continue;
    // s_j = a_j^alpha / w_j^(1 - alpha) for the channels' RMS a (from the Gram matrix, or from sampled rows)
    const scalesFrom = (a: (j: number) => number) => (al: number) =>
      Float32Array.from({ length: C }, (_, j) => (a(j) > 0 && wmax[j]! > 0 ? Math.min(1e4, Math.max(1e-4, a(j) ** al / wmax[j]! ** (1 - al))) : 1));
    const scaleFor = scalesFrom((j) => Math.sqrt(Math.max(0, H![j * C + j]!) / rows));
    const searchLayers = () => (layers as QuantizableLayer[]).map((l) => ({ layer: l, w: floatTensor(loaded, inits.get(l.weight) as never), transB: transBOf.get(l.name) === true }));
    const weightOf = (l: SearchLayer, c: Candidate) => balanceWeight(l.w, l.layer.weightShape, l.transB, c);
    let scale: Float32Array | null = null;
    let note: string | undefined;
    // timestep-aware: a folded site whose value projection has no bias takes a balance per range of steps, from its
    // sampled rows in that range (their channels' RMS), alpha fixed or searched per range
    const rangeRows = fold && !fold.value.bias && alpha !== null ? perRange?.rows.get(site.tensor) : undefined;
    let rangeScales: (Float32Array | null)[] | undefined;
    if (rangeRows && rangeRows.every((r) => r.rows > 0 && r.dim === C)) {
      const basis = { rotate: block, rotateFirst };
      const notes: string[] = [];
      rangeScales = rangeRows.map((rows, r) => {
        const a = channelRms(rows, { scale: null, ...basis });
        const scaleOf = scalesFrom((j) => a[j]!);
        if (alpha !== 'search') return scaleOf(alpha!);
        const found = searchAlpha(rows, searchLayers(), basis, scaleOf, weightOf, search!.weights, search!.actBits);
        notes.push(`range ${r + 1}: ${found.alpha === null ? 'none' : found.alpha}`);
        return found.alpha === null ? null : scaleOf(found.alpha);
      });
      scale = rangeScales[0]!;
      note = `channels balanced per timestep range (${rangeScales.length} ranges of the calibrated steps, alpha ${alpha === 'search' ? `searched: ${notes.join(', ')}` : alpha}; a weight set per range)`;
      if (!block && rangeScales.every((x) => x === null)) continue;
    } else if (H && alpha === 'search') {
      const sampled = search?.rows.get(site.tensor);
      if (!sampled || sampled.dim !== C || sampled.rows === 0) continue;
      const found = searchAlpha(sampled, searchLayers(), { rotate: block, rotateFirst }, scaleFor, weightOf, search!.weights, search!.actBits);
      const at = (a: number) => found.errors[ALPHA_GRID.indexOf(a)]!.toPrecision(3);
      const none = found.errors.at(-1)!.toPrecision(3);
      note = found.alpha === null
        ? `channels not balanced (alpha searched: output error ${none} unbalanced, ${at(0.5)} at alpha 0.5)`
        : `channels balanced (alpha ${found.alpha} searched: output error ${at(found.alpha)}, ${at(0.5)} at 0.5, ${none} unbalanced)`;
      scale = found.alpha === null ? null : scaleFor(found.alpha);
    } else if (H && typeof alpha === 'number') scale = scaleFor(alpha);
    if (!scale && !block) continue;
    let folded: string | undefined;
    // 'scales': x -> x diag(1/s) by the value projection, the rotation after it online; 'all': (x R) diag(1/s) there
    if (fold && (rotateFirst || scale || rangeScales)) {
      const v = fold.value;
      const wt = inits.get(v.weight) as TensorMsg;
      const bt = v.bias ? (inits.get(v.bias) as TensorMsg) : null;
      const shape = (wt.dims ?? []).map(Number);
      const n = rotateFirst ? block : 1;
      const fpV = floatTensor(loaded, wt);
      const res = foldIntoOutputs(fpV, shape, v.transB, bt ? floatTensor(loaded, bt) : null, hadamard(n), n, scale);
      // timestep-aware: the value projection's weight as each range's balance folds it (no bias: checked above)
      const foldWeights = rangeScales?.map((sc, r) => (r === 0 ? res.w : foldIntoOutputs(fpV, shape, v.transB, null, hadamard(n), n, sc).w));
      setFloats(wt, res.w);
      if (bt && res.bias) setFloats(bt, res.bias);
      folded = v.node;
      out.set(`${FOLD_KEY}${v.node}`, { scale: null, rotate: 0, rotateFirst: false, folded: layers[0]!.name, ...(foldWeights ? { foldWeights } : {}) });
    }
    for (const l of layers as QuantizableLayer[]) out.set(l.name, { scale, rotate: block, rotateFirst, ...(note ? { note } : {}), ...(folded ? { folded } : {}), ...(rangeScales && folded ? { rangeScales } : {}) });
  }
  return out;
}

/** balanceSites' entry for a value projection that carries a fold: FOLD_KEY + its name -> `folded`, the site's layer. */
const FOLD_KEY = 'fold:';

/** A site's channel balance: per-channel scales (null: none) and a block Hadamard rotation (its block size; 0: none). */
interface Balance extends Candidate {
  /** A searched alpha's outcome, for the layer's report. */
  note?: string;
  /** Timestep-aware balance: the scales of each range (`scale` is the first's); the rotation is shared. */
  rangeScales?: (Float32Array | null)[];
  /** A FOLD_KEY entry of a timestep-aware balance: the value projection's FP weight as each range's fold makes it. */
  foldWeights?: Float32Array[];
  /** The transform folded: into this value projection (for the site's layer), or for this layer (FOLD_KEY entries). */
  folded?: string;
}

/** A range of the calibrated steps for a timestep-aware balance: its step indices and model timesteps [first, last]. */
interface BalanceRange {
  steps: number[];
  timesteps: [number, number];
}

/** The calibrated steps cut into n contiguous ranges of near-equal length. */
function balanceRangesOf(rec: CalibrationRecord, n: number): BalanceRange[] {
  const steps = [...rec.steps].sort((a, b) => a - b);
  const k = Math.max(1, Math.min(n, steps.length));
  return Array.from({ length: k }, (_, i) => {
    const part = steps.slice(Math.floor((i * steps.length) / k), Math.floor(((i + 1) * steps.length) / k));
    return { steps: part, timesteps: [rec.timesteps[part[0]!]!, rec.timesteps[part.at(-1)!]!] as [number, number] };
  });
}

/** The site tensors an alpha search samples: sites of linear layers with a Gram matrix (their channels from it). */
function balanceTargets(sites: Site[], map: LayerMap, byLayer: Map<string, GramEntry>): { tensor: string; dim: number }[] {
  const ops = new Map(map.quantizable.map((l) => [l.name, l.op]));
  const out: { tensor: string; dim: number }[] = [];
  for (const site of sites) {
    if (site.split !== null || !site.layers.length || site.layers.some((l) => ops.get(l) !== 'MatMul' && ops.get(l) !== 'Gemm')) continue;
    const e = byLayer.get(site.layers[0]!);
    if (e && !e.conv) out.push({ tensor: site.tensor, dim: e.dim });
  }
  return out;
}

/** The largest power of two, at most 128, that divides C (the rotation's block). */
function hadamardBlock(C: number): number {
  let b = 1;
  while (b < 128 && C % (2 * b) === 0) b *= 2;
  return b;
}

/**
 * A linear layer's weight for inputs x diag(1/s) R (R block Hadamard, symmetric): R diag(s) W for [in, out], and
 * the same on the input axis of a Gemm's [out, in] with transB, so the layer's product with the balanced input is
 * the original one.
 */
function balanceWeight(w: Float32Array, shape: number[], transB: boolean, b: Candidate): Float32Array {
  const [r, c] = shape as [number, number];
  const inDim = transB ? c : r;
  const x = new Float64Array(w.length);
  if (b.rotateFirst) {
    // inputs (x R) diag(1/s): diag(s) R W
    const rotated = b.rotate ? balanceWeight(w, shape, transB, { scale: null, rotate: b.rotate, rotateFirst: false }) : w;
    if (!b.scale) return rotated;
    for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) x[i * c + j] = rotated[i * c + j]! * b.scale[transB ? j : i]!;
    return Float32Array.from(x);
  }
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) x[i * c + j] = w[i * c + j]! * (b.scale ? b.scale[transB ? j : i]! : 1);
  if (b.rotate) {
    const h = hadamard(b.rotate);
    const n = b.rotate;
    const y = new Float64Array(x.length);
    // along the input axis: in' = blk(h) in (h symmetric)
    const other = transB ? r : c;
    const at = (inIdx: number, o: number) => (transB ? o * c + inIdx : inIdx * c + o);
    for (let blk = 0; blk < inDim; blk += n) {
      for (let o = 0; o < other; o++) {
        for (let i = 0; i < n; i++) {
          let acc = 0;
          for (let k = 0; k < n; k++) acc += h[i * n + k]! * x[at(blk + k, o)]!;
          y[at(blk + i, o)] = acc;
        }
      }
    }
    return Float32Array.from(y);
  }
  return Float32Array.from(x);
}

/** H <- R^T H R for the block Hadamard R of block size n (in place). */
function rotateGram(H: Float64Array, C: number, n: number): void {
  const h = hadamard(n);
  const tmp = new Float64Array(H.length);
  // tmp = H R (columns within blocks)
  for (let i = 0; i < C; i++) for (let blk = 0; blk < C; blk += n) for (let j = 0; j < n; j++) {
    let acc = 0;
    for (let k = 0; k < n; k++) acc += H[i * C + blk + k]! * h[k * n + j]!;
    tmp[i * C + blk + j] = acc;
  }
  // H = R^T tmp (rows within blocks)
  for (let blk = 0; blk < C; blk += n) for (let i = 0; i < n; i++) for (let j = 0; j < C; j++) {
    let acc = 0;
    for (let k = 0; k < n; k++) acc += h[k * n + i]! * tmp[(blk + k) * C + j]!;
    H[(blk + i) * C + j] = acc;
  }
}

export interface QuantizeOptions {
  pipelineDir: string;
  recipe: Recipe;
  record: CalibrationRecord | null;
  recordPath?: string;
  out: string;
  /** Replace whatever is at `out` (default: only an empty folder or a variant we wrote). */
  force?: boolean;
  /** Text-to-image: other components whose weights are quantized to int8 (weight-only), each verified (off by default). */
  components?: string[];
  /**
   * Mixed precision under a budget: weights at most `bits` per parameter (estimated before quantizing), the layers
   * whose measured gain per added bit is best stored in the recipe's keepFormat, or int8 without one (quant/budget.ts).
   */
  budget?: { bits: number; sensitivity: SensitivityRecord; path: string; perRange?: boolean };
}

/** Components `--components` may name, and how each is verified. */
export const QUANTIZABLE_COMPONENTS: Record<string, ComponentKind> = { text_encoder: 'text_encoder', text_encoder_2: 'text_encoder', vae_decoder: 'vae_decoder' };

export interface ComponentSummary {
  format: 'int8';
  layers: { quantized: number; kept: number };
  bytes: { before: number; after: number };
  bitsPerParam: number;
  verification: { output: string; cosine: number; relL2: number; maxAbs: number; psnr?: { mean: number; min: number } };
  notes: string[];
}

export async function quantizePipeline(opts: QuantizeOptions): Promise<Manifest> {
  const { recipe } = opts;
  const loc = locatePipeline(opts.pipelineDir);
  // the output is checked before any work: a file in its path or someone else's folder is refused now, not after
  prepareOutput(opts.out, { replace: 'variant', force: opts.force });
  const { pipeline: source, session: sourceSession } = await openPipeline(opts.pipelineDir, 'cpu');
  for (const c of opts.components ?? []) {
    if (!(c in QUANTIZABLE_COMPONENTS)) throw new DqError('BAD_ARGUMENT', `--components: '${c}' is not a component that can be quantized (${Object.keys(QUANTIZABLE_COMPONENTS).join(', ')})`);
    if (!existsSync(join(loc.dir, c, 'model.onnx'))) throw new DqError('BAD_ARGUMENT', `--components: ${opts.pipelineDir} has no ${c}/model.onnx`);
  }
  const sourceIo = source.io;
  const unetSha256 = sha256File(loc.unetPath);
  const rec = opts.record;
  const needsCalibration = recipe.activations !== null && (recipe.activations.format.kind === 'int' || recipe.activations.format.kind === 'float' || recipe.activations.format.kind === 'nvfp4');
  if (needsCalibration && !rec) throw new DqError('BAD_ARGUMENT', `recipe '${recipe.name}' quantizes activations: give a calibration record (--calib, from dq calibrate)`);
  if (rec && rec.unetSha256 !== unetSha256) {
    throw new DqError('BAD_CONFIG', `the calibration record was made for another model (unet sha256 ${rec.unetSha256.slice(0, 12)}, this one ${unetSha256.slice(0, 12)}): recalibrate`);
  }
  // GPTQ: the Gram matrices collected during calibration
  let grams: { sums: GramSums; byLayer: Map<string, GramEntry>; skipped: Record<string, string> } | null = null;
  if (recipe.balance && (!rec?.gram || !opts.recordPath)) {
    throw new DqError('BAD_CONFIG', `recipe '${recipe.name}' balances channels from the activations' per-channel RMS: give a calibration record with Gram matrices (dq calibrate --gram; in the studio, tick 'Gram matrices (GPTQ)')`);
  }
  if (recipe.weights.rounding === 'gptq' || recipe.balance) {
    if (!rec || !opts.recordPath) throw new DqError('BAD_ARGUMENT', `recipe '${recipe.name}' rounds weights with GPTQ: give a calibration record with Gram matrices (dq calibrate --gram; in the studio, tick 'Gram matrices (GPTQ)')`);
    if (!rec.gram) throw new DqError('BAD_CONFIG', `recipe '${recipe.name}' rounds weights with GPTQ, and the calibration record ${opts.recordPath} has no Gram matrices: recalibrate with --gram (in the studio, tick 'Gram matrices (GPTQ)')`);
    const sums = GramSums.read(join(dirname(resolve(opts.recordPath)), rec.gram.file), rec.gram.entries, rec.gram.rows);
    grams = { sums, byLayer: new Map(rec.gram.entries.flatMap((e) => e.layers.map((l) => [l, e] as const))), skipped: rec.gram.skipped };
  }
  const loaded = loadOnnx(loc.unetPath);
  // the FP denoiser as it is on disk (`loaded` becomes the variant), read once when a cut or a measurement needs it
  let fpLoaded: LoadedModel | null = null;
  const fpSource = () => (fpLoaded ??= loadOnnx(loc.unetPath));
  const model = loaded.model;
  untieWeights(model);
  const fpMap = analyzeGraph(model);

  // temporal cache: the FP time-only region becomes a separate model whose outputs are fed to the variant. Its
  // layers are not quantized; the graph is cut after the activation quantizers are in (2b), with the other cuts.
  let temporal: ParamsFile['temporal'] = null;
  let temporalModel: ModelMsg | null = null;
  if (recipe.temporal === 'cache' && !fpMap.temporalFeatures.length) throw new DqError('BAD_MODEL', 'the graph has no time-only region to cut');
  const cutLayers = new Set(recipe.temporal === 'cache' ? fpMap.temporal : []);

  // text-feature cache: the FP text-only region (cross-attention keys and values, the added embedding) becomes a
  // separate model run once per batch of prompts; its outputs are fed to the variant. Text features that only the
  // time-only region reads (SDXL's added embedding) are left to the temporal cache when there is one.
  const temporalCut = recipe.temporal === 'cache' || recipe.temporal === 'auto';
  const textCandidates = source.text ? fpMap.textFeatures.filter((f) => !(temporalCut && fpMap.textFeaturesOfTime.includes(f))) : [];
  let textRegion: ParamsFile['text'] = null;
  let textModel: ModelMsg | null = null;
  const textCutLayers = new Set<string>();
  // the text features' region reads sizes from the network upstream of each attention block: planned away once
  // (pipeline/region.ts), for the models that measure the features and the one the variant keeps
  let sizePlan: SizePlan | null = null;
  let sizeNote: string | undefined;
  if (textCandidates.length && recipe.text !== 'quantize') {
    const r = await textSizePlan(source, inlineExternalData(regionModel(fpSource(), textCandidates), loaded.dir));
    sizePlan = r.plan;
    sizeNote = r.plan
      ? `the text-feature models read their batch from the text: ${r.plan.reads.size} size reads of the network upstream of the attention blocks made constants and the batch, and what only fed them left out`
      : r.failed
        ? `the text-feature models keep the network upstream of the attention blocks (probing its size reads failed: ${r.failed})`
        : 'the text-feature region reads no sizes from the rest of the network';
  }
  const cutText = (features: string[]) => {
    cutFeatures(model, features, [sourceIo.sample]);
    textModel = regionModel(fpSource(), features);
    if (sizePlan) applySizePlan(textModel, sizePlan);
    textRegion = { model: 'text/model.onnx', features, inputs: runtimeInputsOf(textModel) };
    const present = new Set((model.graph!.node ?? []).map((n) => n.name ?? ''));
    for (const l of fpMap.textOnly) if (!present.has(l)) textCutLayers.add(l);
  };

  // the layer map of the FP graph still names every layer left after a cut (minus the cut ones)
  const map = fpMap;
  const spare = new Map<string, string>();
  const keep = new Set(recipe.keepFp);
  if (keep.has('first')) for (const l of map.sensitive.firstLayers) spare.set(l, 'first layer (keepFp)');
  if (keep.has('last')) for (const l of map.sensitive.lastLayers) spare.set(l, 'last layer (keepFp)');
  if (keep.has('temporal')) for (const l of fpMap.temporal) spare.set(l, 'time-only region (keepFp)');
  if (keep.has('added-embedding')) for (const l of fpMap.addedEmbedding) spare.set(l, 'added embedding (keepFp)');
  if (keep.has('small')) {
    for (const l of fpMap.quantizable) {
      const n = l.weightShape.reduce((a, b) => a * b, 1);
      if (n < recipe.smallLayerParams && !spare.has(l.name)) spare.set(l.name, `small layer: ${n} weights, under ${recipe.smallLayerParams} (keepFp)`);
    }
  }
  const known = new Set(fpMap.quantizable.map((l) => l.name));
  for (const l of recipe.keepLayers) {
    if (!known.has(l)) throw new DqError('BAD_CONFIG', `recipe '${recipe.name}': keepLayers names '${l}', which is not a quantizable layer of this model`);
    spare.set(l, 'kept in FP by the recipe (keepLayers)');
  }
  // layers spared by role (keepFp), which keepFormat stores at higher precision instead of float32
  const byRole = new Set([...spare.keys()].filter((l) => !recipe.keepLayers.includes(l)));
  const highPrecision = new Set<string>();
  const nodeIndex = new Map<string, number>();
  (model.graph!.node ?? []).forEach((n, i) => nodeIndex.set(n.name ?? '', i));
  // each Gemm's transB, read once before the quantizers' nodes are inserted (they shift nodeIndex's positions)
  const transBOf = new Map(fpMap.quantizable.map((l) => [l.name, gemmTransB(model, l, nodeIndex)]));

  // split-shortcut layers (their input channel split index)
  const splitOf = new Map<string, number>();
  if (recipe.splitShortcut) for (const s of fpMap.shortcutSplits) if (s.splitAt !== null) for (const l of s.consumers) splitOf.set(l, s.splitAt);

  // 1. weights
  const reports: LayerReport[] = [];
  const branches = new Map<string, LowRankBranch>();
  let fpParams = 0;
  const inits = new Map((model.graph!.initializer ?? []).map((t) => [t.name ?? '', t]));
  // layers a cache cuts out, and those a disturbance-aware cache (temporal or text 'auto') may still cut out after the
  // weights: no budget candidates, and no folds into them (the cached FP region would compute them unfolded)
  const mayCut = [...cutLayers, ...textCutLayers, ...(recipe.temporal === 'auto' ? fpMap.temporal : []), ...(recipe.text === 'auto' ? fpMap.textOnly : [])];
  if (opts.budget?.perRange && (recipe.balance || recipe.rotate || recipe.lowRank)) {
    throw new DqError('BAD_ARGUMENT', `--per-range: recipe '${recipe.name}' balances, rotates or adds low-rank branches, which transform its weights; per-range weight sets take recipes without them`);
  }
  const budget = opts.budget ? planBudget(opts.budget, recipe, fpMap.quantizable, { spare, byRole, cut: new Set([...cutLayers, ...textCutLayers]), mayCut: new Set(mayCut), inits, transBOf, splitOf, unetSha256 }) : null;
  // rotations folded into value projections where the graph allows (fold.ts); not into a region a cache may cut out
  // (the cache computes the FP projection)
  const uncuttable = (v: string) => !mayCut.includes(v);
  const balanceRanges = recipe.balance && recipe.balance.ranges > 1 && rec ? balanceRangesOf(rec, recipe.balance.ranges) : null;
  const folds = (recipe.balance || recipe.rotate) && recipe.fold !== 'none' && rec ? new Map([...findRotationFolds(model, rec.sites)].filter(([, f]) => uncuttable(f.value.node))) : new Map<number, RotationFold>();
  const rangedPicks = new Map((budget?.perRange?.layers ?? []).map((l) => [l.name, l.ranges]));
  // per-step parameter sets (ranged.ts), by layer: each range's rounded weight (the same array where ranges share one)
  const perStep = new Map<string, { sets: { values: Float32Array; fpInput: boolean; timesteps: [number, number]; spec: { format: QuantFormat; granularity: string } }[]; gated: boolean }>();
  // channel balancing (recipe.balance): per site, s_j from the activations' RMS and the weights' largest |value|;
  // alpha 'search': each site's FP input sampled on a few calibration images and the alpha measured best (smooth.ts)
  // timestep-aware balance: the folded sites' FP inputs at two steps of each range; both sampled in one pass
  const searchTargets = recipe.balance?.alpha === 'search' && rec && grams && recipe.activations ? balanceTargets(rec.sites, fpMap, grams.byLayer) : [];
  const rangeTargets = balanceRanges && rec ? [...folds.keys()].map((id) => rec.sites.find((st) => st.id === id)!).map((st) => ({ tensor: st.tensor, dim: folds.get(st.id)!.channels })) : [];
  const rangeSteps = (balanceRanges ?? []).map((r) => [...new Set([r.steps[0]!, r.steps[Math.floor(r.steps.length / 2)]!])]);
  const searchAt = searchTargets.length && rec ? searchSteps(rec) : [];
  const sampled = searchTargets.length || rangeTargets.length
    ? await sampleSiteRowsAt(source, sourceSession, rec!, [...new Map([...searchTargets, ...rangeTargets].map((t) => [t.tensor, t])).values()], [...new Set([...searchAt, ...rangeSteps.flat()])].sort((a, b) => a - b))
    : null;
  const rowsAt = (t: { tensor: string; dim: number }, steps: number[]) => joinRows(steps.map((st) => sampled!.get(t.tensor)!.get(st)!).filter(Boolean), t.dim);
  const searchRows = searchTargets.length && sampled
    ? { rows: new Map(searchTargets.map((t) => [t.tensor, rowsAt(t, searchAt)])), weights: recipe.weights, actBits: (recipe.activations!.format as { bits: number }).bits }
    : null;
  const rangeRows = balanceRanges && rangeTargets.length && sampled ? { ranges: balanceRanges, rows: new Map(rangeTargets.map((t) => [t.tensor, rangeSteps.map((steps) => rowsAt(t, steps))])) } : null;
  const balanceOf = (recipe.balance || recipe.rotate) && rec ? balanceSites(rec.sites, fpMap, spare, cutLayers, textCutLayers, recipe.balance ? grams : null, inits, loaded, transBOf, recipe.balance?.alpha ?? null, recipe.rotate, searchRows, folds, recipe.fold, rangeRows) : new Map<string, Balance>();
  for (const l of fpMap.quantizable) {
    const size = l.weightShape.reduce((a, b) => a * b, 1);
    fpParams += size;
    if (cutLayers.has(l.name)) {
      reports.push({ name: l.name, op: l.op, weight: null, activation: null, spared: 'time-only region: FP features cached (TFMQ)' });
      continue;
    }
    if (textCutLayers.has(l.name)) {
      reports.push({ name: l.name, op: l.op, weight: null, activation: null, spared: 'text-only region: FP text features cached once per prompt' });
      continue;
    }
    const t = inits.get(l.weight);
    if (spare.has(l.name)) {
      // a layer the budget chose takes the budget's format; one spared by role, the recipe's keepFormat
      const keepFormat = budget?.chosen.includes(l.name) ? budget.format : recipe.keepFormat;
      if (keepFormat && byRole.has(l.name) && t?.data_type === 1) {
        // kept out of the main format by its role, but stored in the higher-precision keepFormat (weights only)
        const w = floatTensor(loaded, t);
        const spec = { format: keepFormat, granularity: 'channel' as const, rounding: 'nearest' as const, clipping: 'minmax' as const, scale: 'float32' as const };
        const res = quantizeWeight(w, l, spec, transBOf.get(l.name) === true, null);
        (t as { raw_data?: Uint8Array }).raw_data = new Uint8Array(res.values.buffer);
        highPrecision.add(l.name);
        reports.push({
          name: l.name, op: l.op, weight: { granularity: res.granularity, bits: res.bits, params: size, rounding: 'nearest', format: keepFormat, role: `${spare.get(l.name)!.replace(' (keepFp)', '')}: kept at higher precision (${keepFormat === recipe.keepFormat ? 'keepFormat' : formatName(keepFormat as QuantFormat)})` },
          activation: 'FP (higher-precision layer)',
        });
        continue;
      }
      reports.push({ name: l.name, op: l.op, weight: null, activation: null, spared: spare.get(l.name)! });
      continue;
    }
    if (!t || t.data_type !== 1) {
      reports.push({ name: l.name, op: l.op, weight: null, activation: null, spared: t ? 'weight is not float32' : 'weight is a Constant node, not an initializer' });
      spare.set(l.name, 'weight not quantizable here');
      continue;
    }
    const transB = transBOf.get(l.name) === true;
    const bl = balanceOf.get(l.name);
    const bs = bl?.scale;
    let w = bl ? balanceWeight(floatTensor(loaded, t), l.weightShape, transB, bl) : floatTensor(loaded, t);
    const split = splitOf.get(l.name) ?? null;
    // SVDQuant: the low-rank part stays in float16 beside the layer; the residual is what gets quantized
    let branchNote = '';
    if (recipe.lowRank) {
      const why = bl ? 'balanced or rotated layer' : lowRankSupport(model, l);
      const lr = why ? null : splitLowRank(w, l, transB, recipe.lowRank.rank);
      if (lr) {
        w = lr.residual;
        branches.set(l.name, lr.branch);
        branchNote = `, low-rank branch rank ${lr.branch.rank} in float16 (${lr.branch.bits / 8} bytes) on the FP input`;
      } else branchNote = `, no low-rank branch (${why ?? `rank ${recipe.lowRank.rank} is not below half of min(out, in)`})`;
    }
    /** The recipe's rounding of weight `wIn`, whose input the candidate `b` transforms (GPTQ's H transformed alike). */
    const roundWeight = (wIn: Float32Array, b: Candidate | undefined): { res: WeightResult; rounding: string } => {
      let rounding = 'nearest';
      if (grams) {
        const e = grams.byLayer.get(l.name);
        if (!e) rounding = `nearest (no Gram matrix: ${grams.skipped[l.name] ?? 'not recorded'})`;
        else if (grams.sums.rows[e.index]! === 0) rounding = 'nearest (its Gram matrix saw no rows)';
        else {
          const H = Float64Array.from(grams.sums.matrix(e));
          // balanced inputs x / s: H' = diag(1/s) H diag(1/s); rotated inputs x R: H' = R^T H R (in the order applied)
          const sc = b?.scale;
          if (b?.rotate && b.rotateFirst) rotateGram(H, e.dim, b.rotate);
          if (sc) for (let i = 0; i < e.dim; i++) for (let j = 0; j < e.dim; j++) H[i * e.dim + j]! /= sc[i]! * sc[j]!;
          if (b?.rotate && !b.rotateFirst) rotateGram(H, e.dim, b.rotate);
          const g = quantizeWeightGptq(wIn, l, recipe.weights, transB, split, H);
          if (g) return { res: g, rounding: `gptq (proxy loss ${g.loss.toPrecision(3)}${g.dampening > GPTQ_PERCDAMP ? `, dampening ${g.dampening}` : ''})` };
          rounding = 'nearest (groups or blocks do not divide the input channels)';
        }
      }
      return { res: quantizeWeight(wIn, l, recipe.weights, transB, split), rounding };
    };
    // timestep-aware balance (recipe balance.ranges): the weight of each range, as its balance or fold makes it
    const carried = balanceOf.get(`${FOLD_KEY}${l.name}`);
    const fpForRanges = bl?.rangeScales ? floatTensor(loaded, t) : null;
    const rangeWeights = bl?.rangeScales && fpForRanges
      ? bl.rangeScales.map((sc) => ({ scale: sc, rotate: bl.rotate, rotateFirst: bl.rotateFirst })).map((b) => ({ w: balanceWeight(fpForRanges, l.weightShape, transB, b), b }))
      : carried?.foldWeights
        ? carried.foldWeights.map((fw) => ({ w: bl ? balanceWeight(fw, l.weightShape, transB, bl) : fw, b: bl }))
        : null;
    const rounded = roundWeight(rangeWeights ? rangeWeights[0]!.w : w, rangeWeights ? rangeWeights[0]!.b : bl);
    const res = rounded.res;
    const rounding = rounded.rounding;
    if (rangeWeights && balanceRanges) {
      const sets = rangeWeights.map((rw, r) => {
        const x = r === 0 ? res : roundWeight(rw.w, rw.b).res;
        return { values: x.values, fpInput: false, timesteps: balanceRanges[r]!.timesteps, spec: { format: recipe.weights.format as QuantFormat, granularity: x.granularity } };
      });
      perStep.set(l.name, { gated: false, sets });
    }
    // a per-step parameter set (--per-range): the budget's format in the chosen ranges, the recipe's elsewhere (the
    // FP weight read before the recipe's values replace it)
    const pick = rangedPicks.get(l.name);
    const fpWeight = pick ? floatTensor(loaded, t) : null;
    (t as { raw_data?: Uint8Array }).raw_data = new Uint8Array(res.values.buffer);
    if (pick && fpWeight && budget?.perRange) {
      const high = quantizeWeight(fpWeight, l, { format: budget.format, granularity: 'channel', rounding: 'nearest', clipping: 'minmax', scale: 'float32' }, transB, null);
      const rs = budget.perRange.ranges;
      const steps = rs.map((r) => r.steps[1] - r.steps[0] + 1);
      const all = steps.reduce((a, n) => a + n, 0);
      const avg = rs.reduce((a, _, i) => a + ((pick.includes(i) ? high.bits : res.bits) * steps[i]!) / all, 0);
      const hs = { format: budget.format, granularity: high.granularity };
      const ls = { format: recipe.weights.format as QuantFormat, granularity: res.granularity };
      perStep.set(l.name, { gated: true, sets: rs.map((r, i) => (pick.includes(i) ? { values: high.values, fpInput: true, timesteps: r.timesteps, spec: hs } : { values: res.values, fpInput: false, timesteps: r.timesteps, spec: ls })) });
      const where = pick.map((i) => `${rs[i]!.steps[0]}-${rs[i]!.steps[1]}`).join(', ');
      reports.push({ name: l.name, op: l.op, weight: { granularity: res.granularity, bits: Math.round(avg), params: size, rounding: `${rounding}; per timestep range: ${formatName(budget.format)} weights and FP activations at steps ${where} of ${budget.perRange.ranges.at(-1)!.steps[1] + 1} (budget ${budget.bits} bits, a per-step parameter set; bits averaged over the steps), the recipe's elsewhere` }, activation: null });
      continue;
    }
    const how = bl ? `${rounding}${bl.note ? `, ${bl.note}` : bs ? `, channels balanced (alpha ${recipe.balance!.alpha})` : ''}${bl.rotate ? `, rotated (Hadamard blocks of ${bl.rotate})` : ''}` : rounding;
    reports.push({ name: l.name, op: l.op, weight: { granularity: res.granularity, bits: res.bits + (branches.get(l.name)?.bits ?? 0), params: size, rounding: `${how}${branchNote}` }, activation: null });
  }
  // where a site's transform went into its value projection (fold.ts), both layers say so
  for (const r of reports) {
    const own = balanceOf.get(r.name);
    const carried = balanceOf.get(`${FOLD_KEY}${r.name}`);
    if (own?.folded) r.fold = `its input's ${own.rotateFirst ? (own.scale ? 'balance and rotation' : 'rotation') : 'balance'} computed by ${own.folded} (folded${own.rotate && !own.rotateFirst ? '; the rotation online' : ': no online nodes'})`;
    else if (carried?.folded) r.fold = `its outputs carry ${carried.folded}'s input transform (folded)`;
  }
  // the branches join the graph before the activation quantizers (which rewire the layers' inputs, not theirs)
  [...branches.entries()].forEach(([name, br], k) => insertLowRankBranch(model, fpMap.quantizable.find((l) => l.name === name)!, br, k));

  // 2. activations
  const params: ParamsFile = { version: PARAMS_VERSION, activations: [], temporal, text: null };
  const act = recipe.activations;
  if (act) {
    const fmt = act.format as QuantFormat;
    const quantized = new Set(reports.filter((r) => r.weight && !highPrecision.has(r.name)).map((r) => r.name));
    const steps = rec ? recipeSteps(rec, recipe) : [];
    for (const site of rec?.sites ?? buildSitesFallback(fpMap)) {
      const users = site.layers.filter((l) => quantized.has(l));
      if (!users.length) continue;
      if (cutLayers.size && site.temporal) continue;
      const useSplit = recipe.splitShortcut && site.split !== null;
      const halves = useSplit ? [0, 1] : ['whole' as const];
      const channels = channelsOf(fpMap, site, (l) => transBOf.get(l.name) === true);
      const tensorScale = fmt.kind === 'nvfp4' && rec ? halves.map((h) => nvfp4TensorScale(siteStat(rec, site, h, steps).absmax)) : undefined;
      const dynamic = act.dynamic === 'token';
      const bal = users.every((u) => balanceOf.has(u)) ? balanceOf.get(users[0]!) : undefined;
      const res = insertActivationQuantizer(model, site, users, fmt, { channels, rank: site.ops.includes('Conv') ? 4 : 3, tensorScale, useSplit, dynamic: act.dynamic, preScale: bal?.folded ? undefined : (bal?.scale ?? undefined), rotate: bal?.folded && bal.rotateFirst ? undefined : bal?.rotate || undefined });
      const label = res.skipped ? null : `${formatName(fmt)}${dynamic ? ' per token (dynamic)' : ''}${useSplit ? ' (split halves)' : ''}${act.perTimestep && !dynamic ? ', per timestep' : ''}`;
      for (const r of reports) if (users.includes(r.name)) r.activation = label ?? `FP (${res.skipped})`;
      if (res.skipped || dynamic || (fmt.kind !== 'int' && fmt.kind !== 'float') || !rec) continue;
      halves.forEach((h, hi) => {
        const table: ActParam[] = [];
        const groups = act.perTimestep ? steps.map((s) => [s]) : [steps];
        for (const g of groups) {
          const p = actParams(siteStat(rec, site, h, g), fmt, act);
          table.push({ t: act.perTimestep ? rec.timesteps[g[0]!]! : null, scale: p.scale, zeroPoint: p.zeroPoint });
        }
        params.activations.push({ site: site.id, half: hi, scaleInput: res.inputs.scale[hi]!, zeroPointInput: res.inputs.zeroPoint[hi] ?? null, table });
      });
    }
  }

  // 2b. TFMQ disturbance-aware choice: cache only the temporal features that quantization disturbs; and the same
  // choice for the text features, measured on the calibration prompts. Both are measured on the uncut graph, then cut.
  let temporalReport: Manifest['temporal'] = recipe.temporal === 'cache' ? { mode: 'cache', threshold: null, cached: fpMap.temporalFeatures, disturbance: [] } : undefined;
  let textReport: Manifest['text'] = recipe.text === 'cache' && textCandidates.length ? { mode: 'cache', threshold: null, cached: textCandidates, disturbance: [], ...(sizeNote ? { sizes: sizeNote } : {}) } : undefined;
  const wantsAuto = recipe.temporal === 'auto' || (recipe.text === 'auto' && textCandidates.length > 0);
  if (wantsAuto && !rec) {
    throw new DqError('BAD_ARGUMENT', `recipe '${recipe.name}': '${recipe.temporal === 'auto' ? 'temporal' : 'text'}: auto' measures the features it may cache at the calibrated timesteps: give a calibration record (--calib)`);
  }
  const conditioning = wantsAuto && rec && source.text ? await conditioningFeeds(source, rec) : null;
  const timesteps = rec ? [...new Set(rec.steps.map((st) => rec.timesteps[st]!))] : [];
  let temporalCached: string[] = recipe.temporal === 'cache' ? fpMap.temporalFeatures : [];
  if (recipe.temporal === 'auto') {
    const features = fpMap.temporalFeatures;
    const labels = source.io.classLabels ? [...source.index.classes.map((_, i) => i).filter((i) => i !== source.index.nullClass), ...(source.index.nullClass !== null ? [source.index.nullClass] : [])] : [];
    const disturbance = features.length
      ? await measureDisturbance({
          quantized: model, fp: fpSource().model, features, activations: params.activations, timestepInput: sourceIo.timestep, classInput: sourceIo.classLabels,
          labels, timesteps, dir: loaded.dir, ...(conditioning ? { conditioning } : {}),
        })
      : [];
    temporalCached = disturbance.filter((d) => d.max > recipe.temporalThreshold).map((d) => d.feature);
    temporalReport = { mode: 'auto', threshold: recipe.temporalThreshold, cached: temporalCached, disturbance };
  }
  let textCached: string[] = recipe.text === 'cache' ? textCandidates : [];
  if (recipe.text === 'auto' && textCandidates.length) {
    const disturbance = conditioning
      ? await measureDisturbance({
          quantized: model, fp: fpSource().model, features: textCandidates, activations: params.activations, timestepInput: sourceIo.timestep, classInput: null,
          labels: [], timesteps, conditioning, dir: loaded.dir, ...(sizePlan ? { sizePlan } : {}),
        })
      : [];
    textCached = disturbance.filter((d) => d.max > recipe.textThreshold).map((d) => d.feature);
    textReport = { mode: 'auto', threshold: recipe.textThreshold, cached: textCached, disturbance, ...(sizeNote ? { sizes: sizeNote } : {}) };
  }
  if (temporalCached.length) {
    cutFeatures(model, temporalCached, [sourceIo.sample]);
    temporalModel = regionModel(fpSource(), temporalCached);
    temporal = { model: 'temporal/model.onnx', features: temporalCached, inputs: runtimeInputsOf(temporalModel) };
    params.temporal = temporal;
  }
  if (textCached.length) {
    cutText(textCached);
    params.text = textRegion;
    // what the written region still reads: a size that follows the image size (or the frames) keeps its network
    if (sizePlan && textReport && (textRegion as ParamsFile['text'])?.inputs.includes(sourceIo.sample)) {
      textReport.sizes = `${sizeNote}; some of its size reads follow the image size or the frames, so it still reads the sample and the network that computes them`;
    }
  }
  if (temporalCached.length || textCached.length) {
    const inputs = new Set(runtimeInputsOf(model));
    params.activations = params.activations.filter((a) => inputs.has(a.scaleInput));
    const present = new Set((model.graph!.node ?? []).map((n) => n.name ?? ''));
    for (const r of reports) {
      if (!r.weight || present.has(r.name)) continue;
      r.weight = null;
      r.activation = null;
      r.spared = textCutLayers.has(r.name)
        ? `text-only region: FP text features cached once per prompt${recipe.text === 'auto' ? ' (disturbance-aware: only the cached features needed it)' : ''}`
        : `time-only region: FP features cached (TFMQ${recipe.temporal === 'auto' ? ', disturbance-aware: only the cached features needed it' : ''})`;
    }
  }
  const qParams = reports.reduce((a, r) => a + (r.weight?.params ?? 0), 0);
  const qBits = reports.reduce((a, r) => a + (r.weight?.bits ?? 0), 0);

  // 2c. per-step parameter sets: each ranged layer's weight becomes a graph input (its sets written below)
  const rangedFiles: { file: string; values: Float32Array }[] = [];
  if (perStep.size) {
    const present = new Set((model.graph!.node ?? []).map((n) => n.name ?? ''));
    const weights: RangedWeight[] = [];
    [...perStep.entries()].forEach(([name, v], k) => {
      const l = fpMap.quantizable.find((x) => x.name === name)!;
      if (!present.has(name)) return;
      const gate = rangeLayer(model, l, v.gated ? l.input : null, k);
      // one file per distinct array
      const files = new Map<Float32Array, string>();
      const fileOf = (values: Float32Array) => {
        let f = files.get(values);
        if (!f) {
          f = `quant/w${k}_${files.size}.bin`;
          files.set(values, f);
          rangedFiles.push({ file: f, values });
        }
        return f;
      };
      weights.push({ layer: name, input: l.weight, dims: l.weightShape, gate, sets: v.sets.map((st) => ({ timesteps: st.timesteps, file: fileOf(st.values), format: formatName(st.spec.format), fpInput: st.fpInput && gate !== null, spec: st.spec })) });
      const r = reports.find((x) => x.name === name);
      if (r) r.perStep = `its weight changes with the timestep range: ${v.sets.length} ranges, ${files.size} weight sets fed per step (quant/params.json)`;
    });
    params.weights = weights;
  }

  // 3. write the variant atomically
  const out = prepareOutput(opts.out, { replace: 'variant', force: opts.force });
  cleanStaleOutputs(out);
  const tmp = join(dirname(out), `.${basename(out)}.${process.pid}.tmp`);
  rmSync(tmp, { recursive: true, force: true });
  makeDirs(tmp, '--out');
  try {
    copyComponents(loc.dir, tmp);
    saveOnnx(model, join(tmp, loc.denoiser, 'model.onnx'), loaded.dir);
    if (temporalModel) saveOnnx(temporalModel, join(tmp, 'temporal', 'model.onnx'), loaded.dir);
    if (textModel) saveOnnx(textModel, join(tmp, 'text', 'model.onnx'), loaded.dir);
    const components: Record<string, ComponentSummary> = {};
    for (const c of opts.components ?? []) components[c] = await quantizeOther(loc.dir, tmp, c);
    for (const f of rangedFiles) writeFileAtomic(join(tmp, f.file), new Uint8Array(f.values.buffer, f.values.byteOffset, f.values.byteLength));
    writeFileAtomic(join(tmp, 'quant', 'params.json'), JSON.stringify(params, null, 1) + '\n');
    const runtimeInputs = [
      ...params.activations.flatMap((a) => [a.scaleInput, ...(a.zeroPointInput ? [a.zeroPointInput] : [])]), ...(temporal?.features ?? []), ...(params.text?.features ?? []),
      ...(params.weights ?? []).flatMap((w) => [w.input, ...(w.gate ? [w.gate] : [])]),
    ];
    const manifest: Manifest = {
      kind: 'dq-variant',
      version: 1,
      recipe,
      source: { pipeline: loc.dir, unetSha256 },
      calibration: rec && opts.recordPath ? { sha256: sha256File(opts.recordPath), steps: rec.steps, settings: rec.settings } : null,
      simulated: true,
      layers: reports,
      summary: {
        quantized: reports.filter((r) => r.weight).length,
        spared: reports.filter((r) => !r.weight).length,
        weightBitsPerParameter: qParams ? Math.round((qBits / qParams) * 1000) / 1000 : 32,
        fpParameters: fpParams,
        quantizedParameters: qParams,
        activationFormat: act ? formatName(act.format as QuantFormat) : null,
      },
      runtimeInputs,
      sourceIo,
      ...(temporalReport ? { temporal: temporalReport } : {}),
      ...(textReport ? { text: textReport } : {}),
      ...(Object.keys(components).length ? { components } : {}),
      ...(budget ? { budget } : {}),
    };
    writeFileAtomic(join(tmp, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
    swapIntoPlace(tmp, out, 'variant', opts.force);
    return manifest;
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** Top-level entries of a pipeline folder that are a variant's or an export's own (never copied from a source). */
export const OWN_ENTRIES = new Set(['unet', 'transformer', 'manifest.json', 'quant', 'temporal', 'text', 'README.md', 'verification.json']);

/**
 * Copies a source pipeline's components besides the denoiser (model_index.json, scheduler, tokenizers, text
 * encoders, the VAE, and any other file the folder has) so the variant keeps the layout it came in: an Optimum
 * folder stays an Optimum folder, a legacy export a legacy one.
 */
export function copyComponents(src: string, dst: string, skip: ReadonlySet<string> = OWN_ENTRIES): string[] {
  const copied: string[] = [];
  // the denoiser's configuration travels with it (unet/ or transformer/config.json: sample size, channels); its
  // graph is written anew
  const folder = denoiserFolder(src, existsSync(join(src, 'model_index.json')) ? readJson(join(src, 'model_index.json'), 'model_index.json') : undefined);
  const unet = join(src, folder);
  if (existsSync(unet)) {
    for (const f of readdirSync(unet)) {
      if (!f.endsWith('.json')) continue;
      cpSync(join(unet, f), join(dst, folder, f), { dereference: true });
      copied.push(join(folder, f));
    }
  }
  for (const e of readdirSync(src, { withFileTypes: true })) {
    if (skip.has(e.name) || e.name.startsWith('.')) continue;
    if (!e.isFile() && !e.isDirectory()) continue;
    cpSync(join(src, e.name), join(dst, e.name), { recursive: true, dereference: true });
    copied.push(e.name);
  }
  return copied;
}

/** Int8 weights for another component of the pipeline (into the variant folder `tmp`), verified against the FP one. */
async function quantizeOther(src: string, tmp: string, c: string): Promise<ComponentSummary> {
  const fpPath = join(src, c, 'model.onnx');
  const out = join(tmp, c, 'model.onnx');
  // the copied FP graph (and its external data, rewritten under the same name) gives way to the quantized one
  rmSync(out, { force: true });
  const r = await quantizeComponent(fpPath, out, { format: 'int8', granularity: 'channel' });
  const kind = QUANTIZABLE_COMPONENTS[c]!;
  const v = await verifyComponent(kind, fpPath, out, kind === 'text_encoder' ? { tokenizerDir: join(src, c === 'text_encoder_2' ? 'tokenizer_2' : 'tokenizer') } : {});
  const check = verifyThresholds(v);
  if (!check.pass) throw new DqError('BAD_MODEL', `${c}: the int8 component failed verification: ${check.message}`);
  return {
    format: 'int8',
    layers: { quantized: r.summary.quantized, kept: r.summary.kept },
    bytes: { before: r.bytes.before, after: r.bytes.after },
    bitsPerParam: r.bitsPerParam.component,
    verification: { output: v.output, cosine: v.cosine, relL2: v.relL2, maxAbs: v.maxAbs, ...(v.psnr ? { psnr: v.psnr } : {}) },
    notes: r.notes,
  };
}

/** The FP graph reduced to what computes `features` (its only outputs): a cut-out region run beside the variant. */
function regionModel(fp: LoadedModel, features: string[]): ModelMsg {
  const m = decodeModel(encodeModel(fp.model), fp.path);
  m.graph!.output = [];
  exposeTensors(m, features);
  pruneDead(m);
  return m;
}

/**
 * Text-to-image: the denoiser's conditioning inputs for (up to 16 of) the calibration prompts, both CFG halves when
 * calibration was guided: what the text-only region's features are measured on. Null for other pipelines.
 */
async function conditioningFeeds(p: Pipeline, rec: CalibrationRecord): Promise<{ feeds: Record<string, FeedValue>; rows: number } | null> {
  if (!p.text) return null;
  const prompts = (rec.settings.prompts ?? []).slice(0, 16);
  if (!prompts.length) throw new DqError('BAD_CONFIG', 'the calibration record names no prompts: recalibrate this text-to-image pipeline (dq calibrate --prompts)');
  const guided = guidedRun(p, rec.settings.guidance);
  const ids = await p.text.ids(prompts, prompts.map((_, i) => negativeOf(rec.settings, i)), guided);
  const [C, H, W] = p.index.sampleShape;
  const feeds = await buildFeeds(p, new Float64Array(prompts.length * C * H * W), 0, ids, guided, prompts.length, undefined, rec.settings.guidance);
  // the sample stays (zeros): a region may read its shape, never its values; the timestep is fed per measured step
  delete feeds[p.io.timestep];
  return { feeds, rows: guided ? 2 * prompts.length : prompts.length };
}

function buildSitesFallback(map: LayerMap): Site[] {
  const bySite = new Map<string, Site>();
  for (const l of map.quantizable) {
    const s = bySite.get(l.input) ?? { id: bySite.size, tensor: l.input, layers: [], split: null, ops: [], temporal: map.temporal.includes(l.name) };
    s.layers.push(l.name);
    if (!s.ops.includes(l.op)) s.ops.push(l.op);
    bySite.set(l.input, s);
  }
  return [...bySite.values()];
}

function channelsOf(map: LayerMap, site: Site, transB: (l: QuantizableLayer) => boolean): number | null {
  const l = map.quantizable.find((q) => q.name === site.layers[0]);
  if (!l) return null;
  return l.weightShape[weightAxes(l, transB(l)).in] ?? null; // groups = 1 in the networks we target
}

export { readRecord };

/** The format a budget's chosen layers take when the recipe has no keepFormat: int8 weights per channel. */
export const BUDGET_FORMAT: QuantFormat = { kind: 'int', bits: 8, symmetric: true };

/** What --budget chose: the bits estimated before quantizing, the layers moved up and their measured gain. */
export interface BudgetSummary {
  bits: number;
  /** The format the chosen layers take (the recipe's keepFormat, else BUDGET_FORMAT). */
  format: QuantFormat;
  estimate: number;
  /** The recipe's own bits per weight (estimated), before any layer moved. */
  recipeBits: number;
  chosen: string[];
  /** The chosen layers' gains, summed, as a fraction of the sensitivity variant's error (gains interact: an estimate). */
  gainShare: number;
  sensitivity: string;
  /**
   * --per-range: the ranges of the sensitivity record, and the layers whose chosen ranges are some but not all (a
   * per-step parameter set each); layers chosen in every range are in `chosen`. Bits are averaged over the steps.
   */
  perRange?: { ranges: SensitivityRecord['ranges']; layers: { name: string; ranges: number[] }[] };
}

/**
 * --budget: every layer that will carry a quantized weight is costed in the recipe's format and in the budget's format
 * (keepFormat, else int8) from its shape (weightBits); the layers chosen by allocateBits join the spared layers, each
 * with its reason, and are stored in that format (the layers the recipe spares by role keep what the recipe gives
 * them).
 */
function planBudget(
  b: NonNullable<QuantizeOptions['budget']>,
  recipe: Recipe,
  layers: QuantizableLayer[],
  ctx: { spare: Map<string, string>; byRole: Set<string>; cut: Set<string>; mayCut: Set<string>; inits: Map<string, TensorMsg>; transBOf: Map<string, boolean>; splitOf: Map<string, number>; unetSha256: string },
): BudgetSummary {
  const rec = b.sensitivity;
  if (rec.source.unetSha256 !== ctx.unetSha256) throw new DqError('BAD_CONFIG', `--sensitivity ${b.path} was measured on a variant of another model (unet sha256 ${rec.source.unetSha256.slice(0, 12)}, this one ${ctx.unetSha256.slice(0, 12)})`);
  const format = recipe.keepFormat ?? BUDGET_FORMAT;
  const keepSpec = { format, granularity: 'channel' as const, rounding: 'nearest' as const, clipping: 'minmax' as const, scale: 'float32' as const };
  const gainOf = new Map(rec.layers.map((l) => [l.name, l.gain.mse]));
  // --per-range: a layer with measured ranges is a candidate per range, its extra bits weighted by the range's steps
  const ranged = b.perRange ? new Map(rec.layers.filter((l) => l.ranges.length === rec.ranges.length && l.ranges.length > 1).map((l) => [l.name, l.ranges.map((r) => r.mse)])) : new Map<string, number[]>();
  if (b.perRange && !ranged.size) throw new DqError('BAD_ARGUMENT', `--per-range: ${b.path} measured no layer per timestep range (run dq sensitivity with --ranges 2 or more)`);
  const stepsIn = rec.ranges.map((r) => r.steps[1] - r.steps[0] + 1);
  const allSteps = stepsIn.reduce((a, n) => a + n, 0);
  let params = 0;
  let bits = 0;
  const cands: { name: string; extraBits: number; gain: number }[] = [];
  for (const l of layers) {
    const t = ctx.inits.get(l.weight);
    if (!t || t.data_type !== 1) continue;
    const spared = ctx.spare.has(l.name);
    // layers in FP (kept by name, or by role without a keepFormat) count in no bits per weight
    if (spared && (!ctx.byRole.has(l.name) || !recipe.keepFormat)) continue;
    // a layer a cache cuts out carries no weight
    if (ctx.cut.has(l.name)) continue;
    const transB = ctx.transBOf.get(l.name) === true;
    const high = weightBits(l, keepSpec, transB, null);
    const n = l.weightShape.reduce((a, b) => a * b, 1);
    // one a cache may still cut out is no candidate, and counts where keeping it would raise the average above the
    // budget (cut out, it then only lowers it), not where it would lower it
    if (ctx.mayCut.has(l.name)) {
      const mine = spared ? high : weightBits(l, recipe.weights, transB, ctx.splitOf.get(l.name) ?? null);
      if (mine > b.bits * n) {
        params += n;
        bits += mine;
      }
      continue;
    }
    params += n;
    if (spared) {
      bits += high;
      continue;
    }
    const low = weightBits(l, recipe.weights, transB, ctx.splitOf.get(l.name) ?? null);
    bits += low;
    const perRange = ranged.get(l.name);
    if (perRange) perRange.forEach((g, r) => cands.push({ name: `${l.name}${RANGE_SEP}${r}`, extraBits: ((high - low) * stepsIn[r]!) / allSteps, gain: g }));
    else cands.push({ name: l.name, extraBits: high - low, gain: gainOf.get(l.name) ?? 0 });
  }
  if (!params) throw new DqError('BAD_CONFIG', `--budget: recipe '${recipe.name}' quantizes no weight of this model`);
  const recipeBits = bits / params;
  if (b.bits < recipeBits - 1e-9) throw new DqError('BAD_ARGUMENT', `--budget ${b.bits} is below the ${recipeBits.toFixed(3)} bits per weight of recipe '${recipe.name}' alone`);
  const a = allocateBits(cands, b.bits * params - bits);
  const base = Math.max(rec.base.mse, 1e-30);
  // per-range picks, by layer: every range -> the whole layer; some -> a per-step parameter set
  const picks = new Map<string, number[]>();
  const whole: string[] = [];
  for (const c of a.chosen) {
    const at = c.lastIndexOf(RANGE_SEP);
    if (at < 0 || !ranged.has(c.slice(0, at))) whole.push(c);
    else picks.set(c.slice(0, at), [...(picks.get(c.slice(0, at)) ?? []), Number(c.slice(at + RANGE_SEP.length))]);
  }
  const partial: { name: string; ranges: number[] }[] = [];
  for (const [name, rs] of picks) {
    if (rs.length === rec.ranges.length) whole.push(name);
    else partial.push({ name, ranges: rs.sort((x, y) => x - y) });
  }
  for (const name of whole) {
    const g = ranged.has(name) ? ranged.get(name)!.reduce((x, y) => x + y, 0) : (gainOf.get(name) ?? 0);
    ctx.spare.set(name, `budget ${b.bits} bits: gain ${((100 * g) / base).toFixed(1)}% of the measured error (dq sensitivity)`);
    ctx.byRole.add(name);
  }
  return {
    bits: b.bits, format, estimate: Math.round(((bits + a.extraBits) / params) * 1000) / 1000, recipeBits: Math.round(recipeBits * 1000) / 1000, chosen: whole, gainShare: a.gain / base, sensitivity: resolve(b.path),
    ...(b.perRange ? { perRange: { ranges: rec.ranges, layers: partial } } : {}),
  };
}

/** Separates a layer's name from a range index in a per-range budget candidate. */
const RANGE_SEP = '#range';
