/**
 * The embedded text-to-image model is real (models/tiny-t2i, an SD 1.x-layout pipeline): >= 100 samples from prompts
 * that cover every digit, colour pair and phrasing (evalPrompts), 25 steps of the pipeline's own sampler at its
 * default guidance, judged attribute by attribute (the digit by the embedded classifier, both colours from the
 * pixels: eval/t2i-judge.ts). The model card has the 500-sample numbers (`dq eval models/tiny-t2i`).
 */
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { evalPrompts, loadAttributes, promptAgreement } from '../../src-main/core/eval/t2i-judge';
import { openPipeline } from '../../src-main/core/open';
import { releaseSessions } from '../../src-main/core/pipeline/pipeline';
import { sample } from '../../src-main/core/pipeline/sample';
import { ROOT } from '../helpers';

const T2I = join(ROOT, 'models', 'tiny-t2i');

afterAll(releaseSessions);

it('every attribute of the prompt is right on >= 90% of 120 samples (the card: 99.4% of 500)', async () => {
  const { pipeline, session } = await openPipeline(T2I, 'cpu');
  const attrs = loadAttributes(T2I);
  const prompts = evalPrompts(attrs, 120).map((p) => p.prompt);
  const seeds = prompts.map((_, i) => 2000 + i);
  const guidance = pipeline.index.defaultGuidance;
  const res = await sample(pipeline, session, { seeds, classes: [], prompts, steps: 25, sampler: pipeline.index.defaultSampler, guidance, batchSize: 60 });
  expect(res.images[0]).toHaveLength(3 * 32 * 32);
  const a = await promptAgreement(prompts, res.images, attrs);
  console.log(
    `prompt agreement: ${(100 * a.agreement).toFixed(1)}% of ${prompts.length} (digit ${(100 * a.digit).toFixed(1)}%, foreground ${(100 * a.fg).toFixed(1)}%, background ${(100 * a.bg).toFixed(1)}%; ${pipeline.index.defaultSampler} 25 steps, guidance ${guidance})`,
  );
  expect(a.unjudgeable).toBe(0);
  expect(a.agreement).toBeGreaterThanOrEqual(0.9);
  // the text decides: the same seeds (the same initial noise) with the prompts rotated follow the new prompts
  const shifted = prompts.slice(0, 20).map((_, i) => prompts[(i + 1) % 20]!);
  const res2 = await sample(pipeline, session, { seeds: seeds.slice(0, 20), classes: [], prompts: shifted, steps: 25, sampler: pipeline.index.defaultSampler, guidance, batchSize: 20 });
  const b = await promptAgreement(shifted, res2.images, attrs);
  expect(b.agreement).toBeGreaterThanOrEqual(0.9);
});
