import { describe, expect, it } from 'vitest';
import { compareVideos, flickerOf, sheetsOf } from '../../../../src-main/core/compare/video-compare';
import { heatColor } from '../../../../src-main/core/compare/render';

const C = 3;
const F = 4;
const H = 2;
const W = 3;
/** A video [C, F*H, W] whose pixel (c, k, y, x) is f(c, k, y, x). */
const video = (f: (c: number, k: number, y: number, x: number) => number) => {
  const v = new Float32Array(C * F * H * W);
  for (let c = 0; c < C; c++) for (let k = 0; k < F; k++) for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) v[((c * F + k) * H + y) * W + x] = f(c, k, y, x);
  return v;
};

describe('compareVideos', () => {
  const still = video(() => 0);
  const fp = [video((c, k) => -0.5 + 0.25 * k), still];
  // the variant: FP plus 0.1 on frame 1 of the first video only; the second video equals FP's
  const off = [video((c, k) => -0.5 + 0.25 * k + (k === 1 ? 0.1 : 0)), still];
  const r = compareVideos({ models: [{ name: 'FP', videos: fp }, { name: 'q', videos: off }], frames: F, frameShape: [C, H, W], rows: ['p'], cols: ['s0', 's1'], zoom: 1 });

  it('measures every frame against FP', () => {
    const st = r.stats[0]!;
    expect(st.name).toBe('q');
    expect(st.psnrDb[0]).toBeNull(); // every video equals FP at frame 0
    // frame 1: video 0 is off by 0.1 everywhere (PSNR 10 log10(4 / 0.01) = 26.02 dB), video 1 equals FP (left out)
    expect(st.psnrDb[1]).toBeCloseTo(10 * Math.log10(4 / 0.01), 4);
    expect(st.meanAbs[1]).toBeCloseTo(0.05, 6); // half the pixels of the frame's two videos
    expect(st.meanAbs[2]).toBe(0);
    expect(st.ssim[0]).toBeCloseTo(1, 6);
    expect(st.ssim[1]).toBeLessThan(1);
    expect(r.scale).toBeCloseTo(0.1, 6);
    // flicker: FP changes 0.25 a frame in video 0 and nothing in video 1: (0.0625 + 0) / 2; the variant's
    // transitions are 0.35, 0.15, 0.25
    expect(flickerOf(fp, F)).toBeCloseTo(0.0625 / 2, 7);
    expect(st.flickerRatio).toBeCloseTo((0.35 ** 2 + 0.15 ** 2 + 0.25 ** 2) / 3 / 0.0625, 5);
  });

  it('lays out each model\'s frames as one grid a frame, and the heatmaps on the shared scale', () => {
    expect(r.frames).toHaveLength(2);
    expect(r.frames[0]).toHaveLength(F);
    expect(r.diffFrames).toHaveLength(1);
    const { models, diffs } = sheetsOf(r);
    expect(models[0]!.height).toBe(F * r.frames[0]![0]!.height);
    expect(diffs[0]!.width).toBe(r.frames[0]![0]!.width);
    // frame 1's heatmap holds the ramp's top colour (the largest difference) and frame 0's only its bottom
    const has = (img: { data: Uint8Array }, rgb: number[]) => {
      for (let i = 0; i + 2 < img.data.length; i += 3) if (img.data[i] === rgb[0] && img.data[i + 1] === rgb[1] && img.data[i + 2] === rgb[2]) return true;
      return false;
    };
    expect(has(r.diffFrames[0]![1]!, heatColor(1))).toBe(true);
    expect(has(r.diffFrames[0]![0]!, heatColor(1))).toBe(false);
    expect(has(r.diffFrames[0]![0]!, heatColor(0))).toBe(true);
  });

  it('refuses videos that do not fit the grid or the frames', () => {
    expect(() => compareVideos({ models: [{ name: 'FP', videos: fp }, { name: 'q', videos: [still] }], frames: F, frameShape: [C, H, W], rows: ['p'], cols: ['s0', 's1'] })).toThrow(/q: 1 videos for a 1x2 grid/);
    expect(() => compareVideos({ models: [{ name: 'FP', videos: fp }], frames: 3, frameShape: [C, H, W], rows: ['p'], cols: ['s0', 's1'] })).toThrow(/not 3 frames/);
  });
});
