/**
 * Quantization recipes (presets/*.json): what to quantize, in which format, calibrated how, and which
 * diffusion-specific techniques to use. Validated with zod; presets/schema.json is generated from this schema
 * (test/unit/core/quant/recipe.test.ts checks that it is current).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { z } from 'zod';
import { DqError } from '../errors.js';
import { repoRoot } from '../models.js';

const FloatElement = z.enum(['e4m3fn', 'e5m2', 'e3m2', 'e2m3', 'e2m1']);
export const FormatSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('int'), bits: z.number().int().min(2).max(8), symmetric: z.boolean() }).strict(),
  z.object({ kind: z.literal('float'), element: FloatElement }).strict(),
  z.object({ kind: z.literal('mx'), element: z.enum(['e4m3fn', 'e5m2', 'e3m2', 'e2m3', 'e2m1', 'int8']) }).strict(),
  z.object({ kind: z.literal('nvfp4') }).strict(),
]);

const Granularity = z.union([
  z.literal('tensor'),
  z.literal('channel'),
  z.object({ group: z.number().int().positive().describe('block size along the input axis (per output channel)') }).strict(),
]);

export const RecipeSchema = z
  .object({
    $schema: z.string().optional(),
    name: z.string().min(1),
    description: z.string().default(''),
    weights: z
      .object({
        format: FormatSchema,
        granularity: Granularity.default('channel').describe('INT/FP formats; MX and NVFP4 always use their own blocks'),
        rounding: z.enum(['nearest', 'gptq']).default('nearest'),
        clipping: z.enum(['minmax', 'mse']).default('minmax'),
        scale: z
          .enum(['float32', 'float16'])
          .default('float32')
          .describe('INT/FP weight scales stored as float32 or float16 (rounded down, as GPTQ/AWQ checkpoints store them); MX and NVFP4 have their own scale formats'),
      })
      .strict(),
    activations: z
      .object({
        format: FormatSchema,
        clipping: z.enum(['minmax', 'percentile', 'mse']).default('minmax'),
        percentile: z.number().gt(50).lte(100).default(99.99),
        perTimestep: z.boolean().default(false).describe('one parameter set per timestep (TFMQ finite set calibration)'),
        dynamic: z
          .enum(['none', 'token'])
          .default('none')
          .describe("ViDiT-Q's dynamic quantization: 'token' computes every token's scale in the graph at run time (a row's absmax over its channels; a convolution's input per pixel), symmetric INT only; no calibrated activation parameters"),
      })
      .strict()
      .nullable()
      .describe('null: weight-only quantization'),
    calibration: z
      .object({
        timesteps: z.enum(['single', 'all', 'uniform', 'normal']).default('uniform'),
        /** uniform: how many steps (Q-Diffusion cali_st); normal: how many draws (PTQ4DM); single: which step index. */
        count: z.number().int().positive().default(10),
        step: z.number().int().nonnegative().optional().describe('single: the step index used (default: the middle)'),
      })
      .strict()
      .default({ timesteps: 'uniform', count: 10 }),
    splitShortcut: z.boolean().default(false),
    balance: z
      .object({
        alpha: z
          .union([z.number().min(0).max(1), z.literal('search')], { error: (i) => `a number from 0 to 1 or "search", got ${JSON.stringify(i.input)}` })
          .default(0.5)
          .describe("migration strength: s_j = a_j^alpha / w_j^(1 - alpha); 'search': per site, the alpha (0, 0.1, ..., 1, or no balance) whose layers' outputs on sampled calibration activations are closest to FP's"),
        ranges: z
          .number()
          .int()
          .min(1)
          .max(16)
          .default(1)
          .describe('timestep-aware balance: the calibrated steps cut into this many ranges, each with its own s where the balance folds into the previous layer (fold scales or all: attention output projections whose value projection has no bias); the value and output projections then carry a weight set per range, fed per step. Elsewhere one balance holds for every step'),
      })
      .strict()
      .nullable()
      .default(null)
      .describe(
        "ViDiT-Q's channel balancing (SmoothQuant's scaling), for linear layers: each input channel j of a quantized site is divided by s_j = a_j^alpha / w_j^(1 - alpha) in the graph and its weight rows multiplied by s_j, a_j the channel's RMS over every calibrated timestep and prompt (the Gram matrix's diagonal: calibrate with --gram), w_j the largest |weight| of the channel over the site's layers; needs dynamic per-token activations (the balanced ranges are computed at run time)",
      ),
    rotate: z
      .boolean()
      .default(false)
      .describe(
        "ViDiT-Q's dynamic channel balance: each balanced linear layer's input rotated by a block Hadamard matrix in the graph (blocks of the largest power of two up to 128 dividing its channels) and the inverse rotation folded into its weights: outlier channels spread over their block whatever the timestep; needs dynamic per-token activations",
      ),
    fold: z
      .enum(['none', 'scales', 'all'])
      .default('scales')
      .describe(
        "where an attention's output projection reads the merged heads (softmax(q k^T) v), its input transform computed by the value projection's weights instead of in the graph: none (all online); scales (the balance's per-channel scales: exact, the rotation stays online); all (the rotation too: its blocks then divide the head width, smaller than online blocks on most models)",
      ),
    lowRank: z
      .object({ rank: z.number().int().positive().max(1024).describe('r: the branch stores r x (out + in) float16 values per layer') })
      .strict()
      .nullable()
      .default(null)
      .describe(
        "SVDQuant's low-rank branch: each quantized layer's weight split into its rank-r truncated SVD, kept in float16 and run on the layer's FP input beside it, and the residual, which the recipe quantizes (layers where 2r exceeds min(out, in), grouped convolutions and balanced layers get none)",
      ),
    temporal: z
      .enum(['none', 'calibrate', 'cache', 'auto'])
      .default('none')
      .describe("TFMQ temporal feature maintenance: none; calibrate (the time-only region quantized, per-timestep activations); cache (every temporal feature from the FP region); auto (disturbance-aware: cache the features whose measured error exceeds temporalThreshold)"),
    temporalThreshold: z.number().positive().default(0.02).describe("auto: cache a temporal feature when quantization changes it by more than this (relative L2 error, max over the calibrated timesteps; 0.02 sits between what 8-bit (0.5-1%) and 4-bit (4-8%) quantization did to tiny-mnist's features)"),
    text: z
      .enum(['quantize', 'cache', 'auto'])
      .default('quantize')
      .describe("text-to-image: the text-only region (cross-attention keys and values of the text, SDXL's added embedding): quantize it; cache (every text feature computed once per prompt by the FP region and fed to the quantized denoiser); auto (disturbance-aware: cache the text features whose measured error exceeds textThreshold)"),
    textThreshold: z.number().positive().default(0.02).describe('auto: cache a text feature when quantization changes it by more than this (relative L2 error, max over the calibration prompts and timesteps)'),
    keepFp: z
      .array(z.enum(['first', 'last', 'temporal', 'added-embedding', 'small']))
      .default([])
      .describe("roles kept in FP (or in keepFormat): first layers (conv_in), last layers (conv_out), the time-only region (time embedding and its projections), SDXL's added embedding (pooled text and size ids), small layers (fewer than smallLayerParams weights: 1x1 shortcuts and attention projections of narrow blocks, where 4 bits cost the most error per bit saved)"),
    smallLayerParams: z.number().int().positive().default(4096).describe("keepFp 'small': layers with fewer weight parameters than this"),
    keepLayers: z.array(z.string()).default([]).describe('per-layer overrides: these layers (by node name) stay in FP'),
    keepFormat: FormatSchema.nullable()
      .default(null)
      .describe('layers keepFp spares by role store their weights in this format instead of float32 (per channel / its own blocks; weights only, their activations stay FP), e.g. MXFP8 beside MXFP4'),
  })
  .strict();

