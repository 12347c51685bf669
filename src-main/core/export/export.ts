/**
 * `dq export <variant-dir> --out <pipeline-dir>`: a simulated (fake-quantized) variant -> a standalone pipeline in
 * the same diffusers ONNX layout whose weights are really stored in their low-bit formats, and whose INT8 W8A8
 * layers run on onnxruntime's integer kernels. See docs/export.md.
 *
 * Per layer (the variant's manifest says how each weight was quantized; codes and scales are recovered from the
 * fake-quantized values, see recover.ts):
 * - INT8 weights + INT8 activations (per tensor or per channel weights): QOperator form, emitted directly:
 *   QuantizeLinear (the activation, with the variant's scale and zero point) -> QLinearConv -> DequantizeLinear,
 *   or MatMulIntegerToFloat (com.microsoft) for MatMul/Gemm. QLinearConv must requantize its output to 8 bits:
 *   those output ranges are calibrated at export time on the simulated variant (per timestep when the recipe's
 *   activations are). Activation scales stay runtime inputs when they vary by timestep (onnxruntime's QLinear
 *   kernels read them at run time), and become constants when there is one set.
 * - INT4 / INT8 weight-only, FP8: DequantizeLinear from int4/int8/float8 initializers.
 * - FP4 / FP6 / MX / NVFP4 / other integer widths: packed codes plus a lookup decode subgraph (onnxruntime has no
 *   FP4 DequantizeLinear); onnxruntime folds it into float32 weights when the session starts. Smaller on disk only.
 * - Activation quantizers that do not feed INT8 kernels stay the variant's float32 fake-quant subgraphs.
 *
 * The output is written to a temporary folder beside --out, verified there, and renamed into place: an interrupted
 * export leaves the previous output (or nothing).
 */
import { createHash } from 'node:crypto';
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { QuantFormat } from '../../../kernels/quant.js';
import { DqError, isDqError } from '../errors.js';
import { cleanStaleOutputs, makeDirs, prepareOutput, swapIntoPlace, writeFileAtomic } from '../fsutil.js';
import { indexGraph, nodeAttr, sortTopologically } from '../onnx/graph.js';
import { externalRef, floatTensor, loadOnnx, saveOnnx, tensorBytes, type LoadedModel } from '../onnx/io.js';
import { ModelProto, type ModelMsg, type NodeMsg, type TensorMsg } from '../onnx/model.js';
import { LOCAL_DOMAIN } from '../onnx/fragment.js';
import { verificationVerdict, type VerificationVerdict } from './verdict.js';
import { fuseAttention } from '../onnx/fuse.js';
import { pruneDead } from '../onnx/rewrite.js';
import { locatePipeline, releaseSessions, type Pipeline } from '../pipeline/pipeline.js';
import { openPipeline } from '../open.js';
import { decodeLatents } from '../pipeline/codec.js';
import { guidedRun, predictEps, runLoop, seedNoise } from '../pipeline/loop.js';
import { defaultPrompts } from '../quant/calibrate.js';
import { sample } from '../pipeline/sample.js';
import { createScheduler, fallbackSampler, type SamplerName, schedulerOptions } from '../pipeline/schedulers.js';
import { actParams, copyComponents, type Manifest, type ParamsFile } from '../quant/quantize.js';
import { readManifest, readParams as readVariantParams } from '../quant/variant.js';
import { storeLowRankHalf } from '../quant/lowrank.js';
import { packCodes, type RangedWeight } from '../quant/ranged.js';
import type { Site } from '../quant/sites.js';
import { mergeStat, type Stat } from '../quant/stats.js';
import { readTap, statSessions } from '../quant/taps.js';
import { weightAxes } from '../quant/weights.js';
import { int8Support, INT8_SUPPORT_LABEL } from '../runtime/cpu.js';
import { Session } from '../runtime/onnx.js';
import type { QuantizableLayer } from '../onnx/analysis.js';
import { aInt, Emit, emitStored, type AttrMsg } from './emit.js';
import { applySizePlan, textSizePlan } from '../pipeline/region.js';
import { parseGranularity, parseSplit, recoverWeight, sliceAxis, type Recovered } from './recover.js';

export const EXPORT_VERSION = 1;

/**
 * INT8 weights of layers on integer kernels:
 * - 'u8': the int8 codes + 128 as uint8 with zero point 128 (the same values): onnxruntime's u8u8 kernels, exact
 *   on every CPU;
 * - 's8': int8 codes, u8s8 kernels: the fastest, but exact only on CPUs with int8 dot products (AVX-512 VNNI,
 *   AVX-VNNI); AVX2-only kernels add pairs of u8 x s8 products in int16 with saturation, which wrecks outputs;
 * - 's7': 7-bit codes (+-63, scale x2; onnxruntime's reduce_range): u8s8 kernels without saturation, on a coarser
 *   weight grid than the simulated variant.
 */
export const INT8_WEIGHTS = ['u8', 's8', 's7'] as const;
export type Int8Weights = (typeof INT8_WEIGHTS)[number];

export interface ExportLayer {
  name: string;
  op: string;
  /** How the weight is stored in the exported file. */
  storage: string;
  /** What computes the layer: an integer kernel, or float32 on decoded weights. */
  compute: string;
  activation: string;
  real: boolean;
  mismatches: number;
}

export interface Verification {
  seeds: number[];
  classes: number[];
  /** A text-to-image pipeline: the prompt of each seed and the negative prompt (the same through both pipelines). */
  prompts?: string[];
  negativePrompt?: string;
  steps: number;
  sampler: SamplerName;
  guidance: number;
  /**
   * |exported - simulated| over every pixel of every image sampled from the same seeds (model space, about [-1, 1]).
   * Trajectories can diverge at a few pixels (more or less, depending on the CPU's float kernels): read the mean and
   * the 99th percentile; the max only points at where to look.
   */
  maxAbs: number;
  meanAbs: number;
  p99Abs: number;
  /** Per image max |diff|. */
  perImageMax: number[];
  /**
   * One network evaluation at a time: at every step of the simulated trajectory, |exported - simulated| noise
   * prediction from the very same input (no compounding): what the export's kernels answer for.
   */
  step: { meanAbs: number; p99Abs: number; maxAbs: number; evaluations: number };
  seconds: { simulated: number; exported: number };
  /** The int8 weight storage the export ran with in this check (u8 exports load as s8 on CPUs with VNNI). */
  int8WeightsAsRun?: Int8Weights;
  /** Whether the deviation is what this kind of export is expected to give (export/verdict.ts). */
  verdict?: VerificationVerdict;
}

export interface ExportInfo {
  version: number;
  from: string;
  options: { int8Weights: Int8Weights; calibrationImages: number; fuseAttention: boolean };
  sizes: {
    /** unet/model.onnx (+ its external data) of the FP32 source pipeline. */
    fp32UnetBytes: number | null;
    /** Every file of the exported denoiser (unet, external data, temporal and text-feature models, params). */
    exportBytes: number;
    /** Bytes of every other top-level entry (text encoders, tokenizers, the VAE, scheduler, configs), as copied. */
    components?: Record<string, number>;
    files: Record<string, number>;
    ratio: number | null;
  };
  /** unfusedAttention: the attention softmax nodes left unfused, counted by reason (onnx/fuse.ts). */
  summary: { layers: number; int8Kernels: number; lowBitStorage: number; keptFloat: number; outputRequantizers: number; weightMismatches: number; fusedAttention: number; unfusedAttention?: { reason: string; count: number }[] };
  real: string[];
  simulated: string[];
  layers: ExportLayer[];
  verification: Verification | null;
  notes: string[];
}

export interface ExportManifest extends Omit<Manifest, 'simulated'> {
  simulated: false;
  export: ExportInfo;
}

