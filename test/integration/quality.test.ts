/**
 * The embedded model and the sampler are real: >= 100 class-conditional samples (25 DDIM steps, the model card's
 * guidance) are recognised as the requested digit by the embedded classifier (held-out accuracy 99%).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { agreement, classify } from '../../src-main/core/eval/classifier';
import { releaseSessions } from '../../src-main/core/pipeline/pipeline';
import { openPipeline } from '../../src-main/core/open';
import { sample } from '../../src-main/core/pipeline/sample';
import { TINY } from '../helpers';

afterAll(releaseSessions);

it('classifier agrees with the requested class on >= 85% of 120 samples', async () => {
  const { pipeline, session } = await openPipeline(TINY, 'cpu');
  const guidance = JSON.parse(readFileSync(join(TINY, 'model_index.json'), 'utf8')).default_guidance as number;
  const classes: number[] = [];
  const seeds: number[] = [];
  for (let i = 0; i < 120; i++) {
    classes.push(i % 10);
    seeds.push(1000 + i);
  }
  const res = await sample(pipeline, session, { seeds, classes, steps: 25, sampler: 'ddim', guidance, batchSize: 40 });
  const { labels } = await classify(res.images);
  const a = agreement(classes, labels);
  console.log(`class agreement: ${(100 * a).toFixed(1)}% of ${classes.length} (ddim 25 steps, guidance ${guidance})`);
  expect(a).toBeGreaterThanOrEqual(0.85);
});
