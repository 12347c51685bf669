/**
 * Issue 17's end-to-end chain, as a user runs it with the CLI, on the SDXL fixture (two text encoders, pooled text
 * and size ids, external weights): calibrate on prompts -> quantize -> compare -> export -> sample the export. Each
 * step's output is the next one's input; the export keeps the layout it came in. (SD 1.5's Optimum chain runs in
 * test/integration/export/t2i-sd15.test.ts and compare/t2i.test.ts.)
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { describeComponents } from '../../src-main/core/pipeline/components';
import { dqOk, ROOT, tmp } from '../helpers';

const F = (name: string) => join(ROOT, 'test', 'fixtures', name);
const work = tmp('dq-t2i-e2e-');
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function chain(fixture: string, size: string[]): Promise<void> {
  const src = F(fixture);
  const dir = join(work, fixture);
  const prompts = join(work, `${fixture}-prompts.txt`);
  writeFileSync(prompts, 'a red cat\na blue dog on grass\n');
  const cal = dqOk(['calibrate', src, '--prompts', prompts, '--samples', '1', '--steps', '2', '--batch', '1', '--quiet', '--out', join(dir, 'cal.json'), ...size]);
  expect(cal).toMatch(/^calibrated \d+ activation sites at 2 steps \(1 images\)/);
  const rec = JSON.parse(readFileSync(join(dir, 'cal.json'), 'utf8')) as { settings: { prompts: string[] }; sites: { text?: boolean }[] };
  expect(rec.settings.prompts).toEqual(['a red cat', 'a blue dog on grass']);
  expect(rec.sites.some((s) => s.text)).toBe(true);

  // tfmq-w4a8: the temporal cache (on SDXL it covers the added embedding) and the text features measured
  dqOk(['quantize', src, '--preset', 'tfmq-w4a8', '--calib', join(dir, 'cal.json'), '--out', join(dir, 'v')]);
  const manifest = JSON.parse(readFileSync(join(dir, 'v', 'manifest.json'), 'utf8')) as { text?: { mode: string; disturbance: unknown[] }; temporal?: { cached: string[] } };
  expect(manifest.text?.mode).toBe('auto');
  expect(manifest.text!.disturbance.length).toBeGreaterThan(0);
  expect(manifest.temporal!.cached.length).toBeGreaterThan(0);

  const cmp = dqOk(['compare', src, join(dir, 'v'), '--prompt', 'a red cat', '--seeds', '0', '--steps', '2', '--fid-samples', '0', '--out', join(dir, 'cmp'), ...size]);
  expect(cmp).toMatch(/tfmq-w4a8: PSNR [\d.]+ dB mean/);
  const metrics = JSON.parse(readFileSync(join(dir, 'cmp', 'metrics.json'), 'utf8')) as { variants: { name: string; psnr?: { mean: number } }[] };
  expect(metrics.variants.length).toBeGreaterThanOrEqual(2);

  dqOk(['export', join(dir, 'v'), '--out', join(dir, 'x'), '--no-verify']);
  const a = await describeComponents(src, {});
  const b = await describeComponents(join(dir, 'x'), {});
  expect(b.convention).toBe(a.convention);
  expect(b.components.map((c) => c.name)).toEqual(a.components.map((c) => c.name));

  const s = dqOk(['sample', join(dir, 'x'), '--prompt', 'a red cat', '--seeds', '0-1', '--steps', '2', '--out', join(dir, 's'), ...size]);
  expect(s).toMatch(/2 images/);
  expect(existsSync(join(dir, 's', 'grid.png'))).toBe(true);
}

describe('calibrate -> quantize -> compare -> export -> sample', () => {
  it('SDXL (Optimum, external weights)', () => chain('sdxl-optimum', []), 900_000);
});
