/**
 * Pictures for the comparison: difference heatmaps (a fixed perceptual colour ramp on a shared scale), RGB frames
 * for videos, and SVG line charts for the report. All pure functions of their inputs.
 */
import { layoutGrid, type GridSpec, type RasterImage } from '../image/grid.js';

/** Colour stops of the heat ramp (an inferno-like ramp: dark for no difference, pale yellow for the largest). */
export const RAMP: [number, [number, number, number]][] = [
  [0, [0, 0, 4]],
  [0.25, [87, 16, 110]],
  [0.5, [188, 55, 84]],
  [0.75, [249, 142, 9]],
  [1, [252, 255, 164]],
];

/** The ramp colour (0-255 RGB) of v in [0, 1] (clamped; NaN counts as 0). */
export function heatColor(v: number): [number, number, number] {
  const x = v > 0 ? Math.min(1, v) : 0;
  for (let i = 1; i < RAMP.length; i++) {
    const [x1, c1] = RAMP[i]!;
    if (x <= x1) {
      const [x0, c0] = RAMP[i - 1]!;
      const f = (x - x0) / (x1 - x0);
      return [0, 1, 2].map((k) => Math.round(c0[k]! + f * (c1[k]! - c0[k]!))) as [number, number, number];
    }
  }
  return RAMP[RAMP.length - 1]![1];
}

/** Per-pixel |a - b| (mean over channels), images [C*H*W]. */
export function absDiff(a: Float32Array, b: Float32Array, shape: [number, number, number]): Float32Array {
  const [C, H, W] = shape;
  const plane = H * W;
  if (a.length !== C * plane || b.length !== a.length) throw new Error('absDiff: images do not match the shape');
  const out = new Float32Array(plane);
  for (let c = 0; c < C; c++) for (let i = 0; i < plane; i++) out[i]! += Math.abs(a[c * plane + i]! - b[c * plane + i]!) / C;
  return out;
}

/** A heat-coloured image (3 planes, model space [-1, 1], as layoutGrid takes them) of a difference map / scale. */
export function heatImage(diff: Float32Array, scale: number): Float32Array {
  const n = diff.length;
  const out = new Float32Array(3 * n);
  for (let i = 0; i < n; i++) {
    const rgb = heatColor(scale > 0 ? diff[i]! / scale : 0);
    for (let k = 0; k < 3; k++) out[k * n + i] = (rgb[k]! / 255) * 2 - 1;
  }
  return out;
}

/** An image as 3 planes (grey images are repeated). */
export function toRgbPlanes(img: Float32Array, channels: number): Float32Array {
  if (channels === 3) return img;
  if (channels !== 1) throw new Error(`only 1- or 3-channel images can be shown, got ${channels}`);
  const out = new Float32Array(img.length * 3);
  for (let k = 0; k < 3; k++) out.set(img, k * img.length);
  return out;
}

/** A label the 3x5 font can draw, at most `max` characters. */
export function label(text: string, max = 16): string {
  const s = text.toUpperCase().replace(/[^A-Z0-9 \-.:=+/_?%()]/g, '_');
  return s.length > max ? s.slice(0, max - 1) + '.' : s;
}

