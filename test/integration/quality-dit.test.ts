/**
 * The embedded DiT is real (models/tiny-dit: an SD3-layout MMDiT trained with flow matching on tiny-t2i's data,
 * reusing its VAE and text encoder): >= 100 samples from prompts that cover every digit, colour pair and phrasing,
 * 25 flow-euler steps at its default guidance, judged attribute by attribute as tiny-t2i's are. The model card has
 * the 500-sample numbers (`dq eval models/tiny-dit`).
 */
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { evalPrompts, loadAttributes, promptAgreement } from '../../src-main/core/eval/t2i-judge';
import { openPipeline } from '../../src-main/core/open';
import { releaseSessions } from '../../src-main/core/pipeline/pipeline';
import { sample } from '../../src-main/core/pipeline/sample';
import { ROOT } from '../helpers';

const DIT = join(ROOT, 'models', 'tiny-dit');

afterAll(releaseSessions);

it('the DiT: every attribute of the prompt is right on >= 90% of 120 samples, and the text decides', async () => {
  const { pipeline, session } = await openPipeline(DIT, 'cpu');
  expect(pipeline.denoiser).toBe('transformer');
  expect(pipeline.index.defaultSampler).toBe('flow-euler');
  const attrs = loadAttributes(DIT);
  const prompts = evalPrompts(attrs, 120).map((p) => p.prompt);
  const seeds = prompts.map((_, i) => 2000 + i);
  const guidance = pipeline.index.defaultGuidance;
  const res = await sample(pipeline, session, { seeds, classes: [], prompts, steps: 25, sampler: 'flow-euler', guidance, batchSize: 60 });
  const a = await promptAgreement(prompts, res.images, attrs);
  console.log(`tiny-dit prompt agreement: ${(100 * a.agreement).toFixed(1)}% of ${prompts.length} (digit ${(100 * a.digit).toFixed(1)}%, foreground ${(100 * a.fg).toFixed(1)}%, background ${(100 * a.bg).toFixed(1)}%; flow-euler 25 steps, guidance ${guidance})`);
  expect(a.unjudgeable).toBe(0);
  expect(a.agreement).toBeGreaterThanOrEqual(0.9);
  const shifted = prompts.slice(0, 20).map((_, i) => prompts[(i + 1) % 20]!);
  const res2 = await sample(pipeline, session, { seeds: seeds.slice(0, 20), classes: [], prompts: shifted, steps: 25, sampler: 'flow-euler', guidance, batchSize: 20 });
  expect((await promptAgreement(shifted, res2.images, attrs)).agreement).toBeGreaterThanOrEqual(0.9);
});
