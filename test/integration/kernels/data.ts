/**
 * Test data for the reference-vs-onnxruntime agreement: random and adversarial float32 tensors (grid points, exact
 * ties, one ulp either side of ties, saturation, specials, subnormals, random bit patterns), built per scale group
 * so that ties are ties in the scaled domain.
 */

export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const buf = new Float32Array(1);
const bits = new Uint32Array(buf.buffer);

/** The float32 next to v towards +Inf (dir 1) or -Inf (dir -1). */
export function nextFloat(v: number, dir: 1 | -1): number {
  buf[0] = v;
  if (v === 0) return dir * 2 ** -149;
  const up = (v > 0) === (dir > 0);
  bits[0] = bits[0]! + (up ? 1 : -1);
  return buf[0]!;
}

export function randomBits(r: () => number): number {
  bits[0] = Math.floor(r() * 4294967296);
  return buf[0]!;
}

export const SPECIALS = [NaN, Infinity, -Infinity, 0, -0, 3.4028234663852886e38, -3.4028234663852886e38, 2 ** -149, -(2 ** -149), 1e-40, -1e-40, 2 ** -126];

/** A standard normal sample. */
export function normal(r: () => number): number {
  return Math.sqrt(-2 * Math.log(r() || 1e-12)) * Math.cos(2 * Math.PI * r());
}

/**
 * One adversarial value for a group whose scale is s and whose grid (in units of s) has the sorted values `grid`
 * (both signs) and largest magnitude `max`.
 */
export function adversarial(r: () => number, s: number, grid: readonly number[], max: number): number {
  const u = r();
  const pick = (): number => grid[Math.floor(r() * grid.length)]!;
  if (u < 0.25) return Math.fround(normal(r) * s * max * 0.4);
  if (u < 0.45) return Math.fround(pick() * s);
  if (u < 0.65) {
    const i = Math.floor(r() * (grid.length - 1));
    return Math.fround(((grid[i]! + grid[i + 1]!) / 2) * s); // an exact tie when s is a power of two
  }
  if (u < 0.72) {
    const i = Math.floor(r() * (grid.length - 1));
    return nextFloat(Math.fround(((grid[i]! + grid[i + 1]!) / 2) * s), r() < 0.5 ? 1 : -1);
  }
  if (u < 0.8) return Math.fround((r() < 0.5 ? -1 : 1) * max * s * (1 + r() * 3));
  if (u < 0.88) return SPECIALS[Math.floor(r() * SPECIALS.length)]!;
  if (u < 0.94) return Math.fround((r() < 0.5 ? -1 : 1) * r() * 2 ** -126); // subnormals
  return randomBits(r);
}

/** A scale for one group: mostly powers of two and ordinary floats, sometimes huge, tiny or subnormal. */
export function adversarialScale(r: () => number): number {
  const u = r();
  if (u < 0.4) return 2 ** (Math.floor(r() * 49) - 24);
  if (u < 0.8) return Math.fround(2 ** (r() * 60 - 30));
  const odd = [2 ** 100, 2 ** -100, 3e-39, 1e30, 1e-30, 2 ** -126, 0.1, 3.4e35];
  return Math.fround(odd[Math.floor(r() * odd.length)]!);
}
