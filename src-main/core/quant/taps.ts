/**
 * The calibration model: the FP denoiser plus, for every quantization site, in-graph statistics outputs. Every
 * statistic is computed per row of the site tensor (its first axis: one image, or one image's head), so a row's
 * statistic depends on that row alone, never on which rows share a run: min, max, the width of its histogram's bins
 * (a power of two) and a 256-bin histogram on the grid of that width (absmax follows from min and max, in readTap).
 * Rows merge exactly (stats.ts): the calibration record does not depend on the batch size. Only these small tensors
 * leave onnxruntime; activations never do.
 */
import { GraphBuilder, int } from '../../../kernels/onnx/graph.js';
import { embedFragment, raiseOpset } from '../onnx/fragment.js';
import { nodeAttr } from '../onnx/graph.js';
import type { ModelMsg } from '../onnx/model.js';
import { ModelProto } from '../onnx/model.js';
import type { FeedValue, Session, TensorOut } from '../runtime/onnx.js';
import type { Site } from './sites.js';
import { HIST_BINS, mergeOnGrid, mergeStat, type GridPart, type Stat } from './stats.js';

export { HIST_BINS };
/**
 * Histograms count the tails exactly and sample the bulk, per row. The bulk sample is one element in every block of
 * S = bulkStride(m) consecutive elements of a row of m elements (at offset bulkOffset(block, S), which moves from
 * block to block so the sample does not alias with image rows), weighted S: about BULK_SAMPLES elements per row,
 * whatever its size. The tails are the row's elements beyond its bulk sample's TAIL_QUANTILE quantiles (top and
 * bottom); every one of them is counted with weight 1 (and bulk samples in the tails get weight 0): the extreme
 * values are what MSE and percentile clipping need. Cost and quality: docs/quantize.md.
 */
export const BULK_SAMPLES = 1024;
/** Elements beyond the bulk sample's top and bottom TAIL_QUANTILE are counted one by one. */
export const TAIL_QUANTILE = 0.002;
/** Blocks for min/max and for finding the tail elements (a block's max and min say whether it holds any). */
export const TAIL_BLOCK = 8;
/**
 * A row's bin width is the least power of two w with w >= (max - min) / (HIST_BINS - 2) and w >= absmax x
 * 2^-WIDTH_FLOOR_LOG2: its [min, max] then spans at most HIST_BINS bins of the grid k w, and x / w stays an
 * integer-exact float32 (|x / w| <= 2^22).
 */
export const WIDTH_FLOOR_LOG2 = 22;
const OFFSET_PRIME = 7919;
const ARANGE = 'dq_stat/arange';
const POW2 = 'dq_stat/pow2';
const INV_POW2 = 'dq_stat/inv_pow2';
/** The bin widths a row can take: 2^POW2_MIN .. 2^POW2_MAX (float32 normal powers of two). */
const POW2_MIN = -126;
const POW2_MAX = 127;

/** The bulk block size for a row of m elements: odd, 1 when m < 2 x BULK_SAMPLES (every element sampled). */
export function bulkStride(m: number): number {
  return 2 * Math.floor(m / (2 * BULK_SAMPLES)) + 1;
}

/** Which element of block b (of S elements) is its bulk sample. */
export function bulkOffset(b: number, S: number): number {
  return (b * OFFSET_PRIME) % S;
}

/** The bin width of a row with this min and max, as the graph computes it (float32 arithmetic). */
export function binWidth(min: number, max: number): number {
  const f = Math.fround;
  const absmax = Math.max(-min, max);
  const target = Math.max(f(f(f(max) - f(min)) * f(1 / (HIST_BINS - 2))), f(f(absmax) * f(2 ** -WIDTH_FLOOR_LOG2)));
  let e = POW2_MIN;
  while (e < POW2_MAX && 2 ** e < target) e++;
  return 2 ** e;
}

