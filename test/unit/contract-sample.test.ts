/** The contract's `sample` job: what the host accepts, with the defaults it fills in and the limits it names. */
import { describe, expect, it } from 'vitest';
import { JobSpec, MAX_PROMPT_CHARS, MAX_STUDIO_PROMPTS, Requests } from '../../src-main/contract/api';

const base = { kind: 'sample', model: 'sd', prompts: ['a red seven on a blue background'], seeds: [0, 1], steps: 4 } as const;
const refusal = (spec: unknown) => {
  const r = Requests.startJob.safeParse([spec]);
  return r.success ? null : r.error.issues[0]!;
};

describe('SampleJob', () => {
  it('takes prompts, seeds and steps; the negative prompt defaults to none, guidance/sampler/size to the pipeline', () => {
    const p = JobSpec.parse(base);
    expect(p).toEqual({ ...base, negativePrompt: '', variants: [] });
    expect(JobSpec.parse({ ...base, negativePrompt: 'blurry', guidance: 3, sampler: 'euler-a', height: 64, width: 96 })).toMatchObject({ negativePrompt: 'blurry', guidance: 3, sampler: 'euler-a', height: 64, width: 96 });
  });

  it(`allows 1 to ${MAX_STUDIO_PROMPTS} prompts of at most ${MAX_PROMPT_CHARS} characters each`, () => {
    expect(refusal({ ...base, prompts: Array(MAX_STUDIO_PROMPTS).fill('x'.repeat(MAX_PROMPT_CHARS)) })).toBeNull();
    expect(refusal({ ...base, prompts: [] })?.message).toMatch(/at least one prompt/);
    expect(refusal({ ...base, prompts: Array(MAX_STUDIO_PROMPTS + 1).fill('x') })?.message).toMatch(/at most 64 prompts/);
    expect(refusal({ ...base, prompts: ['x'.repeat(MAX_PROMPT_CHARS + 1)] })?.message).toMatch(/at most 2000 characters/);
    expect(refusal({ ...base, negativePrompt: 'x'.repeat(MAX_PROMPT_CHARS + 1) })?.path).toEqual([0, 'negativePrompt']);
  });

  it('refuses unknown samplers, bad seeds, steps and sizes, and fields it does not know', () => {
    expect(refusal({ ...base, sampler: 'heun' })?.path).toEqual([0, 'sampler']);
    expect(refusal({ ...base, seeds: [] })?.path).toEqual([0, 'seeds']);
    expect(refusal({ ...base, seeds: [-1] })?.path).toEqual([0, 'seeds', 0]);
    expect(refusal({ ...base, steps: 0 })?.path).toEqual([0, 'steps']);
    expect(refusal({ ...base, height: 4 })?.path).toEqual([0, 'height']);
    expect(refusal({ ...base, width: 64.5 })?.path).toEqual([0, 'width']);
    expect(refusal({ ...base, classes: [1] })).not.toBeNull();
    expect(refusal({ ...base, prompts: 'one prompt' })?.path).toEqual([0, 'prompts']);
  });
});
