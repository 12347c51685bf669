/**
 * The embedded text-to-video model's judge (tools/video_data.py's, in TypeScript): per frame the digit and both
 * colours as the text-to-image judge reads them, with the digit mask re-centred on its centre of mass before the
 * classifier's crop (the digit moves); per video the direction of motion, from the least-squares slope of the
 * centre of mass over the frames (the axis that moves more, and its sign; at least attributes.json's min_speed
 * pixels a frame). A video is in agreement when its motion is right and at least min_frames of its frames have the
 * digit and both colours right.
 */
import { DqError } from '../errors.js';
import { frameOf } from '../pipeline/codec.js';
import { classifyMasks, judgeColoursOf, parsePrompt, toUnit, type Colours, type T2IAttributes, type T2IJudgeOptions, type T2IPromptAttributes, type T2IVerdict } from './t2i-judge.js';

export interface VideoVerdict {
  frames: T2IVerdict[];
  /** The judged motion (a name of attributes.json's motions), or null when the digit moves slower than min_speed. */
  motion: string | null;
  /** Pixels a frame along the axis that moves more. */
  speed: number;
}

export interface VideoResult {
  prompt: string;
  expected: T2IPromptAttributes | null;
  judged: VideoVerdict;
  /** Per frame: digit, foreground and background all right. */
  frameOk: boolean[];
  motionOk: boolean;
  ok: boolean;
}

export interface VideoAgreement {
  judged: number;
  unjudgeable: number;
  /** Fraction of videos in agreement (motion right and at least min_frames frames right). */
  agreement: number;
  /** Fraction of videos whose motion is right. */
  motion: number;
  /** Fraction of frames with digit, foreground and background right; then each attribute's rate over frames. */
  frameAgreement: number;
  digit: number;
  fg: number;
  bg: number;
  results: VideoResult[];
}

/** Python's round(): to nearest, ties to even (the reference judge rounds the re-centring shift so). */
function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The digit's grey mask over the whole frame ([0, 1]), its centre of mass, and the mask re-centred and cropped (model space). */
function centredMask(px: Float64Array, attrs: T2IAttributes, c: Colours): { crop: Float32Array; cx: number; cy: number } {
  const size = attrs.image_size;
  const plane = size * size;
  const f = c.fgRgb ?? [0, 0, 0];
  const d = [f[0] - c.bgRgb[0], f[1] - c.bgRgb[1], f[2] - c.bgRgb[2]];
  const den = Math.max(d[0]! * d[0]! + d[1]! * d[1]! + d[2]! * d[2]!, 1e-6);
  const m = new Float64Array(plane);
  let tot = 0;
  let sx = 0;
  let sy = 0;
  for (let p = 0; p < plane; p++) {
    let v = 0;
    for (let ch = 0; ch < 3; ch++) v += (px[ch * plane + p]! - c.bgRgb[ch]!) * d[ch]!;
    v = Math.min(1, Math.max(0, v / den));
    m[p] = v;
    tot += v;
    sx += v * (p % size);
    sy += v * Math.floor(p / size);
  }
  tot = Math.max(tot, 1e-6);
  const cx = sx / tot;
  const cy = sy / tot;
  const mid = (size - 1) / 2;
  const dy = roundHalfEven(mid - cy);
  const dx = roundHalfEven(mid - cx);
  const [top, left, h, w] = attrs.digit_crop;
  const crop = new Float32Array(h * w);
  const wrap = (v: number) => ((v % size) + size) % size;
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) crop[y * w + x] = m[wrap(top + y - dy) * size + wrap(left + x - dx)]! * 2 - 1;
  return { crop, cx, cy };
}