export interface TapNames {
  /** Per row: min and max. */
  min: string;
  max: string;
  /** Per row: the histogram's bin width (a power of two). */
  width: string;
  /** Per row, HIST_BINS + 1 float32 counts ([rows, HIST_BINS + 1]): bin k counts [(j0 + k) w, (j0 + k + 1) w) with
   * j0 = floor(min / w); the last counts NaNs. */
  hist: string;
  /** Tapped with others of its shape (see GROUP_MAX_ROW): its rows are rows index, index + size, ... of the outputs. */
  group?: { index: number; size: number };
}

/** Output names of one site half (half 0 = whole tensor, or the first part of a split site; half 1 = second part). */
export function tapNames(site: number, half: number): TapNames {
  const p = `dq_stat/${site}/${half}`;
  return { min: `${p}_min`, max: `${p}_max`, width: `${p}_width`, hist: `${p}_hist` };
}

/** Output names to fetch for these taps. */
export function tapFetch(taps: TapNames[][]): string[] {
  return [...new Set(taps.flat().flatMap((t) => [t.min, t.max, t.width, t.hist]))];
}

/** One run's statistic of one site half, from the run's outputs: its rows' statistics, merged (exactly, in any order). */
export function readTap(res: Record<string, { data: ArrayLike<number> | ArrayLike<bigint> }>, names: TapNames): Stat {
  const mins = res[names.min]!.data as ArrayLike<number>;
  const maxs = res[names.max]!.data as ArrayLike<number>;
  const widths = res[names.width]!.data as ArrayLike<number>;
  const raw = res[names.hist]!.data as ArrayLike<number>;
  const all = mins.length;
  const { index, size } = names.group ?? { index: 0, size: 1 };
  if (!all || all % size || maxs.length !== all || widths.length !== all || raw.length !== all * (HIST_BINS + 1)) {
    throw new Error(`statistics ${names.hist}: ${all} rows, ${raw.length} histogram values`);
  }
  let min = Infinity;
  let max = -Infinity;
  const parts: GridPart[] = [];
  for (let r = index; r < all; r += size) {
    min = Math.min(min, Number(mins[r]));
    max = Math.max(max, Number(maxs[r]));
    const w = Number(widths[r]);
    parts.push({ w, j0: Math.floor(Number(mins[r]) / w), counts: raw, off: r * (HIST_BINS + 1) });
  }
  if (!Number.isFinite(min) || !Number.isFinite(max)) {
    // a NaN or infinite activation (which quantization refuses): row by row, as mergeStat keeps such statistics
    let acc: Stat | undefined;
    for (let r = index; r < all; r += size) acc = mergeStat(acc, rowStat(mins, maxs, widths, raw, r));
    return acc!;
  }
  // every row's histogram moved whole onto the merged grid at once: what merging them one by one gives (stats.ts)
  return { min, max, absmax: Math.max(-min, max), hist: mergeOnGrid(parts, min, max, HIST_BINS), n: all / size };
}

/** Row r's statistic as a Stat of its own. */
function rowStat(mins: ArrayLike<number>, maxs: ArrayLike<number>, widths: ArrayLike<number>, raw: ArrayLike<number>, r: number): Stat {
  const min = Number(mins[r]);
  const max = Number(maxs[r]);
  const w = Number(widths[r]);
  const lo = Math.floor(min / w) * w;
  const off = r * (HIST_BINS + 1);
  const counts = Array.from({ length: HIST_BINS }, (_, i) => raw[off + i]!);
  return { min, max, absmax: Math.max(-min, max), hist: { lo, hi: lo + HIST_BINS * w, counts }, n: 1 };
}

/**
 * Site halves whose rows have at most this many elements are tapped together when their shapes are known (a probe
 * run: probeSiteShapes): the halves of one shape are stacked ([rows, G, m], one Concat) and their statistics computed
 * once over the rows of all of them. On a small network the ~60 statistics nodes per half cost more in onnxruntime's
 * per-node overhead (and in session creation) than in arithmetic; each row's statistic is the same either way.
 */
export const GROUP_MAX_ROW = 1 << 14;

