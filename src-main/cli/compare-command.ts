/**
 * `dq compare <pipeline-dir> [variant...]` (or `--variants fp,<dir>,...`): same-seed comparison of pipeline variants
 * (grid, heatmaps, videos, metrics.json, report.html), on classes or, for text-to-image pipelines, on prompts; with
 * `--judge <onnx>`, FID-to-FP and feature cosine in that image model's features. Registered by `registerCompare`.
 */
import { Command, Option } from 'commander';
import { resolve } from 'node:path';
import { runCompare, type CompareProgress } from '../core/compare/compare.js';
import type { CompareMetrics } from '../core/compare/schema.js';
import { psnrOverFrames } from '../core/compare/video-compare.js';
import { DqError } from '../core/errors.js';
import { JUDGE_NORMALIZE, type JudgeNormalize } from '../core/eval/judge.js';
import { openPipeline } from '../core/open.js';
import { readPromptFile, type PromptEntry } from '../core/pipeline/prompt-file.js';
import { MAX_FRAMES } from '../core/pipeline/pipeline.js';
import { fallbackSampler, SAMPLERS, type SamplerName } from '../core/pipeline/schedulers.js';
import { prepareOutput } from '../core/fsutil.js';
import { MAX_BATCH, MAX_COUNT, MAX_IMAGE_PX, MAX_SAMPLES, parseClasses, parseSeeds } from '../core/ranges.js';
import { PROVIDERS, type Provider } from '../core/runtime/onnx.js';
import { progressPrinter } from './progress.js';
import { num, untilInterrupted } from './options.js';


function fmt(v: number | null, digits: number): string {
  return v === null ? '-' : v.toFixed(digits);
}

/** The judge's columns of a variant (empty without --judge). */
function judgeText(v: CompareMetrics['variants'][number]): string {
  if (!v.judge) return '';
  return `, judge FID to FP ${fmt(v.judge.fidToFp, 3)}, judge cosine ${v.judge.cosine.mean.toFixed(4)} mean / ${v.judge.cosine.min.toFixed(4)} min`;
}

