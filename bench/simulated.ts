/**
 * Simulated (fake-quantized) variants against FP sampling on the embedded model (issue 22): one calibration, one
 * variant per preset, then every pipeline samples the same 40 images x 25 DDIM steps (guidance 2, batch 16, as
 * `dq sample` does), interleaved round by round so that all see the same machine state; the fastest round of each
 * is kept. Targets: INT8 and FP8 <= 1.3x, MX and NVFP4 <= 2x, the TFMQ cache <= 1.3x.
 * DQ_BENCH_SIM_ROUNDS sets the rounds (default 3).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { openPipeline } from '../src-main/core/open.js';
import { sample } from '../src-main/core/pipeline/sample.js';
import { calibrate } from '../src-main/core/quant/calibrate.js';
import { quantizePipeline } from '../src-main/core/quant/quantize.js';
import { loadRecipe } from '../src-main/core/quant/recipe.js';
import { loadOnnx } from '../src-main/core/onnx/io.js';

const PRESETS: [string, string][] = [
  ['int8-w8a8', '1.3'],
  ['fp8-e4m3-w8a8', '1.3'],
  ['tfmq-w4a8', '1.3'],
  ['mxfp4-w4a8', '2'],
  ['nvfp4-w4a4', '2'],
];

export async function benchSimulated(model = 'models/tiny-mnist'): Promise<void> {
  const rounds = Number(process.env.DQ_BENCH_SIM_ROUNDS ?? 3);
  const work = mkdtempSync(join(tmpdir(), 'dq-bench-sim-'));
  try {
    const rec = await calibrate(model, join(work, 'calib.json'), { samples: 16, steps: 25 });
    const dirs: [string, string, string][] = [['FP', model, '']];
    for (const [preset, target] of PRESETS) {
      const out = join(work, preset);
      await quantizePipeline({ pipelineDir: model, recipe: loadRecipe(preset), record: rec, recordPath: join(work, 'calib.json'), out });
      dirs.push([preset, out, target]);
    }
    const opened = await Promise.all(dirs.map(async ([, dir]) => openPipeline(dir, 'cpu')));
    const req = { seeds: Array.from({ length: 40 }, (_, i) => i), classes: Array.from({ length: 40 }, (_, i) => i % 10), steps: 25, sampler: 'ddim' as const, guidance: 2, batchSize: 16 };
    // one warm-up pass each (sessions, arenas, temporal caches are built as a user's first sample builds them)
    for (const o of opened) await sample(o.pipeline, o.session, { ...req, seeds: [0], classes: [0], steps: 2 });
    const best = dirs.map(() => Infinity);
    for (let r = 0; r < rounds; r++) {
      for (const [i, o] of opened.entries()) {
        const t0 = performance.now();
        await sample(o.pipeline, o.session, req);
        best[i] = Math.min(best[i]!, (performance.now() - t0) / 1000);
      }
    }
    const nodes = dirs.map(([, dir]) => (loadOnnx(join(dir, 'unet', 'model.onnx')).model.graph?.node ?? []).length);
    console.log(`\nSimulated variants vs FP sampling on ${model} (40 images x 25 DDIM steps, guidance 2, batch 16; fastest of ${rounds} interleaved rounds)`);
    console.log(`CPU: ${cpus()[0]?.model ?? 'unknown'}, ${cpus().length} logical cores`);
    console.log(`  ${'pipeline'.padEnd(16)} ${'seconds'.padStart(8)} ${'/ FP'.padStart(6)} ${'target'.padStart(7)} ${'unet nodes'.padStart(11)}`);
    dirs.forEach(([label, , target], i) => {
      console.log(`  ${label.padEnd(16)} ${best[i]!.toFixed(2).padStart(8)} ${(best[i]! / best[0]!).toFixed(2).padStart(6)} ${(target ? `<= ${target}` : '').padStart(7)} ${String(nodes[i]).padStart(11)}`);
    });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
