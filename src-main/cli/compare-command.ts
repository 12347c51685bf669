/**
 * `dq compare <pipeline-dir> --variants fp,<dir>,...`: same-seed comparison of pipeline variants (grid, heatmaps,
 * videos, metrics.json, report.html). Registered on the program by `registerCompare`.
 */
import { Command, Option } from 'commander';
import { resolve } from 'node:path';
import { runCompare, type CompareProgress } from '../core/compare/compare.js';
import type { CompareMetrics } from '../core/compare/schema.js';
import { openPipeline } from '../core/open.js';
import { SAMPLERS, type SamplerName } from '../core/pipeline/schedulers.js';
import { prepareOutput } from '../core/fsutil.js';
import { MAX_BATCH, MAX_COUNT, MAX_SAMPLES, parseClasses, parseSeeds } from '../core/ranges.js';
import { PROVIDERS, type Provider } from '../core/runtime/onnx.js';
import { progressPrinter } from './progress.js';
import { num } from './options.js';


function fmt(v: number | null, digits: number): string {
  return v === null ? '-' : v.toFixed(digits);
}

/** One line per variant, for the terminal. */
export function summaryLines(m: CompareMetrics): string[] {
  return m.variants.map((v) => {
    if (v.isFp) return `${v.name}: reference; FID to data ${fmt(v.fid.toData, 2)}, class agreement ${fmt(v.classAgreement.requested, 3)}`;
    const psnr = v.psnrDb.mean === null ? 'inf' : v.psnrDb.mean.toFixed(2);
    return (
      `${v.name}: PSNR ${psnr} dB, SSIM ${fmt(v.ssim.mean, 4)}, FID to FP ${fmt(v.fid.toFp, 2)}, FID to data ${fmt(v.fid.toData, 2)}, ` +
      `class agreement ${fmt(v.classAgreement.requested, 3)}`
    );
  });
}

export function registerCompare(program: Command): void {
  program
    .command('compare')
    .description('same seeds through every variant: labelled grid, diff heatmaps, videos, metrics.json and an HTML report')
    .argument('<pipeline-dir>', 'the full-precision pipeline folder (diffusers ONNX layout), e.g. models/tiny-mnist')
    .requiredOption('--variants <list>', "comma-separated: 'fp' (the pipeline itself) and variant pipeline folders")
    .option('--class <list>', 'class labels, e.g. 0-9 or 3,5 (default: every class)')
    .option('--seeds <list>', 'seeds, e.g. 0-7', '0-7')
    .option('--steps <n>', 'inference steps', num('--steps', 1, true), 25)
    .addOption(new Option('--sampler <name>', 'sampler').choices(SAMPLERS).default('ddim'))
    .option('--guidance <w>', 'classifier-free guidance scale (1 = off; default: the pipeline default)', num('--guidance', 0))
    .option('--eta <eta>', 'DDIM eta (0 = deterministic)', num('--eta', 0), 0)
    .option('--batch <n>', 'images per network batch', num('--batch', 1, true, MAX_BATCH), 32)
    .option('--fid-samples <n>', 'generated images per variant for FID (0 = no FID; few samples bias FID upwards)', num('--fid-samples', 0, true, MAX_SAMPLES), 200)
    .option('--walk-frames <n>', 'frames per segment of the seed-interpolation walk', num('--walk-frames', 1, true, MAX_COUNT), 8)
    .addOption(new Option('--provider <ep>', 'execution provider').choices(PROVIDERS).default('cpu'))
    .requiredOption('--out <dir>', 'output folder (grid.png, diff-*.png, *.webp, *.mp4, metrics.json, report.html)')
    .option('--no-video', 'skip the trajectory and walk videos')
    .option('--quiet', 'no progress output')
    .action(async (dir: string, o: Record<string, string | number | boolean | undefined>) => {
      const classes = o.class === undefined ? [] : parseClasses(String(o.class));
      const seeds = parseSeeds(String(o.seeds));
      // before any sampling: a bad --out must not fail after minutes of work
      prepareOutput(String(o.out), 'folder');
      const variants = String(o.variants).split(',').map((s) => s.trim()).filter(Boolean);
      const guidance = (o.guidance as number | undefined) ?? (await openPipeline(dir, o.provider as Provider)).pipeline.index.defaultGuidance;
      const progress = o.quiet ? undefined : progressPrinter('comparing');
      const controller = new AbortController();
      const stop = () => controller.abort();
      process.once('SIGINT', stop);
      try {
        const metrics = await runCompare({
          pipelineDir: dir,
          variants,
          seeds,
          classes,
          steps: o.steps as number,
          sampler: o.sampler as SamplerName,
          guidance,
          eta: o.eta as number,
          batchSize: o.batch as number,
          provider: o.provider as Provider,
          fidSamples: o.fidSamples as number,
          walkFrames: o.walkFrames as number,
          video: o.video !== false,
          out: String(o.out),
          signal: controller.signal,
          onProgress: progress ? (p: CompareProgress) => progress.update(p) : undefined,
        });
        progress?.done();
        if (!o.quiet) {
          for (const line of summaryLines(metrics)) console.log(line);
          for (const n of metrics.notes) console.log(`note: ${n}`);
        }
        console.log(`report: ${resolve(String(o.out), metrics.files.report)}`);
      } finally {
        process.removeListener('SIGINT', stop);
      }
    });
}
