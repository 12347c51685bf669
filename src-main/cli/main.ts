/**
 * The `dq` command line: a thin shell over src-main/core. Errors a user can cause print one line and exit 1;
 * usage errors exit 2; anything else is a bug and prints its stack only with DQ_DEBUG=1.
 */
import { Command, CommanderError, Option } from 'commander';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { repoRoot } from '../core/models.js';
import { DqError, isDqError } from '../core/errors.js';
import { formatInfo, runInfo } from '../core/jobs/info-job.js';
import { describeComponents, formatComponents, type Family } from '../core/pipeline/components.js';
import { readPromptFile, runSampleJob } from '../core/jobs/sample-job.js';
import { locatePipeline, MAX_FRAMES, releaseSessions } from '../core/pipeline/pipeline.js';
import { SAMPLERS, type SamplerName } from '../core/pipeline/schedulers.js';
import { makeDirs, prepareOutput, sha256File } from '../core/fsutil.js';
import { MAX_BATCH, MAX_COUNT, MAX_IMAGE_PX, MAX_SAMPLES, parseClasses, parseSeeds } from '../core/ranges.js';
import { PROVIDERS, type Provider } from '../core/runtime/onnx.js';
import { createHost } from '../host.js';
import { serve } from '../serve/server.js';
import { progressPrinter } from './progress.js';
import { registerCompare } from './compare-command.js';
import { registerBatch, registerExport } from './export-command.js';
import { registerSensitivity } from './sensitivity-command.js';
import { calibrate, DEFAULT_CALIBRATION, DEFAULT_PROMPTS_FILE, type CalibrationRecord, type CalibrationSettings, type TimestepSelection } from '../core/quant/calibrate.js';
import { formatName, QUANTIZABLE_COMPONENTS, quantizePipeline, readRecord, recipeCalibration } from '../core/quant/quantize.js';
import { readSensitivity } from '../core/quant/sensitivity.js';
import { listPresets, loadRecipe } from '../core/quant/recipe.js';
import { runEval } from '../core/jobs/eval-job.js';
import { num, untilInterrupted } from './options.js';

const VERSION = '0.1.0';
/** The built renderer (npm run build). */
const UI_DIR = join(repoRoot(), 'out', 'renderer');