interface Half {
  site: Site;
  h: number;
  tensor: string;
  /** Probed dims (null: unknown) and whether a row is whole blocks of TAIL_BLOCK. */
  dims: number[] | null;
  wholeBlocks: boolean;
}

/** The probed dims of a site's halves (null where unknown). */
function halfDims(site: Site, shapes?: ReadonlyMap<string, readonly number[]>): (number[] | null)[] {
  const dims = shapes?.get(site.tensor) ?? null;
  if (site.split === null) return [dims && [...dims]];
  return [0, 1].map((h) => (dims && dims.length > 1 ? dims.map((d, k) => (k === 1 ? (h === 0 ? site.split! : dims[1]! - site.split!) : d)) : null));
}

/** A site's halves (its tensor, or the two Slices of a split site, which are added to the model here). */
function siteHalves(model: ModelMsg, site: Site, shapes?: ReadonlyMap<string, readonly number[]>): Half[] {
  const channels = siteChannels(model, site);
  const dims = halfDims(site, shapes);
  if (site.split === null) return [{ site, h: 0, tensor: site.tensor, dims: dims[0]!, wholeBlocks: channels !== null && channels % TAIL_BLOCK === 0 }];
  // slice the two halves along the channel axis
  const b = new GraphBuilder(`dq_split/${site.id}`);
  const big = b.i64([2 ** 62]);
  const tensors = [b.op('Slice', [site.tensor, b.i64([0]), b.i64([site.split]), b.i64([1])], {}, 'a'), b.op('Slice', [site.tensor, b.i64([site.split]), big, b.i64([1])], {}, 'b')];
  embedFragment(model, b.fragment([], [], 13), { after: site.tensor });
  return tensors.map((tensor, h) => {
    const ch = channels === null ? null : h === 0 ? site.split! : channels - site.split!;
    return { site, h, tensor, dims: dims[h]!, wholeBlocks: ch !== null && ch % TAIL_BLOCK === 0 };
  });
}

/** The group key of a half with these dims, if it can be tapped with others of its shape (null: tapped alone). */
function groupKey(dims: number[] | null): string | null {
  if (!dims || dims.length < 2 || dims.some((d) => !(d > 0))) return null;
  const m = dims.slice(1).reduce((a, d) => a * d, 1);
  return m <= GROUP_MAX_ROW ? dims.join('x') : null;
}

/**
 * Adds statistics outputs for every site; returns the output names per site half. With `shapes` (site tensor ->
 * dims, from probeSiteShapes) small halves of one shape share their statistics nodes (GROUP_MAX_ROW); the model then
 * takes inputs of the probed sizes only (any number of rows).
 */
