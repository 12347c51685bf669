/**
 * The comparison's sampling loop (src-main/core/pipeline/loop.ts, re-exported) and the seed-walk interpolation.
 */
export { buildFeeds, combineGuided, guidedRun, predictEps, runLoop, seedNoise, type LoopRequest, type LoopSettings, type StepView } from '../pipeline/loop.js';

/**
 * Spherical interpolation between two noise vectors: the angle to `a` grows linearly with `t`, and for vectors of
 * equal norm the result keeps that norm (a Gaussian sample stays a typical one). Falls back to linear
 * interpolation when the vectors are (anti)parallel to working precision.
 */
export function slerp(a: Float64Array, b: Float64Array, t: number): Float64Array {
  if (a.length !== b.length) throw new Error('slerp needs two vectors of the same length');
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  const cos = Math.min(1, Math.max(-1, dot / Math.sqrt(na * nb)));
  const theta = Math.acos(cos);
  const out = new Float64Array(a.length);
  const s = Math.sin(theta);
  if (!(s > 1e-8)) {
    for (let i = 0; i < a.length; i++) out[i] = (1 - t) * a[i]! + t * b[i]!;
    return out;
  }
  const ca = Math.sin((1 - t) * theta) / s;
  const cb = Math.sin(t * theta) / s;
  for (let i = 0; i < a.length; i++) out[i] = ca * a[i]! + cb * b[i]!;
  return out;
}
