/**
 * In-graph calibration statistics. Each fragment reads one float32 tensor and returns small tensors only:
 * min/max/absmax (scalars or [C]), a histogram ([bins] int64 counts), or a Gram matrix ([K, K]).
 * The reference is ../stats.ts.
 */
import { normAxis } from '../layout.js';
import { histogramFactor, type HistogramSpec } from '../stats.js';
import { GraphBuilder, int, type Fragment } from './graph.js';
import type { FragmentNames } from './fakequant.js';

export const STATS_OPSET = 18; // ReduceMax/ReduceMin with axes as an input; ScatterElements with reduction

/**
 * Outputs `${output}_min`, `${output}_max`, `${output}_absmax`: scalars, or [dims[axis]] per channel. NaNs are
 * ignored, as in ../stats.ts minMax.
 */
export function minMaxFragment(dims: readonly number[] | null, axis?: number, names: FragmentNames = {}): Fragment {
  const input = names.input ?? 'x';
  const out = names.output ?? 'stats';
  const b = new GraphBuilder(names.prefix ?? 'minmax');
  const reduce = (op: string, x: string, to: string): void => {
    if (axis === undefined) b.opTo(to, op, [x], { keepdims: int(0) });
    else {
      if (!dims) throw new RangeError('per-channel statistics need the input dims');
      const a = normAxis(axis, dims.length);
      const axes = dims.map((_, i) => i).filter((i) => i !== a);
      if (axes.length === 0) b.opTo(to, 'Identity', [x]);
      else b.opTo(to, op, [x, b.i64(axes)], { keepdims: int(0) });
    }
  };
  // NaNs are masked out (onnxruntime's reductions skip or keep them depending on their position).
  const ok = b.op('Equal', [input, input], {}, 'not_nan');
  reduce('ReduceMin', b.op('Where', [ok, input, b.f32(Infinity)]), `${out}_min`);
  reduce('ReduceMax', b.op('Where', [ok, input, b.f32(-Infinity)]), `${out}_max`);
  reduce('ReduceMax', b.op('Where', [ok, b.op('Abs', [input]), b.f32(0)]), `${out}_absmax`);
  const od = axis === undefined || !dims ? [] : [dims[normAxis(axis, dims.length)]!];
  return b.fragment(
    [{ name: input, dtype: 'float32', dims: dims ? [...dims] : null }],
    ['min', 'max', 'absmax'].map((k) => ({ name: `${out}_${k}`, dtype: 'float32' as const, dims: od })),
    STATS_OPSET,
  );
}

/**
 * Histogram over [lo, hi) with `bins` equal bins (int64 counts; edges clamp, NaN is dropped), exactly as
 * ../stats.ts histogram: bin = clamp(floor((x - lo) * factor), 0, bins - 1), counted with ScatterElements(add).
 */
export function histogramFragment(dims: readonly number[], h: HistogramSpec, names: FragmentNames = {}): Fragment {
  const input = names.input ?? 'x';
  const output = names.output ?? 'hist';
  const b = new GraphBuilder(names.prefix ?? 'hist');
  const k = histogramFactor(h);
  const flat = b.op('Reshape', [input, b.i64([-1])], {}, 'flat');
  const t = b.op('Floor', [b.op('Mul', [b.op('Sub', [flat, b.f32(h.lo)]), b.f32(k)])]);
  const clamped = b.op('Clip', [t, b.f32(0), b.f32(h.bins - 1)]);
  // NaNs go to an extra bin (index `bins`) that is sliced off.
  const bin = b.op('Where', [b.op('Equal', [flat, flat]), clamped, b.f32(h.bins)], {}, 'bin');
  const idx = b.op('Cast', [bin], { to: int(7) }, 'idx');
  const ones = b.op('Expand', [b.init('one', 'int64', [1], BigInt64Array.of(1n)), b.op('Shape', [idx])], {}, 'ones');
  const zeros = b.init('zeros', 'int64', [h.bins + 1], new BigInt64Array(h.bins + 1));
  const counts = b.op('ScatterElements', [zeros, idx, ones], { axis: int(0), reduction: { type: 'string', value: 'add' } }, 'counts');
  b.opTo(output, 'Slice', [counts, b.i64([0]), b.i64([h.bins])]);
  return b.fragment([{ name: input, dtype: 'float32', dims: [...dims] }], [{ name: output, dtype: 'int64', dims: [h.bins] }], STATS_OPSET);
}

/** X^T X ([K, K] float32) of the input viewed as rows of dims[featureAxis] features. */
export function gramFragment(dims: readonly number[], featureAxis = -1, names: FragmentNames = {}): Fragment {
  const input = names.input ?? 'x';
  const output = names.output ?? 'gram';
  const b = new GraphBuilder(names.prefix ?? 'gram');
  const a = normAxis(featureAxis, dims.length);
  const k = dims[a]!;
  let x = input;
  if (a !== dims.length - 1) {
    const perm = [...dims.map((_, i) => i).filter((i) => i !== a), a];
    x = b.op('Transpose', [x], { perm: { type: 'ints', value: perm } });
  }
  const rows = b.op('Reshape', [x, b.i64([-1, k])], {}, 'rows');
  const rowsT = b.op('Transpose', [rows], { perm: { type: 'ints', value: [1, 0] } });
  b.opTo(output, 'MatMul', [rowsT, rows]);
  return b.fragment([{ name: input, dtype: 'float32', dims: [...dims] }], [{ name: output, dtype: 'float32', dims: [k, k] }], STATS_OPSET);
}