export function buildProgram(): Command {
  const program = new Command('dq')
    .description('DQ Studio: post-training quantization of diffusion pipelines (ONNX), made visible')
    .version(VERSION)
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ outputError: (s, write) => write(s) })
    .option('--verbose', 'with an error, also print the underlying text (e.g. onnxruntime\'s own message); DQ_DEBUG=1 does the same')
    .exitOverride(); // before the subcommands, which inherit it

  program
    .command('sample')
    .description('generate a labelled grid of images from a pipeline (same seed, same image): a row per class or prompt, a column per seed')
    .argument('<pipeline-dir>', 'pipeline folder (diffusers ONNX layout), e.g. models/tiny-mnist or models/tiny-t2i')
    .option('--class <list>', 'class labels, e.g. 0-9 or 3,5 (default: every class)')
    .option('--prompt <text>', 'text-to-image: a prompt, a grid row (repeat --prompt for more rows)', (v: string, prev: string[] | undefined) => [...(prev ?? []), v])
    .option('--prompts <file>', 'text-to-image: a prompt file (UTF-8): one prompt a line, or a JSON list of strings or {"prompt", "negative_prompt"}')
    .option('--negative-prompt <text>', 'text-to-image: what to steer away from (the unconditional branch of guidance)')
    .option('--height <px>', 'text-to-image: image height in pixels (a multiple of the VAE factor; default: the pipeline\'s)', num('--height', 1, true, MAX_IMAGE_PX))
    .option('--width <px>', 'text-to-image: image width in pixels', num('--width', 1, true, MAX_IMAGE_PX))
    .option('--frames <n>', "text-to-video: frames per video (default: the pipeline's)", num('--frames', 1, true, MAX_FRAMES))
    .option('--fps <n>', 'text-to-video: frames per second of videos.webp / videos.mp4', num('--fps', 1, true, 60), 8)
    .option('--seeds <list>', 'seeds, e.g. 0-7', '0-7')
    .option('--steps <n>', 'inference steps', num('--steps', 1, true), 25)
    .addOption(new Option('--sampler <name>', 'sampler (default: the one scheduler_config.json names)').choices(SAMPLERS))
    .addOption(new Option('--scheduler <name>', 'the same as --sampler (diffusers calls it the scheduler)').choices(SAMPLERS).conflicts('sampler'))
    .option('--guidance <w>', 'classifier-free guidance scale (1 = off; default: the pipeline\'s)', num('--guidance', 0))
    .option('--eta <eta>', 'DDIM eta (0 = deterministic)', num('--eta', 0), 0)
    .option('--batch <n>', 'images per network batch', num('--batch', 1, true, MAX_BATCH), 16)
    .addOption(new Option('--provider <ep>', 'execution provider').choices(PROVIDERS).default('cpu'))
    .requiredOption('--out <dir>', 'output folder (grid.png, samples.json)')
    .option('--quiet', 'no progress output')
    .action(async (dir: string, o: Record<string, string | string[] | number | boolean | undefined>) => {
      const classes = o.class === undefined ? [] : parseClasses(String(o.class));
      const seeds = parseSeeds(String(o.seeds));
      if (o.prompt !== undefined && o.prompts !== undefined) throw new DqError('BAD_ARGUMENT', 'give --prompt or --prompts, not both');
      const prompts = o.prompts !== undefined ? readPromptFile(String(o.prompts)) : o.prompt !== undefined ? (o.prompt as string[]).map((prompt) => ({ prompt })) : undefined;
      prepareOutput(String(o.out), 'folder');
      const progress = o.quiet ? undefined : progressPrinter('sampling');
      const rec = await runSampleJob({
        pipelineDir: dir,
        classes,
        prompts,
        negativePrompt: o.negativePrompt as string | undefined,
        height: o.height as number | undefined,
        width: o.width as number | undefined,
        frames: o.frames as number | undefined,
        fps: o.fps as number,
        seeds,
        steps: o.steps as number,
        sampler: (o.sampler ?? o.scheduler) as SamplerName | undefined,
        guidance: (o.guidance as number | undefined) ?? (await defaultGuidance(dir)),
        eta: o.eta as number,
        provider: o.provider as Provider,
        batchSize: o.batch as number,
        out: String(o.out),
        onProgress: progress?.update,
      });
      progress?.done();
      for (const w of rec.warnings ?? []) process.stderr.write(`warning: ${w}\n`);
      const fb = rec.provider.fallback ? ` (fell back: ${rec.provider.fallback})` : '';
      if (rec.video?.note) process.stderr.write(`note: ${rec.video.note}\n`);
      const what = rec.video ? `${rec.images.length} videos of ${rec.video.frames} frames` : `${rec.images.length} images`;
      const files = rec.video ? `${resolve(String(o.out), 'grid.png')} (contact sheet), ${resolve(String(o.out), rec.video.webp)}${rec.video.mp4 ? `, ${resolve(String(o.out), rec.video.mp4)}` : ''}` : resolve(String(o.out), 'grid.png');
      console.log(
        `${what} ${rec.imageShape.slice(1).join('x')}, ${rec.settings.sampler} ${rec.settings.steps} steps, guidance ${rec.settings.guidance}, ` +
          `provider ${rec.provider.used}${fb}, ${rec.seconds.toFixed(2)} s -> ${files}`,
      );
    });

  program
    .command('info')
    .description('summarise a pipeline: components, inputs, parameters, scheduler')
    .argument('<pipeline-dir>', 'pipeline folder (diffusers ONNX layout)')
    .option('--json', 'print JSON')
    .action(async (dir: string, o: { json?: boolean }) => {
      // a family the studio cannot sample yet (text-to-image, DiT, video): its components, their I/O and convention
      const family = await readFamily(dir);
      if (family && !family.sampled) {
        const c = await describeComponents(dir, { io: true });
        console.log(o.json ? JSON.stringify({ ...c, sampling: 'not supported yet' }, null, 2) : `${formatComponents(c)}\nsampling   not supported yet: DQ Studio does not sample or quantize ${family.task} pipelines yet`);
        return;
      }
      const info = await runInfo(dir);
      console.log(o.json ? JSON.stringify(info, null, 2) : formatInfo(info));
    });

  program
    .command('calibrate')
    .description('run the FP sampler over a calibration set and record per-layer, per-timestep activation statistics')
    .argument('<pipeline-dir>', 'pipeline folder')
    .requiredOption('--out <record>', 'calibration record to write (JSON)')
    .option('--samples <n>', 'calibration images (classes cycle 0..C-1; prompts cycle through the prompt list)', num('--samples', 1, true, MAX_SAMPLES), 64)
    .option('--steps <n>', 'sampling steps', num('--steps', 1, true), 25)
    .option('--prompts <file>', `text-to-image: calibration prompts, one a line or a JSON list (default: the folder's ${DEFAULT_PROMPTS_FILE})`)
    .option('--negative-prompt <text>', 'text-to-image: the negative prompt of every calibration sample (default: none)')
    .addOption(new Option('--sampler <name>', 'sampler (default: ddim; a text-to-image pipeline: its scheduler config\'s)').choices(SAMPLERS))
    .option('--guidance <w>', 'classifier-free guidance scale (default: 2; a text-to-image pipeline: its default); above 1 both CFG halves are calibrated', num('--guidance', 0))
    .addOption(new Option('--timesteps <sel>', 'which steps to record: all, uniform (Q-Diffusion), normal (PTQ4DM)').choices(['all', 'uniform', 'normal']).default('all'))
    .option('--count <n>', 'uniform/normal: how many steps', num('--count', 1, true, MAX_COUNT), 10)
    .option('--batch <n>', 'images per batch (checkpointed for resume)', num('--batch', 1, true, MAX_BATCH), 32)
    .option('--gram', 'also collect the Gram matrices of the layers\' inputs (needed by GPTQ recipes; written beside the record as <record>.gram)')
    .option('--quiet', 'no progress output')
    .action(async (dir: string, o: Record<string, string | number | boolean | undefined>) => {
      prepareOutput(String(o.out), 'file');
      const rec = await calibrateWithProgress(dir, String(o.out), {
        samples: o.samples as number, steps: o.steps as number, sampler: o.sampler as SamplerName | undefined, guidance: o.guidance as number | undefined,
        ...promptOptions(o.prompts),
        negativePrompt: o.negativePrompt as string | undefined,
        timesteps: o.timesteps as TimestepSelection, count: o.count as number, batchSize: o.batch as number, gram: o.gram === true,
      }, o.quiet === true, 'calibration cancelled: no record was written; run the same command again to resume');
      const gram = rec.gram ? `; Gram matrices of ${rec.gram.entries.reduce((a, e) => a + e.layers.length, 0)} layers at steps ${rec.gram.steps.join(', ')}` : '';
      console.log(`calibrated ${rec.sites.length} activation sites at ${rec.steps.length} steps (${rec.settings.samples} images)${gram} in ${rec.seconds.toFixed(1)} s -> ${resolve(String(o.out))}`);
    });

  program
    .command('quantize')
    .description('quantize a pipeline with a preset or recipe file into a variant folder (simulated quantization)')
    .argument('<pipeline-dir>', 'pipeline folder')
    .requiredOption('--preset <name|file>', `preset name (${listPresets().join(', ')}) or a recipe JSON file`)
    .option('--calib <record>', 'calibration record from dq calibrate (default, when the recipe needs one: calibrate first with the defaults into <out>.calibration.json)')
    .requiredOption('--out <variant-dir>', 'variant folder to write (an existing one is replaced only if it is empty or a variant)')
    .option('--force', 'replace whatever is at --out (a folder of other files, a file)')
    .option('--components <list>', `text-to-image: also int8 weights for these components, each verified against FP (${Object.keys(QUANTIZABLE_COMPONENTS).join(', ')}; default: none)`)
    .option('--budget <bits>', "mixed precision: at most this many bits per weight, the layers with the best measured gain per added bit in the recipe's keepFormat, or int8 without one (needs --sensitivity)", num('--budget', 1))
    .option('--sensitivity <record>', 'a record from dq sensitivity (a variant of this model): the gains --budget allocates by')
    .option('--per-range', "--budget: spend bits per layer and per timestep range (the ranges the record measured): a layer can take the higher format at some steps only, a per-step parameter set (its weight fed per step; an export carries the sets in float32)")
    .action(async (dir: string, o: { preset: string; calib?: string; out: string; force?: boolean; components?: string; budget?: number; sensitivity?: string; perRange?: boolean }) => {
      const force = o.force === true;
      if ((o.budget === undefined) !== (o.sensitivity === undefined)) throw new DqError('BAD_ARGUMENT', o.budget === undefined ? '--sensitivity goes with --budget <bits>' : '--budget needs --sensitivity <record> (from dq sensitivity on a variant of this model)');
      if (o.perRange && o.budget === undefined) throw new DqError('BAD_ARGUMENT', '--per-range goes with --budget <bits> and --sensitivity <record>');
      const budget = o.budget !== undefined ? { bits: o.budget, sensitivity: readSensitivity(o.sensitivity!), path: o.sensitivity!, perRange: o.perRange === true } : undefined;
      prepareOutput(o.out, { replace: 'variant', force });
      const recipe = loadRecipe(o.preset);
      let recordPath = o.calib;
      let record = recordPath ? readRecord(recordPath) : null;
      const needs = recordPath ? null : recipeCalibration(recipe);
      if (needs) {
        // the recipe needs a record and none was given: reuse the one an earlier run made, or calibrate with the
        // defaults first, and say so
        recordPath = `${resolve(o.out)}.calibration.json`;
        const s = { ...DEFAULT_CALIBRATION, ...needs.settings };
        record = existsSync(recordPath) ? reusableRecord(recordPath, dir, s) : null;
        if (record) console.error(`no --calib: ${recipe.name} ${needs.why}; reusing ${recordPath} (made by an earlier dq quantize for this model with the same settings)`);
        else {
          const index = locatePipeline(dir).index as Record<string, unknown> | null;
          if (index && typeof index === 'object' && 'text_encoder' in index && !existsSync(join(dir, DEFAULT_PROMPTS_FILE))) {
            throw new DqError('BAD_ARGUMENT', `recipe '${recipe.name}' ${needs.why}: give a calibration record (--calib, from dq calibrate --prompts <file>); ${dir} has no ${DEFAULT_PROMPTS_FILE} to calibrate with`);
          }
          const which = s.timesteps === 'all' ? 'every step' : `${s.timesteps} timesteps (${s.count})`;
          console.error(`no --calib: ${recipe.name} ${needs.why}, so dq calibrates first with the defaults: ${s.samples} images x ${s.steps} steps, ${which}${s.gram ? ', Gram matrices' : ''} -> ${recordPath} (give --calib to reuse a record)`);
          prepareOutput(recordPath, 'file');
          record = await calibrateWithProgress(dir, recordPath, needs.settings, false, 'calibration cancelled: no record and no variant were written; run the same command again to resume');
        }
      }
      const components = o.components?.split(',').map((c) => c.trim()).filter(Boolean);
      const m = await quantizePipeline({ pipelineDir: dir, recipe, record, recordPath, out: o.out, force, components, budget });
      console.log(
        `${recipe.name}: ${m.summary.quantized} layers quantized, ${m.summary.spared} kept in FP; weights ${m.summary.weightBitsPerParameter} bits/parameter, ` +
          `activations ${m.summary.activationFormat ?? 'FP'} (simulated) -> ${resolve(o.out)}`,
      );
      if (m.budget) {
        const some = m.budget.perRange?.layers.length ? ` and ${m.budget.perRange.layers.length} more at some timestep ranges only (per-step parameter sets)` : '';
        console.log(`budget ${m.budget.bits} bits: ${m.budget.chosen.length} layer${m.budget.chosen.length === 1 ? '' : 's'} in ${formatName(m.budget.format)}${some} (the recipe alone: ${m.budget.recipeBits} bits; estimated ${m.budget.estimate}${m.budget.perRange ? ', averaged over the steps' : ''}); their gains sum to ${(100 * m.budget.gainShare).toFixed(1)}% of the measured error`);
      }
      for (const [c, r] of Object.entries(m.components ?? {})) {
        console.log(`${c}: int8 weights, ${r.layers.quantized} layers, ${(r.bytes.before / 1e6).toFixed(2)} -> ${(r.bytes.after / 1e6).toFixed(2)} MB; verified: cosine ${r.verification.cosine.toFixed(5)}${r.verification.psnr ? `, PSNR ${r.verification.psnr.min.toFixed(1)} dB (min)` : ''}`);
      }
    });

  program
    .command('eval')
    .description('every preset vs FP on the same seeds: class agreement and FID-to-FP (classifier features); on the embedded text-to-image model, prompt agreement, FID-to-FP in the judge\'s features and PSNR to FP, on the same prompts')
    .argument('<pipeline-dir>', 'pipeline folder')
    .option('--presets <list>', "comma-separated presets (default: all; 'none': FP only)")
    .option('--samples <n>', 'images per variant', num('--samples', 2, true, MAX_SAMPLES), 500)
    .option('--steps <n>', 'sampling steps', num('--steps', 1, true), 25)
    .addOption(new Option('--sampler <name>', "sampler (default: the pipeline's scheduler)").choices(SAMPLERS))
    .option('--guidance <w>', "classifier-free guidance scale (default: the pipeline's)", num('--guidance', 0))
    .option('--calib <record>', 'calibration record (default: calibrate into <out>/calibration.json)')
    .option('--calib-samples <n>', 'calibration images when calibrating', num('--calib-samples', 1, true, MAX_SAMPLES), 64)
    .option('--judge <onnx>', 'an ONNX image model with a feature output (CLIP image encoder, Inception, ...): FID-to-FP and feature cosine in its features; needed for a text-to-image pipeline without attributes.json')
    .option('--judge-output <name>', "the judge's feature output (default: picked from its graph)")
    .option('--judge-normalize <mode>', "the judge's input range: [0,1], [-1,1], [0,255], clip or imagenet", '[0,1]')
    .option('--prompts <file>', "text-to-image without attributes.json: the eval prompts, cycled to --samples (default: the folder's calibration_prompts.txt); also the calibration prompts")
    .option('--negative-prompt <text>', 'text-to-image: the negative prompt of every sample')
    .option('--budgets <list>', 'mixed precision: also every preset at each of these bits budgets per weight (comma-separated, as dq quantize --budget; needs --sensitivity): a Pareto front, drawn as pareto-<preset>.svg in --out', (v: string) => v.split(',').map((x) => num('--budgets', 1)(x.trim())))
    .option('--sensitivity <record>', 'a record from dq sensitivity: the gains --budgets allocate by')
    .option('--per-range', '--budgets: per layer and timestep range (dq quantize --per-range), named preset@bits-ranges')
    .requiredOption('--out <dir>', 'folder for variants, calibration and eval.json')
    .action(async (dir: string, o: Record<string, string | number | number[] | boolean | undefined>) => {
      if ((o.budgets === undefined) !== (o.sensitivity === undefined)) throw new DqError('BAD_ARGUMENT', o.budgets === undefined ? '--sensitivity goes with --budgets <list>' : '--budgets needs --sensitivity <record> (from dq sensitivity on a variant of this model)');
      if (o.perRange && o.budgets === undefined) throw new DqError('BAD_ARGUMENT', '--per-range goes with --budgets <list> and --sensitivity <record>');
      const presets = o.presets === 'none' ? [] : o.presets ? String(o.presets).split(',').map((s) => s.trim()).filter(Boolean) : listPresets();
      if (o.judge === undefined && (o.judgeOutput !== undefined || o.judgeNormalize !== '[0,1]')) throw new DqError('BAD_ARGUMENT', '--judge-output and --judge-normalize need --judge <onnx>');
      await runEval({
        pipelineDir: dir, presets, samples: o.samples as number, steps: o.steps as number, sampler: o.sampler as SamplerName | undefined,
        guidance: o.guidance as number | undefined, out: String(o.out), calib: o.calib as string | undefined, calibSamples: o.calibSamples as number,
        judge: o.judge === undefined ? undefined : { path: String(o.judge), output: o.judgeOutput as string | undefined, normalize: o.judgeNormalize as NonNullable<Parameters<typeof runEval>[0]['judge']>['normalize'] },
        prompts: o.prompts as string | undefined, negativePrompt: o.negativePrompt as string | undefined,
        budgets: o.budgets ? { bits: o.budgets as number[], sensitivity: readSensitivity(String(o.sensitivity)), path: String(o.sensitivity), perRange: o.perRange === true } : undefined,
        onLine: (s) => console.log(s),
      });
    });

  registerCompare(program);
  registerExport(program);
  registerBatch(program);
  registerSensitivity(program);

  program
    .command('serve')
    .description('browser mode: the studio UI and its API on 127.0.0.1 (a random token guards every request)')
    .option('--port <n>', 'port, 0 to 65535 (default: any free port)', num('--port', 0, true, 65535))
    .option('--workspace <dir>', 'folder for this session\'s calibrations, variants and comparisons (kept on exit)')
    .action(async (o: { port?: number; workspace?: string }) => {
      const workspace = prepareOutput(o.workspace ?? join('out', 'studio', new Date().toISOString().replace(/[:.]/g, '-')), 'folder', '--workspace');
      makeDirs(workspace, '--workspace');
      const host = createHost('browser', VERSION, { workspace });
      const s = await serve({ host, uiDir: UI_DIR, port: o.port });
      console.log(`DQ Studio is running at ${s.url}\n(only this machine can reach it; the token in the URL is required; Ctrl-C stops it)\nsession files: ${workspace}`);
      await new Promise<void>((done) => {
        const stop = () => void s.close().then(() => host.dispose()).then(done);
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });

  return program;
}

/** --verbose is a program option; an error during parsing may come before commander has recorded it. */
function verbose(program: Command, argv: string[]): boolean {
  return program.opts().verbose === true || argv.slice(0, argv.indexOf('--') === -1 ? undefined : argv.indexOf('--')).includes('--verbose');
}

/** dq calibrate --prompts: the prompts and, when the file gives any, a negative prompt per prompt. */
function promptOptions(file: unknown): { prompts?: string[]; negativePrompts?: string[] } {
  if (file === undefined) return {};
  const entries = readPromptFile(String(file));
  return { prompts: entries.map((e) => e.prompt), ...(entries.some((e) => e.negative !== undefined) ? { negativePrompts: entries.map((e) => e.negative ?? '') } : {}) };
}

/** Calibrates with a progress line (unless quiet); Ctrl-C stops it, and `cancelled` says what that left. */
async function calibrateWithProgress(dir: string, out: string, settings: Partial<CalibrationSettings>, quiet: boolean, cancelled: string): Promise<CalibrationRecord> {
  const progress = quiet ? undefined : progressPrinter('calibrating');
  try {
    return await untilInterrupted((signal) => calibrate(dir, out, { ...settings, signal, onProgress: progress?.update }));
  } catch (e) {
    if (isDqError(e) && e.code === 'CANCELLED') throw new DqError('CANCELLED', cancelled);
    throw e;
  } finally {
    progress?.done();
  }
}

/** The family model_index.json names, when the folder has one (errors are left to the command's own loading). */
async function readFamily(dir: string): Promise<Family | null> {
  try {
    return (await describeComponents(dir)).family;
  } catch {
    return null;
  }
}

async function defaultGuidance(dir: string): Promise<number> {
  const { openPipeline } = await import('../core/open.js');
  return (await openPipeline(dir, 'cpu')).pipeline.index.defaultGuidance;
}

/** A record at `path` that the automatic calibration of `dq quantize` can reuse: same model, same settings (else null). */
function reusableRecord(path: string, dir: string, s: CalibrationSettings): CalibrationRecord | null {
  try {
    const rec = readRecord(path);
    const same = rec.unetSha256 === sha256File(locatePipeline(dir).unetPath) && rec.settings.samples === s.samples && rec.settings.steps === s.steps &&
      rec.settings.timesteps === s.timesteps && rec.settings.count === s.count && rec.settings.gram === s.gram;
    return same ? rec : null;
  } catch {
    return null;
  }
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  // --verbose also lets onnxruntime print its own log lines (runtime/onnx.ts reads DQ_VERBOSE when a session is made)
  if (verbose(program, argv)) process.env.DQ_VERBOSE = '1';
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // commander already printed the message; help and version exit 0.
      return e.exitCode === 0 ? 0 : 2;
    }
    if (isDqError(e)) {
      console.error(`dq: error: ${e.message}`);
      if (e.detail && (verbose(program, argv) || process.env.DQ_DEBUG)) console.error(`dq: detail: ${e.detail}`);
      return e.code === 'CANCELLED' ? 130 : 1;
    }
    if (process.env.DQ_DEBUG) console.error(e);
    else console.error(`dq: internal error: ${e instanceof Error ? e.message : String(e)} (set DQ_DEBUG=1 for a stack trace)`);
    return 70;
  } finally {
    await releaseSessions();
  }
}

export { DqError };
