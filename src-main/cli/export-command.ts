/**
 * `dq export <variant-dir> --out <pipeline-dir>` (real low-bit pipelines from simulated variants) and
 * `dq batch <jobs.json>` (pipelines x presets: calibrate, quantize, compare, export; resumable, shardable).
 * Registered on the program by `registerExport` and `registerBatch`.
 */
import { Command, Option } from 'commander';
import { resolve } from 'node:path';
import { parseShard, runBatch } from '../core/batch/batch.js';
import { DqError } from '../core/errors.js';
import { exportPipeline, INT8_WEIGHTS, type ExportManifest, type Int8Weights } from '../core/export/export.js';
import { prepareOutput } from '../core/fsutil.js';
import { MAX_SAMPLES, parseSeeds } from '../core/ranges.js';
import { num, untilInterrupted } from './options.js';
import { progressPrinter } from './progress.js';


const kb = (b: number) => `${(b / 1024).toFixed(1)} KiB`;

/** The lines `dq export` prints. */
export function exportSummary(m: ExportManifest, out: string): string[] {
  const x = m.export;
  const lines: string[] = [];
  const ratio = x.sizes.ratio === null ? '' : ` = ${x.sizes.ratio.toFixed(3)} of the FP32 unet (${kb(x.sizes.fp32UnetBytes!)})`;
  lines.push(`${m.recipe.name}: ${kb(x.sizes.exportBytes)}${ratio}`);
  for (const r of x.real) lines.push(`real: ${r}`);
  for (const s of x.simulated) lines.push(`simulated: ${s}`);
  for (const n of x.notes) lines.push(`note: ${n}`);
  const v = x.verification;
  if (v) {
    const asRun = v.int8WeightsAsRun && v.int8WeightsAsRun !== x.options.int8Weights ? ` (int8 weights loaded as ${v.int8WeightsAsRun} on this CPU)` : '';
    lines.push(`verification, one evaluation at a time (${v.step.evaluations} on the simulated trajectory, same inputs): |exported - simulated| noise prediction mean ${v.step.meanAbs.toFixed(5)}, p99 ${v.step.p99Abs.toFixed(4)}, max ${v.step.maxAbs.toFixed(4)}${asRun}`);
    lines.push(`verification, images (${v.seeds.length} seeds, ${v.steps} steps): |exported - simulated| mean ${v.meanAbs.toFixed(5)}, p99 ${v.p99Abs.toFixed(4)}, max ${v.maxAbs.toFixed(4)} (model space, about [-1, 1])`);
    if (v.verdict) {
      const b = v.verdict.bounds;
      const bounds = `step mean <= ${b.stepMean}, p99 <= ${b.stepP99}; image mean <= ${b.imageMean}${b.imageP99 === null ? '' : `, p99 <= ${b.imageP99}`}`;
      lines.push(v.verdict.ok ? `verdict: as expected (${v.verdict.expected}; ${bounds})` : `verdict: LARGER THAN EXPECTED: ${v.verdict.exceeded.join(', ')} (${v.verdict.expected}; ${bounds})`);
    }
  }
  lines.push(`-> ${resolve(out)}`);
  return lines;
}

export function registerExport(program: Command): void {
  program
    .command('export')
    .description('export a quantized variant as a pipeline with real low-bit weights (INT8 W8A8 on int8 kernels), then verify it')
    .argument('<variant-dir>', 'a variant folder written by dq quantize')
    .requiredOption('--out <pipeline-dir>', 'pipeline folder to write (replaced atomically; an existing one only if it is empty or an export)')
    .option('--force', 'replace whatever is at --out (a folder of other files, a file)')
    .addOption(
      new Option('--int8-weights <kind>', 'INT8 weights on integer kernels: u8 (uint8 + zero point 128, exact on every CPU), s8 (fastest; exact only with VNNI), s7 (7-bit codes, reduce range)')
        .choices([...INT8_WEIGHTS])
        .default('u8'),
    )
    .addOption(new Option('--reduce-range', 'the same as --int8-weights s7 (older name)').hideHelp())
    .option('--no-fuse-attention', 'keep attention blocks as separate MatMul/Softmax nodes (default: one com.microsoft MultiHeadAttention each)')
    .option('--seeds <list>', 'verification seeds', '0-3')
    .option('--steps <n>', 'verification steps (default: the calibration steps)', num('--steps', 1, true))
    .option('--calib-images <n>', 'images for QLinearConv output ranges', num('--calib-images', 1, true, MAX_SAMPLES), 8)
    .option('--no-verify', 'skip the verification')
    .option('--json', 'print the export section of the manifest as JSON')
    .action(async (dir: string, o: { out: string; force?: boolean; int8Weights: Int8Weights; reduceRange?: boolean; seeds: string; steps?: number; calibImages: number; verify: boolean; fuseAttention: boolean; json?: boolean }) => {
      const force = o.force === true;
      const seeds = o.verify ? parseSeeds(o.seeds) : [];
      prepareOutput(o.out, { replace: 'export', force });
      // a progress line per phase on stderr; Ctrl-C stops the export and leaves the previous output
      const bar: { phase: string; printer: ReturnType<typeof progressPrinter> | null } = { phase: '', printer: null };
      try {
        const m = await untilInterrupted((signal) => exportPipeline({
          variantDir: dir,
          out: o.out,
          force,
          int8Weights: o.reduceRange ? 's7' : o.int8Weights,
          fuseAttention: o.fuseAttention,
          calibrationImages: o.calibImages,
          verify: o.verify ? { seeds, steps: o.steps } : false,
          onLine: o.json ? undefined : (s) => console.log(s),
          signal,
          onProgress: o.json
            ? undefined
            : (p) => {
                if (p.phase !== bar.phase) {
                  bar.printer?.done();
                  bar.phase = p.phase;
                  bar.printer = progressPrinter(p.phase);
                }
                bar.printer!.update(p);
              },
        }));
        bar.printer?.done();
        console.log(o.json ? JSON.stringify(m.export, null, 2) : exportSummary(m, o.out).join('\n'));
      } catch (e) {
        bar.printer?.done();
        throw e;
      }
    });
}

export function registerBatch(program: Command): void {
  program
    .command('batch')
    .description('run a matrix of pipelines x presets (calibrate, quantize, compare, export) with a log per job; finished jobs are skipped')
    .argument('<jobs.json>', 'job file (see docs/export.md)')
    .option('--shard <i/n>', 'run only shard i of n (0-based), e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT')
    .option('--dry-run', 'list the jobs of this shard and whether they are done')
    .action(async (file: string, o: { shard?: string; dryRun?: boolean }) => {
      const shard = o.shard ? parseShard(o.shard) : { index: 0, count: 1 };
      const res = await runBatch({ jobsFile: file, shard, dryRun: o.dryRun ?? false, onLine: (s) => console.log(s) });
      if (res.failed.length) throw new DqError('BAD_CONFIG', `${res.failed.length} of ${res.jobs.length} jobs failed (${res.failed.join(', ')}): see the lines above and each job's job.log where one was written`);
    });
}
