/**
 * `dq sensitivity <variant-dir> --out <record>`: each layer's share of a variant's error against FP, overall and per
 * range of steps (core/quant/sensitivity.ts). Registered on the program by `registerSensitivity`.
 */
import { Command, Option } from 'commander';
import { resolve } from 'node:path';
import { prepareOutput, writeFileAtomic } from '../core/fsutil.js';
import { readPromptFile } from '../core/pipeline/prompt-file.js';
import { SAMPLERS, type SamplerName } from '../core/pipeline/schedulers.js';
import { MAX_SAMPLES } from '../core/ranges.js';
import { measureSensitivity, RANGE_LAYERS, type SensitivityRecord } from '../core/quant/sensitivity.js';
import { num, untilInterrupted } from './options.js';
import { progressPrinter } from './progress.js';

/** The lines dq sensitivity prints: the base error and the layers with the largest gains. */
export function sensitivitySummary(r: SensitivityRecord, top = 10): string[] {
  const e = (v: number) => v.toExponential(2);
  const lines = [`${r.recipe}: error against FP ${e(r.base.mse)} (content ${e(r.base.content)}, detail ${e(r.base.detail)}), ${r.settings.samples} images x ${r.settings.steps} steps, ${r.layers.length} layers in ${r.seconds.toFixed(1)} s`];
  const ranges = r.ranges.map((x) => `${x.timesteps[0]}-${x.timesteps[1]}`).join(' | ');
  lines.push(`layers whose FP removes the most error (share of the base error)${r.ranges.length > 1 ? `; per timestep range ${ranges}` : ''}:`);
  const pct = (v: number) => `${((100 * v) / Math.max(r.base.mse, 1e-30)).toFixed(1)}%`;
  for (const l of [...r.layers].sort((a, b) => b.gain.mse - a.gain.mse).slice(0, top)) {
    lines.push(`  ${pct(l.gain.mse).padStart(6)}  ${l.name} (${l.weight}, ${l.params} weights)${l.ranges.length ? `  ${l.ranges.map((x) => pct(x.mse)).join(' | ')}` : ''}`);
  }
  return lines;
}

export function registerSensitivity(program: Command): void {
  program
    .command('sensitivity')
    .description("where the bits matter: each layer of a variant in FP alone (overall, and per range of steps), the error against FP's images that it removes, split into content and detail")
    .argument('<variant-dir>', 'a variant folder written by dq quantize')
    .requiredOption('--out <record>', 'sensitivity record to write (JSON; dq quantize --budget reads it)')
    .option('--samples <n>', 'images per run', num('--samples', 1, true, MAX_SAMPLES), 16)
    .option('--steps <n>', 'sampling steps', num('--steps', 1, true), 25)
    .option('--ranges <n>', 'ranges of steps measured separately (1: every step only)', num('--ranges', 1, true, 50), 4)
    .addOption(new Option('--sampler <name>', "sampler (default: the pipeline's scheduler)").choices(SAMPLERS))
    .option('--guidance <w>', "classifier-free guidance scale (default: the pipeline's)", num('--guidance', 0))
    .option('--seed <n>', 'first seed', num('--seed', 0, true), 0)
    .option('--prompts <file>', "text-to-image: prompts, cycled (default: the variant's calibration_prompts.txt)")
    .option('--layers <list>', 'comma-separated layer names (default: every quantized layer that can run in FP)')
    .option('--range-layers <n>', 'per range of steps, only the layers with the largest overall gains', num('--range-layers', 0, true), RANGE_LAYERS)
    .option('--quiet', 'no progress output')
    .action(async (dir: string, o: { out: string; samples: number; steps: number; ranges: number; rangeLayers: number; sampler?: SamplerName; guidance?: number; seed: number; prompts?: string; layers?: string; quiet?: boolean }) => {
      prepareOutput(o.out, 'file');
      const prompts = o.prompts ? readPromptFile(o.prompts).map((p) => p.prompt) : undefined;
      const progress = o.quiet ? null : progressPrinter('sensitivity');
      const r = await untilInterrupted((signal) =>
        measureSensitivity({
          variantDir: dir, samples: o.samples, steps: o.steps, ranges: o.ranges, rangeLayers: o.rangeLayers, sampler: o.sampler, guidance: o.guidance, seed: o.seed, prompts,
          layers: o.layers?.split(',').map((s) => s.trim()).filter(Boolean), signal, onProgress: (p) => progress?.update(p),
        }),
      );
      progress?.done();
      writeFileAtomic(o.out, JSON.stringify(r, null, 1) + '\n');
      for (const line of sensitivitySummary(r)) console.log(line);
      console.log(`-> ${resolve(o.out)}`);
    });
}
