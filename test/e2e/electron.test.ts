/**
 * The Electron shell itself (`_electron.launch`), on machines that have the Electron binary: the window, the contract
 * over IPC, and the hardening (own scheme, permissions denied, utility-process workers). Where it is missing
 * (it cannot be downloaded on our CI machines), the test is skipped with that reason; browser mode runs the same
 * renderer and contract (studio.test.ts).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { _electron, type ElectronApplication } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers';

/** The binary `require('electron')` would name, found without requiring it (which tries to download it). */
function electronBinary(): { path: string | null; why: string } {
  let dir: string;
  try {
    dir = dirname(createRequire(import.meta.url).resolve('electron/package.json'));
  } catch {
    return { path: null, why: 'the electron package is not installed' };
  }
  const dist = process.env.ELECTRON_OVERRIDE_DIST_PATH ?? join(dir, 'dist');
  const pathTxt = join(dir, 'path.txt');
  if (!process.env.ELECTRON_OVERRIDE_DIST_PATH && !existsSync(pathTxt)) return { path: null, why: `the Electron binary is missing (no ${pathTxt}: it was never downloaded)` };
  const bin = join(dist, process.env.ELECTRON_OVERRIDE_DIST_PATH ? 'electron' : readFileSync(pathTxt, 'utf8').trim());
  return existsSync(bin) ? { path: bin, why: '' } : { path: null, why: `the Electron binary is missing (no ${bin})` };
}
const electron = electronBinary();

describe.skipIf(!electron.path)(`the Electron shell${electron.path ? '' : ` (skipped: ${electron.why})`}`, () => {
  let app: ElectronApplication;
  beforeAll(async () => {
    const r = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'electron-vite', 'bin', 'electron-vite.js'), 'build'], { cwd: ROOT, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`electron-vite build failed:\n${r.stdout}\n${r.stderr}`);
    app = await _electron.launch({ executablePath: electron.path!, args: [join(ROOT, 'out', 'main', 'index.js')], cwd: ROOT });
  }, 180_000);
  afterAll(async () => {
    await app?.close();
  });

  it('opens the studio window with the contract over IPC, sandboxed', async () => {
    const page = await app.firstWindow();
    await page.getByTestId('model-tiny-mnist').waitFor();
    await expect(page.getByTestId('host').textContent()).resolves.toMatch(/electron host/);
    // no Node in the renderer; the contract is all it sees
    await expect(page.evaluate(() => typeof (globalThis as { require?: unknown }).require)).resolves.toBe('undefined');
    await expect(page.evaluate(() => Object.keys((window as unknown as { dq: object }).dq).sort())).resolves.toContain('startJob');
    await page.getByTestId('model-tiny-mnist').click();
    await page.getByTestId('layer-map').waitFor();
    await page.screenshot({ path: join(ROOT, 'test-results', 'e2e', 'electron-models.png') });
  });

  it('serves the page from its own scheme, denies every permission and runs jobs in utility processes', async () => {
    const page = await app.firstWindow();
    expect(page.url()).toMatch(/^dq-studio:\/\/app\//);
    // the permission check handler answers no to everything
    await expect(page.evaluate(async () => (await navigator.permissions.query({ name: 'notifications' as PermissionName })).state)).resolves.toBe('denied');
    await expect(page.evaluate(async () => (await navigator.permissions.query({ name: 'geolocation' as PermissionName })).state)).resolves.toBe('denied');
    // a file outside the renderer folder is not served through the scheme
    await expect(page.evaluate(async () => (await fetch('dq-studio://app/../../package.json')).status)).resolves.toBe(404);
    // a calibration runs to the end in a worker started by utilityProcess (no RunAsNode)
    await page.getByTestId('tab-calibrate').click();
    await page.getByTestId('cal-samples').fill('2');
    await page.getByTestId('cal-steps').fill('2');
    await page.getByTestId('cal-start').click();
    await page.locator('[data-testid="cal-job"][data-state="done"]').waitFor({ timeout: 120_000 });
  }, 180_000);
});
