/**
 * The desktop app builds (electron-vite: main, sandboxed CJS preload, Svelte renderer) and its first screen renders
 * in a real browser. Electron itself cannot be launched on machines without its binary (see README), so the
 * renderer runs in Chromium against browser mode (`dq serve`), the same contract over HTTP.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser } from 'playwright-core';
import { createHost, type Host } from '../../src-main/host';
import { serve, type Served } from '../../src-main/serve/server';
import { required, ROOT } from '../helpers';

const OUT = join(ROOT, 'out');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const browserHere = existsSync(CHROMIUM);

beforeAll(() => {
  const r = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'electron-vite', 'bin', 'electron-vite.js'), 'build'], { cwd: ROOT, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`electron-vite build failed:\n${r.stdout}\n${r.stderr}`);
}, 180_000);

describe('electron-vite build', () => {
  it('emits main, a CommonJS preload and the renderer', () => {
    expect(existsSync(join(OUT, 'main', 'index.js'))).toBe(true);
    const preload = readFileSync(join(OUT, 'preload', 'index.cjs'), 'utf8');
    expect(preload).toMatch(/require\(["']electron["']\)/);
    expect(preload).toMatch(/exposeInMainWorld\(["']dq["']/);
    const main = readFileSync(join(OUT, 'main', 'index.js'), 'utf8');
    expect(main).toMatch(/contextIsolation:\s*true/);
    expect(main).toMatch(/sandbox:\s*true/);
    expect(main).toMatch(/nodeIntegration:\s*false/);
    expect(readFileSync(join(OUT, 'renderer', 'index.html'), 'utf8')).toMatch(/Content-Security-Policy/);
  });

  it('keeps Node out of the renderer bundle', () => {
    const assets = join(OUT, 'renderer', 'assets');
    const js = readdirSync(assets).filter((f) => f.endsWith('.js'));
    for (const f of js) expect(readFileSync(join(assets, f), 'utf8')).not.toMatch(/require\(["'](node:)?(fs|child_process)["']\)|onnxruntime-node/);
  });
});

describe.skipIf(!browserHere && !required('DQ_REQUIRE_BROWSER'))(`browser mode in Chromium${browserHere ? '' : ' (skipped: no Chromium at ' + CHROMIUM + '; .ci/install-system-deps.sh installs it)'}`, () => {
  let served: Served;
  let browser: Browser;
  let host: Host;
  beforeAll(async () => {
    host = createHost('browser', 'test');
    served = await serve({ host, uiDir: join(OUT, 'renderer') });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await served?.close();
    await host?.dispose();
  });

  it('lists the embedded models from the real host, reachable by keyboard, at 1280x800', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    await page.goto(served.url);
    await page.getByRole('heading', { name: 'DQ Studio' }).waitFor();
    await page.getByTestId('model-tiny-mnist').waitFor();
    await expect(page.getByTestId('host').textContent()).resolves.toMatch(/browser host · providers: cpu, webgpu/);
    await expect(page.getByTestId('model-tiny-mnist').textContent()).resolves.toMatch(/diffusion pipeline.*1×28×28.*10 classes/s);
    await expect(page.getByTestId('model-mnist-classifier').textContent()).resolves.toMatch(/classifier/);
    await expect(page.getByTestId('model-tiny-video').textContent()).resolves.toMatch(/diffusion pipeline.*8 frames of 3×32×32/s);
    expect(await page.getByRole('status').count()).toBe(0); // no "no engine" warning: this is the real host
    // the view tabs come first in the tab order, then the models
    await page.keyboard.press('Tab');
    await expect(page.evaluate(() => document.activeElement?.getAttribute('data-testid'))).resolves.toBe('tab-models');
    // then the model cards in order (tiny-dit first), then the folder field
    const focused = async () => page.evaluate(() => document.activeElement?.getAttribute('data-testid'));
    await page.keyboard.press('Tab');
    await expect(focused()).resolves.toBe('model-tiny-dit');
    await page.keyboard.press('Tab');
    await expect(focused()).resolves.toBe('model-tiny-mnist');
    await page.keyboard.press('Tab');
    await expect(focused()).resolves.toBe('model-tiny-t2i');
    await page.keyboard.press('Tab');
    await expect(focused()).resolves.toBe('model-tiny-video');
    await page.keyboard.press('Tab');
    await expect(focused()).resolves.toBe('model-path');
    await page.screenshot({ path: join(ROOT, 'test-results', 'first-screen.png') });
    expect(errors).toEqual([]);
  });

  it('without the token the page is refused', async () => {
    const page = await browser.newPage();
    const res = await page.goto(served.url.replace(/\?token=.*/, ''));
    expect(res?.status()).toBe(401);
  });
});