export function addStatTaps(model: ModelMsg, sites: Site[], opts: { shapes?: ReadonlyMap<string, readonly number[]>; slice?: number } = {}): TapNames[][] {
  const { shapes, slice = 0 } = opts;
  const graph = model.graph!;
  const ValueInfo = ModelProto.lookupType('onnx.ValueInfoProto');
  const outputs: string[] = [];
  // block indices of the bulk samples, shared by every site (a bulk sample has at most 2 x BULK_SAMPLES blocks)
  const Tensor = ModelProto.lookupType('onnx.TensorProto');
  const arange = BigInt64Array.from({ length: 2 * BULK_SAMPLES }, (_, i) => BigInt(i));
  // the bin widths a row can take, and their inverses (exact powers of two: a table, not Pow)
  const pow2 = Float32Array.from({ length: POW2_MAX - POW2_MIN + 1 }, (_, i) => 2 ** (POW2_MIN + i));
  const inv = pow2.map((w) => 1 / w);
  graph.initializer = [
    ...(graph.initializer ?? []),
    Tensor.fromObject({ name: ARANGE, dims: [arange.length], data_type: 7, raw_data: new Uint8Array(arange.buffer) }) as never,
    Tensor.fromObject({ name: POW2, dims: [pow2.length], data_type: 1, raw_data: new Uint8Array(pow2.buffer) }) as never,
    Tensor.fromObject({ name: INV_POW2, dims: [inv.length], data_type: 1, raw_data: new Uint8Array(inv.buffer) }) as never,
  ];
  const halves = sites.map((site) => siteHalves(model, site, shapes));
  const groups = new Map<string, Half[]>();
  for (const x of halves.flat()) {
    const k = groupKey(x.dims);
    if (k !== null) groups.set(k, [...(groups.get(k) ?? []), x]);
  }
  const grouped = new Map<Half, TapNames>();
  [...groups.values()].filter((g) => g.length > 1).forEach((members, k) => {
    const p = `dq_stat/g${slice}_${k}`;
    const names: TapNames = { min: `${p}_min`, max: `${p}_max`, width: `${p}_width`, hist: `${p}_hist` };
    const m = members[0]!.dims!.slice(1).reduce((a, d) => a * d, 1);
    const b = new GraphBuilder(`${p}/stack`);
    const stacked = b.op('Concat', members.map((x) => b.op('Reshape', [x.tensor, b.i64([0, 1, -1])])), { axis: int(1) });
    const rows = b.op('Reshape', [stacked, b.i64([-1, m])], {}, 'rows');
    embedFragment(model, b.fragment([], [{ name: rows, dtype: 'float32', dims: null }], 13));
    // (every member's channels are whole blocks, or its rows are padded: m is the same for all)
    embedFragment(model, siteStatistics(rows, names, `${p}/s`, m % TAIL_BLOCK === 0, m));
    outputs.push(names.min, names.max, names.width, names.hist);
    members.forEach((x, index) => grouped.set(x, { ...names, group: { index, size: members.length } }));
  });
  const taps = halves.map((hs) => {
    const own = hs.filter((x) => !grouped.has(x));
    const names = hs.map((x) => {
      const g = grouped.get(x);
      if (g) return g;
      const n = tapNames(x.site.id, x.h);
      // placed right after the site's producer, so the statistics run while the tensor is fresh (and it can be freed)
      embedFragment(model, siteStatistics(x.tensor, n, `${n.min.slice(0, -'_min'.length)}/s`, x.wholeBlocks), { after: x.site.tensor });
      outputs.push(n.min, n.max, n.width, n.hist);
      return n;
    });
    // (a grouped half's statistics wait for the other members: gating on them could close a cycle)
    if (own.length === hs.length) gateConsumers(model, hs[0]!.site.tensor, names.map((t) => t.hist), `dq_gate/${hs[0]!.site.id}`);
    return names;
  });
  graph.output = [...(graph.output ?? []), ...outputs.map((name) => ValueInfo.fromObject({ name, type: { tensor_type: { elem_type: 1 } } }) as never)];
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
  const empty = stats.map((h) => b.op('Cast', [b.op('Slice', [b.op('Reshape', [h, b.i64([-1])]), b.i64([0]), b.i64([0])])], { to: int(7) }, 'empty'));
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
 * Per row of x (its first axis; the rest flattened to m elements): min, max, the bin width w (a power of two, see
 * WIDTH_FLOOR_LOG2) and the histogram on the grid k w: bin = clamp(floor(x / w) - floor(min / w), 0, bins - 1)
 * (x / w is exact: w is a power of two), counted with ScatterElements(add) into row r's HIST_BINS + 1 counts; NaNs
 * are counted in the extra bin, and a NaN activation makes min/max NaN, which quantization reports.
 *
 * One pass over x: each row's blocks of TAIL_BLOCK elements (the row zero-padded to whole blocks) are reduced to
 * block max and min; the row's min and max come from those (a padded zero can only widen the range to include 0,
 * which the quantizer parameters include anyway). The row's bulk sample is gathered, its TopK order statistics set
 * the row's tail thresholds (hiT >= 0 >= loT, so padded zeros are never tails), the blocks whose max or min lies
 * beyond them are gathered whole, and their elements counted with weight 1 if they are tails, 0 if not; bulk and
 * candidates are binned and counted together. Nothing mixes rows: a row's statistic is the same whichever rows share
 * its run.
 */
