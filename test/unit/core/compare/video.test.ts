import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { encodeAnimatedWebp, encodeMp4, findFfmpeg } from '../../../../src-main/core/compare/video';
import type { RasterImage } from '../../../../src-main/core/image/grid';
import { tmp } from '../../../helpers';

function frame(w: number, h: number, k: number): RasterImage {
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const o = (y * w + x) * 3;
    data[o] = (x * 20 + k * 40) % 256;
    data[o + 1] = (y * 30) % 256;
    data[o + 2] = k * 60;
  }
  return { data, width: w, height: h, channels: 3 };
}

describe('animated WebP', () => {
  it('holds every frame losslessly, with its delay, looping forever', async () => {
    const frames = [0, 1, 2].map((k) => frame(10, 6, k));
    const webp = await encodeAnimatedWebp(frames, [100, 200, 1500]);
    const meta = await sharp(webp, { animated: true }).metadata();
    expect(meta.format).toBe('webp');
    expect(meta.pages).toBe(3);
    expect(meta.pageHeight).toBe(6);
    expect(meta.delay).toEqual([100, 200, 1500]);
    expect(meta.loop).toBe(0);
    for (let k = 0; k < 3; k++) {
      const px = await sharp(webp, { page: k }).removeAlpha().raw().toBuffer();
      expect(Buffer.compare(px, Buffer.from(frames[k]!.data))).toBe(0);
    }
    expect(Buffer.compare(webp, await encodeAnimatedWebp(frames, [100, 200, 1500]))).toBe(0);
  });
  it('refuses frames of different sizes', async () => {
    await expect(encodeAnimatedWebp([frame(4, 4, 0), frame(4, 6, 0)], [1, 1])).rejects.toThrow(/differ in size/);
  });
});

describe('ffmpeg', () => {
  it('is reported missing, with the reason, when it is not there', () => {
    const saved = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      expect(findFfmpeg()).toEqual({ found: false, reason: 'ffmpeg not found on PATH' });
    } finally {
      process.env.PATH = saved;
    }
    expect(findFfmpeg('/nonexistent/ffmpeg')).toEqual({ found: false, reason: 'ffmpeg not usable at /nonexistent/ffmpeg' });
  });

  const ff = findFfmpeg();
  it.skipIf(!ff.found)(`writes an H.264 MP4${ff.found ? '' : ' (skipped: ffmpeg not found on PATH)'}`, async () => {
    const dir = tmp();
    try {
      const out = join(dir, 'v.mp4');
      const err = await encodeMp4('ffmpeg', [0, 1, 2, 3].map((k) => frame(16, 8, k)), 10, out);
      expect(err).toBeNull();
      const bytes = readFileSync(out);
      expect(bytes.subarray(4, 8).toString('latin1')).toBe('ftyp');
      expect(bytes.includes(Buffer.from('avc1'))).toBe(true);
      const bad = await encodeMp4('ffmpeg', [frame(16, 8, 0)], 10, join(dir, 'no-such-dir', 'v.mp4'));
      expect(bad).toMatch(/^ffmpeg failed/);
      expect(existsSync(join(dir, 'no-such-dir'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
