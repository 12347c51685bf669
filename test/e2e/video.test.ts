/**
 * The studio on a text-to-video pipeline (test/fixtures/video-unet3d: diffusers' TextToVideoSDPipeline layout with a
 * random-weight UNet3D), browser mode with the real host and engine, in Chromium at 1280x800: open it by path,
 * calibrate on typed prompts, quantize with INT8 and NVFP4, and sample FP and both variants: their videos play side
 * by side in one animation, the frame scrubber shows any frame, and the frame-by-frame A/B wipe and |variant − FP|
 * heatmaps step and play in step. Screenshots in test-results/e2e/video-*.png: the playing animation at two
 * moments, the scrubber at two frames, the wipe at two frames, the heatmaps.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { required, ROOT } from '../helpers';
import { browserHere, CHROMIUM, SHOTS, startStudio, type StudioRun } from './browser';

const FX = join(ROOT, 'test', 'fixtures', 'video-unet3d');

describe.skipIf(!browserHere && !required('DQ_REQUIRE_BROWSER'))(`text-to-video in the studio${browserHere ? '' : ` (skipped: no Chromium at ${CHROMIUM}; .ci/install-system-deps.sh installs it)`}`, () => {
  let studio: StudioRun;
  beforeAll(async () => {
    studio = await startStudio('e2e-video');
  }, 180_000);
  afterAll(async () => {
    await studio?.close();
  });

  const shot = (page: Page, name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`) });

  it('opens a UNet3D folder, quantizes it and plays FP, INT8 and NVFP4 videos side by side', async () => {
    const page = await studio.browser.newPage({ viewport: { width: 1280, height: 800 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    await page.goto(studio.served.url);
    await page.getByTestId('model-path').fill(FX);
    await page.getByRole('button', { name: 'Open folder' }).click();
    await page.getByTestId('pipeline-card').waitFor({ timeout: 60_000 });
    await expect(page.getByTestId('pipeline-family').textContent()).resolves.toBe('text-to-video (UNet3D)');
    await expect(page.getByTestId('components').locator('tbody tr').filter({ hasText: 'unet' }).textContent()).resolves.toMatch(/UNet3DConditionModel.*sample float32 \[batch_size, 4, num_frames, height, width\]/s);

    await page.getByTestId('tab-calibrate').click();
    await page.getByTestId('cal-prompts').fill('a red seven\na blue two\n');
    await page.getByTestId('cal-samples').fill('2');
    await page.getByTestId('cal-steps').fill('3');
    await page.getByTestId('cal-start').click();
    await page.getByTestId('cal-done').waitFor({ timeout: 180_000 });

    await page.getByTestId('tab-recipe').click();
    for (const preset of ['int8-w8a8', 'nvfp4-w4a4']) {
      await page.getByTestId('recipe-preset').selectOption(preset);
      await page.getByTestId('quantize').click();
      await page.getByTestId(`variant-${preset}`).waitFor({ timeout: 120_000 });
    }

    await page.getByTestId('tab-samples').click();
    await page.getByTestId('t2i-prompts').fill('a red seven on a blue background\nthe digit two in green on black');
    await page.getByTestId('t2i-seeds').fill('0-1');
    await page.getByTestId('t2i-steps').fill('3');
    expect(await page.getByTestId('t2i-variant-int8-w8a8').isChecked()).toBe(true);
    expect(await page.getByTestId('t2i-variant-nvfp4-w4a4').isChecked()).toBe(true);
    await page.getByTestId('t2i-start').click();
    const play = page.getByTestId('t2i-video-play');
    await play.waitFor({ timeout: 120_000 });
    await expect(page.getByTestId('t2i-video').locator('h3').textContent()).resolves.toMatch(/FP \| int8-w8a8 \| nvfp4-w4a4 · 16 frames at 8 fps/);
    // the animation is decoded and has two model columns side by side: wider than tall per video row
    await page.waitForFunction(() => (document.querySelector('[data-testid="t2i-video-play"]') as HTMLImageElement | null)?.naturalWidth ?? 0 > 0);
    const [w, h] = await play.evaluate((img: HTMLImageElement) => [img.naturalWidth, img.naturalHeight]);
    expect(w).toBeGreaterThan(h);
    await play.scrollIntoViewIfNeeded();
    await shot(page, 'video-1-playing');
    // a moment later the animation has moved on: the same element, another frame on screen
    const before = await play.screenshot();
    await page.waitForTimeout(600);
    await shot(page, 'video-2-playing-later');
    const after = await play.screenshot();
    expect(Buffer.compare(before, after)).not.toBe(0);

    // the scrubber: frame 1, then frame 12
    const scrub = page.getByTestId('t2i-video-scrubber');
    await scrub.scrollIntoViewIfNeeded();
    await expect(page.getByTestId('t2i-video-scrubber-at').textContent()).resolves.toBe('1 / 16');
    const f1 = await page.getByTestId('t2i-video-scrubber').locator('.window').screenshot();
    await shot(page, 'video-3-frame-1');
    await page.getByTestId('t2i-video-scrubber-slider').fill('11');
    await expect(page.getByTestId('t2i-video-scrubber-at').textContent()).resolves.toBe('12 / 16');
    const f12 = await page.getByTestId('t2i-video-scrubber').locator('.window').screenshot();
    await shot(page, 'video-4-frame-12');
    expect(Buffer.compare(f1, f12)).not.toBe(0);

    // frame by frame: the A/B wipe over FP's frame and NVFP4's same frame, stepped, then the heatmaps
    const ab = page.getByTestId('video-ab');
    await ab.scrollIntoViewIfNeeded();
    await page.getByTestId('video-ab-b').selectOption({ label: 'nvfp4-w4a4' });
    const stage = ab.getByTestId('wipe-stage');
    await stage.waitFor({ timeout: 30_000 });
    await page.waitForFunction(() => [...document.querySelectorAll('[data-testid="video-ab"] [data-testid="wipe-stage"] img')].every((i) => (i as HTMLImageElement).naturalWidth > 0));
    await expect(page.getByTestId('video-ab-at').textContent()).resolves.toBe('frame 1 / 16');
    await expect(ab.locator('.tag.r').textContent()).resolves.toBe('nvfp4-w4a4 · frame 1');
    const w1 = await stage.screenshot();
    await shot(page, 'video-5-wipe-frame-1');
    for (let i = 0; i < 7; i++) await page.getByTestId('video-ab-next').click();
    await expect(page.getByTestId('video-ab-at').textContent()).resolves.toBe('frame 8 / 16');
    await expect(ab.locator('.tag.l').textContent()).resolves.toBe('FP · frame 8');
    await page.waitForFunction(() => [...document.querySelectorAll('[data-testid="video-ab"] [data-testid="wipe-stage"] img')].every((i) => (i as HTMLImageElement).complete));
    const w8 = await stage.screenshot();
    await shot(page, 'video-6-wipe-frame-8');
    expect(Buffer.compare(w1, w8)).not.toBe(0);
    // per-frame PSNR of both variants at this frame, in dB
    await expect(page.getByTestId('video-ab-psnr').textContent()).resolves.toMatch(/int8-w8a8: \d+\.\d dB, SSIM \d\.\d{3} · flicker \d+\.\d\d× FP.*nvfp4-w4a4: \d+\.\d dB/s);
    await page.getByTestId('video-ab-mode-diff').check();
    await page.getByTestId('video-ab-diff-nvfp4-w4a4').waitFor();
    await page.getByTestId('video-ab-diff-int8-w8a8').waitFor();
    await page.getByTestId('video-ab-diff-bar').scrollIntoViewIfNeeded();
    await shot(page, 'video-7-heatmaps-frame-8');
    // playing advances the frame
    await page.getByTestId('video-ab-play').click();
    await page.waitForFunction(() => document.querySelector('[data-testid="video-ab-at"]')?.textContent !== 'frame 8 / 16');
    await page.getByTestId('video-ab-play').click();
    expect(errors).toEqual([]);
  }, 600_000);
});