export interface ExportOptions {
  variantDir: string;
  out: string;
  /** How INT8 weights feeding integer kernels are stored (see INT8_WEIGHTS); default 'u8'. */
  int8Weights?: Int8Weights;
  /** Images sampled from the simulated variant to calibrate QLinearConv output ranges. */
  calibrationImages?: number;
  /** Fuse PyTorch-style attention blocks into com.microsoft MultiHeadAttention (float; default true). */
  fuseAttention?: boolean;
  /** Verification after export (same seeds through the variant and the export); false to skip. */
  verify?: { seeds: number[]; steps?: number; text?: ExportPrompts } | false;
  /** A text pipeline's prompts for the QLinearConv output ranges (default: the variant's calibration prompts). */
  prompts?: ExportPrompts;
  onLine?: (s: string) => void;
  /** Progress per phase: converting layers, calibrating output ranges, verifying (sampling steps). */
  onProgress?: (p: ExportProgress) => void;
  /** Aborting stops the export between layers or sampling steps; the previous output stays as it was. */
  signal?: AbortSignal;
  /** Replace whatever is at `out` (default: only an empty folder or an export we wrote). */
  force?: boolean;
}

export interface ExportProgress {
  phase: 'converting layers' | 'calibrating output ranges' | 'verifying (simulated)' | 'verifying (export)';
  done: number;
  total: number;
}

function checkAbort(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new DqError('CANCELLED', 'the export was cancelled; the previous output (if any) is unchanged');
}

const INPUT_VI = (name: string) => ({ name, type: { tensor_type: { elem_type: 1, shape: { dim: [] } } } });
const ValueInfo = ModelProto.lookupType('onnx.ValueInfoProto');

/** The variant's quant/params.json, validated (variant.ts); a variant without activation quantizers has none. */
function readParams(dir: string): ParamsFile {
  return readVariantParams(dir) ?? { version: 1, activations: [], temporal: null };
}

/** Bytes of a model file plus the external data files it names. */
export function onnxBytes(path: string): number {
  let total = statSync(path).size;
  const seen = new Set<string>();
  const m = loadOnnx(path).model;
  for (const t of m.graph?.initializer ?? []) {
    const ref = externalRef(t);
    if (!ref || seen.has(ref.location)) continue;
    seen.add(ref.location);
    total += statSync(join(dirname(path), ref.location)).size;
  }
  return total;
}

function filesUnder(dir: string, base = dir, out: Record<string, number> = {}): Record<string, number> {
  for (const f of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, f.name);
    if (f.isDirectory()) filesUnder(p, base, out);
    else out[p.slice(base.length + 1)] = statSync(p).size;
  }
  return out;
}

interface ActSite {
  id: number;
  /** Per half: the raw float tensor, its FQ output, its channel range, scale/zp input names. */
  halves: { x: string; fq: string; lo: number; hi: number; scale: string; zp: string | null }[];
}

/** The variant's activation quantizer feeding `input` (dq_aq/<id>/out), with each half's tensors and inputs. */
function actSite(g: ReturnType<typeof indexGraph>, params: ParamsFile, input: string, channels: number): ActSite | null {
  const m = /^dq_aq\/(\d+)\/out$/.exec(input);
  if (!m) return null;
  const id = Number(m[1]);
  const entries = params.activations.filter((a) => a.site === id).sort((a, b) => a.half - b.half);
  if (!entries.length) return null;
  const idn = g.producer.get(input);
  if (idn === undefined) return null;
  const inner = g.nodes[idn]!.input?.[0] ?? '';
  const cp = g.producer.get(inner);
  const fqs = cp !== undefined && g.nodes[cp]!.op_type === 'Concat' ? (g.nodes[cp]!.input ?? []) : [inner];
  if (fqs.length !== entries.length) return null;
  const halves: ActSite['halves'] = [];
  let lo = 0;
  for (let h = 0; h < entries.length; h++) {
    const e = entries[h]!;
    // the half's QuantizeLinear(x, scale) (INT8, FP8) or Div(x, scale) (other widths) node names its raw input
    const div = g.nodes.find((n) => (n.op_type === 'QuantizeLinear' || n.op_type === 'Div') && n.input?.[1] === e.scaleInput);
    if (!div) return null;
    const x = div.input![0]!;
    let hi = channels;
    if (entries.length === 2) {
      const sl = g.producer.get(x);
      const n = sl === undefined ? undefined : g.nodes[sl];
      if (!n || n.op_type !== 'Slice') return null;
      const bound = g.initializers.get(n.input?.[h === 0 ? 2 : 1] ?? '');
      const at = bound ? Number(new BigInt64Array(Uint8Array.from(bound.raw_data ?? []).buffer)[0]) : NaN;
      if (!Number.isFinite(at)) return null;
      hi = h === 0 ? at : channels;
    }
    halves.push({ x, fq: fqs[h]!, lo, hi, scale: e.scaleInput, zp: e.zeroPointInput });
    lo = hi;
  }
  return { id, halves };
}

interface Segment {
  lo: number;
  hi: number;
  half: number;
  rec: Extract<Recovered, { kind: 'int' }>;
}

interface OutReq {
  k: number;
  scale: string;
  zp: string;
  /** For calibration: the conv of this segment in the simulated graph. */
  stat: { input: string; lo: number; hi: number; halfLo: number; halfHi: number; weight: string; node: NodeMsg };
}

