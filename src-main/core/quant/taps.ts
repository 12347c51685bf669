/**
 * The calibration model: the FP denoiser plus, for every quantization site, in-graph statistics outputs
 * (min, max and a 256-bin histogram over the batch's own [min, max]; absmax follows from min and max, in readTap).
 * Only these small tensors leave onnxruntime; activations never do.
 */
import { GraphBuilder, int } from '../../../kernels/onnx/graph.js';
import { embedFragment, raiseOpset } from '../onnx/fragment.js';
import { nodeAttr } from '../onnx/graph.js';
import type { ModelMsg } from '../onnx/model.js';
import { ModelProto } from '../onnx/model.js';
import type { Site } from './sites.js';
import type { Stat } from './stats.js';

export const HIST_BINS = 256;
/**
 * Histograms count the tails exactly and sample the bulk. The bulk sample is one element in every block of
 * S = bulkStride(n) consecutive elements (at offset bulkOffset(block, S), which moves from block to block so the
 * sample does not alias with image rows), weighted S: about BULK_SAMPLES elements per tensor, whatever its size.
 * The tails are the elements beyond the bulk sample's TAIL_QUANTILE quantiles (top and bottom); every one of them is
 * counted with weight 1 (and bulk samples in the tails get weight 0): the extreme values are what MSE and
 * percentile clipping need. Cost and quality: docs/quantize.md.
 */
export const BULK_SAMPLES = 4096;
/** Elements beyond the bulk sample's top and bottom TAIL_QUANTILE are counted one by one. */
export const TAIL_QUANTILE = 0.002;
/** Blocks for min/max and for finding the tail elements (a block's max and min say whether it holds any). */
export const TAIL_BLOCK = 8;
const OFFSET_PRIME = 7919;
const ARANGE = 'dq_stat/arange';

/** The bulk block size for a tensor of n elements: odd, 1 when n < 2 x BULK_SAMPLES (every element sampled). */
export function bulkStride(n: number): number {
  return 2 * Math.floor(n / (2 * BULK_SAMPLES)) + 1;
}

/** Which element of block b (of S elements) is its bulk sample. */
export function bulkOffset(b: number, S: number): number {
  return (b * OFFSET_PRIME) % S;
}


export interface TapNames {
  min: string;
  max: string;
  /** HIST_BINS + 1 float32 counts: the last counts NaNs. */
  hist: string;
}

/** Output names of one site half (half 0 = whole tensor, or the first part of a split site; half 1 = second part). */
export function tapNames(site: number, half: number): TapNames {
  const p = `dq_stat/${site}/${half}`;
  return { min: `${p}_min`, max: `${p}_max`, hist: `${p}_hist` };
}

/** Output names to fetch for these taps. */
export function tapFetch(taps: TapNames[][]): string[] {
  return taps.flat().flatMap((t) => [t.min, t.max, t.hist]);
}

/** One run's statistic of one site half, from the run's outputs. */
export function readTap(res: Record<string, { data: ArrayLike<number> | ArrayLike<bigint> }>, names: TapNames): Stat {
  const min = Number(res[names.min]!.data[0]);
  const max = Number(res[names.max]!.data[0]);
  const raw = res[names.hist]!.data as ArrayLike<number>;
  if (raw.length !== HIST_BINS + 1) throw new Error(`histogram ${names.hist} has ${raw.length} bins`);
  const counts = Array.from({ length: HIST_BINS }, (_, i) => raw[i]!);
  return { min, max, absmax: Math.max(-min, max), hist: { lo: min, hi: max, counts }, n: 1 };
}

/** Adds statistics outputs for every site; returns the output names per site half. */
export function addStatTaps(model: ModelMsg, sites: Site[]): TapNames[][] {
  const graph = model.graph!;
  const ValueInfo = ModelProto.lookupType('onnx.ValueInfoProto');
  const taps: TapNames[][] = [];
  const outputs: Record<string, unknown>[] = [];
  // block indices of the bulk samples, shared by every site (a bulk sample has at most 2 x BULK_SAMPLES blocks)
  const Tensor = ModelProto.lookupType('onnx.TensorProto');
  const arange = BigInt64Array.from({ length: 2 * BULK_SAMPLES }, (_, i) => BigInt(i));
  graph.initializer = [...(graph.initializer ?? []), Tensor.fromObject({ name: ARANGE, dims: [arange.length], data_type: 7, raw_data: new Uint8Array(arange.buffer) }) as never];
  for (const site of sites) {
    const halves: string[] = [];
    const channels = siteChannels(model, site);
    if (site.split === null) halves.push(site.tensor);
    else {
      // slice the two halves along the channel axis
      const b = new GraphBuilder(`dq_split/${site.id}`);
      const big = b.i64([2 ** 62]);
      halves.push(b.op('Slice', [site.tensor, b.i64([0]), b.i64([site.split]), b.i64([1])], {}, 'a'));
      halves.push(b.op('Slice', [site.tensor, b.i64([site.split]), big, b.i64([1])], {}, 'b'));
      embedFragment(model, b.fragment([], [], 13), { after: site.tensor });
    }
    taps.push(
      halves.map((x, h) => {
        const names = tapNames(site.id, h);
        const stem = names.min.slice(0, -'_min'.length);
        // placed right after the site's producer, so the statistics run while the tensor is fresh (and it can be freed)
        const ch = channels === null ? null : site.split === null ? channels : h === 0 ? site.split : channels - site.split;
        embedFragment(model, siteStatistics(x, names, `${stem}/s`, ch !== null && ch % TAIL_BLOCK === 0, ARANGE), { after: site.tensor });
        for (const n of Object.values(names)) outputs.push({ name: n, type: { tensor_type: { elem_type: 1 } } });
        return names;
      }),
    );
    gateConsumers(model, site.tensor, taps.at(-1)!.map((t) => t.hist), `dq_gate/${site.id}`);
  }
  graph.output = [...(graph.output ?? []), ...outputs.map((o) => ValueInfo.fromObject(o) as never)];
  raiseOpset(model, 18);
  return taps;
}