function siteStatistics(x: string, names: TapNames, prefix: string, wholeBlocks: boolean, staticRow?: number) {
  const b = new GraphBuilder(prefix);
  const B1 = HIST_BINS + 1;
  const i32s = (v: number) => b.init('k', 'int32', [], Int32Array.of(v));
  const rowsOf = b.op('Reshape', [x, b.i64([0, -1])], {}, 'rows');
  const shape = b.op('Shape', [rowsOf], {}, 'shape');
  const R = b.op('Slice', [shape, b.i64([0]), b.i64([1])], {}, 'R');
  const m = b.op('Slice', [shape, b.i64([1]), b.i64([2])], {}, 'm');
  const T = TAIL_BLOCK;
  // A row of a static length below 2 x BULK_SAMPLES is its own bulk sample (S = 1): every element is then counted
  // once with weight 1, either as a bulk sample or as a tail, so its histogram is the plain count of its elements'
  // bins, and neither the bulk gather nor the tail search is needed (the same counts, bit for bit).
  const whole = staticRow !== undefined && bulkStride(staticRow) === 1;
  let bmax = '';
  let bmin = '';
  let blocks = '';
  if (whole) {
    // (the zeros that pad a row to whole blocks belong to its min and max)
    const pad = (v: string, op: 'Min' | 'Max') => (wholeBlocks ? v : b.op(op, [v, b.f32(0)]));
    b.opTo(names.min, 'Identity', [pad(b.op('ReduceMin', [rowsOf, b.i64([1])], { keepdims: int(0) }), 'Min')]);
    b.opTo(names.max, 'Identity', [pad(b.op('ReduceMax', [rowsOf, b.i64([1])], { keepdims: int(0) }), 'Max')]);
  } else {
    // (a row whose length is a multiple of TAIL_BLOCK needs no padding, and Pad would copy it)
    const padded = wholeBlocks
      ? rowsOf
      : b.op('Pad', [rowsOf, b.op('Concat', [b.i64([0, 0, 0]), b.op('Mod', [b.op('Sub', [b.i64([T]), b.op('Mod', [m, b.i64([T])])]), b.i64([T])])], { axis: int(0) })]);
    blocks = b.op('Reshape', [padded, b.i64([0, -1, T])], {}, 'blocks');
    bmax = b.op('ReduceMax', [blocks, b.i64([2])], { keepdims: int(0) }, 'bmax');
    bmin = b.op('ReduceMin', [blocks, b.i64([2])], { keepdims: int(0) }, 'bmin');
    b.opTo(names.min, 'ReduceMin', [bmin, b.i64([1])], { keepdims: int(0) });
    b.opTo(names.max, 'ReduceMax', [bmax, b.i64([1])], { keepdims: int(0) });
  }

  // the row's bin width: the least tabled power of two >= target (a count of the powers below it)
  const absmax = b.op('Max', [b.op('Neg', [names.min]), names.max], {}, 'absmax');
  const target = b.op('Max', [b.op('Mul', [b.op('Sub', [names.max, names.min]), b.f32(1 / (HIST_BINS - 2))]), b.op('Mul', [absmax, b.f32(2 ** -WIDTH_FLOOR_LOG2)])], {}, 'target');
  const below = b.op('Cast', [b.op('Less', [POW2, b.op('Unsqueeze', [target, b.i64([1])])])], { to: int(1) });
  const e = b.op('Min', [b.op('Cast', [b.op('ReduceSum', [below, b.i64([1])], { keepdims: int(0) })], { to: int(7) }), b.i64([POW2_MAX - POW2_MIN])], {}, 'e');
  b.opTo(names.width, 'Gather', [POW2, e], { axis: int(0) });
  const invW = b.op('Gather', [INV_POW2, e], { axis: int(0) }, 'inv_w');
  const j0 = b.op('Floor', [b.op('Mul', [names.min, invW])], {}, 'j0');
  // bin of v (shape [.., n]) given its row's 1 / w and j0 (shape [.., 1]), plus the row's offset r (HIST_BINS + 1);
  // int32 indices (a run's counts are far fewer than 2^31): half the memory traffic of int64
  const binOf = (v: string, inv: string, first: string, rowOff: string) => {
    const t = b.op('Sub', [b.op('Floor', [b.op('Mul', [v, inv])]), first]);
    const clamped = b.op('Clip', [t, b.f32(0), b.f32(HIST_BINS - 1)]);
    const bin = b.op('Cast', [b.op('Where', [b.op('Equal', [v, v]), clamped, b.f32(HIST_BINS)], {}, 'bin')], { to: int(6) }, 'idx');
    return b.op('Reshape', [b.op('Add', [bin, rowOff]), b.i64([-1])], {}, 'flat_idx');
  };
  const col = (v: string) => b.op('Unsqueeze', [v, b.i64([1])]);

  // row offsets into the flat [rows x (HIST_BINS + 1)] counts
  const rowIdx = b.op('Range', [i32s(0), b.op('Cast', [b.op('Squeeze', [R, b.i64([0])])], { to: int(6) }), i32s(1)], {}, 'row');
  const rowOff = col(b.op('Mul', [rowIdx, i32s(B1)], {}, 'row_off'));
  // float32 counts are exact (a row counts far fewer than 2^24 per bin) and scatter faster than int64
  const zeros = b.op('Expand', [b.f32(0), b.op('Mul', [R, b.i64([B1])])], {}, 'zeros');
  const scatter = (into: string, idx: string, w: string) => b.op('ScatterElements', [into, idx, b.op('Reshape', [w, b.i64([-1])])], { axis: int(0), reduction: { type: 'string', value: 'add' } }, 'counts');
  const outs = [names.min, names.max, names.width].map((name) => ({ name, dtype: 'float32' as const, dims: null }));
  if (whole) {
    const idx = binOf(rowsOf, col(invW), col(j0), rowOff);
    b.opTo(names.hist, 'Reshape', [scatter(zeros, idx, b.op('Expand', [b.f32(1), b.op('Shape', [idx])])), b.i64([-1, B1])]);
    return b.fragment([], [...outs, { name: names.hist, dtype: 'float32', dims: null }], 18);
  }

  // bulk sample: element (block S + bulkOffset(block, S)) of each row, for every block of S elements
  const S = b.op('Add', [b.op('Mul', [b.op('Div', [m, b.i64([2 * BULK_SAMPLES])]), b.i64([2])]), b.i64([1])], {}, 'S');
  const nS = b.op('Div', [b.op('Sub', [b.op('Add', [m, S]), b.i64([1])]), S], {}, 'nS');
  const block = b.op('Slice', [ARANGE, b.i64([0]), nS], {}, 'block');
  const at = b.op('Add', [b.op('Mul', [block, S]), b.op('Mod', [b.op('Mul', [block, b.i64([OFFSET_PRIME])]), S])], {}, 'at');
  const real = b.op('Less', [at, m], {}, 'real');
  const bulk = b.op('Gather', [rowsOf, b.op('Min', [at, b.op('Sub', [m, b.i64([1])])])], { axis: int(1) }, 'bulk');

  // tail thresholds per row: hiT is the k-th largest and loT the k-th smallest bulk sample, k = max(1,
  // floor(samples x TAIL_QUANTILE)) (TopK: exact, where bins are coarse); hiT >= 0 >= loT. Shape [rows, 1].
  const kq = b.op('Max', [b.op('Div', [nS, b.i64([Math.round(1 / TAIL_QUANTILE)])]), b.i64([1])], {}, 'kq');
  const kth = (largest: 0 | 1) => {
    const [top] = b.opMulti('TopK', [bulk, kq], 2, { axis: int(1), largest: int(largest), sorted: int(0) }, 'top');
    return b.op(largest ? 'ReduceMin' : 'ReduceMax', [top!, b.i64([1])], { keepdims: int(1) });
  };
  const hiT = b.op('Max', [kth(1), b.f32(0)], {}, 'hi_t');
  const loT = b.op('Min', [kth(0), b.f32(0)], {}, 'lo_t');
  const isTail = (v: string, hi: string, lo: string) => b.op('Or', [b.op('Greater', [v, hi]), b.op('Less', [v, lo])], {}, 'tail');

  // tails: the blocks holding one, gathered whole ([K, TAIL_BLOCK], with their rows); their non-tail elements get weight 0
  const hasTail = b.op('Or', [b.op('Greater', [bmax, hiT]), b.op('Less', [bmin, loT])], {}, 'has_tail');
  const nz = b.op('NonZero', [hasTail], {}, 'nz');
  const cand = b.op('GatherND', [blocks, b.op('Transpose', [nz], { perm: { type: 'ints', value: [1, 0] } })], {}, 'cand');
  const candRow = b.op('Reshape', [b.op('Slice', [nz, b.i64([0]), b.i64([1])]), b.i64([-1])], {}, 'cand_row');
  // each candidate's row parameters (one gather for the four): hiT, loT, 1 / w, j0, each [K, 1]
  const perRow = b.op('Concat', [hiT, loT, col(invW), col(j0)], { axis: int(1) }, 'per_row');
  const [cHi, cLo, cInv, cJ0] = b.opMulti('Split', [b.op('Gather', [perRow, candRow], { axis: int(0) })], 4, { axis: int(1), num_outputs: int(4) }, 'cand_p');

  // weights: a bulk sample S unless it is a tail; a candidate 1 if it is a tail. One binning and one count for both.
  const bulkW = b.op('Mul', [b.op('Cast', [b.op('And', [b.op('Not', [isTail(bulk, hiT, loT)]), real])], { to: int(1) }), b.op('Cast', [S], { to: int(1) })], {}, 'bulk_w');
  const candW = b.op('Cast', [isTail(cand, cHi!, cLo!)], { to: int(1) }, 'cand_w');
  // the bulk and the candidates counted by two scatters (no concatenation of their indices and weights)
  const candOff = col(b.op('Mul', [b.op('Cast', [candRow], { to: int(6) }), i32s(B1)]));
  const counts = scatter(scatter(zeros, binOf(bulk, col(invW), col(j0), rowOff), bulkW), binOf(cand, cInv!, cJ0!, candOff), candW);
  b.opTo(names.hist, 'Reshape', [counts, b.i64([-1, B1])]);
  return b.fragment([], [...outs, { name: names.hist, dtype: 'float32', dims: null }], 18);
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

/**
 * The dims of the site tensors that scale with the batch, for addStatTaps' groups: two runs of a copy of the network
 * with the site tensors as outputs, on `feeds` (any rows: only dims are kept) and on their first half. A tensor is kept
 * when its first axis halves with the rows and nothing else changes, so that two tensors of equal dims here have
 * equal dims at any number of rows; the others (and any the runs do not give) are left out: tapped alone.
 */
export async function probeSiteShapes(model: ModelMsg, sites: Site[], feeds: Record<string, FeedValue>, create: (probe: ModelMsg) => Promise<Session>): Promise<Map<string, number[]>> {
  const rows = Object.values(feeds).find((v) => v.dims.length > 0)?.dims[0] ?? 0;
  const shapes = new Map<string, number[]>();
  if (rows < 2 || rows % 2) return shapes;
  const copy = ModelProto.decode(ModelProto.encode(model).finish()) as unknown as ModelMsg;
  const graph = copy.graph!;
  const inputs = new Set((graph.input ?? []).map((i) => i.name ?? ''));
  const have = new Set((graph.output ?? []).map((o) => o.name ?? ''));
  const names = [...new Set(sites.map((s) => s.tensor))].filter((n) => !inputs.has(n));
  const ValueInfo = ModelProto.lookupType('onnx.ValueInfoProto');
  graph.output = [...(graph.output ?? []), ...names.filter((n) => !have.has(n)).map((name) => ValueInfo.fromObject({ name, type: { tensor_type: { elem_type: 1 } } }) as never)];
  const session = await create(copy);
  try {
    const half: Record<string, FeedValue> = {};
    for (const [k, v] of Object.entries(feeds)) {
      half[k] = v.dims.length && v.dims[0] === rows ? ({ ...v, data: v.data.subarray(0, v.data.length / 2), dims: [rows / 2, ...v.dims.slice(1)] } as FeedValue) : v;
    }
    const [full, part] = [await session.run(feeds, names), await session.run(half, names)];
    for (const n of names) {
      const a = full[n]?.dims;
      const b = part[n]?.dims;
      if (!a || !b || a.length < 2 || a.length !== b.length || a[0] !== 2 * b[0]! || a.some((d, k) => k > 0 && d !== b[k])) continue;
      shapes.set(n, [...b]);
    }
  } finally {
    await session.release();
  }
  return shapes;
}

/**
 * Sites per statistics session. onnxruntime's session creation grows faster than linearly with the graph's size:
 * the SD 1.5-topology fixture (tools/make_sd15_unet.py) with all 198 sites tapped in one graph (29k nodes) took
 * 170 s to create on 2 cores, with 50 sites 8 s. So a model with many sites gets its statistics from several copies
 * of the network, each tapping a slice of the sites, run on the same feeds (more network evaluations per tapped step,
 * in exchange for minutes of set-up; small models keep one session).
 */
export const SITES_PER_SESSION = 48;

export interface StatSessions {
  /** The first slice's session: it also gives the network's output (the sampler's StepTap session). */
  session: Session;
  fetch: string[];
  /** Every site's output names, in the order of the sites given. */
  taps: TapNames[][];
  /** Runs the other slices' sessions on the same feeds; their statistics outputs (none with one slice). */
  more(feeds: Record<string, FeedValue>): Promise<Record<string, TensorOut>>;
  release(): Promise<void>;
}

/**
 * The statistics sessions for `sites` of `model` (which is changed: it becomes the first slice's graph). `create`
 * makes a session of a tapped copy (e.g. from its bytes, or from a file written beside external data).
 */
export async function statSessions(
  model: ModelMsg,
  sites: Site[],
  create: (tapped: ModelMsg, slice: number) => Promise<Session>,
  opts: { perSession?: number; shapes?: ReadonlyMap<string, readonly number[]> } = {},
): Promise<StatSessions> {
  const { perSession = SITES_PER_SESSION, shapes } = opts;
  // at most perSession statistics subgraphs a slice: a site tapped alone is one, a group of halves of one shape one
  const slices: Site[][] = [];
  let units = new Set<string>();
  for (const site of sites) {
    const keys = halfDims(site, shapes).map((d) => groupKey(d) ?? `site ${site.id}`);
    const next = new Set([...units, ...keys]);
    if (slices.length && next.size <= perSession) {
      slices.at(-1)!.push(site);
      units = next;
    } else {
      slices.push([site]);
      units = new Set(keys);
    }
  }
  if (!slices.length) slices.push([]);
  // copies are taken before the first slice's taps change the model
  const copies = slices.slice(1).map(() => ModelProto.decode(ModelProto.encode(model).finish()) as unknown as ModelMsg);
  const made: { session: Session; fetch: string[] }[] = [];
  const taps: TapNames[][] = [];
  try {
    for (const [k, slice] of slices.entries()) {
      const m = k === 0 ? model : copies[k - 1]!;
      const t = addStatTaps(m, slice, { shapes, slice: k });
      taps.push(...t);
      made.push({ session: await create(m, k), fetch: tapFetch(t) });
    }
  } catch (e) {
    await Promise.allSettled(made.map((s) => s.session.release()));
    throw e;
  }
  const [first, ...rest] = made;
  return {
    session: first!.session,
    fetch: first!.fetch,
    taps,
    async more(feeds) {
      const out: Record<string, TensorOut> = {};
      for (const r of rest) Object.assign(out, await r.session.run(feeds, r.fetch));
      return out;
    },
    async release() {
      await Promise.allSettled(made.map((s) => s.session.release()));
    },
  };
}
