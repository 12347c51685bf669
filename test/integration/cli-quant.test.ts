/** The PTQ commands as a user runs them: calibrate, quantize, sample the variant, eval, and their errors. */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { dq, tmp, TINY } from '../helpers';

const work = tmp();
afterAll(() => rmSync(work, { recursive: true, force: true }));
const rec = join(work, 'calib.json');

describe('dq calibrate / quantize / eval', () => {
  it('calibrate writes a record', () => {
    const r = dq(['calibrate', TINY, '--samples', '8', '--steps', '5', '--batch', '4', '--quiet', '--out', rec]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/calibrated \d+ activation sites at 5 steps \(8 images\)/);
    expect(JSON.parse(readFileSync(rec, 'utf8')).kind).toBe('dq-calibration');
  });

  it('quantize writes a variant that dq sample and dq info read', () => {
    const v = join(work, 'int8');
    const r = dq(['quantize', TINY, '--preset', 'int8-w8a8', '--calib', rec, '--out', v]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/int8-w8a8: 33 layers quantized, 0 kept in FP; weights 8\.\d+ bits\/parameter, activations int8 asym \(simulated\)/);
    const s = dq(['sample', v, '--class', '1,7', '--seeds', '0', '--steps', '5', '--quiet', '--out', join(work, 's')]);
    expect(s.code, s.stderr).toBe(0);
    expect(existsSync(join(work, 's', 'grid.png'))).toBe(true);
    const i = dq(['info', v]);
    expect(i.code, i.stderr).toBe(0);
    expect(i.stdout).toMatch(/variant\s+int8-w8a8 \(simulated quantization: float32 storage\): 33 layers quantized, 0 in FP/);
  });

  it('quantize without --calib calibrates first with the defaults (and says so), then reuses that record', () => {
    const v = join(work, 'auto');
    const r = dq(['quantize', TINY, '--preset', 'int8-w8a8', '--out', v]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/no --calib: int8-w8a8 quantizes activations \(int8 asym\), so dq calibrates first with the defaults: 64 images x 25 steps, .* -> .*auto\.calibration\.json/);
    expect(r.stdout).toMatch(/int8-w8a8: 33 layers quantized/);
    const record = JSON.parse(readFileSync(`${v}.calibration.json`, 'utf8'));
    expect(record.settings.samples).toBe(64);
    const again = dq(['quantize', TINY, '--preset', 'int8-w8a8', '--out', v]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/reusing .*auto\.calibration\.json \(made by an earlier dq quantize for this model with the same settings\)/);
    // a recipe that needs no record does not calibrate
    const w = dq(['quantize', TINY, '--preset', 'mxfp4-w4a8', '--out', join(work, 'mx')]);
    expect(w.code, w.stderr).toBe(0);
    expect(w.stderr).not.toMatch(/no --calib/);
    expect(existsSync(join(work, 'mx.calibration.json'))).toBe(false);
  });

  it('eval prints the table and writes eval.json', () => {
    const r = dq(['eval', TINY, '--presets', 'naive-w4a8,q-diffusion-w4a8', '--samples', '20', '--steps', '5', '--calib', rec, '--out', join(work, 'eval')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/variant\s+agree %\s+FID-to-FP/);
    for (const v of ['fp', 'naive-w4a8', 'q-diffusion-w4a8']) expect(r.stdout).toMatch(new RegExp(`^${v}\\s+\\d`, 'm'));
    const e = JSON.parse(readFileSync(join(work, 'eval', 'eval.json'), 'utf8'));
    expect(e.rows.map((x: { variant: string }) => x.variant)).toEqual(['fp', 'naive-w4a8', 'q-diffusion-w4a8']);
    expect(e.rows[0].fidToFp).toBe(0);
  });

  it('errors are one clear line', () => {
    const bad = join(work, 'bad.json');
    writeFileSync(bad, JSON.stringify({ name: 'x', weights: { format: { kind: 'int', bits: 12, symmetric: true } }, activations: null }));
    for (const [args, pattern] of [
      [['quantize', TINY, '--preset', bad, '--out', join(work, 'q')], /field 'weights\.format\.bits'/],
      [['quantize', TINY, '--preset', 'nope', '--out', join(work, 'q')], /no preset or recipe file 'nope'/],
      [['quantize', TINY, '--preset', 'int8-w8a8', '--calib', join(work, 'missing.json'), '--out', join(work, 'q')], /no calibration record at/],
      [['export', join(work, 'nowhere'), '--out', join(work, 'x')], /no such folder: .*nowhere/],
      [['export', TINY, '--out', join(work, 'x')], /is not a quantized variant \(no manifest\.json\)/],
    ] as const) {
      const r = dq([...args]);
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(pattern);
    }
  });
});