/**
 * Makes the network's own consumers of `tensor` wait for its statistics: they read a zero-copy Reshape of it whose
 * shape input carries an empty slice of each statistic. onnxruntime's default order otherwise runs every statistic
 * after the whole network (a depth-first walk from the outputs), keeping every site tensor alive to the end: more
 * memory, and reductions over data long gone from the caches.
 */
function gateConsumers(model: ModelMsg, tensor: string, stats: string[], prefix: string): void {
  const b = new GraphBuilder(prefix);
  const empty = stats.map((h) => b.op('Cast', [b.op('Slice', [h, b.i64([0]), b.i64([0])])], { to: int(7) }, 'empty'));
  const gated = b.op('Reshape', [tensor, b.op('Concat', [b.op('Shape', [tensor]), ...empty], { axis: int(0) })], {}, 'gated');
  let used = false;
  for (const n of model.graph!.node ?? []) {
    const name = n.name ?? '';
    if (name.startsWith('dq_stat/') || name.startsWith('dq_split/')) continue;
    n.input = (n.input ?? []).map((i) => (i === tensor ? ((used = true), gated) : i));
  }
  if (used) embedFragment(model, b.fragment([], [{ name: gated, dtype: 'float32', dims: null }], 13));
}

/**
 * min, max and the histogram of x over [min, max]: bin = clamp(floor((x - min) * bins /
 * (max - min)), 0, bins - 1), counted with ScatterElements(add); NaNs are dropped (an extra bin), and a NaN
 * activation makes min/max NaN, which quantization reports.
 *
 * One pass over x: its blocks of TAIL_BLOCK elements (zero-padded to whole blocks) are reduced to block max and min;
 * the tensor's min and max come from those (a padded zero can only widen the range to include 0, which the
 * quantizer parameters include anyway). The bulk sample is gathered, its TopK order statistics set the tail thresholds
 * (hiT >= 0 >= loT, so padded zeros are never tails), the blocks whose max or min lies beyond them are gathered whole,
 * and their elements counted with weight 1 if they are tails, 0 if not; bulk and candidates are binned and counted
 * together.
 */
