/** `dq info` and `dq sample` as a user runs them, including the ways users get them wrong. */
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLASSIFIER, dq, ROOT, tmp, TINY } from '../helpers';

const work = tmp();
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A copy of the tiny pipeline with `mutate` applied. */
function brokenCopy(name: string, mutate: (dir: string) => void): string {
  const dir = join(work, name);
  cpSync(TINY, dir, { recursive: true });
  mutate(dir);
  return dir;
}

function expectOneLineError(r: { code: number; stdout: string; stderr: string }, pattern: RegExp): void {
  expect(r.code).toBe(1);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^dq: error: /);
  expect(lines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
}

describe('dq info', () => {
  it('summarises the embedded pipeline', () => {
    const r = dq(['info', TINY]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/components unet \(UNet2DModel\), scheduler \(DDIMScheduler\)/);
    expect(r.stdout).toMatch(/input\s+sample float32 \[batch, 1, 28, 28\]/);
    expect(r.stdout).toMatch(/input\s+timestep float32 \[batch\]/);
    expect(r.stdout).toMatch(/input\s+class_labels int64 \[batch\]/);
  });

  it('prints JSON with --json', () => {
    const r = dq(['info', TINY, '--json']);
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(info.unet.io).toEqual({ sample: 'sample', timestep: 'timestep', timestepType: 'float32', timestepRank: 1, sampleType: 'float32', classLabels: 'class_labels', output: 'out_sample' });
    expect(info.scheduler.num_train_timesteps).toBe(1000);
    expect(info.unet.parameters).toBeGreaterThan(100_000);
    expect(info.pipeline.classes).toHaveLength(10);
  });
});

