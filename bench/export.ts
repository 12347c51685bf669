/**
 * Export bench (part of `npm run bench`): FP32 vs exported W8A8 (naive-w8a8: one parameter set, int8 kernels) on a
 * UNet with Stable Diffusion 1.5's topology, on the CPU provider. Four unets run the same fixed inputs (batch 1,
 * latent 4x32x32) interleaved, 12 times each: the FP32 source, the FP32 source with the export's float fusion
 * (attention blocks as MultiHeadAttention, onnx/fuse.ts) and the W8A8 export (which has that fusion too). The table
 * gives the fastest and median times and the ratios from this one run, so the speed-up of the export over the
 * source splits into what the fusion gives and what the int8 kernels give. A fourth row stores the int8 weights as
 * s8 instead of the default u8 (faster u8s8 kernels, exact only on CPUs with VNNI; see docs/export.md), a fifth as s7
 * (reduce range: the same u8s8 kernels, which cannot saturate with 7-bit codes, on a coarser weight grid than the
 * simulated variant). On a CPU with VNNI the u8 export loads with s8 weights (export/load-int8.ts), so its row runs
 * the same kernels as the s8 row.
 *
 * The UNet: generated at block_out_channels 64,128,256,256 with tools/make_sd15_unet.py when Debian's PyTorch is
 * there (python3 with torch), else the committed fixture test/fixtures/sd15 (16,32,64,64), whose convolutions are
 * too small for int8 kernels to pay off (both are printed as such). DQ_BENCH_SD15_CHANNELS overrides the width.
 * The CPU's int8 dot-product support (AVX-512 VNNI / AVX-VNNI, or neither) is printed: it decides the int8 speed.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus } from 'node:os';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { exportPipeline } from '../src-main/core/export/export.js';
import { fuseAttention } from '../src-main/core/onnx/fuse.js';
import { loadOnnx, saveOnnx } from '../src-main/core/onnx/io.js';
import { releaseSessions } from '../src-main/core/pipeline/pipeline.js';
import { openPipeline } from '../src-main/core/open.js';
import { calibrate } from '../src-main/core/quant/calibrate.js';
import { copyComponents, quantizePipeline } from '../src-main/core/quant/quantize.js';
import { buildFeeds, guidedRun } from '../src-main/core/pipeline/sample.js';
import { loadRecipe } from '../src-main/core/quant/recipe.js';
import { int8Support, INT8_SUPPORT_LABEL } from '../src-main/core/runtime/cpu.js';
import type { FeedValue } from '../src-main/core/runtime/onnx.js';

const ROOT = resolve(import.meta.dirname, '..');

function generate(dir: string, channels: string): boolean {
  const py = '/usr/bin/python3';
  if (!existsSync(py)) return false;
  const r = spawnSync(py, [join(ROOT, 'tools', 'make_sd15_unet.py'), '--out', dir, '--channels', channels], { encoding: 'utf8' });
  return r.status === 0;
}

/** A copy of the FP32 pipeline with the export's float fusion applied (no quantization); every other component as it is. */
function fusedCopy(fp: string, dir: string): number {
  mkdirSync(join(dir, 'unet'), { recursive: true });
  copyComponents(fp, dir);
  const l = loadOnnx(join(fp, 'unet', 'model.onnx'));
  const n = fuseAttention(l.model).length;
  saveOnnx(l.model, join(dir, 'unet', 'model.onnx'), l.dir);
  return n;
}

/** The CPU's name and its int8 dot-product / matrix features as /proc/cpuinfo lists them. */
export function cpuLabel(): string {
  const model = cpus()[0]?.model?.trim() ?? 'unknown CPU';
  let flags: string[] = [];
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'));
    flags = line ? line.split(':')[1]!.trim().split(/\s+/) : [];
  } catch {
    /* not Linux: the model name alone */
  }
  const has = (f: string) => (flags.includes(f) ? 'yes' : 'no');
  return `${model}, ${cpus().length} logical cores; avx512_vnni ${has('avx512_vnni')}, avx_vnni ${has('avx_vnni')}, amx_int8 ${has('amx_int8')}`;
}

/**
 * A timed run of the pipeline's unet on fixed inputs built as sampling builds them (pipeline/sample.ts buildFeeds:
 * the text states of one encoded prompt, doubled for classifier-free guidance, the variant's extra feeds), and the
 * int8 weights it loaded with (exports).
 */
async function runner(dir: string): Promise<{ run: () => Promise<number>; int8Loaded?: string; rows: number }> {
  const { pipeline: p, session } = await openPipeline(dir, 'cpu');
  const [C, H, W] = p.index.sampleShape;
  const guidance = p.text ? p.index.defaultGuidance : 1;
  const guided = guidedRun(p, guidance);
  const labels = p.text ? await p.text.ids(['a red seven on a blue background'], [''], guided) : p.io.classLabels ? [0] : [];
  const x = Float64Array.from({ length: C * H * W }, (_, i) => Math.sin(i * 0.37));
  const feeds: Record<string, FeedValue> = await buildFeeds(p, x, 500, labels, guided, 1, p.extraFeeds, guidance);
  const run = async () => {
    const t0 = performance.now();
    await session.run(feeds, [p.io.output]);
    return performance.now() - t0;
  };
  return { run, int8Loaded: p.int8Weights?.loaded, rows: feeds[p.io.sample]!.dims[0]! };
}