/** Judges videos (filmstrips [3, frames * size, size] in model space [-1, 1]). */
export async function judgeVideos(videos: Float32Array[], frames: number, attrs: T2IAttributes, opts: T2IJudgeOptions = {}): Promise<VideoVerdict[]> {
  const motions = attrs.motions;
  if (!motions) throw new DqError('BAD_ARGUMENT', 'attributes.json names no motions: it is not a video model\'s judge');
  const names = Object.keys(attrs.palette);
  const rgb = names.map((n) => attrs.palette[n]!);
  const colours: Colours[] = [];
  const masks: Float32Array[] = [];
  const centres: [number, number][] = [];
  videos.forEach((v, i) => {
    for (let k = 0; k < frames; k++) {
      const px = toUnit(frameOf(v, frames, k), attrs, i);
      const c = judgeColoursOf(px, attrs, rgb);
      const m = centredMask(px, attrs, c);
      colours.push(c);
      masks.push(m.crop);
      centres.push([m.cx, m.cy]);
    }
  });
  if (!videos.length) return [];
  const verdicts: T2IVerdict[] = await classifyMasks(masks, colours, names, opts);
  const mid = (frames - 1) / 2;
  let kk = 0;
  for (let k = 0; k < frames; k++) kk += (k - mid) ** 2;
  return videos.map((_, i) => {
    let sx = 0;
    let sy = 0;
    for (let k = 0; k < frames; k++) {
      const [cx, cy] = centres[i * frames + k]!;
      sx += cx * (k - mid);
      sy += cy * (k - mid);
    }
    sx /= kk || 1;
    sy /= kk || 1;
    const horiz = Math.abs(sx) >= Math.abs(sy);
    const speed = horiz ? Math.abs(sx) : Math.abs(sy);
    const dir: [number, number] = horiz ? [Math.sign(sx), 0] : [0, Math.sign(sy)];
    const found = Object.entries(motions).find(([, [dx, dy]]) => Math.sign(dx) === dir[0] && Math.sign(dy) === dir[1]);
    const motion = speed >= (attrs.min_speed ?? 0) && found ? found[0] : null;
    return { frames: verdicts.slice(i * frames, (i + 1) * frames), motion, speed };
  });
}

/** Agreement of videos with their prompts (prompts[i] was drawn as videos[i]). */
export async function videoAgreement(prompts: string[], videos: Float32Array[], frames: number, attrs: T2IAttributes, opts: T2IJudgeOptions = {}): Promise<VideoAgreement> {
  if (prompts.length !== videos.length) throw new Error(`videoAgreement: ${prompts.length} prompts for ${videos.length} videos`);
  const expected = prompts.map((p) => parsePrompt(p, attrs));
  const judgeable = expected.filter((e) => e !== null && e.motion !== undefined).length;
  if (judgeable === 0) throw new DqError('BAD_ARGUMENT', `no prompt names a digit, both colours and a motion (e.g. ${JSON.stringify(prompts[0] ?? '')}), so none can be judged`);
  const verdicts = await judgeVideos(videos, frames, attrs, opts);
  const minFrames = Math.min(frames, attrs.min_frames ?? frames);
  let ok = 0;
  let motion = 0;
  let frameOk = 0;
  let digit = 0;
  let fg = 0;
  let bg = 0;
  const results = verdicts.map((v, i): VideoResult => {
    const e = expected[i]!;
    const judged = e !== null && e.motion !== undefined;
    const fr = v.frames.map((f) => judged && f.digit === e.digit && f.fg === e.fg && f.bg === e.bg);
    if (judged) {
      for (const f of v.frames) {
        digit += Number(f.digit === e.digit);
        fg += Number(f.fg === e.fg);
        bg += Number(f.bg === e.bg);
      }
    }
    const motionOk = judged && v.motion === e.motion;
    const good = motionOk && fr.filter(Boolean).length >= minFrames;
    ok += Number(good);
    motion += Number(motionOk);
    frameOk += fr.filter(Boolean).length;
    return { prompt: prompts[i]!, expected: e, judged: v, frameOk: fr, motionOk, ok: good };
  });
  const nf = judgeable * frames;
  return { judged: judgeable, unjudgeable: prompts.length - judgeable, agreement: ok / judgeable, motion: motion / judgeable, frameAgreement: frameOk / nf, digit: digit / nf, fg: fg / nf, bg: bg / nf, results };
}
