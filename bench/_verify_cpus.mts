/**
 * The export verification's numbers on this CPU (docs/export.md, Verification): builds the export test's int8
 * exports of the tiny model into <work> (once), then verifies each against its simulated variant. Run it natively and
 * under another CPU model to compare, e.g. `qemu-x86_64 -cpu EPYC-Milan node --import tsx bench/_verify_cpus.mts <work>`
 * (AVX2 kernels; set DQ_INT8_WEIGHTS_AT_LOAD=keep as an AVX2 machine would load).
 *   node --import tsx bench/_verify_cpus.mts <work> [seeds, default 0,1,2]
 */
import { cpSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { exportPipeline, verifyExport } from '../src-main/core/export/export.js';
import { releaseSessions } from '../src-main/core/pipeline/pipeline.js';
import { calibrate } from '../src-main/core/quant/calibrate.js';
import { quantizePipeline } from '../src-main/core/quant/quantize.js';
import { loadRecipe } from '../src-main/core/quant/recipe.js';

const work = process.argv[2];
if (!work) throw new Error('usage: bench/_verify_cpus.mts <work-folder> [seeds]');
const seeds = (process.argv[3] ?? '0,1,2').split(',').map(Number);
const fp = join(work, 'fp');
if (!existsSync(join(work, 'int8-w8a8-rr'))) {
  cpSync(join(import.meta.dirname, '..', 'models', 'tiny-mnist'), fp, { recursive: true });
  const calib = join(work, 'calib.json');
  const rec = await calibrate(fp, calib, { samples: 8, steps: 10, batchSize: 8, gram: true });
  for (const p of ['naive-w8a8', 'int8-w8a8']) {
    await quantizePipeline({ pipelineDir: fp, recipe: loadRecipe(p), record: rec, recordPath: calib, out: join(work, p), force: true });
    await exportPipeline({ variantDir: join(work, p), out: join(work, `${p}-x`), calibrationImages: 4, verify: false, force: true });
  }
  await exportPipeline({ variantDir: join(work, 'int8-w8a8'), out: join(work, 'int8-w8a8-rr'), int8Weights: 's7', calibrationImages: 4, verify: false, force: true });
}
for (const [v, x] of [['naive-w8a8', 'naive-w8a8-x'], ['int8-w8a8', 'int8-w8a8-x'], ['int8-w8a8', 'int8-w8a8-rr']] as const) {
  const r = await verifyExport(join(work, v), join(work, x), seeds, 10);
  console.log(`| ${x} (as run: ${r.int8WeightsAsRun}) | ${r.step.meanAbs} | ${r.step.p99Abs} | ${r.step.maxAbs} | ${r.meanAbs} | ${r.p99Abs} | ${r.maxAbs} |`);
  await releaseSessions();
}