export type Recipe = z.infer<typeof RecipeSchema>;
export type QuantFormatSpec = z.infer<typeof FormatSchema>;

export function parseRecipe(raw: unknown, where: string): Recipe {
  const r = RecipeSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const field = issue.path.length ? issue.path.join('.') : '(top level)';
    throw new DqError('BAD_CONFIG', `${where}: field '${field}': ${issue.message}`);
  }
  const rec = r.data;
  const a = rec.activations;
  if (a && a.dynamic === 'token' && !(a.format.kind === 'int' && a.format.symmetric)) {
    throw new DqError('BAD_CONFIG', `${where}: field 'activations.dynamic': 'token' needs a symmetric INT activation format (the scale is each token's absmax), got ${JSON.stringify(a.format)}`);
  }
  if (rec.balance && !(a && a.dynamic === 'token')) {
    throw new DqError('BAD_CONFIG', `${where}: field 'balance': channel balancing needs activations.dynamic 'token' (the calibration holds the unbalanced activations' ranges, not the balanced ones)`);
  }
  if (rec.rotate && !(a && a.dynamic === 'token')) {
    throw new DqError('BAD_CONFIG', `${where}: field 'rotate': the rotation needs activations.dynamic 'token' (the calibration holds the unrotated activations' ranges)`);
  }
  if (rec.activations && rec.activations.perTimestep === false && rec.temporal === 'calibrate') {
    throw new DqError('BAD_CONFIG', `${where}: field 'temporal': 'calibrate' needs activations.perTimestep`);
  }
  return rec;
}

export function presetsDir(): string {
  return join(repoRoot(), 'presets');
}

export function listPresets(): string[] {
  const dir = presetsDir();
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => f.endsWith('.json') && f !== 'schema.json').map((f) => basename(f, '.json')).sort();
}

/** A preset by name (presets/<name>.json) or a recipe file by path. */
export function loadRecipe(nameOrPath: string): Recipe {
  const asPath = resolve(nameOrPath);
  const file = nameOrPath.endsWith('.json') || existsSync(asPath) ? asPath : join(presetsDir(), `${nameOrPath}.json`);
  if (!existsSync(file)) {
    throw new DqError('NOT_FOUND', `no preset or recipe file '${nameOrPath}' (presets: ${listPresets().join(', ')})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new DqError('BAD_CONFIG', `${file} is not valid JSON: ${(e as Error).message}`);
  }
  return parseRecipe(raw, file);
}

export function recipeJsonSchema(): unknown {
  return z.toJSONSchema(RecipeSchema, { io: 'input' });
}
