/**
 * The desktop app builds (electron-vite: main, sandboxed CJS preload, Svelte renderer) and its first screen renders
 * in a real browser. Electron itself cannot be launched on machines without its binary (see README); the renderer
 * runs here against the mock host and shows that no engine is connected.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { extname, join, normalize } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser } from 'playwright-core';
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

const MIME: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css' };

describe.skipIf(!browserHere && !required('DQ_REQUIRE_BROWSER'))(`first screen in Chromium${browserHere ? '' : ' (skipped: no Chromium at ' + CHROMIUM + '; .ci/install-system-deps.sh installs it)'}`, () => {
  let server: Server;
  let browser: Browser;
  let url: string;
  beforeAll(async () => {
    const root = join(OUT, 'renderer');
    server = createServer((req, res) => {
      const p = normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
      const file = join(root, p === '/' ? 'index.html' : p);
      if (!file.startsWith(root) || !existsSync(file)) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': MIME[extname(file)] ?? 'application/octet-stream' }).end(readFileSync(file));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}/`;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
  });
  afterAll(async () => {
    await browser?.close();
    server?.close();
  });

  it('lists the models the host reports, reachable by keyboard, at 1280x800', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(url);
    await page.getByRole('heading', { name: 'DQ Studio' }).waitFor();
    await expect(page.getByTestId('model-tiny-mnist').textContent()).resolves.toMatch(/tiny-mnist/);
    await expect(page.getByRole('status').textContent()).resolves.toMatch(/No engine is connected/);
    await page.keyboard.press('Tab');
    await expect(page.evaluate(() => document.activeElement?.getAttribute('data-testid'))).resolves.toBe('model-tiny-mnist');
    await page.screenshot({ path: join(ROOT, 'test-results', 'first-screen.png') });
    expect(errors).toEqual([]);
  });
});