describe('bad inputs give one clear line and a non-zero exit', () => {
  it('a path that does not exist', () => expectOneLineError(dq(['info', join(work, 'nope')]), /no such file or folder/));
  it('an ONNX file instead of a folder', () => expectOneLineError(dq(['info', CLASSIFIER]), /single ONNX file is not a pipeline/));
  it('a folder that is not a pipeline', () => expectOneLineError(dq(['info', work]), /model_index\.json is missing/));
  it('a missing unet', () =>
    expectOneLineError(dq(['info', brokenCopy('no-unet', (d) => rmSync(join(d, 'unet'), { recursive: true }))]), /component 'unet' is missing/));
  it('a missing scheduler', () =>
    expectOneLineError(dq(['info', brokenCopy('no-sched', (d) => rmSync(join(d, 'scheduler'), { recursive: true }))]), /component 'scheduler' is missing/));
  it('a truncated model', () => {
    const d = brokenCopy('truncated', (dir) => {
      const f = join(dir, 'unet', 'model.onnx');
      writeFileSync(f, readFileSync(f).subarray(0, 5000));
    });
    expectOneLineError(dq(['info', d]), /unet\/model\.onnx.*(Protobuf parsing failed|not a valid ONNX)/i);
  });
  it('a file that is not ONNX at all', () =>
    expectOneLineError(dq(['info', brokenCopy('text', (d) => writeFileSync(join(d, 'unet', 'model.onnx'), 'hello, I am text'))]), /unet\/model\.onnx/));
  it('a classifier where the denoiser should be', () =>
    expectOneLineError(dq(['info', brokenCopy('classifier', (d) => copyFileSync(CLASSIFIER, join(d, 'unet', 'model.onnx')))]), /not a diffusion denoiser.*image\[batch,1,28,28\]/));
  it('a broken scheduler config', () =>
    expectOneLineError(
      dq(['info', brokenCopy('bad-sched', (d) => writeFileSync(join(d, 'scheduler', 'scheduler_config.json'), '{"beta_schedule": "cubic"}'))]),
      /scheduler_config\.json: field 'beta_schedule'/,
    ));
  it('a class the model does not have', () => expectOneLineError(dq(['sample', TINY, '--class', '12', '--seeds', '0', '--out', join(work, 'o')]), /class 12 is out of range/));
  it('a bad seed list', () => expectOneLineError(dq(['sample', TINY, '--seeds', 'x', '--out', join(work, 'o')]), /--seeds: 'x'/));
  it('usage errors exit 2 with a hint', () => {
    const r = dq(['sample', TINY, '--sampler', 'plms', '--out', join(work, 'o')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Allowed choices are ddpm, ddim, dpm\+\+2m, euler/);
  });
});

describe('dq sample', () => {
  it('writes a labelled grid and samples.json, byte-identical for the same seeds', () => {
    const a = join(work, 'a');
    const b = join(work, 'b');
    mkdirSync(b);
    writeFileSync(join(b, 'grid.png'), 'previous output'); // replaced atomically
    const args = ['--class', '0-9', '--seeds', '0-2', '--steps', '10', '--sampler', 'ddim', '--guidance', '2', '--quiet'];
    const r1 = dq(['sample', TINY, ...args, '--out', a]);
    expect(r1.code, r1.stderr).toBe(0);
    expect(r1.stdout).toMatch(/30 images 28x28, ddim 10 steps, guidance 2, provider cpu/);
    const r2 = dq(['sample', TINY, ...args, '--batch', '7', '--out', b]);
    expect(r2.code, r2.stderr).toBe(0);
    expect(readFileSync(join(a, 'grid.png')).equals(readFileSync(join(b, 'grid.png')))).toBe(true);
    const rec = JSON.parse(readFileSync(join(a, 'samples.json'), 'utf8'));
    expect(rec.seeds).toEqual([0, 1, 2]);
    expect(rec.classes).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(rec.settings).toMatchObject({ steps: 10, sampler: 'ddim', guidance: 2 });
    expect(rec.provider.used).toBe('cpu');
    expect(rec.images).toHaveLength(30);
    expect(rec.seconds).toBeGreaterThan(0);
  });

  it('other seeds give other images', () => {
    const c = join(work, 'c');
    const d = join(work, 'd');
    expect(dq(['sample', TINY, '--class', '3', '--seeds', '0', '--steps', '5', '--quiet', '--out', c]).code).toBe(0);
    expect(dq(['sample', TINY, '--class', '3', '--seeds', '1', '--steps', '5', '--quiet', '--out', d]).code).toBe(0);
    expect(readFileSync(join(c, 'grid.png')).equals(readFileSync(join(d, 'grid.png')))).toBe(false);
  });

  it('runs every sampler', () => {
    for (const s of ['ddpm', 'ddim', 'dpm++2m', 'euler']) {
      const r = dq(['sample', TINY, '--class', '1', '--seeds', '0', '--steps', '4', '--sampler', s, '--quiet', '--out', join(work, `s-${s}`)]);
      expect(r.code, `${s}: ${r.stderr}`).toBe(0);
    }
  });

  it('--provider auto falls back to the CPU and says why', () => {
    const r = dq(['sample', TINY, '--class', '1', '--seeds', '0', '--steps', '2', '--provider', 'auto', '--quiet', '--out', join(work, 'auto')]);
    expect(r.code, r.stderr).toBe(0);
    const rec = JSON.parse(readFileSync(join(work, 'auto', 'samples.json'), 'utf8'));
    expect(rec.provider.requested).toBe('auto');
    expect(['cpu', 'cuda']).toContain(rec.provider.used);
    if (rec.provider.used === 'cpu') expect(rec.provider.fallback).toMatch(/cuda/);
  });
});

describe('how dq starts', () => {
  it('runs from a bundle it rebuilds when a source is newer, with the same behaviour as through tsx', () => {
    const bundle = join(ROOT, 'node_modules', '.cache', 'dq-cli', 'cli.mjs');
    const a = dq(['--version']);
    expect(a.code, a.stderr).toBe(0);
    expect(existsSync(bundle)).toBe(true);
    const before = statSync(bundle).mtimeMs;
    // a source newer than the bundle: the next start rebuilds it
    const src = join(ROOT, 'src-main', 'cli', 'options.ts');
    const t = new Date(Math.max(Date.now(), before) + 2000);
    utimesSync(src, t, t);
    const b = dq(['--help']);
    expect(b.code, b.stderr).toBe(0);
    expect(statSync(bundle).mtimeMs).toBeGreaterThan(before);
    const viaTsx = dq(['--help'], { DQ_CLI_TSX: '1' });
    expect(viaTsx.stdout).toBe(b.stdout);
    // and the bundle finds the repository's files (models, presets) as the sources do
    const i = dq(['info', TINY]);
    expect(i.code, i.stderr).toBe(0);
    expect(dq(['quantize', TINY, '--preset', 'nope', '--out', join(work, 'q')]).stderr).toMatch(/presets: .*int8-w8a8/);
  });
});
