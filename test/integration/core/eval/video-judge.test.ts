/**
 * The TypeScript video judge against the Python one (tools/video_data.py read_videos with the embedded MNIST
 * classifier), video by video and frame by frame, on the fixture tools/video_judge_reference.py writes: held-out
 * digits moving in each direction, and a still, a slow, a drifting, a recoloured, a jumping, a noisy and a faded one.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { evalPrompts, loadAttributes, parsePrompt } from '../../../../src-main/core/eval/t2i-judge';
import { judgeVideos, videoAgreement } from '../../../../src-main/core/eval/video-judge';
import { frameOf } from '../../../../src-main/core/pipeline/codec';
import { releaseSessions } from '../../../../src-main/core/pipeline/pipeline';
import { ROOT } from '../../../helpers';

afterAll(releaseSessions);

interface Case {
  made_from: { digit: number; fg: string; bg: string; motion: string | null; made: string };
  judge: { digit: number[]; fg: (string | null)[]; bg: string[]; cx: number[]; cy: number[]; motion: string | null; speed: number };
}

const FIX = join(ROOT, 'test', 'fixtures', 'video-judge');
const REF = JSON.parse(readFileSync(join(FIX, 'judge.json'), 'utf8')) as { shape: number[]; videos: Case[] };
const attrs = loadAttributes(FIX);
const [N, F, C, H, W] = REF.shape as [number, number, number, number, number];

/** videos.u8 [N, F, 3, H, W] as filmstrips [3, F H, W] in model space (what the pipeline's sampler gives). */
function videos(): Float32Array[] {
  const raw = readFileSync(join(FIX, 'videos.u8'));
  expect(raw.length).toBe(N * F * C * H * W);
  const plane = H * W;
  return Array.from({ length: N }, (_, i) => {
    const v = new Float32Array(C * F * plane);
    for (let k = 0; k < F; k++) for (let ch = 0; ch < C; ch++) for (let j = 0; j < plane; j++) v[(ch * F + k) * plane + j] = (raw[(((i * F + k) * C + ch) * plane) + j]! / 255) * 2 - 1;
    return v;
  });
}

describe('judgeVideos', () => {
  it('reads every frame\'s digit and colours, and every video\'s motion, as the Python judge does', async () => {
    const vids = videos();
    const got = await judgeVideos(vids, F, attrs);
    expect(got).toHaveLength(N);
    got.forEach((g, i) => {
      const r = REF.videos[i]!.judge;
      const what = `video ${i} (${REF.videos[i]!.made_from.made})`;
      expect(g.frames.map((f) => f.digit), what).toEqual(r.digit);
      expect(g.frames.map((f) => f.fg), what).toEqual(r.fg);
      expect(g.frames.map((f) => f.bg), what).toEqual(r.bg);
      expect(g.motion, what).toBe(r.motion);
      expect(g.speed, what).toBeCloseTo(r.speed, 4);
    });
    // both outcomes occur: motions found and not (still, slow), and a frame whose colour is not the prompt's
    expect(got.some((g) => g.motion === null) && got.some((g) => g.motion !== null)).toBe(true);
  });

  it('cuts frames out of a filmstrip in order', () => {
    const v = videos()[0]!;
    const f3 = frameOf(v, F, 3);
    const raw = readFileSync(join(FIX, 'videos.u8'));
    expect(f3[5]).toBeCloseTo((raw[((0 * F + 3) * C + 0) * H * W + 5]! / 255) * 2 - 1, 6);
    expect(f3[H * W + 7]).toBeCloseTo((raw[((0 * F + 3) * C + 1) * H * W + 7]! / 255) * 2 - 1, 6);
  });
});

describe('videoAgreement', () => {
  it('counts a video as agreeing when its motion and enough frames are right, as the Python verdicts say', async () => {
    const t = attrs.templates[0]!;
    const prompts = REF.videos.map((c) => t.replace('{f}', c.made_from.fg).replace('{b}', c.made_from.bg).replace('{d}', attrs.digits[c.made_from.digit]!).replace('{m}', c.made_from.motion ?? 'left'));
    const a = await videoAgreement(prompts, videos(), F, attrs);
    expect(a.judged).toBe(N);
    REF.videos.forEach((c, i) => {
      const r = c.judge;
      const frameOk = r.digit.map((d, k) => d === c.made_from.digit && r.fg[k] === c.made_from.fg && r.bg[k] === c.made_from.bg);
      const ok = r.motion === (c.made_from.motion ?? 'left') && frameOk.filter(Boolean).length >= attrs.min_frames!;
      expect(a.results[i]!.ok, `video ${i} (${c.made_from.made})`).toBe(ok);
      expect(a.results[i]!.frameOk).toEqual(frameOk);
    });
    // the clean ones agree; the still one cannot (no motion) and the recoloured one loses half its frames
    expect(a.results.slice(0, 16).filter((r) => r.ok).length).toBeGreaterThanOrEqual(15);
    expect(a.results[16]!.ok).toBe(false);
    expect(a.results.find((r, i) => REF.videos[i]!.made_from.made.startsWith('colour'))!.ok).toBe(false);
  });

  it('parses motions from every phrasing, and eval prompts cover every motion for every digit', () => {
    for (const t of attrs.templates) {
      const p = t.replace('{f}', 'red').replace('{b}', 'blue').replace('{d}', 'three').replace('{n}', '3').replace('{m}', 'up');
      expect(parsePrompt(p, attrs), p).toEqual({ digit: 3, fg: 'red', bg: 'blue', motion: 'up' });
    }
    const ps = evalPrompts(attrs, 80);
    for (const d of [0, 9]) expect(new Set(ps.filter((p) => p.expected.digit === d).map((p) => p.expected.motion))).toEqual(new Set(Object.keys(attrs.motions!)));
    ps.forEach((p) => expect(parsePrompt(p.prompt, attrs)).toEqual(p.expected));
  });
});