/** Exports a variant; returns the manifest written. */
export async function exportPipeline(opts: ExportOptions): Promise<ExportManifest> {
  const log = opts.onLine ?? (() => {});
  const vdir = resolve(opts.variantDir);
  const mpath = join(vdir, 'manifest.json');
  if (!existsSync(opts.variantDir)) throw new DqError('NOT_FOUND', `no such folder: ${opts.variantDir}`);
  if (!existsSync(mpath)) throw new DqError('BAD_ARGUMENT', `${opts.variantDir} is not a quantized variant (no manifest.json): run dq quantize first`);
  // validated when read: a broken manifest is one line naming the file and the field (variant.ts)
  const manifest = readManifest(vdir) as (Manifest & { export?: unknown }) | null;
  if (!manifest) throw new DqError('BAD_CONFIG', `${mpath} is not a variant manifest`);
  // the output is checked before any work: a file in its path or someone else's folder is refused now, not after
  prepareOutput(opts.out, { replace: 'export', force: opts.force });
  if (manifest.export) throw new DqError('BAD_ARGUMENT', `${opts.variantDir} is already an exported pipeline; export the simulated variant it came from`);
  const recipe = manifest.recipe;
  const wfmt = recipe.weights.format as QuantFormat;
  const afmt = (recipe.activations?.format ?? null) as QuantFormat | null;
  const int8Weights: Int8Weights = opts.int8Weights ?? 'u8';
  const params = readParams(vdir);
  // the variant as a pipeline (its scale inputs against its graph, its config) before any layer is converted
  await openPipeline(vdir, 'cpu');
  const folder = locatePipeline(vdir).denoiser;
  const loaded = loadOnnx(join(vdir, folder, 'model.onnx'));
  const model = loaded.model;
  const graph = model.graph!;
  const g = indexGraph(model);
  const nodeIdx = new Map(g.names.map((n, i) => [n, i]));
  const inits = new Map((graph.initializer ?? []).map((t) => [t.name ?? '', t]));
  const notes: string[] = [];
  // outlier handling's cost (recipe balance, rotate, fold): what stays in the graph and what went into weights
  const outputsLike = (re: RegExp) => g.nodes.filter((n) => re.test(n.output?.[0] ?? '')).length;
  const onlineBalance = outputsLike(/^dq_aq\/\d+\/balanced/);
  const onlineRotation = outputsLike(/^dq_aq\/\d+\/rotated/);
  const foldedSites = manifest.layers.filter((l) => l.fold && /computed by/.test(l.fold)).length;
  if (onlineBalance || onlineRotation || foldedSites) {
    notes.push(
      `outlier handling: ${onlineBalance} site${onlineBalance === 1 ? '' : 's'} divide their input by the balance's scales in the graph (a Mul each) and ${onlineRotation} rotate it (a block Hadamard MatMul each), in float32 at every step; ` +
        `${foldedSites} attention output projection${foldedSites === 1 ? ' has its' : 's have their'} input transform folded into the value projection's weights (no nodes)`,
    );
  }

  const front = new Emit('dqx/w', model);
  const replaced = new Map<number, Emit>();
  const quantCache = new Map<string, string>();
  const outReqs: OutReq[] = [];
  const layers: ExportLayer[] = [];
  const dropInits = new Set<string>();
  let mismatches = 0;
  const int8Acts = afmt?.kind === 'int' && afmt.bits === 8;

  const hooks = { signal: opts.signal, onProgress: opts.onProgress };
  // layers whose weight is a per-step parameter set (a budget per timestep range, a balance per range): stored below
  const ranged = new Set((params?.weights ?? []).map((w) => w.layer));
  for (const [k, rep] of manifest.layers.entries()) {
    // let a cancel request (a message, a signal handler) run between layers
    if (opts.signal) await new Promise((ok) => setImmediate(ok));
    checkAbort(opts.signal);
    opts.onProgress?.({ phase: 'converting layers', done: k, total: manifest.layers.length });
    const i = nodeIdx.get(rep.name);
    const node = i === undefined ? undefined : g.nodes[i];
    if (!rep.weight || !node) {
      layers.push({ name: rep.name, op: rep.op, storage: 'float32', compute: 'float32', activation: rep.activation ?? 'FP', real: false, mismatches: 0 });
      continue;
    }
    const ins = node.input ?? [];
    const wi = rep.op === 'MatMul' ? (inits.has(ins[1] ?? '') ? 1 : 0) : 1;
    const wname = ins[wi] ?? '';
    const wt = inits.get(wname);
    if (ranged.has(rep.name)) {
      // a per-step parameter set: the weight stays a graph input, fed per step from the sets under quant/
      layers.push({ name: rep.name, op: rep.op, storage: 'per-step weight sets (quant/)', compute: 'float32 on the step\'s set, decoded at load', activation: rep.activation ?? 'FP', real: false, mismatches: 0 });
      continue;
    }
    if (!wt || wt.data_type !== 1) {
      layers.push({ name: rep.name, op: rep.op, storage: 'float32 (weight not an initializer)', compute: 'float32', activation: rep.activation ?? 'FP', real: false, mismatches: 0 });
      continue;
    }
    const dims = (wt.dims ?? []).map(Number);
    const transB = rep.op === 'Gemm' && Number(nodeAttr(node, 'transB')?.i ?? 0) === 1;
    const layer = { name: rep.name, op: rep.op, weight: wname, weightShape: dims, input: ins[1 - wi] ?? '', output: node.output?.[0] ?? '', weightIndex: wi } as QuantizableLayer;
    const axes = weightAxes(layer, transB);
    const values = floatTensor(loaded, wt);
    const split = parseSplit(rep.weight.granularity);
    const label = split ? split.inner : rep.weight.granularity;
    // the layer's own format (keepFormat layers), else the recipe's
    const lfmt = (rep.weight.format ?? wfmt) as QuantFormat;
    const gr = parseGranularity(label, axes);
    const ranges: [number, number][] = split ? [[0, split.at], [split.at, dims[axes.in]!]] : [[0, dims[axes.in]!]];
    const parts: { lo: number; hi: number; rec: Recovered }[] = [];
    let ok = true;
    for (const [lo, hi] of ranges) {
      const part = split ? sliceAxis(values, dims, axes.in, lo, hi) : { data: values, dims };
      const rec = recoverWeight(part.data, part.dims, lfmt, gr, axes.in);
      if (!rec) {
        ok = false;
        break;
      }
      mismatches += rec.mismatches;
      parts.push({ lo, hi, rec });
    }
    if (!ok) {
      layers.push({ name: rep.name, op: rep.op, storage: 'float32 (fake-quantized values; this weight format has no exporter)', compute: 'float32', activation: rep.activation ?? 'FP', real: false, mismatches: 0 });
      continue;
    }
    const partMismatch = parts.reduce((a, p) => a + p.rec.mismatches, 0);

    // INT8 kernels?
    const site = int8Acts && lfmt.kind === 'int' && lfmt.bits === 8 && !rep.weight.format ? actSite(g, params, layer.input, dims[axes.in]!) : null;
    const kernelOk =
      site !== null &&
      parts.every((p) => p.rec.kind === 'int' && (p.rec.g.kind === 'tensor' || (p.rec.g.kind === 'channel' && p.rec.g.axis === axes.out))) &&
      ((rep.op === 'Conv' && Number(nodeAttr(node, 'group')?.i ?? 1) === 1 && dims.length >= 3) ||
        (rep.op === 'MatMul' && wi === 1 && dims.length === 2) ||
        (rep.op === 'Gemm' && Number(nodeAttr(node, 'transA')?.i ?? 0) === 0 && (nodeAttr(node, 'alpha')?.f ?? 1) === 1 && (nodeAttr(node, 'beta')?.f ?? 1) === 1));
    if (kernelOk && site) {
      const e = new Emit(`dqx/l${layers.length}`);
      // segments: where either the weight split or the activation split changes
      const cuts = [...new Set([0, ...parts.map((p) => p.hi), ...site.halves.map((h) => h.hi)])].sort((a, b) => a - b);
      const segs: Segment[] = [];
      for (let c = 0; c + 1 < cuts.length; c++) {
        const lo = cuts[c]!;
        const hi = cuts[c + 1]!;
        const p = parts.find((q) => q.lo <= lo && hi <= q.hi)!;
        const half = site.halves.findIndex((h) => h.lo <= lo && hi <= h.hi);
        const r = p.rec as Extract<Recovered, { kind: 'int' }>;
        let codes = r.codes;
        let cdims = r.dims;
        if (lo !== p.lo || hi !== p.hi) {
          const s = sliceAxis(r.codes, r.dims, axes.in, lo - p.lo, hi - p.lo);
          codes = s.data;
          cdims = s.dims;
        }
        segs.push({ lo, hi, half, rec: { ...r, codes, dims: cdims } });
      }
      const outputs: string[] = [];
      // symmetric int8 activations are quantized as uint8 with the zero point + 128: the same codes shifted by 128
      // (onnxruntime's int8-activation kernels take int8 weights only and saturate on AVX2)
      const symmetric = afmt?.kind === 'int' && afmt.symmetric;
      // the bias goes into the kernel when it can: MatMulIntegerToFloat adds a float bias itself; QLinearConv takes
      // an int32 bias in units of x_scale * w_scale, known only when the activation scale is one constant
      const biasName = ins[2];
      const biasT = biasName ? inits.get(biasName) : undefined;
      const biasVals = biasT && (biasT.dims ?? []).length === 1 && biasT.data_type === 1 ? floatTensor(loaded, biasT) : null;
      const constScale = (input: string): number | null => {
        const a = params.activations.find((x) => x.scaleInput === input);
        return a && a.table.length === 1 && a.table[0]!.t === null ? a.table[0]!.scale : null;
      };
      let biasFolded = false;
      for (const seg of segs) {
        const h = site.halves[seg.half]!;
        // the quantized activation (one QuantizeLinear per site half, shared by its layers)
        const qkey = `${site.id}/${seg.half}`;
        let xq = quantCache.get(qkey);
        let zpT = quantCache.get(`${qkey}/zp`);
        if (!xq || !zpT) {
          const zpIn = h.zp && symmetric ? e.op('Add', [h.zp, e.f32(128)]) : h.zp;
          zpT = zpIn ? e.op('Cast', [zpIn], [aInt('to', 2)]) : e.init('zp', 'uint8', [], Uint8Array.of(symmetric ? 128 : 0));
          xq = e.op('QuantizeLinear', [h.x, h.scale, zpT]);
          quantCache.set(qkey, xq);
          quantCache.set(`${qkey}/zp`, zpT);
        }
        if (seg.lo !== h.lo || seg.hi !== h.hi) {
          const axis = rep.op === 'Conv' ? 1 : -1;
          xq = e.op('Slice', [xq, e.i64([seg.lo - h.lo]), e.i64([seg.hi - h.lo]), e.i64([axis])]);
        }
        let { codes, scale } = seg.rec;
        if (int8Weights === 's7') {
          codes = Int8Array.from(codes, (c) => Math.max(-64, Math.min(63, roundEven(c / 2))));
          scale = scale.map((s) => s * 2);
        }
        const nOut = seg.rec.dims[axes.out]!;
        const perChannel = seg.rec.g.kind === 'channel';
        const wScale = perChannel ? e.init('w_scale', 'float32', [nOut], scale) : e.init('w_scale', 'float32', [], scale);
        const unsigned = int8Weights === 'u8';
        const wt8 = unsigned ? 'uint8' : 'int8';
        const zeroPoints = (n: number) => (unsigned ? new Uint8Array(n).fill(128) : new Int8Array(n));
        const wZp = perChannel ? e.init('w_zp', wt8, [nOut], zeroPoints(nOut)) : e.init('w_zp', wt8, [], zeroPoints(1));
        const asW = (c: Int8Array) => (unsigned ? Uint8Array.from(c, (v) => v + 128) : c);
        if (rep.op === 'Conv') {
          const k = outReqs.length;
          const ys = `dq_oq/${k}/scale`;
          const yz = `dq_oq/${k}/zp`;
          const yzT = e.op('Cast', [yz], [aInt('to', 2)]);
          const w = e.init('w', wt8, seg.rec.dims, asW(codes));
          const convAttrs = ((node as { attribute?: AttrMsg[] }).attribute ?? []) as AttrMsg[];
          const xs = constScale(h.scale);
          const biasIn: string[] = [];
          if (biasVals && !biasFolded && xs !== null && biasVals.length === nOut) {
            const q = Int32Array.from(biasVals, (v, c) => Math.max(-(2 ** 31), Math.min(2 ** 31 - 1, Math.round(v / Math.fround(xs * scale[perChannel ? c : 0]!)))));
            biasIn.push(e.init('b', 'int32', [nOut], q));
            biasFolded = true;
          }
          const yq = e.op('QLinearConv', [xq, h.scale, zpT, w, wScale, wZp, ys, yzT, ...biasIn], convAttrs);
          outputs.push(e.op('DequantizeLinear', [yq, ys, yzT]));
          outReqs.push({ k, scale: ys, zp: yz, stat: { input: h.fq, lo: seg.lo, hi: seg.hi, halfLo: h.lo, halfHi: h.hi, weight: wname, node } });
        } else {
          // B as [K, N]: MatMul weights already are; Gemm (transB) weights are [N, K]
          let b = codes;
          let bd = seg.rec.dims;
          if (rep.op === 'Gemm' && transB) {
            const [N, K] = bd as [number, number];
            b = new Int8Array(N * K);
            for (let n = 0; n < N; n++) for (let kk = 0; kk < K; kk++) b[kk * N + n] = codes[n * K + kk]!;
            bd = [K, N];
          }
          const w = e.init('w', wt8, bd, asW(b));
          const withBias = biasName && biasVals && !biasFolded && biasVals.length === bd[1];
          if (withBias) biasFolded = true;
          outputs.push(e.op('MatMulIntegerToFloat', [xq, w, h.scale, wScale, zpT, wZp, ...(withBias ? [biasName] : [])], [], 'com.microsoft'));
        }
      }
      let y = outputs[0]!;
      for (let k = 1; k < outputs.length; k++) y = e.op('Add', [y, outputs[k]!]);
      const bias = biasFolded ? undefined : ins[2];
      if (bias) {
        const bt = inits.get(bias);
        const bdims = bt ? (bt.dims ?? []).map(Number) : [];
        y = rep.op === 'Conv' && bdims.length === 1 ? e.op('Add', [y, e.op('Reshape', [bias, e.i64([bdims[0]!, ...dims.slice(2).map(() => 1)])])]) : e.op('Add', [y, bias]);
      }
      e.opTo(node.output![0]!, 'Identity', [y]);
      replaced.set(i!, e);
      dropInits.add(wname);
      layers.push({
        name: rep.name, op: rep.op,
        storage: `int8 ${parts[0]!.rec.kind === 'int' && parts[0]!.rec.g.kind === 'channel' ? 'per channel' : 'per tensor'}${WEIGHT_LABEL[int8Weights]}${segs.length > 1 ? `, ${segs.length} input-channel segments` : ''}`,
        compute: rep.op === 'Conv' ? 'QLinearConv (int8 kernel; output requantized to uint8)' : 'MatMulIntegerToFloat (int8 kernel, float32 output)',
        activation: `uint8 QuantizeLinear${symmetric ? SYMMETRIC_LABEL : ''}${site.halves.length > 1 ? ' (split halves)' : ''}`,
        real: true,
        mismatches: partMismatch,
      });
      continue;
    }

    // storage only: the weight is decoded back to float32 for a float layer
    const pieces = parts.map((p, k) => ({ p, st: emitStored(front, p.rec, parts.length > 1 ? front.fresh(`part${k}_`) : wname) }));
    if (parts.length > 1) front.opTo(wname, 'Concat', pieces.map((x) => x.st.output), [aInt('axis', axes.in)]);
    dropInits.add(wname);
    const st = pieces[0]!.st;
    layers.push({
      name: rep.name, op: rep.op,
      storage: st.storage,
      compute: st.decode === 'DequantizeLinear' ? 'float32 on DequantizeLinear weights' : 'float32 on weights decoded at load (lookup subgraph)',
      activation: rep.activation ?? 'FP',
      real: false,
      mismatches: partMismatch,
    });
  }

  opts.onProgress?.({ phase: 'converting layers', done: manifest.layers.length, total: manifest.layers.length });
  // rebuild the node list: weight decoders first, replacements in place of their layers
  const newNodes: unknown[] = [...front.nodes];
  (graph.node ?? []).forEach((n, k) => {
    const r = replaced.get(k);
    if (r) newNodes.push(...r.nodes);
    else newNodes.push(n);
  });
  graph.node = newNodes as NodeMsg[];
  graph.initializer = [...(graph.initializer ?? []).filter((t) => !dropInits.has(t.name ?? '')), ...(front.inits as TensorMsg[]), ...[...replaced.values()].flatMap((r) => r.inits as TensorMsg[])];
  if (outReqs.length) {
    graph.input = [...(graph.input ?? []), ...outReqs.flatMap((o) => [ValueInfo.fromObject(INPUT_VI(o.scale)), ValueInfo.fromObject(INPUT_VI(o.zp))]) as never[]];
  }
  // fusion reads the source's opset (Softmax's default axis changed in opset 13), so it runs before the raise
  const fuse = opts.fuseAttention ?? true;
  const { fused, skipped } = fuse ? fuseAttention(model) : { fused: [], skipped: [] };
  const byReason = new Map<string, number>();
  for (const x of skipped) byReason.set(x.reason, (byReason.get(x.reason) ?? 0) + 1);
  const unfused = [...byReason].map(([reason, count]) => ({ reason, count }));
  const ops = model.opset_import ?? [];
  if (!ops.some((o) => o.domain === 'com.microsoft')) model.opset_import = [...ops, { domain: 'com.microsoft', version: 1 }];
  const def = model.opset_import!.find((o) => !o.domain || o.domain === 'ai.onnx');
  if (def && Number(def.version ?? 0) < 21) def.version = 21;
  if (Number(model.ir_version ?? 0) < 10) model.ir_version = 10;
  // SVDQuant's low-rank branches (recipe lowRank): float16 on disk, float32 at run time
  const halfBranches = storeLowRankHalf(model);
  pruneDead(model, (graph.input ?? []).map((v) => v.name ?? ''));
  sortTopologically(model);

  // write into a temporary folder beside the output
  const out = prepareOutput(opts.out, { replace: 'export', force: opts.force });
  cleanStaleOutputs(out);
  const tmp = join(dirname(out), `.${basename(out)}.${process.pid}.tmp`);
  rmSync(tmp, { recursive: true, force: true });
  makeDirs(tmp, '--out');
  try {
    // every other component as the variant has it (tokenizers, text encoders, the VAE, configs: the layout it came
    // in; components the variant quantized already hold their int8 weights), then the FP regions the variant cut out
    copyComponents(vdir, tmp);
    if (params.temporal) cpSync(join(vdir, dirname(params.temporal.model)), join(tmp, dirname(params.temporal.model)), { recursive: true, dereference: true });
    let textRegion = params.text ?? null;
    if (textRegion) {
      const slim = await slimTextRegion(vdir, textRegion, join(tmp, textRegion.model));
      if (slim.note) notes.push(slim.note);
      textRegion = slim.region;
    }

    // output ranges of QLinearConv layers, calibrated on the simulated variant
    const calImages = opts.calibrationImages ?? 8;
    const outTables = outReqs.length ? await calibrateOutputs(vdir, loaded, outReqs, calImages, manifest, tmp, log, hooks, opts.prompts) : [];
    // per-step weight sets: integer codes and scales where the values recover bit for bit, float32 otherwise
    const stored = new Map<string, { file: string; encoding?: NonNullable<RangedWeight['sets'][number]['encoding']> }>();
    const weightsOut = (params.weights ?? []).map((w) => ({
      ...w,
      sets: w.sets.map((st) => {
        let done = stored.get(st.file);
        if (!done) {
          const n = nodeIdx.get(w.layer);
          const rep = manifest.layers.find((r) => r.name === w.layer);
          const transB = rep?.op === 'Gemm' && n !== undefined && Number(nodeAttr(g.nodes[n]!, 'transB')?.i ?? 0) === 1;
          const weightIndex = n !== undefined && g.nodes[n]!.input?.[1] === w.input ? 1 : 0;
          done = storeSet(vdir, tmp, st, w.dims, weightAxes({ op: rep?.op ?? 'MatMul', weightShape: w.dims, weightIndex } as QuantizableLayer, transB));
          stored.set(st.file, done);
        }
        return { ...st, file: done.file, encoding: done.encoding };
      }),
    }));
    const exportParams: ParamsFile = { version: params.version, activations: [...params.activations], temporal: params.temporal, text: textRegion, ...(weightsOut.length ? { weights: weightsOut } : {}) };
    outReqs.forEach((o, k) => exportParams.activations.push({ site: -1 - k, half: 0, scaleInput: o.scale, zeroPointInput: o.zp, table: outTables[k]! }));
    // one parameter set for all timesteps: constants in the graph (kernels and fusions see fixed scales)
    const keep: ParamsFile['activations'] = [];
    const graphInputs = new Set((graph.input ?? []).map((v) => v.name ?? ''));
    const constInits: TensorMsg[] = [];
    const TP = ModelProto.lookupType('onnx.TensorProto');
    for (const a of exportParams.activations) {
      const live = graphInputs.has(a.scaleInput) || (a.zeroPointInput !== null && graphInputs.has(a.zeroPointInput));
      if (!live) continue;
      if (a.table.length === 1 && a.table[0]!.t === null) {
        const e = a.table[0]!;
        for (const [name, v] of [[a.scaleInput, e.scale], [a.zeroPointInput, e.zeroPoint]] as const) {
          if (!name || !graphInputs.has(name)) continue;
          constInits.push(TP.fromObject({ name, dims: [], data_type: 1, raw_data: new Uint8Array(Float32Array.of(v).buffer) }) as never);
          graph.input = (graph.input ?? []).filter((v) => v.name !== name);
        }
      } else keep.push(a);
    }
    graph.initializer = [...(graph.initializer ?? []), ...constInits];
    exportParams.activations = keep;
    compactNames(model);
    // the weights keep the source's layout: inline, or in the external file it used (weights.pb for the legacy
    // script, model.onnx_data for Optimum), now holding only the tensors the export still has
    const layout = weightsLayout(loaded);
    saveOnnx(model, join(tmp, folder, 'model.onnx'), null, layout.external ? { externalize: { location: layout.external } } : {});
    if (layout.note) notes.push(layout.note);
    writeFileAtomic(join(tmp, 'quant', 'params.json'), JSON.stringify(exportParams) + '\n');

    // sizes
    const files = filesUnder(tmp);
    const exportBytes = Object.entries(files).filter(([f]) => DENOISER_ENTRIES.some((d) => f.startsWith(`${d}/`))).reduce((a, [, b]) => a + b, 0);
    const srcUnet = join(manifest.source.pipeline, folder, 'model.onnx');
    const fp32UnetBytes = existsSync(srcUnet) ? onnxBytes(srcUnet) : null;
    if (fp32UnetBytes === null) notes.push(`the FP32 source pipeline (${manifest.source.pipeline}) was not found: no size ratio`);
    const runtimeInputs = [...keep.flatMap((a) => [a.scaleInput, ...(a.zeroPointInput ? [a.zeroPointInput] : [])]), ...(params.temporal?.features ?? []), ...(params.weights ?? []).flatMap((w) => [w.input, ...(w.gate ? [w.gate] : [])])];

    const real: string[] = [];
    const sim: string[] = [];
    const nInt8 = layers.filter((l) => l.real).length;
    // layers on per-step weight sets are listed apart (below)
    const nStored = layers.filter((l) => !l.real && l.storage !== 'float32' && !l.storage.startsWith('float32') && !ranged.has(l.name)).length;
    if (nInt8) real.push(`${nInt8} layers run on onnxruntime int8 kernels (QLinearConv / MatMulIntegerToFloat) with 8-bit weights${WEIGHT_LABEL[int8Weights]} and uint8 activations${afmt && afmt.kind === 'int' && afmt.symmetric ? SYMMETRIC_LABEL : ''}`);
    const byStorage = new Map<string, number>();
    for (const l of layers) if (!l.real && !l.storage.startsWith('float32') && !ranged.has(l.name)) byStorage.set(l.storage, (byStorage.get(l.storage) ?? 0) + 1);
    for (const [s, n] of byStorage) {
      const native = /DequantizeLinear/.test(layers.find((l) => l.storage === s)!.compute);
      real.push(`${n} weights stored as ${s} (${native ? 'DequantizeLinear' : 'decode subgraph'})`);
      sim.push(`${n} layers with ${s} weights compute in float32 (${native ? 'onnxruntime dequantizes the weights; no low-bit matmul/conv kernel is used' : 'onnxruntime has no kernels for this format: the weights are decoded to float32 when the session starts'})`);
    }
    const simActs = layers.filter((l) => !l.real && l.activation !== 'FP' && !l.activation.startsWith('FP (')).length;
    if (simActs) sim.push(`activation quantization of ${simActs} layers stays simulated (float32 fake-quant subgraphs${afmt ? `, ${afmt.kind}` : ''})`);
    if (outReqs.length) {
      notes.push(
        `QLinearConv requantizes its output to uint8: ${outReqs.length} output quantizers calibrated on ${calImages} images of the simulated variant ` +
          `(${recipe.activations?.perTimestep ? 'per timestep' : 'one set'}); the simulated variant keeps those outputs in float32, so this is an extra rounding`,
      );
    }
    if (keep.length) notes.push(`${keep.length} scale/zero-point pairs vary by timestep and stay runtime inputs (quant/params.json); onnxruntime's QLinear kernels read them at run time`);
    if (nInt8 && int8Weights === 's8') {
      notes.push(
        `int8 weights on u8s8 kernels: exact on CPUs with VNNI; on CPUs with AVX2 only, the kernels saturate 16-bit sums and outputs can be far off (re-export with int8 weights u8, the default, or s7); this CPU: ${INT8_SUPPORT_LABEL[int8Support()]}`,
      );
    }
    if (halfBranches) real.push(`${halfBranches} low-rank branches (SVDQuant, recipe lowRank) stored as float16 and run in float32 on the layers' FP inputs, beside their quantized residuals`);
    if (fused.length) notes.push(`${fused.length} attention blocks (q.k^T, scale, softmax, .v and their head transposes) run as one com.microsoft MultiHeadAttention node each: a float32 fusion, not quantization (attention products stay float in every recipe)`);
    for (const u of unfused) notes.push(`${u.count} attention softmax node${u.count > 1 ? 's' : ''} not fused: ${u.reason}`);
    if (!fuse) notes.push('attention fusion off (fuseAttention: false)');
    if (params.temporal) notes.push('the FP temporal model (TFMQ cache) is copied unchanged in float32');
    if (ranged.size) {
      const sets = [...stored.values()];
      const bytes = sets.flatMap((x) => [x.file, ...(x.encoding ? [x.encoding.scale] : [])]).reduce((a, f) => a + (files[f] ?? 0), 0);
      const packed = sets.filter((x) => x.encoding).length;
      real.push(`${ranged.size} layer${ranged.size > 1 ? 's switch their weights' : ' switches its weight'} by timestep range (per-step parameter sets: a budget per layer and timestep range, or a balance per range): ${sets.length} sets under quant/ (${bytes} bytes), ${packed} of them as integer codes with float32 scales${packed < sets.length ? ', the rest float32' : ''}, fed per step`);
      sim.push(`those ${ranged.size} layer${ranged.size > 1 ? 's compute' : ' computes'} in float32 on weights decoded when the pipeline loads (no integer kernel takes a weight that changes per step)`);
    }
    if (params.text) notes.push(`the FP text-feature model (${params.text.model}: ${params.text.features.length} text features computed once per prompt) is kept in float32`);
    for (const [c, r] of Object.entries(manifest.components ?? {})) {
      notes.push(`${c}: int8 weights as the variant quantized them (${r.bytes.after} bytes, from ${r.bytes.before}; verified against FP when quantized), copied`);
    }
    if (mismatches) notes.push(`${mismatches} weight values did not round-trip bit for bit through the recovered codes`);

    const info: ExportInfo = {
      version: EXPORT_VERSION,
      from: vdir,
      options: { int8Weights, calibrationImages: calImages, fuseAttention: fuse },
      sizes: { fp32UnetBytes, exportBytes, components: componentBytes(files), files, ratio: fp32UnetBytes ? Math.round((exportBytes / fp32UnetBytes) * 10000) / 10000 : null },
      summary: {
        layers: layers.length, int8Kernels: nInt8, lowBitStorage: nStored, keptFloat: layers.length - nInt8 - nStored, outputRequantizers: outReqs.length, weightMismatches: mismatches, fusedAttention: fused.length,
        ...(unfused.length ? { unfusedAttention: unfused } : {}),
      },
      real,
      simulated: sim,
      layers,
      verification: null,
      notes,
    };
    const em: ExportManifest = { ...manifest, simulated: false, runtimeInputs, export: info };
    writeFileAtomic(join(tmp, 'manifest.json'), JSON.stringify(em, null, 2) + '\n');

    if (opts.verify !== false) {
      const v = opts.verify ?? { seeds: [0, 1, 2, 3] };
      log(`verifying: ${v.seeds.length} images through the simulated variant and the export`);
      const ver = await verifyExport(vdir, tmp, v.seeds, v.steps ?? manifest.calibration?.settings.steps ?? 25, hooks, v.text ?? opts.prompts);
      ver.verdict = verificationVerdict({ int8Kernels: nInt8, int8Weights, simulatedActivations: layers.some((l) => !l.real && l.activation !== 'FP') }, ver);
      info.verification = ver;
      if (!ver.verdict.ok) log(`verification: larger than expected (${ver.verdict.exceeded.join(', ')}); expected for this export: ${ver.verdict.expected}`);
      writeFileAtomic(join(tmp, 'manifest.json'), JSON.stringify(em, null, 2) + '\n');
    }
    await releaseSessions();
    checkAbort(opts.signal);
    // swap into place
    swapIntoPlace(tmp, out, 'export', opts.force);
    return em;
  } catch (e) {
    await releaseSessions();
    rmSync(tmp, { recursive: true, force: true });
    if (isDqError(e) && e.code === 'CANCELLED') checkAbort(opts.signal);
    throw e;
  }
}

