import { join } from 'node:path';
import { exportPipeline } from '../src-main/core/export/export.js';
import { calibrate } from '../src-main/core/quant/calibrate.js';
import { quantizePipeline } from '../src-main/core/quant/quantize.js';
import { listPresets, loadRecipe } from '../src-main/core/quant/recipe.js';
const [pipe, work] = [process.argv[2]!, process.argv[3]!];
const calib = join(work, 'calib.json');
const big = !pipe.includes('sd15');
const rec = await calibrate(pipe, calib, big ? { samples: 16, steps: 10, batchSize: 16, gram: true } : { samples: 1, steps: 2, batchSize: 1, gram: true });
for (const p of listPresets()) {
  await quantizePipeline({ pipelineDir: pipe, recipe: loadRecipe(p), record: rec, recordPath: calib, out: join(work, p) });
  const m = await exportPipeline({ variantDir: join(work, p), out: join(work, `${p}-x`), calibrationImages: big ? 4 : 1, verify: big ? { seeds: [0, 1, 2, 3], steps: 10 } : false });
  const v = m.export.verification;
  console.log(`| ${p} | ${m.export.sizes.ratio} | ${m.export.summary.weightMismatches} | ${v ? v.maxAbs.toPrecision(3) : '-'} | ${v ? v.meanAbs.toPrecision(3) : '-'} | ${Object.keys(m.export.sizes.files).filter((f) => f.startsWith('temporal')).length ? 'yes' : 'no'} |`);
}
