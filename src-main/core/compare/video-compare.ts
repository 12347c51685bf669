/**
 * Videos of several models (FP first) on the same prompts and seeds, frame by frame: a frame sheet per model (frame
 * k = the grid of every video's frame k), a difference heatmap sheet per variant on one shared scale, and per-frame
 * numbers (PSNR, SSIM and mean |difference| against FP, and each model's flicker: the frame-to-frame change). What the
 * studio's video A/B wipe, its heatmaps and `dq compare`'s report show. Pure functions of the videos.
 */
import { frameOf } from '../pipeline/codec.js';
import { psnr, ssim } from '../eval/metrics.js';
import type { RasterImage } from '../image/grid.js';
import { absDiff, heatImage, layoutRgb } from './render.js';
import { frameSheet } from './video.js';

export interface VideoModel {
  name: string;
  /** One video per grid cell (row-major: rows x cols), each [C, frames*H, W] in model space [-1, 1]. */
  videos: Float32Array[];
}

export interface VideoFrameStats {
  name: string;
  /** Per frame: the mean over videos of PSNR (dB) against FP's same frame (null where every video equals FP's). */
  psnrDb: (number | null)[];
  /** Per frame: the mean over videos of SSIM against FP's same frame. */
  ssim: number[];
  /** Per frame: mean |variant - FP| per pixel, model space. */
  meanAbs: number[];
  /** The mean squared frame-to-frame change over FP's (flickerOf); null when FP's videos are still. */
  flickerRatio: number | null;
}

export interface VideoComparison {
  /** Per model (FP first): its frames, each a grid (a row per `rows` label, a column per `cols` label). */
  frames: RasterImage[][];
  /** Per variant (every model but FP): |variant - FP| per pixel as heat colours on `scale`, frame by frame. */
  diffFrames: RasterImage[][];
  /** The heatmaps' shared scale: the largest |variant - FP| of any pixel of any frame (model space). */
  scale: number;
  /** Per variant. */
  stats: VideoFrameStats[];
}

/**
 * The mean squared frame-to-frame change of videos [C, frames*H, W] (channel planes hold the frames top to bottom),
 * averaged over pixels, transitions and videos. 0 for one frame or no videos.
 */
export function flickerOf(videos: Float32Array[], frames: number, channels = 3): number {
  if (frames < 2 || !videos.length) return 0;
  let total = 0;
  for (const v of videos) {
    let s = 0;
    const plane = v.length / channels / frames;
    for (let ch = 0; ch < channels; ch++) {
      for (let k = 0; k + 1 < frames; k++) {
        const a = (ch * frames + k) * plane;
        for (let j = 0; j < plane; j++) s += (v[a + plane + j]! - v[a + j]!) ** 2;
      }
    }
    total += s / (channels * plane * (frames - 1));
  }
  return total / videos.length;
}

/** Per-frame PSNR summarized: the mean over the frames that differ from FP's, the worst, and its frame (1-based); nulls when every frame equals FP's. */
export function psnrOverFrames(psnrDb: (number | null)[]): { mean: number | null; worst: number | null; worstFrame: number | null } {
  const ps = psnrDb.filter((x): x is number => x !== null);
  if (!ps.length) return { mean: null, worst: null, worstFrame: null };
  const worst = Math.min(...ps);
  return { mean: ps.reduce((s, x) => s + x, 0) / ps.length, worst, worstFrame: psnrDb.indexOf(worst) + 1 };
}

/** Frame sheets (frames top to bottom) of a comparison's models, FP first, then the diff sheets, per variant. */
export function sheetsOf(c: VideoComparison): { models: RasterImage[]; diffs: RasterImage[] } {
  const sheet = (f: RasterImage[]) => {
    const s = frameSheet(f);
    if (!s) throw new Error('video frames differ in size');
    return s;
  };
  return { models: c.frames.map(sheet), diffs: c.diffFrames.map(sheet) };
}

/** The comparison; each grid is titled with its model's name and the frame ("name DIFF" over the heatmaps). */
export function compareVideos(opts: {
  models: VideoModel[];
  frames: number;
  /** [C, H, W] of one frame. */
  frameShape: [number, number, number];
  rows: string[];
  cols: string[];
  zoom?: number;
}): VideoComparison {
  const { models, frames, frameShape, rows, cols } = opts;
  const [C, H, W] = frameShape;
  const fp = models[0];
  if (!fp) throw new Error('compareVideos needs FP and at least one more model');
  const n = rows.length * cols.length;
  for (const m of models) {
    if (m.videos.length !== n) throw new Error(`${m.name}: ${m.videos.length} videos for a ${rows.length}x${cols.length} grid`);
    if (m.videos.some((v) => v.length !== C * frames * H * W)) throw new Error(`${m.name}: a video is not ${frames} frames of ${C}x${H}x${W}`);
  }
  const zoom = opts.zoom ?? (H >= 128 ? 1 : 2);
  const grid = (cells: Float32Array[], channels: number, title: string) =>
    layoutRgb({ cells: rows.map((_, r) => cols.map((_, c) => cells[r * cols.length + c]!)), channels, height: H, width: W, rowLabels: rows, colLabels: cols, zoom, title });
  const frameCells = models.map((m) => Array.from({ length: frames }, (_, k) => m.videos.map((v) => frameOf(v, frames, k, C))));
  // |variant - FP| per video, per frame
  const diffs = frameCells.slice(1).map((mf) => mf.map((cells, k) => cells.map((img, i) => absDiff(img, frameCells[0]![k]![i]!, frameShape))));
  let scale = 0;
  for (const d of diffs) for (const f of d) for (const map of f) for (const x of map) if (x > scale) scale = x;
  const fpFlicker = flickerOf(fp.videos, frames, C);
  const stats = models.slice(1).map((m, j): VideoFrameStats => ({
    name: m.name,
    psnrDb: Array.from({ length: frames }, (_, k) => {
      const vals = frameCells[j + 1]![k]!.map((img, i) => psnr(frameCells[0]![k]![i]!, img));
      const finite = vals.filter(Number.isFinite);
      return finite.length ? finite.reduce((a, b) => a + b, 0) / finite.length : null;
    }),
    ssim: Array.from({ length: frames }, (_, k) => frameCells[j + 1]![k]!.reduce((a, img, i) => a + ssim(frameCells[0]![k]![i]!, img, frameShape), 0) / n),
    meanAbs: diffs[j]!.map((f) => f.reduce((a, map) => a + map.reduce((s, x) => s + x, 0), 0) / (f.length * H * W)),
    flickerRatio: fpFlicker > 0 ? flickerOf(m.videos, frames, C) / fpFlicker : null,
  }));
  return {
    frames: frameCells.map((mf, m) => mf.map((cells, k) => grid(cells, C, `${models[m]!.name} F${k + 1}`))),
    diffFrames: diffs.map((d, j) => d.map((f, k) => grid(f.map((map) => heatImage(map, scale)), 3, `${models[j + 1]!.name} DIFF F${k + 1}`))),
    scale,
    stats,
  };
}
