/**
 * Videos from RGB frames: animated WebP through sharp (always), H.264 MP4 through ffmpeg when it is installed
 * (looked up at run time; its absence is reported, not an error).
 */
import { spawn, spawnSync } from 'node:child_process';
import { loadSharp, type RasterImage } from '../image/grid.js';

/** Animated WebP (lossless, endless loop) from frames of equal size; `delays` in ms per frame. */
export async function encodeAnimatedWebp(frames: RasterImage[], delays: number[]): Promise<Buffer> {
  if (!frames.length) throw new Error('a video needs at least one frame');
  const { width, height, channels } = frames[0]!;
  if (frames.some((f) => f.width !== width || f.height !== height || f.channels !== channels)) throw new Error('video frames differ in size');
  if (delays.length !== frames.length) throw new Error('one delay per frame');
  const stacked = Buffer.alloc(width * height * channels * frames.length);
  frames.forEach((f, i) => stacked.set(f.data, i * width * height * channels));
  const sharp = await loadSharp();
  return sharp(stacked, { raw: { width, height: height * frames.length, channels, pageHeight: height } })
    .webp({ lossless: true, effort: 4, loop: 0, delay: delays.map((d) => Math.max(1, Math.min(65535, Math.round(d)))) })
    .toBuffer();
}

/** Images of one height side by side, left to right, `gap` white pixels apart. */
export function joinColumns(images: RasterImage[], gap = 6): RasterImage {
  const h = images[0]!.height;
  const ch = images[0]!.channels;
  if (images.some((i) => i.height !== h || i.channels !== ch)) throw new Error('side-by-side images differ in height or channels');
  const width = images.reduce((a, i) => a + i.width, 0) + gap * (images.length - 1);
  const data = new Uint8Array(width * h * ch).fill(255);
  let x0 = 0;
  for (const img of images) {
    for (let y = 0; y < h; y++) data.set(img.data.subarray(y * img.width * ch, (y + 1) * img.width * ch), (y * width + x0) * ch);
    x0 += img.width + gap;
  }
  return { data, width, height: h, channels: ch };
}

/** Frames of one size stacked top to bottom (null when they differ in size or there are none). */
export function frameSheet(frames: RasterImage[]): RasterImage | null {
  const f0 = frames[0];
  if (!f0 || frames.some((f) => f.width !== f0.width || f.height !== f0.height || f.channels !== f0.channels)) return null;
  const data = new Uint8Array(f0.data.length * frames.length);
  frames.forEach((f, i) => data.set(f.data, i * f0.data.length));
  return { data, width: f0.width, height: f0.height * frames.length, channels: f0.channels };
}

export type FfmpegStatus = { found: true; path: string; version: string } | { found: false; reason: string };

/** Looks ffmpeg up (on PATH unless a path is given). */
export function findFfmpeg(path = 'ffmpeg'): FfmpegStatus {
  const r = spawnSync(path, ['-hide_banner', '-version'], { encoding: 'utf8', timeout: 20_000 });
  if (r.error || r.status !== 0) {
    const onPath = path === 'ffmpeg';
    return { found: false, reason: onPath ? 'ffmpeg not found on PATH' : `ffmpeg not usable at ${path}` };
  }
  return { found: true, path, version: (r.stdout.split('\n')[0] ?? '').trim() };
}

/**
 * H.264 MP4 (yuv420p, so browsers play it) at `fps`, written by ffmpeg to `outPath`. Frames must be RGB with even
 * width and height. Resolves with null on success, or the reason it failed.
 */
export function encodeMp4(ffmpeg: string, frames: RasterImage[], fps: number, outPath: string, signal?: AbortSignal): Promise<string | null> {
  const { width, height } = frames[0]!;
  if (frames.some((f) => f.channels !== 3 || f.width !== width || f.height !== height)) throw new Error('mp4 frames must be RGB of one size');
  if (width % 2 || height % 2) throw new Error('mp4 frames need even width and height');
  const args = [
    '-hide_banner', '-loglevel', 'error', '-y',
    '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${width}x${height}`, '-r', String(fps), '-i', 'pipe:0',
    '-an', '-c:v', 'libx264', '-preset', 'medium', '-crf', '16', '-pix_fmt', 'yuv420p', '-threads', '1',
    '-movflags', '+faststart', '-f', 'mp4', outPath,
  ];
  return new Promise((resolve) => {
    const child = spawn(ffmpeg, args, { stdio: ['pipe', 'ignore', 'pipe'], signal });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', (e) => resolve(`ffmpeg could not run: ${e.message}`));
    child.on('close', (code) => resolve(code === 0 ? null : `ffmpeg failed (exit ${code}): ${err.trim().split('\n')[0] ?? ''}`));
    child.stdin.on('error', () => {}); // reported through 'close'
    for (const f of frames) child.stdin.write(f.data);
    child.stdin.end();
  });
}