function siteStatistics(x: string, names: TapNames, prefix: string, wholeBlocks: boolean, arange: string) {
  const b = new GraphBuilder(prefix);
  const flat = b.op('Reshape', [x, b.i64([-1])], {}, 'flat');
  const n = b.op('Shape', [flat], {}, 'n');
  const T = TAIL_BLOCK;
  // (a tensor whose channel count is a multiple of TAIL_BLOCK needs no padding, and Pad would copy it)
  const padded = wholeBlocks ? flat : b.op('Pad', [flat, b.op('Concat', [b.i64([0]), b.op('Mod', [b.op('Sub', [b.i64([T]), b.op('Mod', [n, b.i64([T])])]), b.i64([T])])], { axis: int(0) })]);
  const blocks = b.op('Reshape', [padded, b.i64([-1, T])], {}, 'blocks');
  const bmax = b.op('ReduceMax', [blocks, b.i64([1])], { keepdims: int(0) }, 'bmax');
  const bmin = b.op('ReduceMin', [blocks, b.i64([1])], { keepdims: int(0) }, 'bmin');
  b.opTo(names.min, 'ReduceMin', [bmin], { keepdims: int(0) });
  b.opTo(names.max, 'ReduceMax', [bmax], { keepdims: int(0) });

  const width = b.op('Max', [b.op('Sub', [names.max, names.min]), b.f32(1e-30)], {}, 'width');
  const k = b.op('Div', [b.f32(HIST_BINS), width], {}, 'k');
  const zeros = b.init('zeros', 'float32', [HIST_BINS + 1], new Float32Array(HIST_BINS + 1));
  const binOf = (v: string) => {
    const t = b.op('Floor', [b.op('Mul', [b.op('Sub', [v, names.min]), k])]);
    const clamped = b.op('Clip', [t, b.f32(0), b.f32(HIST_BINS - 1)]);
    return b.op('Cast', [b.op('Where', [b.op('Equal', [v, v]), clamped, b.f32(HIST_BINS)], {}, 'bin')], { to: int(7) }, 'idx');
  };

  // bulk sample: element (block S + bulkOffset(block, S)) of flat, for every block of S elements
  const S = b.op('Add', [b.op('Mul', [b.op('Div', [n, b.i64([2 * BULK_SAMPLES])]), b.i64([2])]), b.i64([1])], {}, 'S');
  const nS = b.op('Div', [b.op('Sub', [b.op('Add', [n, S]), b.i64([1])]), S], {}, 'nS');
  const block = b.op('Slice', [arange, b.i64([0]), nS], {}, 'block');
  const at = b.op('Add', [b.op('Mul', [block, S]), b.op('Mod', [b.op('Mul', [block, b.i64([OFFSET_PRIME])]), S])], {}, 'at');
  const real = b.op('Less', [at, n], {}, 'real');
  const bulk = b.op('Gather', [flat, b.op('Min', [at, b.op('Sub', [n, b.i64([1])])])], { axis: int(0) }, 'bulk');

  // tail thresholds: hiT is the k-th largest and loT the k-th smallest bulk sample, k = max(1, floor(samples x
  // TAIL_QUANTILE)) (TopK: exact, where bins of the histogram over [min, max] are coarse); hiT >= 0 >= loT
  const kq = b.op('Max', [b.op('Div', [nS, b.i64([Math.round(1 / TAIL_QUANTILE)])]), b.i64([1])], {}, 'kq');
  const kth = (largest: 0 | 1) => {
    const [top] = b.opMulti('TopK', [bulk, kq], 2, { axis: int(0), largest: int(largest), sorted: int(0) }, 'top');
    return b.op(largest ? 'ReduceMin' : 'ReduceMax', [top!], { keepdims: int(0) });
  };
  const hiT = b.op('Max', [kth(1), b.f32(0)], {}, 'hi_t');
  const loT = b.op('Min', [kth(0), b.f32(0)], {}, 'lo_t');
  const isTail = (v: string) => b.op('Or', [b.op('Greater', [v, hiT]), b.op('Less', [v, loT])], {}, 'tail');

  // tails: the blocks holding one, gathered whole; their non-tail elements get weight 0
  const hasTail = b.op('Or', [b.op('Greater', [bmax, hiT]), b.op('Less', [bmin, loT])], {}, 'has_tail');
  const which = b.op('Reshape', [b.op('NonZero', [hasTail]), b.i64([-1])], {}, 'which');
  const cand = b.op('Reshape', [b.op('Gather', [blocks, which], { axis: int(0) }), b.i64([-1])], {}, 'cand');
  // weights: a bulk sample S unless it is a tail; a candidate 1 if it is a tail. One binning and one count for both.
  const bulkW = b.op('Mul', [b.op('Cast', [b.op('And', [b.op('Not', [isTail(bulk)]), real])], { to: int(1) }), b.op('Cast', [S], { to: int(1) })], {}, 'bulk_w');
  const candW = b.op('Cast', [isTail(cand)], { to: int(1) }, 'cand_w');
  const vals = b.op('Concat', [bulk, cand], { axis: int(0) }, 'vals');
  const w = b.op('Concat', [bulkW, candW], { axis: int(0) }, 'w');
  // float32 counts are exact (a run counts far fewer than 2^24 per bin) and scatter faster than int64
  b.opTo(names.hist, 'ScatterElements', [zeros, binOf(vals), w], { axis: int(0), reduction: { type: 'string', value: 'add' } });
  const outs = [names.min, names.max].map((name) => ({ name, dtype: 'float32' as const, dims: [] }));
  return b.fragment([], [...outs, { name: names.hist, dtype: 'float32', dims: [HIST_BINS + 1] }], 18);
}

/** The channel (Conv) or feature (Gemm/MatMul) count of a site, from its first layer's weight; null if unknown. */
function siteChannels(model: ModelMsg, site: Site): number | null {
  const graph = model.graph!;
  const node = (graph.node ?? []).find((n) => n.name === site.layers[0]);
  if (!node) return null;
  const inits = new Map((graph.initializer ?? []).map((t) => [t.name ?? '', t]));
  const op = node.op_type ?? '';
  const ins = node.input ?? [];
  const wName = op === 'MatMul' ? (inits.has(ins[1] ?? '') ? ins[1] : ins[0]) : ins[1];
  const dims = (inits.get(wName ?? '')?.dims ?? []).map(Number);
  if (op === 'Conv') {
    const group = Number(nodeAttr(node, 'group')?.i ?? 1);
    return dims.length > 1 ? dims[1]! * group : null;
  }
  if (op === 'Gemm') {
    const transB = Number(nodeAttr(node, 'transB')?.i ?? 0) === 1;
    return dims.length === 2 ? dims[transB ? 1 : 0]! : null;
  }
  if (op === 'MatMul') return dims.length >= 2 ? (wName === ins[1] ? dims[dims.length - 2]! : null) : null;
  return null;
}
