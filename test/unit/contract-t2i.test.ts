/** The contract's jobs on text-to-image pipelines: calibration prompts, quantized components, variants in Samples. */
import { describe, expect, it } from 'vitest';
import { JobSpec, MAX_CALIBRATION_PROMPTS, QUANTIZABLE_COMPONENT_NAMES, Requests } from '../../src-main/contract/api';
import { MAX_PROMPTS } from '../../src-main/core/pipeline/prompt-file';
import { QUANTIZABLE_COMPONENTS } from '../../src-main/core/quant/quantize';

const refusal = (spec: unknown) => {
  const r = Requests.startJob.safeParse([spec]);
  return r.success ? null : r.error.issues[0]!;
};

describe('CalibrateJob on prompts', () => {
  const base = { kind: 'calibrate', model: 'tiny-t2i', samples: 4, steps: 3 } as const;

  it('leaves sampler and guidance to the pipeline when not given (no ddim / 2 filled in)', () => {
    const p = JobSpec.parse(base);
    expect(p).not.toHaveProperty('sampler');
    expect(p).not.toHaveProperty('guidance');
    expect(p).not.toHaveProperty('prompts');
    expect(JobSpec.parse({ ...base, sampler: 'pndm', guidance: 7.5 })).toMatchObject({ sampler: 'pndm', guidance: 7.5 });
  });

  it('takes prompts, a prompt file and a negative prompt', () => {
    expect(JobSpec.parse({ ...base, prompts: ['a red seven', 'a blue two'], negativePrompt: 'blurry' })).toMatchObject({ prompts: ['a red seven', 'a blue two'], negativePrompt: 'blurry' });
    expect(JobSpec.parse({ ...base, promptFile: '/data/prompts.txt' })).toMatchObject({ promptFile: '/data/prompts.txt' });
  });

  it(`refuses more than ${MAX_CALIBRATION_PROMPTS} prompts (the engine's limit), long prompts, bad types`, () => {
    expect(MAX_CALIBRATION_PROMPTS).toBe(MAX_PROMPTS);
    expect(refusal({ ...base, prompts: Array(MAX_CALIBRATION_PROMPTS).fill('x') })).toBeNull();
    expect(refusal({ ...base, prompts: Array(MAX_CALIBRATION_PROMPTS + 1).fill('x') })?.message).toMatch(/at most 1024 calibration prompts/);
    expect(refusal({ ...base, prompts: ['x'.repeat(2001)] })?.message).toMatch(/at most 2000 characters/);
    expect(refusal({ ...base, negativePrompt: 'x'.repeat(2001) })?.path).toEqual([0, 'negativePrompt']);
    expect(refusal({ ...base, prompts: 'a red seven' })?.path).toEqual([0, 'prompts']);
    expect(refusal({ ...base, promptFile: '' })?.path).toEqual([0, 'promptFile']);
  });
});

describe('QuantizeJob components', () => {
  const base = { kind: 'quantize', model: 'tiny-t2i', recipe: { name: 'x' }, calibration: null } as const;

  it('names the components the engine can quantize, none by default', () => {
    expect([...QUANTIZABLE_COMPONENT_NAMES].sort()).toEqual(Object.keys(QUANTIZABLE_COMPONENTS).sort());
    expect(JobSpec.parse(base)).toMatchObject({ components: [] });
    expect(JobSpec.parse({ ...base, components: ['text_encoder', 'vae_decoder'] })).toMatchObject({ components: ['text_encoder', 'vae_decoder'] });
  });

  it('refuses a component it does not know', () => {
    expect(refusal({ ...base, components: ['unet'] })?.path).toEqual([0, 'components', 0]);
    expect(refusal({ ...base, components: ['vae_encoder'] })?.path).toEqual([0, 'components', 0]);
  });
});

describe('CompareJob on prompts', () => {
  const base = { kind: 'compare', model: 'tiny-t2i', variants: ['q1'], seeds: [0, 1], classes: [], steps: 3 } as const;

  it('takes prompts, a negative prompt and a size; sampler and guidance are the pipeline\'s unless given', () => {
    const p = JobSpec.parse({ ...base, prompts: ['a red seven'], negativePrompt: 'blurry', height: 64, width: 32 });
    expect(p).toMatchObject({ prompts: ['a red seven'], negativePrompt: 'blurry', height: 64, width: 32 });
    expect(p).not.toHaveProperty('sampler');
    expect(p).not.toHaveProperty('guidance');
    expect(JobSpec.parse(base)).not.toHaveProperty('prompts');
  });

  it('refuses no prompts, too many, and long ones', () => {
    expect(refusal({ ...base, prompts: [] })?.message).toMatch(/at least one prompt/);
    expect(refusal({ ...base, prompts: Array(65).fill('x') })?.message).toMatch(/at most 64 prompts/);
    expect(refusal({ ...base, prompts: ['x'.repeat(2001)] })?.message).toMatch(/at most 2000 characters/);
  });
});

describe('SampleJob variants', () => {
  const base = { kind: 'sample', model: 'tiny-t2i', prompts: ['a red seven'], seeds: [0], steps: 2 } as const;

  it('samples FP alone by default, or FP and quantize jobs by id', () => {
    expect(JobSpec.parse(base)).toMatchObject({ variants: [] });
    expect(JobSpec.parse({ ...base, variants: ['job-1', 'job-2'] })).toMatchObject({ variants: ['job-1', 'job-2'] });
  });

  it('refuses ids that are not ids, and more than 8 variants', () => {
    expect(refusal({ ...base, variants: ['../x'] })?.path).toEqual([0, 'variants', 0]);
    expect(refusal({ ...base, variants: Array.from({ length: 9 }, (_, i) => `j${i}`) })?.path).toEqual([0, 'variants']);
  });
});