/** A prompt as a grid row label: what the font draws (other characters become '_'), cut to `max` characters with an ellipsis. */
export function promptLabel(text: string, max = 28): string {
  const s = text.replace(/\s+/g, ' ').trim().toUpperCase().replace(/[^A-Z0-9 \-.:=+/_?%(),'"!]/g, '_');
  return s.length > max ? `${s.slice(0, max - 1).trimEnd()}…` : s;
}

/** A grid laid out as RGB (for video frames and heatmaps). */
export function layoutRgb(spec: Omit<GridSpec, 'channels'> & { channels: number }): RasterImage {
  const cells = spec.cells.map((row) => row.map((img) => (img ? toRgbPlanes(img, spec.channels) : null)));
  return layoutGrid({ ...spec, cells, channels: 3 });
}

/** Pads a raster to even width and height with white (H.264 in yuv420p needs even sizes). */
export function padEven(img: RasterImage): RasterImage {
  const W = img.width + (img.width % 2);
  const H = img.height + (img.height % 2);
  if (W === img.width && H === img.height) return img;
  const ch = img.channels;
  const out = new Uint8Array(W * H * ch).fill(255);
  for (let y = 0; y < img.height; y++) out.set(img.data.subarray(y * img.width * ch, (y + 1) * img.width * ch), y * W * ch);
  return { data: out, width: W, height: H, channels: ch };
}

export const SERIES_COLOURS = ['#222222', '#d62728', '#1f77b4', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf', '#bcbd22'];

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** A round axis maximum >= v and the number of gridline divisions that keeps tick values round. */
function niceAxis(v: number): { max: number; divisions: number } {
  if (!(v > 0) || !Number.isFinite(v)) return { max: 1, divisions: 5 };
  const p = 10 ** Math.floor(Math.log10(v));
  for (const [m, d] of [[1, 5], [2, 4], [2.5, 5], [5, 5], [10, 5]] as const) if (v <= m * p * (1 + 1e-12)) return { max: m * p, divisions: d };
  return { max: 10 * p, divisions: 5 };
}

function fmt(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a >= 1e4 || a < 1e-3 ? v.toExponential(1) : String(parseFloat(v.toPrecision(3)));
}

export interface ChartSeries {
  name: string;
  colour: string;
  values: (number | null)[];
}

/**
 * A line chart as an SVG element (no scripts, no external resources). x: one tick per point, evenly spaced, or at
 * `xValues` on a linear axis (a measured quantity, e.g. bits per weight; labels that would overlap are left out).
 */
export function svgLineChart(opts: { title: string; xLabels: string[]; xValues?: number[]; xTitle: string; yTitle: string; series: ChartSeries[]; width?: number; height?: number }): string {
  const W = opts.width ?? 720;
  const H = opts.height ?? 300;
  const m = { l: 64, r: 150, t: 28, b: 44 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const n = opts.xLabels.length;
  const all = opts.series.flatMap((s) => s.values.filter((v): v is number => v !== null && Number.isFinite(v)));
  const { max: ymax, divisions } = niceAxis(Math.max(0, ...all));
  const xv = opts.xValues && opts.xValues.length === n ? opts.xValues : null;
  const x0 = xv ? Math.min(...xv) : 0;
  const x1 = xv ? Math.max(...xv) : 0;
  const X = (i: number) => (xv ? m.l + (x1 > x0 ? ((xv[i]! - x0) / (x1 - x0)) * pw : pw / 2) : m.l + (n <= 1 ? pw / 2 : (i * pw) / (n - 1)));
  const Y = (v: number) => m.t + ph - (v / ymax) * ph;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${escapeXml(opts.title)}">`);
  parts.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#fff"/>`);
  parts.push(`<text x="${m.l}" y="18" font-size="13" font-family="sans-serif" font-weight="bold">${escapeXml(opts.title)}</text>`);
  for (let k = 0; k <= divisions; k++) {
    const v = (ymax * k) / divisions;
    const y = Y(v).toFixed(1);
    parts.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${y}" y2="${y}" stroke="#e3e3e3"/>`);
    parts.push(`<text x="${m.l - 6}" y="${y}" font-size="10" font-family="sans-serif" text-anchor="end" dominant-baseline="middle">${fmt(v)}</text>`);
  }
  const every = Math.max(1, Math.ceil(n / 12));
  let lastX = -Infinity;
  opts.xLabels.forEach((l, i) => {
    if (xv ? X(i) - lastX < 30 : i % every !== 0 && i !== n - 1) return;
    lastX = X(i);
    parts.push(`<text x="${X(i).toFixed(1)}" y="${m.t + ph + 14}" font-size="10" font-family="sans-serif" text-anchor="middle">${escapeXml(l)}</text>`);
  });
  parts.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${m.t + ph}" y2="${m.t + ph}" stroke="#888"/>`);
  parts.push(`<line x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${m.t + ph}" stroke="#888"/>`);
  parts.push(`<text x="${m.l + pw / 2}" y="${H - 8}" font-size="11" font-family="sans-serif" text-anchor="middle">${escapeXml(opts.xTitle)}</text>`);
  parts.push(
    `<text x="14" y="${m.t + ph / 2}" font-size="11" font-family="sans-serif" text-anchor="middle" transform="rotate(-90 14 ${m.t + ph / 2})">${escapeXml(opts.yTitle)}</text>`,
  );
  opts.series.forEach((s, k) => {
    // a polyline per run of defined values
    let run: string[] = [];
    const flush = () => {
      if (run.length > 1) parts.push(`<polyline fill="none" stroke="${s.colour}" stroke-width="2" points="${run.join(' ')}"/>`);
      if (run.length === 1) parts.push(`<circle cx="${run[0]!.split(',')[0]}" cy="${run[0]!.split(',')[1]}" r="2.5" fill="${s.colour}"/>`);
      run = [];
    };
    s.values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) flush();
      else run.push(`${X(i).toFixed(1)},${Y(v).toFixed(1)}`);
    });
    flush();
    const ly = m.t + 10 + k * 16;
    parts.push(`<line x1="${m.l + pw + 12}" x2="${m.l + pw + 30}" y1="${ly}" y2="${ly}" stroke="${s.colour}" stroke-width="2"/>`);
    parts.push(`<text x="${m.l + pw + 34}" y="${ly}" font-size="11" font-family="sans-serif" dominant-baseline="middle">${escapeXml(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('');
}