/**
 * One per-step weight set of a variant written into an export: integer codes (packed two a byte at 4 bits and less)
 * and float32 scales when its values recover bit for bit in its recorded format, else the float32 file as it is.
 */
function storeSet(vdir: string, tmp: string, st: RangedWeight['sets'][number], dims: number[], axes: { out: number; in: number }): { file: string; encoding?: NonNullable<RangedWeight['sets'][number]['encoding']> } {
  const copy = () => {
    cpSync(join(vdir, st.file), join(tmp, st.file));
    return { file: st.file };
  };
  const fmt = st.spec?.format;
  if (!fmt || fmt.kind !== 'int' || fmt.bits > 8) return copy();
  const gr = parseGranularity(st.spec!.granularity, axes);
  if (!gr) return copy();
  const b = readFileSync(join(vdir, st.file));
  const rec = recoverWeight(new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)), dims, fmt, gr, axes.in);
  if (!rec || rec.kind !== 'int' || rec.mismatches) return copy();
  const stem = st.file.replace(/\.bin$/, '');
  writeFileAtomic(join(tmp, `${stem}.codes.bin`), packCodes(rec.codes, rec.bits));
  writeFileAtomic(join(tmp, `${stem}.scale.bin`), new Uint8Array(rec.scale.buffer, rec.scale.byteOffset, rec.scale.byteLength));
  return { file: `${stem}.codes.bin`, encoding: { kind: 'int', bits: rec.bits, scale: `${stem}.scale.bin`, granularity: rec.g } };
}