/** One line per variant, for the terminal. */
export function summaryLines(m: CompareMetrics): string[] {
  const text = m.settings.prompts !== undefined;
  const lines: string[] = [];
  if (text) m.settings.prompts!.forEach((p, i) => lines.push(`prompt ${i + 1}: ${p.prompt}${p.negative ? ` (negative: ${p.negative})` : ''}`));
  for (const v of m.variants) {
    const psnr = v.psnrDb.mean === null ? 'inf' : v.psnrDb.mean.toFixed(2);
    const psnrMin = v.psnrDb.min === null ? 'inf' : v.psnrDb.min.toFixed(2);
    if (text) {
      lines.push(v.isFp ? `${v.name}: reference` : `${v.name}: PSNR ${psnr} dB mean / ${psnrMin} min, SSIM ${fmt(v.ssim.mean, 4)} mean / ${fmt(v.ssim.min, 4)} min${judgeText(v)}`);
      const pf = m.videoFrames?.perFrame.find((f) => f.name === v.name);
      if (pf) {
        const { worst, worstFrame } = psnrOverFrames(pf.psnrDb);
        lines.push(`  ${m.videoFrames!.frames} frames: PSNR ${worst === null ? 'inf' : `${worst.toFixed(2)} dB at worst (frame ${worstFrame})`}, flicker ${pf.flickerRatio === null ? 'n/a (FP is still)' : `${pf.flickerRatio.toFixed(3)}x FP's`}`);
      }
      continue;
    }
    if (v.isFp) lines.push(`${v.name}: reference; FID to data ${fmt(v.fid.toData, 2)}, class agreement ${fmt(v.classAgreement.requested, 3)}`);
    else {
      lines.push(
        `${v.name}: PSNR ${psnr} dB, SSIM ${fmt(v.ssim.mean, 4)}, FID to FP ${fmt(v.fid.toFp, 2)}, FID to data ${fmt(v.fid.toData, 2)}, ` +
          `class agreement ${fmt(v.classAgreement.requested, 3)}${judgeText(v)}`,
      );
    }
  }
  return lines;
}

/** --prompt (repeated) or --prompts <file>; undefined when neither. */
export function promptsOption(o: Record<string, unknown>): PromptEntry[] | undefined {
  if (o.prompt !== undefined && o.prompts !== undefined) throw new DqError('BAD_ARGUMENT', 'give --prompt or --prompts, not both');
  if (o.prompts !== undefined) return readPromptFile(String(o.prompts));
  if (o.prompt !== undefined) return (o.prompt as string[]).map((prompt) => ({ prompt }));
  return undefined;
}

export function registerCompare(program: Command): void {
  program
    .command('compare')
    .description('same seeds through every variant: labelled grid, diff heatmaps, videos, metrics.json and an HTML report')
    .argument('<pipeline-dir>', 'the full-precision pipeline folder (diffusers ONNX layout), e.g. models/tiny-mnist')
    .argument('[variants...]', 'variant pipeline folders (or use --variants)')
    .option('--variants <list>', "comma-separated: 'fp' (the pipeline itself) and variant pipeline folders")
    .option('--class <list>', 'class labels, e.g. 0-9 or 3,5 (default: every class)')
    .option('--prompt <text>', 'text-to-image: a prompt, a grid row (repeat --prompt for more rows; default: the first prompts of the folder\'s calibration_prompts.txt)', (v: string, prev: string[] | undefined) => [...(prev ?? []), v])
    .option('--prompts <file>', 'text-to-image: a prompt file (UTF-8): one prompt a line, or a JSON list of strings or {"prompt", "negative_prompt"}')
    .option('--negative-prompt <text>', 'text-to-image: what to steer away from (for prompts that give none)')
    .option('--height <px>', "text-to-image: image height in pixels (default: the pipeline's)", num('--height', 1, true, MAX_IMAGE_PX))
    .option('--width <px>', 'text-to-image: image width in pixels', num('--width', 1, true, MAX_IMAGE_PX))
    .option('--frames <n>', "text-to-video: frames per video (default: the pipeline's)", num('--frames', 1, true, MAX_FRAMES))
    .option('--fps <n>', 'text-to-video: frames per second of the frame-by-frame videos', num('--fps', 1, true, 60), 8)
    .option('--judge <onnx>', 'an ONNX image model with a feature output (CLIP image encoder, Inception, ...): FID-to-FP and feature cosine in its features')
    .option('--judge-output <name>', "the judge's feature output (default: picked from its graph)")
    .addOption(new Option('--judge-normalize <mode>', "the judge's input range").choices(JUDGE_NORMALIZE).default('[0,1]'))
    .option('--seeds <list>', 'seeds, e.g. 0-7', '0-7')
    .option('--steps <n>', 'inference steps', num('--steps', 1, true), 25)
    .addOption(new Option('--sampler <name>', 'sampler (default: ddim; flow-euler for a flow-matching pipeline)').choices(SAMPLERS))
    .option('--guidance <w>', 'classifier-free guidance scale (1 = off; default: the pipeline default)', num('--guidance', 0))
    .option('--eta <eta>', 'DDIM eta (0 = deterministic)', num('--eta', 0), 0)
    .option('--batch <n>', 'images per network batch', num('--batch', 1, true, MAX_BATCH), 32)
    .option('--fid-samples <n>', 'generated images per variant for FID (0 = no FID; few samples bias FID upwards)', num('--fid-samples', 0, true, MAX_SAMPLES), 200)
    .option('--walk-frames <n>', 'frames per segment of the seed-interpolation walk', num('--walk-frames', 1, true, MAX_COUNT), 8)
    .addOption(new Option('--provider <ep>', 'execution provider').choices(PROVIDERS).default('cpu'))
    .requiredOption('--out <dir>', 'output folder (grid.png, diff-*.png, *.webp, *.mp4, metrics.json, report.html)')
    .option('--no-video', 'skip the trajectory and walk videos')
    .option('--no-walk', 'skip the seed walk (its frames cost walk-frames x seeds x columns more images per variant); the trajectory video stays')
    .option('--quiet', 'no progress output')
    .action(async (dir: string, positional: string[], o: Record<string, string | number | boolean | string[] | undefined>) => {
      const classes = o.class === undefined ? [] : parseClasses(String(o.class));
      const seeds = parseSeeds(String(o.seeds));
      const prompts = promptsOption(o);
      if (o.judge === undefined && (o.judgeOutput !== undefined || o.judgeNormalize !== '[0,1]')) throw new DqError('BAD_ARGUMENT', '--judge-output and --judge-normalize need --judge <onnx>');
      const variants = [...(o.variants === undefined ? [] : String(o.variants).split(',')), ...positional].map((s) => s.trim()).filter(Boolean);
      if (!variants.length) throw new DqError('BAD_ARGUMENT', 'name the variants to compare: dq compare <pipeline-dir> <variant-dir>... (or --variants fp,<dir>,...)');
      // before any sampling: a bad --out must not fail after minutes of work
      prepareOutput(String(o.out), 'folder');
      const opened = o.guidance === undefined || o.sampler === undefined ? (await openPipeline(dir, o.provider as Provider)).pipeline : null;
      const guidance = (o.guidance as number | undefined) ?? opened!.index.defaultGuidance;
      const sampler = (o.sampler as SamplerName | undefined) ?? fallbackSampler(opened!.scheduler);
      const progress = o.quiet ? undefined : progressPrinter('comparing');
      const metrics = await untilInterrupted((signal) =>
        runCompare({
          pipelineDir: dir,
          variants,
          seeds,
          classes,
          prompts,
          negativePrompt: o.negativePrompt as string | undefined,
          height: o.height as number | undefined,
          width: o.width as number | undefined,
          frames: o.frames as number | undefined,
          fps: o.fps as number,
          judge: o.judge === undefined ? undefined : { path: String(o.judge), output: o.judgeOutput as string | undefined, normalize: o.judgeNormalize as JudgeNormalize },
          steps: o.steps as number,
          sampler,
          guidance,
          eta: o.eta as number,
          batchSize: o.batch as number,
          provider: o.provider as Provider,
          fidSamples: o.fidSamples as number,
          walkFrames: o.walkFrames as number,
          video: o.video !== false,
          walk: o.walk !== false,
          out: String(o.out),
          signal,
          onProgress: progress ? (p: CompareProgress) => progress.update(p) : undefined,
        }),
      );
      progress?.done();
      if (!o.quiet) {
        for (const line of summaryLines(metrics)) console.log(line);
        for (const n of metrics.notes) console.log(`note: ${n}`);
      }
      console.log(`report: ${resolve(String(o.out), metrics.files.report)}`);
    });
}
