/**
 * The TypeScript text-to-image judge against the Python one (tools/t2i_data.py's judge_colours + digit_mask and the
 * embedded MNIST classifier, as tools/train_tiny_t2i.py runs it), image by image, on the fixture that
 * tools/t2i_judge_reference.py writes: clean held-out digits in random colours and perturbed ones (noise, blur, low
 * contrast, half-strength, absent, off-palette, shifted and two-colour foregrounds, a recoloured border).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DqError } from '../../../../src-main/core/errors';
import { judgeImages, loadAttributes, promptAgreement } from '../../../../src-main/core/eval/t2i-judge';
import { releaseSessions } from '../../../../src-main/core/pipeline/pipeline';
import { ROOT } from '../../../helpers';

afterAll(releaseSessions);

interface Case {
  made_from: { digit: number; fg: string | null; bg: string; made: string };
  judge: { digit: number; fg: string | null; bg: string; fg_rgb: number[] | null; bg_rgb: number[] };
}

const FIX = join(ROOT, 'test', 'fixtures', 't2i-judge');
const REF = JSON.parse(readFileSync(join(FIX, 'judge.json'), 'utf8')) as { shape: number[]; images: Case[] };
const attrs = loadAttributes(FIX);

/** images.u8 as the judge's input: model space float32, 2 * v / 255 - 1 (what the Python judge saw). */
function images(): Float32Array[] {
  const raw = readFileSync(join(FIX, 'images.u8'));
  const [n, c, h, w] = REF.shape as [number, number, number, number];
  expect(raw.length).toBe(n * c * h * w);
  const size = c * h * w;
  return Array.from({ length: n }, (_, i) => Float32Array.from(raw.subarray(i * size, (i + 1) * size), (v) => (v / 255) * 2 - 1));
}

function caption(t: number, digit: number, fg: string, bg: string): string {
  return attrs.templates[t % attrs.templates.length]!.replace('{f}', fg).replace('{b}', bg).replace('{d}', attrs.digits[digit]!).replace('{n}', String(digit));
}

describe('judgeImages', () => {
  it('reads the same digit, foreground and background as the Python judge on every fixture image', async () => {
    const imgs = images();
    expect(imgs.length).toBeGreaterThanOrEqual(35);
    const got = await judgeImages(imgs, attrs);
    expect(got).toHaveLength(imgs.length);
    got.forEach((g, i) => {
      const r = REF.images[i]!.judge;
      const what = `image ${i} (${REF.images[i]!.made_from.made})`;
      expect({ digit: g.digit, fg: g.fg, bg: g.bg }, what).toEqual({ digit: r.digit, fg: r.fg, bg: r.bg });
      g.bgRgb.forEach((v, k) => expect(v, what).toBeCloseTo(r.bg_rgb[k]!, 5));
      if (r.fg_rgb === null) expect(g.fgRgb, what).toBeNull();
      else g.fgRgb!.forEach((v, k) => expect(v, what).toBeCloseTo(r.fg_rgb![k]!, 5));
    });
    // the fixture exercises both outcomes: found and absent foregrounds, right and wrong digits
    expect(got.some((g) => g.fg === null) && got.some((g) => g.fg !== null)).toBe(true);
    expect(REF.images.some((r) => r.judge.digit !== r.made_from.digit)).toBe(true);
  });

  it('clamps to [-1, 1] first, as the Python sampler clamps its images before judging', async () => {
    // only the pixels at the extremes are pushed further out: clamped, they are the fixture images again
    const pushed = images().map((img) => img.map((v) => (v === 1 ? 1.4 : v === -1 ? -1.7 : v)));
    expect(pushed.some((img) => img.some((v) => v > 1))).toBe(true);
    const got = await judgeImages(pushed, attrs);
    got.forEach((g, i) => {
      const r = REF.images[i]!.judge;
      expect({ digit: g.digit, fg: g.fg, bg: g.bg }, `image ${i}`).toEqual({ digit: r.digit, fg: r.fg, bg: r.bg });
      g.bgRgb.forEach((v, k) => expect(v).toBeCloseTo(r.bg_rgb[k]!, 5));
    });
  });

  it('refuses an image of another size, or with NaN, in one line', async () => {
    await expect(judgeImages([new Float32Array(3 * 64 * 64)], attrs)).rejects.toThrow(/reads 3x32x32 images \(3072 values\); image 0 has 12288/);
    const nan = images().slice(0, 2);
    nan[1]![100] = NaN;
    await expect(judgeImages(nan, attrs)).rejects.toThrow(/image 1 has NaN or infinite values/);
  });
});

describe('promptAgreement', () => {
  it('scores each image against its prompt as the Python verdicts say, and counts prompts it cannot judge', async () => {
    const imgs = images();
    const palette = Object.keys(attrs.palette);
    // each image's prompt: what it was drawn from (an absent foreground asks for the first colour that is not its bg)
    const prompts = REF.images.map((r, i) => caption(i, r.made_from.digit, r.made_from.fg ?? palette.find((c) => c !== r.made_from.bg)!, r.made_from.bg));
    prompts[5] = 'a cat';
    prompts[6] = 'the digit seven in red'; // no background
    const res = await promptAgreement(prompts, imgs, attrs);
    // expected from the Python verdicts
    let [all, digit, fg, bg, n] = [0, 0, 0, 0, 0];
    REF.images.forEach((r, i) => {
      if (i === 5 || i === 6) return;
      const want = { digit: r.made_from.digit, fg: r.made_from.fg ?? palette.find((c) => c !== r.made_from.bg)!, bg: r.made_from.bg };
      const d = r.judge.digit === want.digit;
      const f = r.judge.fg === want.fg;
      const b = r.judge.bg === want.bg;
      n++;
      digit += Number(d);
      fg += Number(f);
      bg += Number(b);
      all += Number(d && f && b);
      expect(res.results[i]!.expected).toEqual(want);
      expect(res.results[i]!.ok).toBe(d && f && b);
    });
    expect(res.unjudgeable).toBe(2);
    expect(res.judged).toBe(n);
    expect(res.results[5]!.expected).toBeNull();
    expect(res.results[5]!.ok).toBe(false);
    expect(res.agreement).toBeCloseTo(all / n, 12);
    expect(res.digit).toBeCloseTo(digit / n, 12);
    expect(res.fg).toBeCloseTo(fg / n, 12);
    expect(res.bg).toBeCloseTo(bg / n, 12);
    expect(all).toBeGreaterThan(0);
    expect(all).toBeLessThan(n);
  });

  it('no prompt that can be judged: BAD_ARGUMENT in one line; prompts and images must pair up', async () => {
    const imgs = images().slice(0, 2);
    const e = await promptAgreement(['a cat', ''], imgs, attrs).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DqError);
    expect((e as DqError).code).toBe('BAD_ARGUMENT');
    expect((e as DqError).message).toMatch(/no prompt names a digit and both colours .*"a cat".*write them like "a \w+ seven on a \w+ background"/);
    await expect(promptAgreement(['a cat'], imgs, attrs)).rejects.toThrow(/1 prompts for 2 images/);
  });
});
