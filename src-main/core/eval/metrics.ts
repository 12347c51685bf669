/**
 * Image and distribution metrics, written out by hand because they are the product's yardsticks:
 * PSNR, SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03), and the Frechet distance
 * between Gaussians fitted to feature sets (the FID formula), with a numerically sound matrix square root.
 */
import { symmetricEigen } from '../../../kernels/linalg.js';

export { symmetricEigen };

/** PSNR in dB of `b` against reference `a`; `range` is the data range (2 for model space [-1, 1]). */
export function psnr(a: ArrayLike<number>, b: ArrayLike<number>, range = 2): number {
  if (a.length !== b.length || a.length === 0) throw new Error('psnr needs two equal, non-empty images');
  let se = 0;
  for (let i = 0; i < a.length; i++) se += (a[i]! - b[i]!) ** 2;
  const mse = se / a.length;
  return mse === 0 ? Infinity : 10 * Math.log10((range * range) / mse);
}

function gaussianWindow(size: number, sigma: number): Float64Array {
  const w = new Float64Array(size);
  const c = (size - 1) / 2;
  let s = 0;
  for (let i = 0; i < size; i++) s += w[i] = Math.exp(-((i - c) ** 2) / (2 * sigma * sigma));
  for (let i = 0; i < size; i++) w[i]! /= s;
  return w;
}

/** Separable 'valid' filtering of an h x w plane with a 1-D window along both axes. */
function filterValid(x: Float64Array, h: number, w: number, win: Float64Array): { data: Float64Array; h: number; w: number } {
  const k = win.length;
  const oh = h - k + 1;
  const ow = w - k + 1;
  const tmp = new Float64Array(h * ow);
  for (let y = 0; y < h; y++) for (let x0 = 0; x0 < ow; x0++) {
    let s = 0;
    for (let j = 0; j < k; j++) s += win[j]! * x[y * w + x0 + j]!;
    tmp[y * ow + x0] = s;
  }
  const out = new Float64Array(oh * ow);
  for (let y0 = 0; y0 < oh; y0++) for (let x0 = 0; x0 < ow; x0++) {
    let s = 0;
    for (let j = 0; j < k; j++) s += win[j]! * tmp[(y0 + j) * ow + x0]!;
    out[y0 * ow + x0] = s;
  }
  return { data: out, h: oh, w: ow };
}

/**
 * Mean SSIM over the valid region of each channel, averaged over channels. Images are [C, H, W] planes;
 * `range` is the data range. For images smaller than the window, the window shrinks to the image.
 */
export function ssim(a: ArrayLike<number>, b: ArrayLike<number>, shape: [number, number, number], range = 2): number {
  const [C, H, W] = shape;
  if (a.length !== C * H * W || b.length !== a.length) throw new Error('ssim: images do not match the shape');
  const size = Math.min(11, H, W);
  const win = gaussianWindow(size, 1.5);
  const c1 = (0.01 * range) ** 2;
  const c2 = (0.03 * range) ** 2;
  let total = 0;
  for (let c = 0; c < C; c++) {
    const pa = Float64Array.from({ length: H * W }, (_, i) => a[c * H * W + i]!);
    const pb = Float64Array.from({ length: H * W }, (_, i) => b[c * H * W + i]!);
    const f = (x: Float64Array) => filterValid(x, H, W, win).data;
    const muA = f(pa);
    const mb = f(pb);
    const saa = f(pa.map((v) => v * v));
    const sbb = f(pb.map((v) => v * v));
    const sab = f(pa.map((v, i) => v * pb[i]!));
    let s = 0;
    for (let i = 0; i < muA.length; i++) {
      const ma = muA[i]!;
      const mbv = mb[i]!;
      const va = saa[i]! - ma * ma;
      const vb = sbb[i]! - mbv * mbv;
      const cov = sab[i]! - ma * mbv;
      s += ((2 * ma * mbv + c1) * (2 * cov + c2)) / ((ma * ma + mbv * mbv + c1) * (va + vb + c2));
    }
    total += s / muA.length;
  }
  return total / C;
}

/** Square root of a symmetric positive semi-definite matrix (negative round-off eigenvalues clamp to 0). */
export function sqrtPsd(m: Float64Array, n: number): Float64Array {
  const { values, vectors } = symmetricEigen(m, n);
  const out = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    const s = Math.sqrt(Math.max(0, values[k]!));
    if (s === 0) continue;
    for (let i = 0; i < n; i++) {
      const vik = vectors[i * n + k]! * s;
      for (let j = 0; j < n; j++) out[i * n + j]! += vik * vectors[j * n + k]!;
    }
  }
  return out;
}

export interface Gaussian {
  mean: Float64Array;
  cov: Float64Array;
  dim: number;
  n: number;
}

/** Mean and (unbiased) covariance of a set of feature vectors. */
export function fitGaussian(features: ArrayLike<number>[]): Gaussian {
  const n = features.length;
  if (n < 2) throw new Error('a Gaussian fit needs at least 2 feature vectors');
  const d = features[0]!.length;
  const mean = new Float64Array(d);
  for (const f of features) for (let i = 0; i < d; i++) mean[i]! += f[i]! / n;
  const cov = new Float64Array(d * d);
  const x = new Float64Array(d);
  for (const f of features) {
    for (let i = 0; i < d; i++) x[i] = f[i]! - mean[i]!;
    for (let i = 0; i < d; i++) {
      const xi = x[i]!;
      if (xi === 0) continue;
      for (let j = i; j < d; j++) cov[i * d + j]! += xi * x[j]!;
    }
  }
  for (let i = 0; i < d; i++) for (let j = i; j < d; j++) {
    const v = cov[i * d + j]! / (n - 1);
    cov[i * d + j] = v;
    cov[j * d + i] = v;
  }
  return { mean, cov, dim: d, n };
}

function matmul(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let k = 0; k < n; k++) {
    const aik = a[i * n + k]!;
    if (aik === 0) continue;
    for (let j = 0; j < n; j++) out[i * n + j]! += aik * b[k * n + j]!;
  }
  return out;
}

/**
 * Frechet distance ||m1 - m2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)). The trace term is computed as
 * Tr(sqrt(sqrt(S1) S2 sqrt(S1))), which is symmetric PSD, so no complex round-off arises.
 */
export function frechetDistance(g1: Gaussian, g2: Gaussian): number {
  if (g1.dim !== g2.dim) throw new Error('Frechet distance needs Gaussians of the same dimension');
  const n = g1.dim;
  let d2 = 0;
  for (let i = 0; i < n; i++) d2 += (g1.mean[i]! - g2.mean[i]!) ** 2;
  const r1 = sqrtPsd(g1.cov, n);
  const m = matmul(matmul(r1, g2.cov, n), r1, n);
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) {
    const s = (m[i * n + j]! + m[j * n + i]!) / 2; // symmetrise round-off
    m[i * n + j] = s;
    m[j * n + i] = s;
  }
  const { values } = symmetricEigen(m, n);
  let trSqrt = 0;
  for (const v of values) trSqrt += Math.sqrt(Math.max(0, v));
  let tr = 0;
  for (let i = 0; i < n; i++) tr += g1.cov[i * n + i]! + g2.cov[i * n + i]!;
  return Math.max(0, d2 + tr - 2 * trSqrt);
}