/** Top-level entries of an export that are the denoiser's (its size); everything else is another component. */
const DENOISER_ENTRIES = ['unet', 'transformer', 'temporal', 'text', 'quant'];

/** Bytes per top-level entry that is not the denoiser's nor the manifest. */
function componentBytes(files: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [f, b] of Object.entries(files)) {
    const top = f.split('/')[0]!;
    if (DENOISER_ENTRIES.includes(top) || top === 'manifest.json') continue;
    out[top] = (out[top] ?? 0) + b;
  }
  return out;
}

/** Optimum's external data file (real-pipelines.md 1.0); the legacy diffusers script's is weights.pb. */
const OPTIMUM_EXTERNAL = 'model.onnx_data';
/** Above this many bytes of initializers a graph is written with external data even when its source had none. */
const INLINE_LIMIT = 1.8 * 2 ** 30;

/**
 * Brings every tensor of `loaded`'s model that lives in an external file into the graph (the export rewrites the
 * graph; the source's external file holds the FP32 weights, most of which it no longer has) and says where its
 * weights go when saved: the external file name the source used, if it used one; model.onnx_data if the graph would
 * be too large for one protobuf; else inline.
 */
function weightsLayout(loaded: LoadedModel): { external: string | null; note: string | null } {
  const inits = loaded.model.graph?.initializer ?? [];
  let source: string | null = null;
  let bytes = 0;
  for (const t of inits) {
    const ref = externalRef(t);
    if (ref) {
      source ??= ref.location;
      t.raw_data = tensorBytes(loaded, t);
      delete (t as { external_data?: unknown }).external_data;
      delete (t as { data_location?: unknown }).data_location;
    }
    bytes += t.raw_data?.length ?? 0;
  }
  if (source) return { external: source, note: `the unet's weights stay in an external data file as in the source (unet/${source}), holding only the exported tensors` };
  if (bytes > INLINE_LIMIT) return { external: OPTIMUM_EXTERNAL, note: `the exported unet's weights are in unet/${OPTIMUM_EXTERNAL} (${(bytes / 2 ** 30).toFixed(2)} GiB: too large for one protobuf)` };
  return { external: null, note: null };
}

