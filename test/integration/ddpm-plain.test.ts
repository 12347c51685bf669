/**
 * Issue 16 acceptance: a plain diffusers DDPMPipeline folder (what DDPMPipeline.save_pretrained writes, plus its
 * UNet2DModel exported to unet/model.onnx; no private fields in model_index.json) works with `dq info` and
 * `dq sample`. The fixture's graph has dynamic height and width, so the sample size can only come from
 * unet/config.json's sample_size (tools/make_sd_fixtures.py --only ddpm-plain).
 */
import { cpSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { dq, ROOT, tmp } from '../helpers';

const FIXTURE = join(ROOT, 'test', 'fixtures', 'ddpm-plain');
const work = tmp('dq-ddpm-plain-');
afterAll(() => rmSync(work, { recursive: true, force: true }));

type Samples = { imageShape: number[]; seeds: number[]; classes: unknown[]; settings: { sampler: string; steps: number } };

function sample(out: string, ...args: string[]) {
  return dq(['sample', FIXTURE, '--steps', '3', '--quiet', '--out', join(work, out), ...args]);
}

/** A copy of the fixture with unet/config.json edited. */
function withUnetConfig(name: string, edit: (c: Record<string, unknown>) => void): string {
  const dir = join(work, name);
  cpSync(FIXTURE, dir, { recursive: true });
  const file = join(dir, 'unet', 'config.json');
  const c = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  edit(c);
  writeFileSync(file, JSON.stringify(c));
  return dir;
}

describe('a plain diffusers DDPMPipeline folder', () => {
  it('is what diffusers writes: no private fields, a graph with dynamic height and width', () => {
    const index = JSON.parse(readFileSync(join(FIXTURE, 'model_index.json'), 'utf8')) as Record<string, unknown>;
    expect(Object.keys(index).sort()).toEqual(['_class_name', '_diffusers_version', 'scheduler', 'unet']);
    const info = dq(['info', FIXTURE]);
    expect(info.code, info.stderr).toBe(0);
    expect(info.stdout).toMatch(/^\s+input\s+sample float32 \[batch, 3, height, width\]$/m);
  });

  it('dq info: DDPMPipeline, unconditional, sample 3x32x32 from unet/config.json', () => {
    const r = dq(['info', FIXTURE]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^class\s+DDPMPipeline\b/m);
    expect(r.stdout).toMatch(/^sample\s+3x32x32$/m);
    expect(r.stdout).toMatch(/^classes\s+unconditional$/m);
    const j = dq(['info', FIXTURE, '--json']);
    expect(j.code, j.stderr).toBe(0);
    const p = (JSON.parse(j.stdout) as { pipeline: { className: string; sampleShape: number[]; shapeSource: string; defaultSampler: string } }).pipeline;
    expect(p.className).toBe('DDPMPipeline');
    expect(p.sampleShape).toEqual([3, 32, 32]);
    expect(p.shapeSource).toMatch(/unet\/config\.json/);
    expect(p.defaultSampler).toBe('ddpm');
  });

  it('dq sample: 3x32x32 images with the DDPMScheduler, a grid; the same seeds give the same grid, other seeds another', () => {
    const a = sample('a', '--seeds', '0-1');
    expect(a.code, a.stderr).toBe(0);
    const s = JSON.parse(readFileSync(join(work, 'a', 'samples.json'), 'utf8')) as Samples;
    expect(s.imageShape).toEqual([3, 32, 32]);
    expect(s.seeds).toEqual([0, 1]);
    expect(s.classes).toEqual([]);
    expect(s.settings.sampler).toBe('ddpm');
    expect(s.settings.steps).toBe(3);
    expect(existsSync(join(work, 'a', 'grid.png'))).toBe(true);
    const b = sample('b', '--seeds', '0-1');
    expect(b.code, b.stderr).toBe(0);
    expect(readFileSync(join(work, 'a', 'grid.png')).equals(readFileSync(join(work, 'b', 'grid.png')))).toBe(true);
    const c = sample('c', '--seeds', '2-3');
    expect(c.code, c.stderr).toBe(0);
    expect(readFileSync(join(work, 'a', 'grid.png')).equals(readFileSync(join(work, 'c', 'grid.png')))).toBe(false);
  });

  it('--class is refused in one line: the pipeline is unconditional', () => {
    const r = sample('class', '--seeds', '0', '--class', '1');
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^dq: error: .*unconditional/);
    expect(existsSync(join(work, 'class', 'grid.png'))).toBe(false);
  });

  it('the size follows unet/config.json: sample_size [16, 24] gives 3x16x24 images', () => {
    const dir = withUnetConfig('hw', (c) => {
      c.sample_size = [16, 24];
    });
    const i = dq(['info', dir]);
    expect(i.code, i.stderr).toBe(0);
    expect(i.stdout).toMatch(/^sample\s+3x16x24$/m);
    const r = dq(['sample', dir, '--steps', '2', '--seeds', '0', '--quiet', '--out', join(work, 'hw-out')]);
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(readFileSync(join(work, 'hw-out', 'samples.json'), 'utf8')) as Samples).imageShape).toEqual([3, 16, 24]);
  });

  it('without sample_size (and a graph of dynamic size) the size is unknown: one line', () => {
    const dir = withUnetConfig('nosize', (c) => {
      delete c.sample_size;
    });
    const r = dq(['info', dir]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^dq: error: .*sample size.*sample_size/);
  });
});