export async function benchExport(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'dq-bench-export-'));
  try {
    const channels = process.env.DQ_BENCH_SD15_CHANNELS;
    let fp = join(ROOT, 'test', 'fixtures', 'sd15-optimum');
    let label = 'test/fixtures/sd15-optimum: SD 1.5 topology, Optimum layout, block_out_channels 4,8,16,16, sample_size 16 (random weights), text inputs from its CLIP encoder';
    if (channels) {
      if (!generate(join(work, 'sd15'), channels)) throw new Error('DQ_BENCH_SD15_CHANNELS needs /usr/bin/python3 with torch (tools/make_sd15_unet.py)');
      fp = join(work, 'sd15');
      label = `generated by tools/make_sd15_unet.py, block_out_channels ${channels}`;
    }
    const [, lh, lw] = (await openPipeline(fp, 'cpu')).pipeline.index.sampleShape;
    console.log(`\nDQ Studio export bench: SD 1.5 unet (${label}), latent 4x${lh}x${lw}, batch 1 doubled for guidance, onnxruntime CPU provider`);
    console.log(`CPU: ${cpuLabel()}`);
    const calib = join(work, 'calib.json');
    const rec = await calibrate(fp, calib, { samples: 1, steps: 2, batchSize: 1, ...(channels ? {} : { prompts: ['a red seven on a blue background', 'a cat'] }) });
    await quantizePipeline({ pipelineDir: fp, recipe: loadRecipe('naive-w8a8'), record: rec, recordPath: calib, out: join(work, 'w8a8') });
    const m = await exportPipeline({ variantDir: join(work, 'w8a8'), out: join(work, 'w8a8-x'), calibrationImages: 1, verify: false });
    const s8 = await exportPipeline({ variantDir: join(work, 'w8a8'), out: join(work, 'w8a8-s8'), calibrationImages: 1, verify: false, int8Weights: 's8' });
    const s7 = await exportPipeline({ variantDir: join(work, 'w8a8'), out: join(work, 'w8a8-s7'), calibrationImages: 1, verify: false, int8Weights: 's7' });
    const sizes = m.export.sizes;
    const nFused = fusedCopy(fp, join(work, 'fp32-fused'));
    const u8 = await runner(join(work, 'w8a8-x'));
    const loadedAs = u8.int8Loaded === 's8' ? ', loaded as s8 on this CPU' : '';
    const units = [
      { label: 'FP32 (source)', run: (await runner(fp)).run, bytes: String(sizes.fp32UnetBytes) },
      { label: `FP32 + fusion (${nFused} attention blocks)`, run: (await runner(join(work, 'fp32-fused'))).run, bytes: '' },
      { label: `exported W8A8 (${m.export.summary.int8Kernels} int8-kernel layers, fused; int8 weights u8${loadedAs})`, run: u8.run, bytes: String(sizes.exportBytes) },
      { label: 'exported W8A8, int8 weights s8 (exact only with VNNI)', run: (await runner(join(work, 'w8a8-s8'))).run, bytes: String(s8.export.sizes.exportBytes) },
      { label: 'exported W8A8, int8 weights s7 (reduce range: 7-bit codes)', run: (await runner(join(work, 'w8a8-s7'))).run, bytes: String(s7.export.sizes.exportBytes) },
    ];
    for (const u of units) await u.run();
    const times = units.map(() => [] as number[]);
    for (let i = 0; i < 12; i++) for (let k = 0; k < units.length; k++) times[k]!.push(await units[k]!.run());
    for (const t of times) t.sort((p, q) => p - q);
    const med = (t: number[]) => (t[5]! + t[6]!) / 2;
    const rows = [['unet', 'bytes', 'fastest ms', 'median ms'], ...units.map((u, k) => [u.label, u.bytes, times[k]![0]!.toFixed(1), med(times[k]!).toFixed(1)])];
    const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const r of rows) console.log(r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  '));
    const [src, fused, q, qs, q7] = times as [number[], number[], number[], number[], number[]];
    const ratio = (p: number[], r: number[]) => `fastest ${(p[0]! / r[0]!).toFixed(2)}x, median ${(med(p) / med(r)).toFixed(2)}x`;
    console.log(`CPU int8 dot products: ${INT8_SUPPORT_LABEL[int8Support()]}; size ratio ${sizes.ratio}`);
    const perSecond = (t: number[]) => (1000 / med(t)).toFixed(1);
    console.log(`denoiser evaluations per second (median; ${u8.rows} rows each): FP32 ${perSecond(src)}, exported W8A8 ${perSecond(q)}`);
    console.log(`speed-up FP32 source / W8A8 export: ${ratio(src, q)} (target >= 2x on a CPU with VNNI or AMX)`);
    console.log(`  of which the float fusion (FP32 source / FP32 + fusion): ${ratio(src, fused)}; the int8 kernels (FP32 + fusion / W8A8 export): ${ratio(fused, q)}`);
    console.log(`speed-up FP32 source / W8A8 export with s8 weights: ${ratio(src, qs)}${int8Support() === 'avx2' ? ' (outputs wrong on this CPU)' : ''}`);
    console.log(`speed-up FP32 source / W8A8 export with s7 weights: ${ratio(src, q7)} (7-bit weight grid)`);
  } finally {
    await releaseSessions();
    rmSync(work, { recursive: true, force: true });
  }
}