/**
 * The variant's text-feature model, written to `out` without the network it reads only for sizes (region.ts): probed
 * at two batch sizes and two image sizes with the variant's own text inputs. Returns the region as params.json names
 * it (its inputs may shrink) and a note.
 */
async function slimTextRegion(vdir: string, region: NonNullable<ParamsFile['text']>, out: string): Promise<{ region: NonNullable<ParamsFile['text']>; note: string | null }> {
  const loaded = loadOnnx(join(vdir, region.model));
  const before = onnxBytes(loaded.path);
  const { pipeline: p } = await openPipeline(vdir, 'cpu');
  const { plan, failed } = await textSizePlan(p, loaded.model);
  const r = plan ? applySizePlan(loaded.model, plan) : null;
  if (!r?.rewired) {
    saveOnnx(loaded.model, out, loaded.dir);
    return { region, note: failed ? `the FP text-feature model is carried as the variant has it (probing its size reads failed: ${failed})` : null };
  }
  const layout = weightsLayout(loaded);
  saveOnnx(loaded.model, out, null, layout.external ? { externalize: { location: layout.external } } : {});
  const after = onnxBytes(out);
  return {
    region: { ...region, inputs: region.inputs.filter((n) => r.inputs.includes(n)) },
    note: `the FP text-feature model reads its batch size from the text instead of the network upstream of each attention block (${r.rewired} size reads made constant or the batch; ${r.nodes} nodes and ${r.initializers} initializers it no longer needs dropped): ${before} -> ${after} bytes`,
  };
}

