/**
 * What the Ranges view computes from a calibration record: per-site values for the heatmap, percentiles from the
 * recorded histograms, and a number format's quantization grid (from kernels/) at a site's calibrated range.
 */
import { finiteValues, FORMATS, type FloatName } from '../../kernels/minifloat';
import { floatScale, intParams, intRange } from '../../kernels/quant';
import type { CalibrationView, StatView } from '../../src-main/contract/api';
import { histQuantile as quantile } from '../../kernels/stats';

export type Metric = 'absmax' | 'range';

export interface GridFormat {
  id: string;
  label: string;
  /** The representable values at this range (max calibration, one tensor-wide scale). */
  values(st: { min: number; max: number; absmax: number }): number[];
}

const floatFmt = (id: string, label: string, el: FloatName): GridFormat => ({
  id,
  label,
  values: (st) => {
    const s = floatScale(st.absmax, el);
    return finiteValues(FORMATS[el]).map((v) => v * s);
  },
});

const intFmt = (bits: number, symmetric: boolean): GridFormat => ({
  id: `int${bits}-${symmetric ? 'sym' : 'asym'}`,
  label: `INT${bits} ${symmetric ? 'symmetric' : 'asymmetric'}`,
  values: (st) => {
    const { scale, zeroPoint } = intParams(st.min, st.max, bits, symmetric);
    const { qmin, qmax } = intRange(bits, symmetric);
    return Array.from({ length: qmax - qmin + 1 }, (_, i) => (qmin + i - zeroPoint) * scale);
  },
});

export const GRID_FORMATS: GridFormat[] = [
  intFmt(8, false),
  intFmt(8, true),
  intFmt(4, false),
  floatFmt('fp8-e4m3', 'FP8 e4m3', 'e4m3fn'),
  floatFmt('fp8-e5m2', 'FP8 e5m2', 'e5m2'),
  floatFmt('fp6-e3m2', 'FP6 e3m2', 'e3m2'),
  floatFmt('fp4-e2m1', 'FP4 e2m1 (MXFP4 / NVFP4 elements, one scale)', 'e2m1'),
];

/** Both halves of a site at a step merged (a split site has two). */
export function merged(cal: CalibrationView, site: number, step: number): { min: number; max: number; absmax: number } | null {
  const halves = Object.values(cal.stats[site] ?? {})
    .map((h) => h[step])
    .filter((s): s is StatView => !!s);
  if (!halves.length) return null;
  return {
    min: Math.min(...halves.map((h) => h.min)),
    max: Math.max(...halves.map((h) => h.max)),
    absmax: Math.max(...halves.map((h) => h.absmax)),
  };
}

export function metricValue(s: { min: number; max: number; absmax: number }, m: Metric): number {
  return m === 'absmax' ? s.absmax : s.max - s.min;
}

/** The value below which a fraction q of the histogram's mass lies (linear within a bin); lo when empty. */
export function histQuantile(h: StatView['hist'], q: number): number {
  return quantile(h, q) ?? h.lo;
}

/** Which part of the denoiser the heatmap shows: every site, the time-only region, the text-only region, or the rest. */
export type Region = 'all' | 'time' | 'text' | 'frames' | 'spatial' | 'rest';
export const REGIONS: { id: Region; label: string }[] = [
  { id: 'all', label: 'all' },
  { id: 'time', label: 'time-only' },
  { id: 'text', label: 'text-only (cross-attention K/V)' },
  { id: 'frames', label: 'mixes frames (temporal conv / attention)' },
  { id: 'spatial', label: 'spatial (frame by frame)' },
  { id: 'rest', label: 'the rest (reads the sample)' },
];

export function inRegion(site: CalibrationView['sites'][number], r: Region): boolean {
  if (r === 'all') return true;
  if (r === 'time') return site.temporal;
  if (r === 'text') return site.text;
  if (r === 'frames') return site.frames;
  if (r === 'spatial') return !site.frames && !site.temporal && !site.text;
  return !site.temporal && !site.text;
}

/** Tags after a site's name in the heatmap rows. */
export function siteTags(site: CalibrationView['sites'][number]): string {
  return (site.split !== null ? ' [split]' : '') + (site.text ? ' [text]' : '') + (site.temporal ? ' [time]' : '') + (site.frames ? ' [frames]' : '');
}

export function siteLabel(site: CalibrationView['sites'][number]): string {
  const first = site.layers[0] ?? site.tensor;
  return `${first}${site.layers.length > 1 ? ` +${site.layers.length - 1}` : ''}`;
}

export interface BandPoint {
  min: number;
  max: number;
  /** Inner percentile band. */
  lo: number;
  hi: number;
  absmax: number;
}
