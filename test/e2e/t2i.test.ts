/**
 * The studio on a text-to-image pipeline, in Chromium, in both hosts:
 * - browser mode with the real host and engine: open test/fixtures/sd15-optimum by path (Models: family, convention,
 *   components with their I/O and dtypes, sizes, text and VAE), the quantization views say plainly that this is not
 *   available yet, Samples takes prompts and shows the grid, the token counts and the truncation warning;
 * - the mock host (no engine): its text-to-image entry drives the same views with placeholder data.
 * Screenshots at 1280x800 in test-results/e2e/t2i-*.png.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { extname, join, normalize } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { createHost, type Host } from '../../src-main/host';
import { serve, type Served } from '../../src-main/serve/server';
import { required, ROOT } from '../helpers';
import { browserHere, buildRenderer, CHROMIUM, launch, SHOTS } from './browser';

const SD15 = join(ROOT, 'test', 'fixtures', 'sd15-optimum');
const LONG = Array(40).fill('a red seven').join(' ');

/** The built renderer over plain HTTP with no token: the page picks the mock host. */
function staticServer(dir: string): Promise<{ server: Server; url: string }> {
  const types: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css' };
  const server = createServer((req, res) => {
    const path = normalize(join(dir, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)));
    const file = path.startsWith(dir) && existsSync(path) && extname(path) ? path : join(dir, 'index.html');
    res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream' });
    res.end(readFileSync(file));
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok({ server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}/` })));
}

describe.skipIf(!browserHere && !required('DQ_REQUIRE_BROWSER'))(`text-to-image in the studio${browserHere ? '' : ` (skipped: no Chromium at ${CHROMIUM}; .ci/install-system-deps.sh installs it)`}`, () => {
  let ui: string;
  let host: Host;
  let served: Served;
  let plain: { server: Server; url: string };
  let browser: Browser;

  beforeAll(async () => {
    ui = await buildRenderer();
    host = createHost('browser', 'e2e');
    served = await serve({ host, uiDir: ui });
    plain = await staticServer(ui);
    browser = await launch();
  }, 180_000);
  afterAll(async () => {
    await browser?.close();
    await served?.close();
    await new Promise((ok) => (plain ? plain.server.close(ok) : ok(undefined)));
    await host?.dispose();
    if (host) rmSync(host.workspace, { recursive: true, force: true });
    if (ui) rmSync(ui, { recursive: true, force: true });
  });

  async function open(url: string): Promise<{ page: Page; errors: string[] }> {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    await page.goto(url);
    await page.getByTestId('model-tiny-mnist').waitFor();
    return { page, errors };
  }
  const shot = (page: Page, name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`) });
  const text = async (page: Page, id: string) => (await page.getByTestId(id).textContent()) ?? '';

  /** The views a text-to-image model may not use yet say so, and offer nothing that would fail. */
  async function quantizationNotYet(page: Page): Promise<void> {
    for (const [tab, what] of [['calibrate', 'Calibration'], ['ranges', 'Calibration'], ['recipe', 'Quantization'], ['temporal', 'Comparing quantized variants'], ['export', 'Export']] as const) {
      await page.getByTestId(`tab-${tab}`).click();
      await expect(text(page, 'not-yet')).resolves.toMatch(new RegExp(`${what}.* is not available for this pipeline yet.*text-to-image pipeline: the studio cannot calibrate, quantize or export it yet`));
    }
    await page.getByTestId('tab-calibrate').click();
    expect(await page.getByTestId('cal-start').count()).toBe(0);
    await page.getByTestId('tab-recipe').click();
    if (await page.getByTestId('quantize').count()) expect(await page.getByTestId('quantize').isDisabled()).toBe(true);
  }

  async function samplePrompts(page: Page, steps: string): Promise<void> {
    await page.getByTestId('tab-samples').click();
    await page.getByTestId('t2i-prompts').fill(`a red seven on a blue background\n\n${LONG}\n`);
    await page.getByTestId('t2i-seeds').fill('0-1');
    await page.getByTestId('t2i-steps').fill(steps);
    await page.getByTestId('t2i-start').click();
    await page.getByTestId('t2i-grid').waitFor({ timeout: 120_000 });
    const rows = page.getByTestId('t2i-tokens').locator('tbody tr');
    expect(await rows.count()).toBe(2);
    await expect(rows.nth(0).textContent()).resolves.toMatch(/a red seven on a blue background\s*\d+ \/ 75\s*none/);
    await expect(rows.nth(1).textContent()).resolves.toMatch(/\d+ \/ 75\s*dropped “.*a red seven”/);
    await expect(text(page, 't2i-warnings')).resolves.toMatch(/prompt truncated to 75 tokens/);
  }

  it('browser mode, real engine: opens the SD 1.5 fixture by path, describes it, samples prompts', async () => {
    const { page, errors } = await open(served.url);
    await page.getByTestId('model-path').fill(SD15);
    await page.getByRole('button', { name: 'Open folder' }).click();
    await page.getByTestId('pipeline-card').waitFor({ timeout: 60_000 });
    await expect(text(page, 'pipeline-family')).resolves.toBe('Stable Diffusion 1.x/2.x');
    await expect(text(page, 'pipeline-convention')).resolves.toBe('Optimum convention');
    await expect(text(page, 'pipeline-facts')).resolves.toMatch(/images\s*3×128×128\s*latents\s*4×16×16\s*VAE\s*factor 8, scaling 0\.18215, float32/);
    await expect(text(page, 'pipeline-text')).resolves.toMatch(/CLIP last_hidden_state, width 32.*tokenizer vocab\.json\+merges\.txt, 546 tokens, 77 max, pad id 545/s);
    const comps = page.getByTestId('components').locator('tbody tr');
    expect(await comps.count()).toBe(6);
    await expect(comps.filter({ hasText: 'unet' }).textContent()).resolves.toMatch(/denoiser.*diffusers\.UNet2DConditionModel.*sample float32 \[batch_size, 4, height, width\].*timestep float32 \[\].*encoder_hidden_states float32.*out_sample float32/s);
    await expect(comps.filter({ hasText: 'text_encoder' }).textContent()).resolves.toMatch(/input_ids int64 \[batch_size, sequence_length\]/);
    await expect(page.getByTestId('open-model').textContent()).resolves.toContain(SD15);
    await page.getByTestId('pipeline-card').scrollIntoViewIfNeeded();
    await page.getByTestId('components').evaluate((el) => el.scrollIntoView({ block: 'end' }));
    // the components table fits the card at 1280 px (no column cut off)
    expect(await page.getByTestId('components').evaluate((el) => el.scrollWidth <= el.parentElement!.clientWidth + 1)).toBe(true);
    await shot(page, 't2i-1-models');

    await quantizationNotYet(page);
    await shot(page, 't2i-2-recipe-not-yet');

    await samplePrompts(page, '3');
    expect(await page.getByTestId('t2i-grid').evaluate((img: HTMLImageElement) => img.naturalWidth)).toBeGreaterThan(2 * 128);
    await expect(page.getByTestId('view-samples').textContent()).resolves.toMatch(/pndm, 3 steps, guidance 7\.5 · 3×128×128/);
    await shot(page, 't2i-3-samples');

    // SDXL: two text encoders; the second's many hidden_states.k outputs fold into one line
    await page.getByTestId('tab-models').click();
    await page.getByTestId('model-path').fill(join(ROOT, 'test', 'fixtures', 'sdxl-optimum'));
    await page.getByRole('button', { name: 'Open folder' }).click();
    await expect(page.getByTestId('pipeline-family').textContent()).resolves.toBe('Stable Diffusion XL');
    const enc2 = page.getByTestId('components').locator('tbody tr').filter({ hasText: 'text_encoder_2' });
    await expect(enc2.textContent()).resolves.toMatch(/text_embeds float32.*hidden_states\.0…\d+ float32/s);
    await expect(page.getByTestId('components').locator('tbody tr').filter({ hasText: 'denoiser' }).textContent()).resolves.toMatch(/text_embeds float32.*time_ids float32/s);
    await page.getByTestId('components').evaluate((el) => el.scrollIntoView({ block: 'end' }));
    await shot(page, 't2i-5-sdxl-models');
    expect(errors).toEqual([]);
    await page.close();
  }, 300_000);

  it('the mock host: its text-to-image entry drives the same views', async () => {
    const { page, errors } = await open(plain.url);
    await expect(page.getByRole('status').textContent()).resolves.toMatch(/No engine is connected/);
    await page.getByTestId('model-sd15-mock').click();
    await page.getByTestId('pipeline-card').waitFor();
    await expect(text(page, 'pipeline-family')).resolves.toBe('Stable Diffusion 1.x/2.x');
    expect(await page.getByTestId('components').locator('tbody tr').count()).toBe(5);
    await quantizationNotYet(page);
    await samplePrompts(page, '4');
    await shot(page, 't2i-4-mock-samples');
    // the class-conditional mock model still gets the comparison form
    await page.getByTestId('tab-models').click();
    await page.getByTestId('model-tiny-mnist').click();
    await page.getByTestId('tab-samples').click();
    await page.getByTestId('cmp-start').waitFor();
    expect(await page.getByTestId('t2i-prompts').count()).toBe(0);
    expect(errors).toEqual([]);
    await page.close();
  }, 120_000);
});
