/**
 * The studio on a text-to-image pipeline, in Chromium, in both hosts:
 * - browser mode with the real host and engine: open test/fixtures/sd15-optimum by path (Models: family, convention,
 *   components with their I/O and dtypes, sizes, text and VAE), Calibrate offers prompts, Samples takes prompts and
 *   shows the grid, the token counts and the truncation warning;
 * - the embedded text-to-image model (models/tiny-t2i) end to end: calibrate on typed prompts, the ranges with the
 *   text-only filter, quantize with the text-feature cache and an int8 text encoder, samples of FP and the variant on
 *   the same prompts and seeds with the A/B wipe, the export view's layout and components;
 * - the embedded DiT (models/tiny-dit, SD3 layout, flow matching): described, its sampler, prompts sampled;
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

  /** No view of a text-to-image model says 'not available'; Calibrate offers prompts, Recipe the text fields. */
  async function quantizationOffered(page: Page, ownPrompts: number | null): Promise<void> {
    for (const tab of ['calibrate', 'ranges', 'recipe', 'temporal', 'export'] as const) {
      await page.getByTestId(`tab-${tab}`).click();
      expect(await page.getByTestId('not-yet').count()).toBe(0);
    }
    await page.getByTestId('tab-calibrate').click();
    await page.getByTestId('cal-start').waitFor();
    expect(await page.getByTestId('cal-source-own').count()).toBe(ownPrompts === null ? 0 : 1);
    if (ownPrompts !== null) await expect(text(page, 'cal-prompt-count')).resolves.toMatch(new RegExp(`^${ownPrompts} prompts \\(the pipeline's own\\)`));
    else expect(await page.getByTestId('cal-source-typed').isChecked()).toBe(true);
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

    await quantizationOffered(page, null);
    await expect(page.getByTestId('cal-guidance').inputValue()).resolves.toBe('7.5');
    await expect(page.getByTestId('cal-sampler').locator('option').first().textContent()).resolves.toBe('pndm (the pipeline\'s)');
    await shot(page, 't2i-2-sd15-calibrate');

    await samplePrompts(page, '3');
    expect(await page.getByTestId('t2i-grid').evaluate((img: HTMLImageElement) => img.naturalWidth)).toBeGreaterThan(2 * 128);
    await expect(page.getByTestId('view-samples').textContent()).resolves.toMatch(/pndm, 3 steps, guidance 7\.5 · 3×128×128/);
    await shot(page, 't2i-3-samples');

    // SDXL: two text encoders; the second's many hidden_states.k outputs fold into one line
    await page.getByTestId('tab-models').click();
    await page.getByTestId('model-path').fill(join(ROOT, 'test', 'fixtures', 'sdxl-optimum'));
    await page.getByRole('button', { name: 'Open folder' }).click();
    // the open model stays on screen until the new one has been read
    await page.getByTestId('open-model').filter({ hasText: 'sdxl-optimum' }).waitFor();
    await expect(page.getByTestId('pipeline-family').textContent()).resolves.toBe('Stable Diffusion XL');
    const enc2 = page.getByTestId('components').locator('tbody tr').filter({ hasText: 'text_encoder_2' });
    await expect(enc2.textContent()).resolves.toMatch(/text_embeds float32.*hidden_states\.0…\d+ float32/s);
    await expect(page.getByTestId('components').locator('tbody tr').filter({ hasText: 'denoiser' }).textContent()).resolves.toMatch(/text_embeds float32.*time_ids float32/s);
    await page.getByTestId('components').evaluate((el) => el.scrollIntoView({ block: 'end' }));
    await shot(page, 't2i-5-sdxl-models');
    expect(errors).toEqual([]);
    await page.close();
  }, 300_000);

  it('browser mode, real engine: the embedded DiT (SD3 layout, flow matching) described, calibrated, sampled', async () => {
    const { page, errors } = await open(served.url);
    await page.getByTestId('model-tiny-dit').click();
    await page.getByTestId('pipeline-card').waitFor({ timeout: 60_000 });
    await expect(text(page, 'pipeline-family')).resolves.toBe('Stable Diffusion 3 (DiT, flow matching)');
    await expect(text(page, 'pipeline-text')).resolves.toMatch(/SD3: the CLIP encoders' penultimate hidden states \(width 64\) \+ 0 zero tokens in T5's place/);
    const comps = page.getByTestId('components').locator('tbody tr');
    await expect(comps.filter({ hasText: 'SD3Transformer2DModel' }).textContent()).resolves.toMatch(/denoiser.*SD3Transformer2DModel.*hidden_states float32.*pooled_projections float32.*timestep float32 \[step\]/s);
    await page.getByTestId('layer-map').waitFor({ timeout: 60_000 });
    await shot(page, 't2i-4a-dit-models');
    await page.getByTestId('tab-calibrate').click();
    await expect(page.getByTestId('cal-sampler').locator('option').first().textContent()).resolves.toBe("flow-euler (the pipeline's)");
    await page.getByTestId('tab-samples').click();
    await page.getByTestId('t2i-prompts').fill('a red seven on a blue background\nthe digit three in yellow on magenta\n');
    await page.getByTestId('t2i-seeds').fill('0-3');
    await page.getByTestId('t2i-steps').fill('25');
    await page.getByTestId('t2i-start').click();
    await page.getByTestId('t2i-grid').waitFor({ timeout: 120_000 });
    await expect(page.getByTestId('view-samples').textContent()).resolves.toMatch(/flow-euler, 25 steps, guidance 3 · 3×32×32/);
    const rows = page.getByTestId('t2i-tokens').locator('tbody tr');
    await expect(rows.nth(0).textContent()).resolves.toMatch(/a red seven on a blue background\s*\d+ \/ 14\s*none/);
    await shot(page, 't2i-4b-dit-samples');
    expect(errors).toEqual([]);
    await page.close();
  }, 300_000);

  it('browser mode, real engine: tiny-t2i calibrated on prompts, its ranges by region, quantized, sampled against FP', async () => {
    const { page, errors } = await open(served.url);
    await page.getByTestId('model-tiny-t2i').click();
    await page.getByTestId('layer-map').waitFor({ timeout: 60_000 });
    await expect(text(page, 'layer-summary')).resolves.toMatch(/\d+ text-only \(cross-attention K\/V\), \d+ text features/);
    const own = readFileSync(join(ROOT, 'models', 'tiny-t2i', 'calibration_prompts.txt'), 'utf8').split('\n').filter((l) => l.trim()).length;
    await quantizationOffered(page, own);

    // Calibrate on two typed prompts (the pipeline's own are shown first), with a negative prompt
    await page.getByTestId('cal-prompts').fill('a red seven on a blue background\n\nthe digit two in green on black\n');
    await expect(text(page, 'cal-prompt-count')).resolves.toMatch(/^2 prompts$/);
    expect(await page.getByTestId('cal-source-typed').isChecked()).toBe(true);
    await page.getByTestId('cal-negative').fill('blurry');
    await page.getByTestId('cal-samples').fill('4');
    await page.getByTestId('cal-steps').fill('4');
    await page.getByTestId('cal-start').click();
    await page.getByTestId('cal-done').waitFor({ timeout: 120_000 });
    await expect(page.getByTestId('cal-job').textContent()).resolves.toMatch(/4 images × 4 steps, 2 prompts/);
    await shot(page, 't2i-6-tiny-calibrate');

    // Ranges: every site, then the text-only region: one row per text-only site, the same value at every timestep
    await page.getByTestId('tab-ranges').click();
    await page.getByTestId('heatmap').waitFor({ timeout: 30_000 });
    await expect(text(page, 'ranges-prompts')).resolves.toMatch(/Calibrated on 2 prompts \(“a red seven on a blue background”, …\), negative “blurry”, guidance 3, ddim/);
    const cells = page.getByTestId('heatmap').locator('rect[role="presentation"]');
    const all = await cells.count();
    await page.getByTestId('ranges-region').selectOption('text');
    const textCells = await cells.count();
    expect(textCells % 4).toBe(0);
    expect(textCells).toBeGreaterThan(0);
    expect(textCells).toBeLessThan(all);
    const titles = await cells.locator('title').allTextContents();
    for (let r = 0; r < textCells / 4; r++) expect(new Set(titles.slice(4 * r, 4 * r + 4).map((t) => t.split(': ').pop())).size).toBe(1);
    await expect(text(page, 'ranges-text-note')).resolves.toMatch(/Text-only site.*the same at every timestep/s);
    const sites = await page.getByTestId('ranges-site').locator('option').allTextContents();
    expect(sites.every((o) => o.includes('(text-only)'))).toBe(true);
    await shot(page, 't2i-7-tiny-ranges-text');
    await page.getByTestId('ranges-region').selectOption('rest');
    expect(await page.getByTestId('ranges-text-note').count()).toBe(0);
    expect((await page.getByTestId('ranges-site').locator('option').allTextContents()).some((o) => o.includes('(text-only)') || o.includes('(temporal)'))).toBe(false);

    // Recipe: int8-w8a8 with the text-feature cache and an int8 text encoder
    await page.getByTestId('tab-recipe').click();
    await page.getByTestId('recipe-preset').selectOption('int8-w8a8');
    await page.getByTestId('recipe-name').fill('w8a8-text');
    // disturbance-aware with a threshold below int8's error: every text feature measured, and cached
    await page.getByTestId('recipe-text').selectOption('auto');
    await page.getByTestId('recipe-text-threshold').fill('0.00001');
    await page.getByTestId('component-text_encoder').check();
    expect(await page.getByTestId('keep-added-embedding').count()).toBe(0); // no added embedding in an SD 1.x UNet
    await page.getByTestId('quantize').click();
    await page.getByTestId('variant-w8a8-text').waitFor({ timeout: 120_000 });
    await expect(page.getByTestId('variant-text').locator('summary').textContent()).resolves.toMatch(/Text features: disturbance-aware \(cache above 0\.00001\) · ([1-9]\d*) of \1 features? cached/);
    const errs = await page.getByTestId('variant-text').locator('tbody tr td:nth-child(2)').allTextContents();
    expect(errs.length).toBeGreaterThan(0);
    for (const e of errs) expect(Number(e)).toBeGreaterThan(0);
    await expect(page.getByTestId('variant-components').textContent()).resolves.toMatch(/text_encoder.*cosine 0\.9\d+/s);
    await page.getByTestId('variant-text').locator('summary').click();
    await page.getByTestId('variant-components').scrollIntoViewIfNeeded();
    await shot(page, 't2i-8-tiny-recipe');

    // Samples: FP and the variant on the same prompts and seeds, the A/B wipe
    await page.getByTestId('tab-samples').click();
    await page.getByTestId('t2i-prompts').fill('a red seven on a blue background\nthe digit two in green on black\na yellow number 4 on a magenta background');
    await page.getByTestId('t2i-seeds').fill('0-3');
    await page.getByTestId('t2i-steps').fill('8');
    expect(await page.getByTestId('t2i-variant-w8a8-text').isChecked()).toBe(true);
    await page.getByTestId('t2i-start').click();
    await page.getByTestId('t2i-grid-w8a8-text').waitFor({ timeout: 120_000 });
    await page.getByTestId('t2i-grid').waitFor();
    const size = (id: string) => page.getByTestId(id).evaluate((img: HTMLImageElement) => [img.naturalWidth, img.naturalHeight]);
    expect(await size('t2i-grid-w8a8-text')).toEqual(await size('t2i-grid'));
    await page.getByTestId('wipe').waitFor();
    await page.getByTestId('wipe-slider').fill('70');
    await page.getByTestId('t2i-ab').scrollIntoViewIfNeeded();
    await shot(page, 't2i-9-tiny-samples');
    // Compare: the same prompts and seeds with metrics against FP, and the per-step curves in Temporal features
    await page.getByTestId('t2i-compare').click();
    await page.getByTestId('t2i-metrics').waitFor({ timeout: 180_000 });
    const rowsM = page.getByTestId('t2i-metrics').locator('tbody tr');
    expect(await rowsM.count()).toBe(2);
    await expect(rowsM.nth(1).textContent()).resolves.toMatch(/w8a8-text\s*\d+\.\d\d\s*\d+\.\d\d\s*0\.\d{4}/);
    await expect(text(page, 't2i-metrics')).resolves.toMatch(/12 images \(3 prompts × 4 seeds\)/);
    await page.getByTestId('t2i-diff-w8a8-text').waitFor();
    await page.getByTestId('t2i-metrics').scrollIntoViewIfNeeded();
    await shot(page, 't2i-9b-tiny-compare');

    // Temporal: the variant's caches; Export: the layout and what happens to each component
    await page.getByTestId('tab-temporal').click();
    await page.getByTestId('temporal-variant-w8a8-text').waitFor();
    await page.getByTestId('eps-chart').waitFor();
    await shot(page, 't2i-10-tiny-features');
    await page.getByTestId('tab-export').click();
    await expect(text(page, 'export-layout')).resolves.toMatch(/Layout: Optimum/);
    const plan = await page.getByTestId('export-components-w8a8-text').textContent();
    expect(plan).toMatch(/text_encoder\s*conditioner\s*int8 weights/);
    expect(plan).toMatch(/unet\s*denoiser\s*exported/);
    expect(plan).toMatch(/vae_decoder\s*latent codec\s*copied unchanged/);
    expect(await page.getByTestId('export-w8a8-text').isEnabled()).toBe(true);
    await shot(page, 't2i-11-tiny-export');
    await page.getByTestId('export-w8a8-text').click();
    await page.getByTestId('export-job').first().waitFor();
    await page.locator('[data-testid="export-job"]:not([data-state="running"])').first().waitFor({ timeout: 300_000 });
    await expect(page.getByTestId('export-job').first().getAttribute('data-state')).resolves.toBe('done');
    await expect(text(page, 'export-result')).resolves.toMatch(/w8a8-text.*on disk.*layers on integer kernels.*attention blocks fused/s);
    await expect(text(page, 'export-verdict')).resolves.toMatch(/As expected/);
    await page.getByTestId('export-result').scrollIntoViewIfNeeded();
    await shot(page, 't2i-12-tiny-exported');
    // the variant belongs to tiny-t2i: another model's Samples and Export do not offer it
    await page.getByTestId('tab-models').click();
    await page.getByTestId('model-tiny-mnist').click();
    await page.getByTestId('layer-map').waitFor();
    await page.getByTestId('tab-samples').click();
    await page.getByTestId('cmp-start').waitFor();
    await expect(page.getByTestId('view-samples').textContent()).resolves.toMatch(/no quantized variants yet/);
    await page.getByTestId('tab-export').click();
    expect(await page.getByTestId('export-w8a8-text').count()).toBe(0);
    expect(errors).toEqual([]);
    await page.close();
  }, 600_000);

  it('the mock host: its text-to-image entry drives the same views', async () => {
    const { page, errors } = await open(plain.url);
    await expect(page.getByRole('status').textContent()).resolves.toMatch(/No engine is connected/);
    await page.getByTestId('model-sd15-mock').click();
    await page.getByTestId('pipeline-card').waitFor();
    await expect(text(page, 'pipeline-family')).resolves.toBe('Stable Diffusion 1.x/2.x');
    expect(await page.getByTestId('components').locator('tbody tr').count()).toBe(5);
    await quantizationOffered(page, 3);
    // no engine: starting a calibration says so, as an error the view shows
    await page.getByTestId('cal-start').click();
    await expect(page.getByRole('alert').first().textContent()).resolves.toMatch(/no engine is connected/);
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