const SYMMETRIC_LABEL = ' (symmetric int8 codes + 128)';

const WEIGHT_LABEL: Record<Int8Weights, string> = {
  u8: ' (stored as uint8, zero point 128: u8u8 kernels)',
  s8: ' (u8s8 kernels)',
  s7: ' (reduce range: 7-bit codes)',
};

function roundEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Short names for every internal tensor (graph inputs and outputs keep theirs) and no node names or doc strings:
 * a graph of small tensors is mostly names, which would otherwise cost a few percent of a 4-bit model.
 */
function compactNames(model: ModelMsg): void {
  const graph = model.graph as NonNullable<ModelMsg['graph']> & { value_info?: unknown[] };
  const keep = new Set([...(graph.input ?? []), ...(graph.output ?? [])].map((v) => v.name ?? ''));
  // Constant nodes become initializers (shared below when identical), Identity nodes become aliases
  const through = new Map<string, string>();
  const constInits: TensorMsg[] = [];
  graph.node = (graph.node ?? []).filter((n) => {
    const out = n.output?.[0] ?? '';
    if (n.domain || keep.has(out)) return true;
    if (n.op_type === 'Identity' && n.input?.[0]) {
      through.set(out, n.input[0]);
      return false;
    }
    const attrs = (n as { attribute?: { name?: string; t?: TensorMsg }[] }).attribute ?? [];
    if (n.op_type === 'Constant' && attrs.length === 1 && attrs[0]!.name === 'value' && attrs[0]!.t) {
      constInits.push({ ...attrs[0]!.t, name: out } as TensorMsg);
      return false;
    }
    return true;
  });
  graph.initializer = [...(graph.initializer ?? []), ...constInits];
  const unalias = (n: string) => {
    let r = n;
    while (through.has(r)) r = through.get(r)!;
    return r;
  };
  for (const n of graph.node) n.input = (n.input ?? []).map(unalias);
  // short names for the model-local functions (called once per layer)
  const fns = ((model as ModelMsg & { functions?: { name?: string | null; domain?: string | null }[] }).functions ?? []).filter((f) => f.domain === LOCAL_DOMAIN);
  const fnName = new Map(fns.map((f, i) => [f.name ?? '', `f${i}`]));
  for (const f of fns) f.name = fnName.get(f.name ?? '')!;
  for (const n of graph.node) if (n.domain === LOCAL_DOMAIN && fnName.has(n.op_type ?? '')) n.op_type = fnName.get(n.op_type!)!;
  const map = new Map<string, string>();
  const rename = (n: string) => {
    if (!n || keep.has(n)) return n;
    let r = map.get(n);
    if (!r) {
      r = map.size.toString(36);
      map.set(n, r);
    }
    return r;
  };
  // identical constants (the scalars of every fake-quant subgraph, the lookup tables of every decode subgraph)
  // become one initializer
  const byValue = new Map<string, string>();
  const alias = new Map<string, string>();
  graph.initializer = (graph.initializer ?? []).filter((t) => {
    const raw = t.raw_data;
    if (!raw || externalRef(t) || keep.has(t.name ?? '')) return true;
    const key = `${t.data_type}|${(t.dims ?? []).join(',')}|${raw.length > 64 ? createHash('sha256').update(raw).digest('hex') : Buffer.from(raw).toString('hex')}`;
    const first = byValue.get(key);
    if (first === undefined) {
      byValue.set(key, t.name ?? '');
      return true;
    }
    alias.set(t.name ?? '', first);
    return false;
  });
  for (const n of graph.node ?? []) n.input = (n.input ?? []).map((i) => alias.get(i) ?? i);
  for (const t of graph.initializer ?? []) t.name = rename(t.name ?? '');
  for (const n of graph.node ?? []) {
    n.input = (n.input ?? []).map(rename);
    n.output = (n.output ?? []).map(rename);
    delete (n as { name?: string }).name;
    delete (n as { doc_string?: string }).doc_string;
  }
  delete graph.value_info;
}

function samplingSettings(manifest: Manifest): { steps: number; sampler: SamplerName; guidance: number | null } {
  const s = manifest.calibration?.settings;
  return { steps: s?.steps ?? 25, sampler: s?.sampler ?? 'ddim', guidance: s?.guidance ?? null };
}

/** Prompts a text pipeline's export is calibrated and verified on (default: the variant's calibration prompts). */
export interface ExportPrompts {
  prompts: string[];
  negativePrompt?: string;
  /** Classifier-free guidance (default: the calibration's, else the pipeline's). */
  guidance?: number;
}

/**
 * What `n` images are conditioned on: class labels (i mod classes) for a class-conditional pipeline, prompts (cycled)
 * for a text-to-image one: the given ones, else the calibration's, else the folder's calibration_prompts.txt.
 */
function conditioning(p: Pipeline, manifest: Manifest, dir: string, n: number, classGuidance: number, given?: ExportPrompts): { classes: number[]; prompts?: string[]; negativePrompts?: string[]; guidance: number } {
  if (!p.text) {
    const nc = p.index.classes.length;
    return { classes: p.io.classLabels ? Array.from({ length: n }, (_, i) => i % nc) : [], guidance: p.io.classLabels ? classGuidance : 1 };
  }
  const s = manifest.calibration?.settings;
  const list = given?.prompts.length ? given.prompts : s?.prompts?.length ? s.prompts : defaultPrompts(dir);
  const negative = given?.negativePrompt ?? s?.negativePrompt ?? '';
  return {
    classes: [],
    prompts: Array.from({ length: n }, (_, i) => list[i % list.length]!),
    negativePrompts: Array.from({ length: n }, () => negative),
    guidance: given?.guidance ?? s?.guidance ?? p.index.defaultGuidance,
  };
}

interface Hooks {
  signal: AbortSignal | undefined;
  onProgress: ((p: ExportProgress) => void) | undefined;
}

