/**
 * Where the bits matter (quant/sensitivity.ts) and mixed precision under a budget (dq quantize --budget, per layer or
 * per layer and timestep range): measured on a W4A8 variant of tiny-mnist.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { exportPipeline } from '../../../../src-main/core/export/export';
import { runEval } from '../../../../src-main/core/jobs/eval-job';
import { openPipeline } from '../../../../src-main/core/open';
import { releaseSessions } from '../../../../src-main/core/pipeline/pipeline';
import { buildFeeds, sample } from '../../../../src-main/core/pipeline/sample';
import { calibrate, type CalibrationRecord } from '../../../../src-main/core/quant/calibrate';
import { quantizePipeline, type Manifest } from '../../../../src-main/core/quant/quantize';
import { loadRecipe, type Recipe } from '../../../../src-main/core/quant/recipe';
import { imageError, measureSensitivity, SensitivitySchema, type SensitivityRecord } from '../../../../src-main/core/quant/sensitivity';
import { VariantTweaker } from '../../../../src-main/core/quant/tweak';
import { readParams } from '../../../../src-main/core/quant/variant';
import { decodeIntSet } from '../../../../src-main/core/quant/ranged';
import { tmp, TINY } from '../../../helpers';

const work = tmp();
const recPath = join(work, 'calib.json');
let rec: CalibrationRecord;
let recipe: Recipe;
let base: Manifest;
let sens: SensitivityRecord;
const settings = { samples: 8, steps: 6, seed: 100 };

beforeAll(async () => {
  rec = await calibrate(TINY, recPath, { samples: 8, steps: 6, batchSize: 8, timesteps: 'all' });
  recipe = { ...loadRecipe('naive-w4a8'), name: 'w4a8-budget', keepFormat: { kind: 'int', bits: 8, symmetric: true } } as Recipe;
  base = await quantizePipeline({ pipelineDir: TINY, recipe, record: rec, recordPath: recPath, out: join(work, 'base') });
  sens = await measureSensitivity({ variantDir: join(work, 'base'), ...settings, ranges: 3, sampler: 'ddim', guidance: 2 });
}, 300_000);
afterAll(async () => {
  await releaseSessions();
  rmSync(work, { recursive: true, force: true });
});

describe('dq sensitivity', () => {
  it('measures every quantized layer, overall and per range of steps, against FP on the same seeds', async () => {
    expect(SensitivitySchema.safeParse(sens).success).toBe(true);
    expect(sens.layers.length).toBe(base.layers.filter((l) => l.weight).length);
    expect(sens.ranges.map((r) => r.steps)).toEqual([[0, 1], [2, 3], [4, 5]]);
    expect(sens.ranges[0]!.timesteps[0]).toBeGreaterThan(sens.ranges[2]!.timesteps[1]);
    expect(sens.base.mse).toBeGreaterThan(0);
    expect(sens.base.content + sens.base.detail).toBeCloseTo(sens.base.mse, 12);
    // per range: the 24 largest overall gains (every layer had one overall)
    const ranged = sens.layers.filter((l) => l.ranges.length);
    expect(ranged).toHaveLength(Math.min(24, sens.layers.length));
    expect(sens.layers.length).toBeGreaterThan(24);
    for (const l of ranged) expect(l.ranges).toHaveLength(3);
    const least = Math.min(...ranged.map((l) => l.gain.mse));
    expect(sens.layers.filter((l) => !l.ranges.length).every((l) => l.gain.mse <= least)).toBe(true);
    // W4 weights everywhere: some layer's FP removes a real share of the error, and the base error is what FP's own
    // images against the variant's give
    const top = Math.max(...sens.layers.map((l) => l.gain.mse));
    expect(top).toBeGreaterThan(0.02 * sens.base.mse);
    const { pipeline, session } = await openPipeline(TINY, 'cpu');
    const req = { seeds: [100, 101, 102, 103, 104, 105, 106, 107], classes: [0, 1, 2, 3, 4, 5, 6, 7], steps: 6, sampler: 'ddim' as const, guidance: 2 };
    const fp = (await sample(pipeline, session, req)).images;
    const v = await openPipeline(join(work, 'base'), 'cpu');
    const e = imageError((await sample(v.pipeline, v.session, req)).images, fp, pipeline.imageShape);
    expect(e.mse).toBe(sens.base.mse);
  });

  it('a choice applied at some steps only: at every step it is the choice, at none the variant, bit for bit', async () => {
    const tw = await VariantTweaker.open(join(work, 'base'));
    try {
      const req = { seeds: [5, 6], classes: [1, 2], steps: 4, sampler: 'ddim' as const, guidance: 2 };
      const layer = sens.layers[0]!.name;
      const same = (a: Float32Array[], b: Float32Array[]) => a.every((img, i) => img.every((x, j) => Object.is(x, b[i]![j])));
      const variant = (await tw.run({}, req)).images;
      const choice = (await tw.run({ [layer]: 'fp' }, req)).images;
      expect(same(choice, variant)).toBe(false);
      expect(same((await tw.run({ [layer]: 'fp' }, req, new Set([0, 1, 2, 3]))).images, choice)).toBe(true);
      expect(same((await tw.run({ [layer]: 'fp' }, req, new Set())).images, variant)).toBe(true);
      const late = (await tw.run({ [layer]: 'fp' }, req, new Set([3]))).images;
      expect(same(late, variant) || same(late, choice)).toBe(false);
    } finally {
      await tw.release();
    }
  });
});

describe('dq quantize --budget', () => {
  it('moves the layers with the best gain per bit to keepFormat within the budget, and the error against FP drops', async () => {
    const bits = base.summary.weightBitsPerParameter + 0.6;
    const m = await quantizePipeline({ pipelineDir: TINY, recipe, record: rec, recordPath: recPath, out: join(work, 'budget'), budget: { bits, sensitivity: sens, path: join(work, 'sens.json') } });
    expect(m.budget!.chosen.length).toBeGreaterThan(0);
    expect(m.budget!.recipeBits).toBeCloseTo(base.summary.weightBitsPerParameter, 2);
    expect(m.budget!.estimate).toBeLessThanOrEqual(bits);
    expect(m.summary.weightBitsPerParameter).toBeLessThanOrEqual(bits + 0.001);
    for (const name of m.budget!.chosen) {
      const l = m.layers.find((x) => x.name === name)!;
      expect(l.weight!.format).toEqual(recipe.keepFormat);
      expect(l.weight!.role).toMatch(/^budget .* bits: gain .*% of the measured error/);
    }
    // measured again on the same seeds: less error than the recipe alone
    const after = await measureSensitivity({ variantDir: join(work, 'budget'), ...settings, ranges: 1, sampler: 'ddim', guidance: 2, layers: [sens.layers.find((l) => !m.budget!.chosen.includes(l.name))!.name] });
    console.log(`budget ${bits.toFixed(2)} bits: ${m.budget!.chosen.length} layers in int8, error against FP ${sens.base.mse.toExponential(3)} -> ${after.base.mse.toExponential(3)}`);
    expect(after.base.mse).toBeLessThan(sens.base.mse);
  });

  it('without a keepFormat, the chosen layers take int8 weights and the layers spared by role stay FP', async () => {
    const r = { ...recipe, name: 'no-keep-format', keepFormat: null, keepFp: ['first', 'last'] } as Recipe;
    const plain = await quantizePipeline({ pipelineDir: TINY, recipe: r, record: rec, recordPath: recPath, out: join(work, 'plain') });
    const bits = plain.summary.weightBitsPerParameter + 0.5;
    const m = await quantizePipeline({ pipelineDir: TINY, recipe: r, record: rec, recordPath: recPath, out: join(work, 'no-keep'), budget: { bits, sensitivity: sens, path: 'sens.json' } });
    expect(m.budget!.format).toEqual({ kind: 'int', bits: 8, symmetric: true });
    expect(m.budget!.chosen.length).toBeGreaterThan(0);
    expect(m.summary.weightBitsPerParameter).toBeLessThanOrEqual(bits + 0.001);
    for (const name of m.budget!.chosen) expect(m.layers.find((x) => x.name === name)!.weight!.role).toMatch(/kept at higher precision \(int8\)$/);
    for (const l of m.layers.filter((x) => /first layer|last layer/.test(x.spared ?? ''))) expect(l.weight).toBeNull();
    expect(m.layers.filter((x) => /first layer|last layer/.test(x.spared ?? '')).length).toBeGreaterThan(0);
  });

  it('refuses a budget below the recipe and another model\'s record, in one line', async () => {
    const q = (r: Recipe, bits: number, s: SensitivityRecord) => quantizePipeline({ pipelineDir: TINY, recipe: r, record: rec, recordPath: recPath, out: join(work, 'refused'), budget: { bits, sensitivity: s, path: 'sens.json' } });
    await expect(q(recipe, 2, sens)).rejects.toThrow(/--budget 2 is below the 4\.\d+ bits per weight of recipe 'w4a8-budget' alone/);
    await expect(q(recipe, 6, { ...sens, source: { ...sens.source, unetSha256: 'f'.repeat(64) } })).rejects.toThrow(/measured on a variant of another model/);
  });
});

/** One network evaluation of a pipeline at model timestep t on fixed inputs (its variant feeds included). */
async function evalAt(dir: string, t: number): Promise<Float32Array> {
  const { pipeline, session } = await openPipeline(dir, 'cpu');
  const n = 4;
  const x = Float64Array.from({ length: n * pipeline.index.sampleShape.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i * 12.9898) * 1.3);
  const feeds = await buildFeeds(pipeline, x, t, [1, 3, 5, 7], false, n);
  return (await session.run(feeds, [pipeline.io.output]))[pipeline.io.output]!.data as Float32Array;
}

