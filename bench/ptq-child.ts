/**
 * One measurement for bench/ptq.ts, in a fresh process so that peak memory (maxRSS) belongs to it alone:
 *   fp:    FP sampling over the calibration set (the same images, steps and guidance as calibration; a text pipeline's
 *          calibration prompts, sampler and guidance)
 *   calib: calibration over that set plus quantization with one preset
 * Prints one JSON line: { seconds, maxRssMB, parts } (parts: calibrate and quantize seconds of a calib run).
 */
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { mkdtempSync, rmSync } from 'node:fs';
import { openPipeline } from '../src-main/core/open.js';
import { sample } from '../src-main/core/pipeline/sample.js';
import { calibrate, DEFAULT_CALIBRATION, defaultPrompts } from '../src-main/core/quant/calibrate.js';
import { quantizePipeline } from '../src-main/core/quant/quantize.js';
import { loadRecipe } from '../src-main/core/quant/recipe.js';

const [mode, pipelineDir, preset] = process.argv.slice(2) as [string, string, string];
const s = DEFAULT_CALIBRATION;
const work = mkdtempSync(join(tmpdir(), 'dq-bench-'));
const t0 = performance.now();
const parts: Record<string, number> = {};
if (mode === 'fp') {
  const { pipeline, session } = await openPipeline(pipelineDir, 'cpu');
  // what calibration samples: a text pipeline at its own sampler and guidance, on its calibration prompts (cycled)
  const prompts = pipeline.text ? defaultPrompts(pipelineDir) : null;
  const sampler = pipeline.text ? pipeline.index.defaultSampler : s.sampler;
  const guidance = pipeline.text ? pipeline.index.defaultGuidance : s.guidance;
  const idx = Array.from({ length: s.samples }, (_, i) => i);
  for (let b = 0; b < idx.length; b += s.batchSize) {
    const batch = idx.slice(b, b + s.batchSize);
    await sample(pipeline, session, {
      seeds: batch.map((i) => s.seed * 1_000_003 + i),
      classes: prompts ? [] : batch.map((i) => i % pipeline.index.classes.length),
      ...(prompts ? { prompts: batch.map((i) => prompts[i % prompts.length]!), negativePrompts: batch.map(() => '') } : {}),
      steps: s.steps, sampler, guidance, batchSize: batch.length,
    });
  }
} else {
  const rec = await calibrate(pipelineDir, join(work, 'calib.json'), {});
  parts.calibrate = (performance.now() - t0) / 1000;
  await quantizePipeline({ pipelineDir, recipe: loadRecipe(preset), record: rec, recordPath: join(work, 'calib.json'), out: join(work, 'variant') });
}
const seconds = (performance.now() - t0) / 1000;
rmSync(work, { recursive: true, force: true });
if (parts.calibrate !== undefined) parts.quantize = seconds - parts.calibrate;
console.log(JSON.stringify({ seconds, maxRssMB: process.resourceUsage().maxRSS / 1024, parts }));
