import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { metricsJsonSchema, MetricsSchema, type CompareMetrics } from '../../../../src-main/core/compare/schema';
import { ROOT } from '../../../helpers';
import { validate } from './json-schema';

const DOC = JSON.parse(readFileSync(join(ROOT, 'docs', 'metrics-schema.json'), 'utf8')) as Record<string, unknown>;

function step(s: number) {
  return { step: s, timestep: 900 - 100 * s, rmse: 0.01, relative: 0.02 };
}

/** A small, hand-written metrics document of the documented shape. */
function example(): CompareMetrics {
  const variant = (name: string, isFp: boolean) => ({
    name,
    isFp,
    dir: `/x/${name}`,
    manifest: isFp ? null : { name, format: 'int8' },
    modelBytes: 1000,
    weightBitsPerParameter: isFp ? 32 : 8,
    estimatedDeployedBytes: isFp ? 1000 : 400,
    psnrDb: { mean: isFp ? null : 30, min: isFp ? null : 28, perImage: isFp ? [null, null] : [28, 32] },
    ssim: { mean: 0.9, min: 0.8, perImage: [0.8, 1] },
    fid: { toFp: 0, toData: 12.5, samples: 20, reason: null },
    classAgreement: { requested: 1, withFp: 1, samples: 22, reason: null },
    epsError: [step(0), step(1)],
    temporalFeatureError: isFp
      ? { available: true, reason: null, source: 'graph' as const, features: ['a'], perStep: [step(0), step(1)], perFeature: [{ name: 'a', relative: 0 }] }
      : { available: false, reason: 'the graph differs', source: null, features: ['a'], perStep: [], perFeature: [] },
    timing: { secondsPerStep: 0.1, imagesPerStep: 2 },
  });
  return {
    schema: 'dq-compare-metrics',
    version: 1,
    tool: 'dq compare',
    pipeline: '/x/fp',
    settings: {
      seeds: [0, 1], classes: [3], steps: 2, sampler: 'ddim', guidance: 2, eta: 0, batchSize: 32, fidSamples: 20, fidSeedStart: 1000000,
      walkSeeds: [0, 1], walkFramesPerSegment: 4, video: true,
    },
    provider: { requested: 'cpu', used: 'cpu', fallback: null },
    images: [{ index: 0, seed: 0, class: 3, className: '3' }, { index: 1, seed: 1, class: 3, className: '3' }],
    reference: { data: { source: 'mnist', images: 150 }, featureExtractor: 'clf', featureDim: 128 },
    variants: [variant('fp', true), variant('int8', false)],
    files: {
      grid: 'grid.png', diffs: { int8: 'diff-int8.png' }, trajectory: { webp: 'trajectory.webp', mp4: null, frames: 2 },
      walk: { webp: 'walk.webp', mp4: 'walk.mp4', frames: 8 }, report: 'report.html', metrics: 'metrics.json',
    },
    notes: [],
  };
}

describe('metrics.json schema', () => {
  it('docs/metrics-schema.json is the schema the code validates with (regenerate it from metricsJsonSchema() when this fails)', () => {
    expect(DOC).toEqual(metricsJsonSchema());
    expect(DOC.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
  });

  it('a document of the documented shape passes both the zod schema and the JSON Schema file', () => {
    const doc = example();
    expect(MetricsSchema.safeParse(doc).success).toBe(true);
    expect(validate(doc, DOC)).toEqual([]);
  });

  it('both reject what the documentation rules out', () => {
    const DELETE = Symbol('delete');
    const cases: [string, (string | number)[], unknown][] = [
      ['a missing metric', ['variants', 1, 'fid', 'toFp'], DELETE],
      ['another version', ['version'], 2],
      ['an unknown field', ['variants', 0, 'extra'], 1],
      ['an agreement above 1', ['variants', 1, 'classAgreement', 'requested'], 1.5],
      ['a negative FID', ['variants', 1, 'fid', 'toData'], -1],
      ['a string where a number belongs', ['variants', 1, 'psnrDb', 'mean'], '30'],
      ['no variants', ['variants'], []],
      ['a fractional step', ['variants', 1, 'epsError', 0, 'step'], 0.5],
    ];
    for (const [what, path, value] of cases) {
      const doc = example() as unknown as Record<string | number, unknown>;
      let at = doc;
      for (const k of path.slice(0, -1)) at = at[k] as Record<string | number, unknown>;
      const key = path.at(-1)!;
      if (value === DELETE) delete at[key];
      else at[key] = value;
      expect(MetricsSchema.safeParse(doc).success, what).toBe(false);
      expect(validate(doc, DOC).length, what).toBeGreaterThan(0);
    }
  });
});

describe('the test validator itself', () => {
  const schema = {
    type: 'object',
    properties: { n: { type: 'integer', minimum: 0 }, s: { anyOf: [{ type: 'string' }, { type: 'null' }] }, a: { type: 'array', items: { const: 1 }, minItems: 1 } },
    required: ['n'],
    additionalProperties: false,
  };
  it('accepts valid values and names each violation', () => {
    expect(validate({ n: 3, s: null, a: [1, 1] }, schema)).toEqual([]);
    expect(validate({ s: 'x' }, schema)).toEqual(["$: missing required 'n'"]);
    expect(validate({ n: -1 }, schema)).toEqual(['$.n: -1 < minimum 0']);
    expect(validate({ n: 1.5 }, schema)).toEqual(['$.n: expected integer, got number']);
    expect(validate({ n: 1, s: 2 }, schema)).toEqual(['$.s: matches none of anyOf']);
    expect(validate({ n: 1, a: [2] }, schema)).toEqual(['$.a[0]: expected 1']);
    expect(validate({ n: 1, a: [] }, schema)).toEqual(['$.a: fewer than 1 items']);
    expect(validate({ n: 1, z: 0 }, schema)).toEqual(['$.z: no value is allowed here']);
  });
  it('refuses keywords it does not implement', () => {
    expect(() => validate('x', { pattern: '^x$' })).toThrow(/unsupported keyword 'pattern'/);
  });
});
