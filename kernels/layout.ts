/**
 * Granularity: which elements of a tensor share a scale. Layouts follow ONNX QuantizeLinear:
 * - per tensor: one scale;
 * - per channel along `axis`: dims[axis] scales;
 * - per block along `axis` with `size` elements: a scale tensor shaped like x with dims[axis] replaced by
 *   dims[axis] / size (row-major), block j covering indices j*size .. j*size+size-1 along the axis.
 */

export type Granularity =
  | { kind: 'tensor' }
  | { kind: 'channel'; axis: number }
  | { kind: 'block'; axis: number; size: number };

export const PER_TENSOR: Granularity = { kind: 'tensor' };

/** outer x C x inner view of a tensor around an axis. */
export interface AxisView {
  outer: number;
  channels: number;
  inner: number;
}

export function numel(dims: readonly number[]): number {
  return dims.reduce((a, d) => a * d, 1);
}

export function normAxis(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) throw new RangeError(`axis ${axis} is out of range for rank ${rank}`);
  return a;
}

export function axisView(dims: readonly number[], axis: number): AxisView {
  const a = normAxis(axis, dims.length);
  return { outer: numel(dims.slice(0, a)), channels: dims[a]!, inner: numel(dims.slice(a + 1)) };
}

/** The scale (and zero-point) tensor's dims for a granularity. */
export function scaleDims(dims: readonly number[], g: Granularity): number[] {
  if (g.kind === 'tensor') return [];
  const a = normAxis(g.axis, dims.length);
  if (g.kind === 'channel') return [dims[a]!];
  if (!Number.isInteger(g.size) || g.size < 1 || dims[a]! % g.size !== 0)
    throw new RangeError(`block size ${g.size} does not divide dimension ${dims[a]} (axis ${a})`);
  const out = [...dims];
  out[a] = dims[a]! / g.size;
  return out;
}

/** For every element (row-major), the index of its scale. */
export function scaleIndex(dims: readonly number[], g: Granularity): Uint32Array {
  const n = numel(dims);
  const idx = new Uint32Array(n);
  if (g.kind === 'tensor') return idx;
  scaleDims(dims, g); // validates
  const { outer, channels, inner } = axisView(dims, g.axis);
  const size = g.kind === 'block' ? g.size : 1;
  const nb = channels / size;
  let i = 0;
  for (let o = 0; o < outer; o++)
    for (let c = 0; c < channels; c++) {
      const base = g.kind === 'channel' ? c : (o * nb + Math.floor(c / size)) * inner;
      for (let k = 0; k < inner; k++) idx[i++] = g.kind === 'channel' ? base : base + k;
    }
  return idx;
}

/**
 * Reduces min, max or max |x| over each scale group. NaNs are ignored (a group of NaNs only gives +Inf, -Inf and
 * 0): onnxruntime's ReduceMin/ReduceMax skip or keep NaNs depending on where they sit, so the in-graph statistics
 * mask them out first, and this does the same.
 */
export function groupReduce(
  x: Float32Array,
  dims: readonly number[],
  g: Granularity,
  kind: 'min' | 'max' | 'absmax',
): Float32Array {
  const idx = scaleIndex(dims, g);
  const groups = numel(scaleDims(dims, g));
  const init = kind === 'min' ? Infinity : kind === 'max' ? -Infinity : 0;
  const out = new Float64Array(groups).fill(init);
  for (let i = 0; i < x.length; i++) {
    const v = kind === 'absmax' ? Math.abs(x[i]!) : x[i]!;
    const j = idx[i]!;
    if (kind === 'min' ? v < out[j]! : v > out[j]!) out[j] = v; // false for NaN
  }
  return Float32Array.from(out);
}