describe('dq quantize --budget --per-range', () => {
  it('moves a layer up in the timestep ranges that gain only: a per-step parameter set, computing at each step what the whole-layer choice or the recipe does', async () => {
    const X = sens.layers.find((l) => l.ranges.length === sens.ranges.length)!.name;
    // a record whose only gains are X's, in the given ranges
    const only = (gains: number[]): SensitivityRecord => ({
      ...sens,
      layers: sens.layers.map((l) => ({ ...l, gain: { ...l.gain, mse: l.name === X ? gains.reduce((a, b) => a + b, 0) : 0 }, ranges: l.ranges.map((r, i) => ({ ...r, mse: l.name === X ? gains[i]! : 0 })) })),
    });
    const q = (out: string, gains: number[]) => quantizePipeline({ pipelineDir: TINY, recipe, record: rec, recordPath: recPath, out: join(work, out), budget: { bits: 8, sensitivity: only(gains), path: 'sens.json', perRange: true } });
    const ranged = await q('ranged', [1, 0, 0]);
    expect(ranged.budget!.perRange!.layers).toEqual([{ name: X, ranges: [0] }]);
    expect(ranged.budget!.chosen).toEqual([]);
    expect(ranged.layers.find((l) => l.name === X)!.weight!.rounding).toMatch(/per timestep range: int8 weights and FP activations at steps 0-1 of 6/);
    // every range chosen: the whole layer, as a per-layer budget does
    const whole = await q('whole', [1, 1, 1]);
    expect(whole.budget!.chosen).toEqual([X]);
    expect(whole.budget!.perRange!.layers).toEqual([]);
    const w = readParams(join(work, 'ranged'))!.weights!;
    expect(w).toHaveLength(1);
    expect(w[0]!.layer).toBe(X);
    expect(w[0]!.gate).not.toBeNull();
    expect(w[0]!.sets.map((st) => st.fpInput)).toEqual([true, false, false]);
    // at a step of range 0 the layer computes what the whole-layer choice does, elsewhere what the recipe alone does
    for (const [k, r] of sens.ranges.entries()) {
      for (const t of r.timesteps) {
        const a = await evalAt(join(work, 'ranged'), t);
        const b = await evalAt(join(work, k === 0 ? 'whole' : 'base'), t);
        let d = 0;
        a.forEach((v, i) => (d = Math.max(d, Math.abs(v - b[i]!))));
        expect(d).toBe(0);
      }
    }
    // and the two differ (the comparison can fail)
    const t0 = sens.ranges[0]!.timesteps[0];
    const wa = await evalAt(join(work, 'whole'), t0);
    const wb = await evalAt(join(work, 'base'), t0);
    expect(wa.some((v, i) => v !== wb[i])).toBe(true);
    // the layer editor leaves it as it is, with the reason
    const tw = await VariantTweaker.open(join(work, 'ranged'));
    try {
      expect(tw.layers().find((l) => l.name === X)!.fixed).toMatch(/changes with the timestep range/);
    } finally {
      await tw.release();
    }
    // it samples end to end, and exports with its sets (fed per step there too), verified against the simulation
    const v = await openPipeline(join(work, 'ranged'), 'cpu');
    const imgs = (await sample(v.pipeline, v.session, { seeds: [0, 1], classes: [1, 2], steps: 6, sampler: 'ddim', guidance: 2 })).images;
    expect(imgs.every((im) => im.every(Number.isFinite))).toBe(true);
    const ex = await exportPipeline({ variantDir: join(work, 'ranged'), out: join(work, 'ranged-export'), verify: { seeds: [0, 1], steps: 6 } });
    expect(ex.export.layers.find((l) => l.name === X)!.storage).toBe('per-step weight sets (quant/)');
    // both sets stored as integer codes (int4 packed two a byte, int8) with their scales, decoded at load
    expect(ex.export.real.join(' ')).toMatch(/1 layer switches its weight by timestep range .*: 2 sets under quant\/ \(\d+ bytes\), 2 of them as integer codes with float32 scales, fed per step/);
    const ew = readParams(join(work, 'ranged-export'))!.weights!;
    expect(ew).toHaveLength(1);
    expect(ew[0]!.sets.map((st) => st.encoding?.bits)).toEqual([8, 4, 4]);
    const n = ew[0]!.dims.reduce((a, b) => a * b, 1);
    expect(statSync(join(work, 'ranged-export', ew[0]!.sets[1]!.file)).size).toBe(Math.ceil(n / 2));
    // decoded, each set is the variant's own values to the bit
    const vw = readParams(join(work, 'ranged'))!.weights![0]!;
    for (const [j, st] of ew[0]!.sets.entries()) {
      const enc = st.encoding!;
      const scale = readFileSync(join(work, 'ranged-export', enc.scale));
      const dec = decodeIntSet(readFileSync(join(work, 'ranged-export', st.file)), new Float32Array(scale.buffer.slice(scale.byteOffset, scale.byteOffset + scale.byteLength)), ew[0]!.dims, enc.bits, enc.granularity);
      const raw = readFileSync(join(work, 'ranged', vw.sets[j]!.file));
      expect(Buffer.from(dec.buffer).equals(raw)).toBe(true);
    }
    expect(ex.export.verification?.verdict?.ok).toBe(true);
    // recipes that transform weights are refused
    await expect(quantizePipeline({ pipelineDir: TINY, recipe: { ...recipe, rotate: true } as Recipe, record: rec, recordPath: recPath, out: join(work, 'refused-rot'), budget: { bits: 8, sensitivity: sens, path: 'sens.json', perRange: true } })).rejects.toThrow(/--per-range: recipe .* balances, rotates or adds low-rank branches/);
  });
});

