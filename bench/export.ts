/**
 * Export bench (part of `npm run bench`): FP32 vs exported W8A8 (naive-w8a8: one parameter set, int8 kernels) on a
 * UNet with Stable Diffusion 1.5's topology, on the CPU provider. The two unets run the same fixed inputs
 * (batch 1, latent 4x32x32) interleaved, 12 times each; the table gives the fastest and median times and their ratio
 * from this one run, plus the sizes of the files.
 *
 * The UNet: generated at block_out_channels 64,128,256,256 with tools/make_sd15_unet.py when Debian's PyTorch is
 * there (python3 with torch), else the committed fixture test/fixtures/sd15 (16,32,64,64), whose convolutions are
 * too small for int8 kernels to pay off (both are printed as such). DQ_BENCH_SD15_CHANNELS overrides the width.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { exportPipeline } from '../src-main/core/export/export.js';
import { loadPipeline, releaseSessions } from '../src-main/core/pipeline/pipeline.js';
import { calibrate } from '../src-main/core/quant/calibrate.js';
import { quantizePipeline } from '../src-main/core/quant/quantize.js';
import { loadRecipe } from '../src-main/core/quant/recipe.js';
import type { FeedValue } from '../src-main/core/runtime/onnx.js';

const ROOT = resolve(import.meta.dirname, '..');

function generate(dir: string, channels: string): boolean {
  const py = '/usr/bin/python3';
  if (!existsSync(py)) return false;
  const r = spawnSync(py, [join(ROOT, 'tools', 'make_sd15_unet.py'), '--out', dir, '--channels', channels], { encoding: 'utf8' });
  return r.status === 0;
}

async function runner(dir: string) {
  const { pipeline: p, session } = await loadPipeline(dir, 'cpu');
  const [C, H, W] = p.index.sampleShape;
  const feeds: Record<string, FeedValue> = { [p.io.sample]: { type: 'float32', data: Float32Array.from({ length: C * H * W }, (_, i) => Math.sin(i * 0.37)), dims: [1, C, H, W] } };
  if (p.io.feedsTimestep !== false) feeds[p.io.timestep] = { type: 'float32', data: Float32Array.of(500), dims: [1] };
  if (p.extraFeeds) Object.assign(feeds, await p.extraFeeds(500, null, 1));
  return async () => {
    const t0 = performance.now();
    await session.run(feeds, [p.io.output]);
    return performance.now() - t0;
  };
}

export async function benchExport(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'dq-bench-export-'));
  try {
    const channels = process.env.DQ_BENCH_SD15_CHANNELS ?? '64,128,256,256';
    let fp = join(work, 'sd15');
    let label = `generated, block_out_channels ${channels}`;
    if (!generate(fp, channels)) {
      fp = join(ROOT, 'test', 'fixtures', 'sd15');
      label = 'committed fixture, block_out_channels 16,32,64,64 (no PyTorch to generate a wider one)';
    }
    console.log(`\nDQ Studio export bench: SD 1.5-topology UNet (${label}), latent 4x32x32, onnxruntime CPU provider`);
    const calib = join(work, 'calib.json');
    const rec = await calibrate(fp, calib, { samples: 1, steps: 2, batchSize: 1 });
    await quantizePipeline({ pipelineDir: fp, recipe: loadRecipe('naive-w8a8'), record: rec, recordPath: calib, out: join(work, 'w8a8') });
    const m = await exportPipeline({ variantDir: join(work, 'w8a8'), out: join(work, 'w8a8-x'), calibrationImages: 1, verify: false });
    const a = await runner(fp);
    const b = await runner(join(work, 'w8a8-x'));
    await a();
    await b();
    const ta: number[] = [];
    const tb: number[] = [];
    for (let i = 0; i < 12; i++) {
      ta.push(await a());
      tb.push(await b());
    }
    ta.sort((x, y) => x - y);
    tb.sort((x, y) => x - y);
    const med = (t: number[]) => (t[5]! + t[6]!) / 2;
    const x = m.export;
    const rows = [
      ['unet', 'bytes', 'fastest ms', 'median ms'],
      ['FP32', String(x.sizes.fp32UnetBytes), ta[0]!.toFixed(1), med(ta).toFixed(1)],
      [`exported W8A8 (${x.summary.int8Kernels} int8-kernel layers)`, String(x.sizes.exportBytes), tb[0]!.toFixed(1), med(tb).toFixed(1)],
    ];
    const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const r of rows) console.log(r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  '));
    console.log(`size ratio ${x.sizes.ratio}; speed-up FP32 / W8A8: fastest ${(ta[0]! / tb[0]!).toFixed(2)}x, median ${(med(ta) / med(tb)).toFixed(2)}x`);
  } finally {
    await releaseSessions();
    rmSync(work, { recursive: true, force: true });
  }
}
