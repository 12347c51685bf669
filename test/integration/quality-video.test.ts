/**
 * The embedded text-to-video model is real (models/tiny-video: diffusers' TextToVideoSDPipeline layout, a UNet3D with
 * temporal convolutions and temporal attention, v-prediction, trained by tools/train_tiny_video.py on moving digits):
 * 40 videos from prompts that cover every digit, colour pair and motion, judged frame by frame and for the direction
 * of motion (eval/video-judge.ts); with the motion words swapped, the same seeds move the other way: the text decides
 * the motion. docs/pipelines.md has the 200-video numbers (`dq eval models/tiny-video`).
 */
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { evalPrompts, loadAttributes } from '../../src-main/core/eval/t2i-judge';
import { videoAgreement } from '../../src-main/core/eval/video-judge';
import { openPipeline } from '../../src-main/core/open';
import { releaseSessions } from '../../src-main/core/pipeline/pipeline';
import { sample } from '../../src-main/core/pipeline/sample';
import { ROOT } from '../helpers';

const VIDEO = join(ROOT, 'models', 'tiny-video');
const OPPOSITE: Record<string, string> = { left: 'right', right: 'left', up: 'down', down: 'up' };

afterAll(releaseSessions);

it('the video model: >= 85% of 40 videos in agreement (motion and 7 of 8 frames right), and the motion follows the words', async () => {
  const { pipeline, session } = await openPipeline(VIDEO, 'cpu');
  expect(pipeline.io.video).toBe(true);
  expect(pipeline.scheduler.prediction_type).toBe('v_prediction');
  const attrs = loadAttributes(VIDEO);
  const frames = pipeline.index.frames!;
  const prompts = evalPrompts(attrs, 40).map((p) => p.prompt);
  const seeds = prompts.map((_, i) => 3000 + i);
  const opts = { classes: [], steps: 25, sampler: pipeline.index.defaultSampler, guidance: pipeline.index.defaultGuidance, batchSize: 8 };
  const a = await videoAgreement(prompts, (await sample(pipeline, session, { ...opts, seeds, prompts })).images, frames, attrs);
  const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
  console.log(`tiny-video: ${pct(a.agreement)} of ${prompts.length} videos in agreement (motion ${pct(a.motion)}, frames ${pct(a.frameAgreement)}: digit ${pct(a.digit)}, foreground ${pct(a.fg)}, background ${pct(a.bg)})`);
  expect(a.unjudgeable).toBe(0);
  expect(a.agreement).toBeGreaterThanOrEqual(0.85);
  expect(a.motion).toBeGreaterThanOrEqual(0.9);
  // the same seeds told to move the other way
  const swapped = prompts.slice(0, 16).map((p) => p.replace(/\b(left|right|up|down)\b/, (m) => OPPOSITE[m]!));
  expect(swapped.every((p, i) => p !== prompts[i])).toBe(true);
  const b = await videoAgreement(swapped, (await sample(pipeline, session, { ...opts, seeds: seeds.slice(0, 16), prompts: swapped })).images, frames, attrs);
  console.log(`tiny-video, motion words swapped: motion right on ${pct(b.motion)} of ${swapped.length}`);
  expect(b.motion).toBeGreaterThanOrEqual(0.9);
});