describe('dq eval --budgets', () => {
  it('measures each budget as its own variant and draws the front against the measured bits', async () => {
    const file = join(work, 'w4a8-budget.json');
    writeFileSync(file, JSON.stringify(recipe));
    const bits = base.summary.weightBitsPerParameter;
    const lines: string[] = [];
    const res = await runEval({ pipelineDir: TINY, presets: [file], samples: 16, steps: 6, calib: recPath, out: join(work, 'eval'), budgets: { bits: [bits + 0.25, bits + 1], sensitivity: sens, path: 'sens.json', perRange: true }, onLine: (l) => lines.push(l) });
    const rows = 'rows' in res ? res.rows : [];
    expect(rows.map((r) => r.variant)).toEqual(['fp', recipe.name, `${recipe.name}@${bits + 0.25}-ranges`, `${recipe.name}@${bits + 1}-ranges`]);
    const svg = join(work, 'eval', `pareto-${recipe.name}.svg`);
    expect(existsSync(svg)).toBe(true);
    // one polyline through the three measured points, at their measured bits
    const points = /<polyline[^>]* points="([^"]+)"/.exec(readFileSync(svg, 'utf8'))![1]!.split(' ');
    expect(points).toHaveLength(3);
    expect(lines.some((l) => /Pareto front of w4a8-budget: 3 measured points/.test(l))).toBe(true);
  });
});
