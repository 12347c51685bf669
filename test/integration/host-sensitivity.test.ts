/**
 * Where the bits matter, through the host (issue 20): a sensitivity job on a quantize job's variant, then the same
 * recipe quantized under a bits budget from that job's record; errors as data.
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ParetoResult, QuantizeResult, SensitivityResult } from '../../src-main/contract/api';
import { createHost, dispatch, type Host } from '../../src-main/host';
import { jobFinished } from '../host-helpers';
import { ROOT } from '../helpers';

const host: Host = createHost('browser', 'test');
afterAll(async () => {
  await host.dispose();
  rmSync(host.workspace, { recursive: true, force: true });
});


describe('sensitivity and budget jobs', () => {
  it('measures a variant layer by layer and per step range, then quantizes the recipe under a budget', async () => {
    const cal = await jobFinished(host, { kind: 'calibrate', model: 'tiny-mnist', samples: 4, steps: 4 });
    expect(cal.state).toBe('done');
    const recipe = { ...JSON.parse(readFileSync(join(ROOT, 'presets', 'naive-w4a8.json'), 'utf8')), keepFormat: { kind: 'int', bits: 8, symmetric: true } };
    delete recipe.$schema;
    const q = await jobFinished(host, { kind: 'quantize', model: 'tiny-mnist', recipe, calibration: cal.id });
    expect(q.state).toBe('done');
    const base = q.result as QuantizeResult;
    const s = await jobFinished(host, { kind: 'sensitivity', model: 'tiny-mnist', variant: q.id, samples: 2, steps: 4, ranges: 2 });
    expect(s.error).toBeNull();
    const r = s.result as SensitivityResult;
    expect(r.kind).toBe('sensitivity');
    expect(r.ranges.map((x) => x.steps)).toEqual([[0, 1], [2, 3]]);
    expect(r.layers.length).toBe(base.layers.filter((l) => l.weightBits !== null).length);
    expect(r.layers.filter((l) => l.ranges.length === 2)).toHaveLength(Math.min(24, r.layers.length));
    expect(r.base.mse).toBeGreaterThan(0);
    const bits = base.summary.weightBitsPerParameter + 0.5;
    const b = await jobFinished(host, { kind: 'quantize', model: 'tiny-mnist', recipe: { ...recipe, name: `naive-w4a8@${bits}` }, calibration: cal.id, budget: { bits, sensitivity: s.id } });
    expect(b.error).toBeNull();
    const bs = (b.result as QuantizeResult).summary.weightBitsPerParameter;
    expect(bs).toBeGreaterThan(base.summary.weightBitsPerParameter);
    expect(bs).toBeLessThanOrEqual(bits + 0.001);
    expect(b.label).toMatch(/under \d+(\.\d+)? bits/);
    // per layer and timestep range: a variant whose layers may switch format by step (per-step parameter sets)
    const pr = await jobFinished(host, { kind: 'quantize', model: 'tiny-mnist', recipe: { ...recipe, name: `naive-w4a8@${bits}-ranges` }, calibration: cal.id, budget: { bits, sensitivity: s.id, perRange: true } });
    expect(pr.error).toBeNull();
    expect(pr.label).toMatch(/under \d+(\.\d+)? bits per timestep range/);
    expect((pr.result as QuantizeResult).summary.weightBitsPerParameter).toBeLessThanOrEqual(bits + 0.001);
    // the Pareto front: the recipe alone and two budgets, each quantized and sampled on the sensitivity job's seeds
    const f = await jobFinished(host, { kind: 'pareto', model: 'tiny-mnist', variant: q.id, sensitivity: s.id, calibration: cal.id, budgets: [bits + 1, bits] });
    expect(f.error).toBeNull();
    const front = f.result as ParetoResult;
    expect(front.points.map((p) => p.budget)).toEqual([null, bits, bits + 1]);
    // the recipe alone quantizes to the same variant again: the same error as the sensitivity job measured
    expect(front.points[0]!.error.mse).toBe(r.base.mse);
    expect(front.points[0]!.bits).toBe(base.summary.weightBitsPerParameter);
    for (const p of front.points.slice(1)) expect(p.bits).toBeLessThanOrEqual(p.budget! + 0.001);
    // FID-to-FP in the embedded classifier's features, measured for every point (few images: biased, but measured)
    for (const p of front.points) expect(Number.isFinite(p.fidToFp)).toBe(true);
    expect(front.points[0]!.fidToFp!).toBeGreaterThan(0);
    expect(front.points[2]!.error.mse).toBeLessThan(front.points[0]!.error.mse);
    // a budget from a job that is not a sensitivity job is refused as data, before anything runs
    const bad = await dispatch(host, 'startJob', [{ kind: 'quantize', model: 'tiny-mnist', recipe, calibration: cal.id, budget: { bits, sensitivity: q.id } }]);
    expect(bad).toMatchObject({ ok: false, error: { code: 'NOT_FOUND', message: `no sensitivity job '${q.id}'` } });
  }, 180_000);
});
