/** Shared setup of the end-to-end tests: the renderer built into a temporary folder, browser mode, Chromium. */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { build } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { ROOT, tmp } from '../helpers';
import { createHost, type Host } from '../../src-main/host';
import { serve, type Served } from '../../src-main/serve/server';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const browserHere = existsSync(CHROMIUM);
export const SHOTS = join(ROOT, 'test-results', 'e2e');

/** Builds the renderer on its own (not into out/, which other tests build concurrently). */
export async function buildRenderer(): Promise<string> {
  const outDir = tmp('dq-e2e-ui-');
  await build({
    root: join(ROOT, 'src-renderer'),
    base: './',
    logLevel: 'warn',
    configFile: false,
    plugins: [svelte({ configFile: false })],
    build: { outDir, emptyOutDir: true },
  });
  mkdirSync(SHOTS, { recursive: true });
  return outDir;
}

export function launch(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

/** The studio in browser mode with the real host and engine, and Chromium: what most end-to-end tests start with. */
export interface StudioRun {
  host: Host;
  served: Served;
  browser: Browser;
  close(): Promise<void>;
}

export async function startStudio(label: string): Promise<StudioRun> {
  const ui = await buildRenderer();
  const host = createHost('browser', label);
  const served = await serve({ host, uiDir: ui });
  const browser = await launch();
  return {
    host,
    served,
    browser,
    async close() {
      await browser.close();
      await served.close();
      await host.dispose();
      rmSync(host.workspace, { recursive: true, force: true });
      rmSync(ui, { recursive: true, force: true });
    },
  };
}
