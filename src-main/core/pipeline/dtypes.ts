/**
 * Float tensors as the graphs declare them: our numerics run in float32/float64, an fp16 graph takes and gives
 * float16. Feeds are converted to the input's declared type here, outputs back to float32, in one place.
 */
import { fromHalfArray, toHalfArray } from '../../../kernels/half.js';
import { DqError } from '../errors.js';
import type { FeedValue, TensorOut } from '../runtime/onnx.js';

export type FloatType = 'float32' | 'float16';

export function isFloatType(t: string): t is FloatType {
  return t === 'float32' || t === 'float16';
}

/** A float feed of the given type from float values. */
export function floatFeed(type: FloatType, data: ArrayLike<number>, dims: readonly number[]): FeedValue {
  if (type === 'float16') return { type, data: toHalfArray(data), dims };
  return { type, data: data instanceof Float32Array ? data : Float32Array.from(data), dims };
}

/** A float output as float32 values (float16 converted, float32 as it is). */
export function asFloat32(out: TensorOut, what: string): Float32Array {
  if (out.type === 'float32') return out.data as Float32Array;
  if (out.type === 'float16') return fromHalfArray(out.data as Uint16Array);
  throw new DqError('BAD_MODEL', `${what} has type ${out.type}; float32 or float16 expected`);
}

/** An integer-ids feed (int32 or int64), as the graph declares it. */
export function idsFeed(type: 'int32' | 'int64', ids: ArrayLike<number>, dims: readonly number[]): FeedValue {
  if (type === 'int32') return { type, data: Int32Array.from(ids), dims };
  const d = new BigInt64Array(ids.length);
  for (let i = 0; i < ids.length; i++) d[i] = BigInt(ids[i]!);
  return { type, data: d, dims };
}