/** Min/max of every QLinearConv output (before bias) per step, on the simulated variant; uint8 parameters per table. */
async function calibrateOutputs(vdir: string, loaded: LoadedModel, reqs: OutReq[], images: number, manifest: Manifest, tmp: string, log: (s: string) => void, hooks: Hooks, prompts?: ExportPrompts): Promise<ParamsFile['activations'][number]['table'][]> {
  const stats = loadOnnx(loaded.path).model;
  const e = new Emit('dqx/stat');
  const inits = new Map((stats.graph!.initializer ?? []).map((t) => [t.name ?? '', t]));
  const weightCache = new Map<string, Float32Array>();
  const sites: Site[] = [];
  for (const r of reqs) {
    const s = r.stat;
    let x = s.input;
    if (s.lo !== s.halfLo || s.hi !== s.halfHi) x = e.op('Slice', [x, e.i64([s.lo - s.halfLo]), e.i64([s.hi - s.halfLo]), e.i64([1])]);
    const wt = inits.get(s.weight)!;
    let wv = weightCache.get(s.weight);
    if (!wv) {
      wv = floatTensor(loaded, wt);
      weightCache.set(s.weight, wv);
    }
    const dims = (wt.dims ?? []).map(Number);
    const part = sliceAxis(wv, dims, 1, s.lo, s.hi);
    const w = e.init('w', 'float32', part.dims, part.data);
    const convAttrs = ((s.node as { attribute?: AttrMsg[] }).attribute ?? []) as AttrMsg[];
    sites.push({ id: r.k, tensor: e.op('Conv', [x, w], convAttrs), layers: [], split: null, ops: ['Conv'], temporal: false });
  }
  const graph = stats.graph!;
  graph.node = [...(graph.node ?? []), ...(e.nodes as NodeMsg[])];
  graph.initializer = [...(graph.initializer ?? []), ...(e.inits as TensorMsg[])];
  const def = stats.opset_import!.find((o) => !o.domain || o.domain === 'ai.onnx');
  if (def && Number(def.version ?? 0) < 18) def.version = 18;
  const { pipeline, session: base } = await openPipeline(vdir, 'cpu');
  // the statistics model, in slices of sites on large models (quant/taps.ts), written beside the source's external data
  const statModels = await statSessions(stats, sites, async (m, k) => {
    const path = join(tmp, '.stats', String(k), 'model.onnx');
    saveOnnx(m, path, loaded.dir);
    return Session.create(path, 'cpu');
  });
  const { taps, fetch, session } = statModels;
  const set = samplingSettings(manifest);
  const sched = createScheduler(set.sampler, pipeline.scheduler, set.steps, schedulerOptions(pipeline));
  const perStep = manifest.recipe.activations?.perTimestep ?? false;
  const acc = reqs.map(() => new Map<number, Stat>());
  log(`calibrating ${reqs.length} QLinearConv output ranges on ${images} images (${set.steps} steps)`);
  const seeds = Array.from({ length: images }, (_, i) => 1_000_000 + i);
  const cond = conditioning(pipeline, manifest, vdir, images, set.guidance ?? pipeline.index.defaultGuidance, prompts);
  try {
    await sample(pipeline, base, {
      seeds,
      ...cond,
      steps: set.steps,
      sampler: set.sampler,
      batchSize: images,
      signal: hooks.signal,
      onProgress: (p) => hooks.onProgress?.({ phase: 'calibrating output ranges', done: p.done, total: p.total }),
      tap: {
        session,
        steps: new Set(sched.timesteps.map((_, k) => k)),
        fetch,
        onOutputs: async (step, _t, res, feeds) => {
          const all = { ...res, ...(await statModels.more(feeds)) };
          taps.forEach(([names], k) => {
            const st = readTap(all, names!);
            acc[k]!.set(step, mergeStat(acc[k]!.get(step), st));
          });
        },
      },
    });
  } finally {
    await statModels.release();
  }
  rmSync(join(tmp, '.stats'), { recursive: true, force: true });
  const fmt = { kind: 'int' as const, bits: 8, symmetric: false };
  const act = { format: fmt, clipping: manifest.recipe.activations?.clipping ?? 'minmax', percentile: manifest.recipe.activations?.percentile ?? 99.99, perTimestep: perStep, dynamic: 'none' as const };
  return acc.map((m) => {
    const steps = [...m.keys()].sort((a, b) => a - b);
    if (!perStep) {
      let all: Stat | undefined;
      for (const s of steps) all = mergeStat(all, m.get(s)!);
      const p = actParams(all!, fmt, act);
      return [{ t: null, scale: p.scale, zeroPoint: p.zeroPoint }];
    }
    return steps.map((s) => {
      const p = actParams(m.get(s)!, fmt, act);
      return { t: sched.timesteps[s]!, scale: p.scale, zeroPoint: p.zeroPoint };
    });
  });
}

/** |a - b| element by element, gathered so that mean, a high percentile and the max can be reported. */
class AbsDiffs {
  private parts: Float32Array[] = [];
  add(a: ArrayLike<number>, b: ArrayLike<number>): number {
    const d = new Float32Array(a.length);
    let m = 0;
    for (let j = 0; j < a.length; j++) {
      d[j] = Math.abs(a[j]! - b[j]!);
      if (d[j]! > m) m = d[j]!;
    }
    this.parts.push(d);
    return m;
  }
  summary(): { meanAbs: number; p99Abs: number; maxAbs: number } {
    const n = this.parts.reduce((k, d) => k + d.length, 0);
    const all = new Float32Array(n);
    let o = 0;
    let sum = 0;
    for (const d of this.parts) {
      all.set(d, o);
      o += d.length;
      for (let j = 0; j < d.length; j++) sum += d[j]!;
    }
    all.sort();
    const at = (q: number) => (n ? all[Math.max(0, Math.ceil(q * n) - 1)]! : 0);
    return { meanAbs: round6(sum / Math.max(1, n)), p99Abs: round6(at(0.99)), maxAbs: round6(n ? all[n - 1]! : 0) };
  }
}

/**
 * The export against its simulated variant, two ways. Per step: along the simulated variant's DDIM trajectory, the
 * export predicts the noise from the very same input at every step, so errors do not compound: this is what the
 * kernels answer for (requantized outputs may land one code off, and a flipped code can grow through later layers).
 * Images: the same seeds sampled through both; a few pixels can drift apart where the trajectories diverge, which
 * depends on the CPU's float kernels as much as on the export, so the mean and the 99th percentile are the measures to
 * read, the max only a pointer.
 */
export async function verifyExport(variantDir: string, exportDir: string, seeds: number[], steps: number, hooks: Partial<Hooks> = {}, text?: ExportPrompts): Promise<Verification> {
  const sim = await openPipeline(variantDir, 'cpu');
  const exp = await openPipeline(exportDir, 'cpu');
  const p = sim.pipeline;
  let classes = p.io.classLabels ? seeds.map((s) => s % p.index.classes.length) : [];
  let guidance = p.io.classLabels ? p.index.defaultGuidance : 1;
  // a text pipeline: the same prompts through both, each pipeline with its own encoded prompt ids
  let expLabels = classes;
  let prompts: { prompts: string[]; negativePrompts: string[] } | null = null;
  if (p.text && exp.pipeline.text) {
    const manifest = readManifest(resolve(variantDir));
    if (!manifest) throw new DqError('BAD_CONFIG', `${variantDir} is not a variant (no manifest.json)`);
    const c = conditioning(p, manifest, variantDir, seeds.length, guidance, text);
    guidance = c.guidance;
    prompts = { prompts: c.prompts!, negativePrompts: c.negativePrompts! };
    const guided = guidedRun(p, guidance);
    classes = await p.text.ids(prompts.prompts, prompts.negativePrompts, guided);
    expLabels = await exp.pipeline.text.ids(prompts.prompts, prompts.negativePrompts, guided);
  }
  const [C, H, W] = p.index.sampleShape;
  const noises = seeds.map((s) => seedNoise(s, C * H * W));
  const stepDiffs = new AbsDiffs();
  let probeMs = 0;
  let done = 0;
  const t0 = performance.now();
  const sampler = fallbackSampler(p.scheduler);
  const a = await runLoop(p, sim.session, {
    steps, sampler, guidance, eta: 0, batchSize: seeds.length,
    init: noises.map((n) => n.z), rngs: noises.map((n) => n.rng), labels: classes, signal: hooks.signal,
    onStep: async (v) => {
      const t1 = performance.now();
      const eps = await predictEps(exp.pipeline, exp.session, v.modelInput, v.timestep, v.idx.map((i) => expLabels[i] ?? 0), guidance, v.idx.length);
      stepDiffs.add(v.eps, eps);
      probeMs += performance.now() - t1;
      done++;
      hooks.onProgress?.({ phase: 'verifying (simulated)', done, total: steps });
    },
  });
  // a latent pipeline's loop ends in latents: the simulated variant's are decoded by its own VAE, as sample() does
  const simImages = p.codec && p.decoderSession ? (await decodeLatents(p.codec, p.decoderSession, a.images, p.index.sampleShape, hooks.signal, p.index.frames)).images : a.images;
  const simulatedSeconds = (performance.now() - t0 - probeMs) / 1000;
  const b = await sample(exp.pipeline, exp.session, {
    seeds, classes: prompts ? [] : classes, ...(prompts ?? {}), steps, sampler, guidance, batchSize: seeds.length,
    signal: hooks.signal, onProgress: (q) => hooks.onProgress?.({ phase: 'verifying (export)', done: q.done, total: q.total }),
  });
  const imageDiffs = new AbsDiffs();
  const perImageMax = simImages.map((img, k) => round6(imageDiffs.add(img, b.images[k]!)));
  const int8 = exp.pipeline.int8Weights?.loaded;
  return {
    seeds, classes: prompts ? [] : classes, ...(prompts ? { prompts: prompts.prompts, negativePrompt: prompts.negativePrompts[0] ?? '' } : {}), steps, sampler, guidance,
    ...imageDiffs.summary(), perImageMax,
    step: { ...stepDiffs.summary(), evaluations: done },
    seconds: { simulated: round6(simulatedSeconds), exported: round6(b.seconds) },
    ...(int8 ? { int8WeightsAsRun: int8 as Int8Weights } : {}),
  };
}

const round6 = (x: number) => Math.round(x * 1e6) / 1e6;

