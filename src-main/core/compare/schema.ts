/**
 * metrics.json of `dq compare`: the schema (zod), from which docs/metrics-schema.json is generated
 * (`metricsJsonSchema()`; a test keeps the two in step). Everything here is deterministic for the same inputs except
 * the fields under `timing`, `provider` and `files.mp4`-related notes, which describe the machine the run used.
 */
import { z } from 'zod';

export const METRICS_SCHEMA_ID = 'dq-compare-metrics';
export const METRICS_VERSION = 1;

const StepError = z
  .object({
    step: z.number().int().nonnegative().describe('0-based index of the sampling step'),
    timestep: z.number().describe('model timestep at that step'),
    rmse: z.number().nonnegative().describe('root mean square of (variant - FP) over every value of every image at this step'),
    relative: z.number().nonnegative().nullable().describe('||variant - FP||_2 / ||FP||_2 over all images at this step; null when the FP norm is 0'),
  })
  .strict();

const Summary = z
  .object({
    mean: z.number().nullable().describe('mean over images; null when undefined (e.g. every PSNR infinite)'),
    min: z.number().nullable().describe('worst image'),
    perImage: z.array(z.number().nullable()).describe('one value per grid image, in `images` order; for PSNR, null means identical images (infinite PSNR)'),
  })
  .strict();

export const VariantMetricsSchema = z
  .object({
    name: z.string().describe('row label: "fp" for the base pipeline, else manifest.json `name` or the folder name'),
    isFp: z.boolean().describe('true for the full-precision reference (the base pipeline itself)'),
    dir: z.string().describe('absolute path of the pipeline folder'),
    manifest: z.unknown().nullable().describe("the variant folder's manifest.json as written by the quantizer, or null"),
    otherSource: z
      .string()
      .nullable()
      .optional()
      .describe("the source pipeline folder the variant's manifest names when its denoiser hash differs from the base pipeline's: quantized from another model, so its differences from FP are not quantization's alone; null otherwise"),
    modelBytes: z.number().int().nonnegative().describe('bytes of unet/model.onnx plus the external data files it references'),
    weightBitsPerParameter: z
      .number()
      .positive()
      .nullable()
      .describe("mean bits per quantized weight parameter from a quantizer manifest (32 for FP); null when the variant has no such manifest"),
    estimatedDeployedBytes: z
      .number()
      .int()
      .nonnegative()
      .nullable()
      .describe(
        'for simulated (fake-quantized) variants: modelBytes minus what storing the quantized weights at weightBitsPerParameter instead of 32 bits would save; modelBytes for FP; null when unknown',
      ),
    psnrDb: Summary.describe('PSNR in dB of each grid image against the FP image of the same seed and class (data range 2, model space [-1, 1])'),
    ssim: Summary.describe('SSIM (11x11 Gaussian window, sigma 1.5) of each grid image against the FP image of the same seed and class'),
    fid: z
      .object({
        toFp: z.number().nonnegative().nullable().describe("Frechet distance between classifier features of this variant's FID samples and FP's (same seeds and classes)"),
        toData: z.number().nonnegative().nullable().describe("Frechet distance between classifier features of this variant's FID samples and the held-out MNIST images of the same classes"),
        samples: z.number().int().nonnegative().describe('generated images per variant in the FID sets'),
        reason: z.string().nullable().describe('why a value is null, else null'),
      })
      .strict(),
    classAgreement: z
      .object({
        requested: z.number().min(0).max(1).nullable().describe('fraction of generated images (grid + FID sets) the classifier labels with the requested class'),
        withFp: z.number().min(0).max(1).nullable().describe('fraction of images whose classifier label equals the label of the FP image of the same seed and class'),
        samples: z.number().int().nonnegative(),
        reason: z.string().nullable(),
      })
      .strict(),
    epsError: z.array(StepError).describe('per step: the guided noise prediction of this variant vs FP, both evaluated on the FP trajectory'),
    temporalFeatureError: z
      .object({
        available: z.boolean(),
        reason: z.string().nullable().describe("why it could not be computed (e.g. the variant's graph differs), else null"),
        source: z
          .enum(['graph', 'fed'])
          .nullable()
          .describe("'graph': tapped from the variant's denoiser; 'fed': a cut variant's (TFMQ cache) features as its pipeline feeds them; null when unavailable"),
        features: z.array(z.string()).describe('the tensors compared: where the time-only region meets the rest of the network'),
        perStep: z.array(StepError).describe('error of the temporal features (all of them, concatenated) per step'),
        perFeature: z
          .array(z.object({ name: z.string(), relative: z.number().nonnegative().nullable() }).strict())
          .describe('relative error of each feature over all steps'),
      })
      .strict(),
    judge: z
      .object({
        fidToFp: z.number().nonnegative().nullable().describe("Frechet distance between the bring-your-own judge's features of this variant's images and FP's (grid and FID sets, same seeds and conditions); null with fewer than 2 images"),
        cosine: z
          .object({
            mean: z.number().min(-1).max(1),
            min: z.number().min(-1).max(1),
            minIndex: z.number().int().nonnegative().describe('the worst pair: an index into the judged images (grid images first, then the FID set)'),
          })
          .strict()
          .describe("cosine similarity of the judge's features of each image and FP's image of the same seed and condition"),
        samples: z.number().int().nonnegative().describe('images judged per variant (grid + FID set)'),
        note: z.string().nullable().describe('what to keep in mind reading fidToFp (few samples), or null'),
      })
      .strict()
      .nullable()
      .optional()
      .describe('--judge: FID-to-FP and feature cosine in the feature space of the given image model; absent or null without --judge'),
    timing: z
      .object({
        secondsPerStep: z.number().nonnegative().describe('wall seconds per sampling step for the grid batch (machine-dependent, not deterministic)'),
        imagesPerStep: z.number().int().positive().describe('grid images denoised together per step'),
      })
      .strict(),
  })
  .strict();

const Video = z
  .object({
    webp: z.string().nullable().describe('animated WebP file name (relative to the output folder), or null when not written'),
    mp4: z.string().nullable().describe('H.264 MP4 file name, or null when not written (see notes)'),
    frames: z.number().int().nonnegative(),
    sheet: z.string().optional().describe("the video's frames stacked top to bottom in one PNG (the trajectory: for a step scrubber)"),
  })
  .strict();

export const MetricsSchema = z
  .object({
    schema: z.literal(METRICS_SCHEMA_ID),
    version: z.literal(METRICS_VERSION),
    tool: z.string().describe('what wrote the file'),
    pipeline: z.string().describe('absolute path of the base (FP) pipeline'),
    settings: z
      .object({
        seeds: z.array(z.number().int().nonnegative()),
        classes: z.array(z.number().int().nonnegative()).describe('class labels; empty for unconditional pipelines'),
        steps: z.number().int().positive(),
        sampler: z.string(),
        guidance: z.number().nonnegative(),
        eta: z.number().nonnegative(),
        batchSize: z.number().int().positive(),
        fidSamples: z.number().int().nonnegative(),
        fidSeedStart: z.number().int().nonnegative().describe('FID image i uses seed fidSeedStart + i and class classes[i mod len]'),
        walkSeeds: z.array(z.number().int().nonnegative()).describe('the seeds whose initial noises the walk visits, as a closed loop'),
        walkFramesPerSegment: z.number().int().nonnegative(),
        video: z.boolean(),
        prompts: z
          .array(z.object({ prompt: z.string(), negative: z.string() }).strict())
          .optional()
          .describe('text-to-image: the prompts (a grid row each) and their negative prompts; FID image i uses prompt i mod len; absent for class and unconditional pipelines'),
        imageShape: z.array(z.number().int().positive()).length(3).optional().describe('[C, H, W] of the compared images (decoded by the VAE for a latent pipeline)'),
        sampleShape: z.array(z.number().int().positive()).length(3).optional().describe('[C, H, W] the denoiser samples (latents for a latent pipeline)'),
      })
      .strict(),
    provider: z
      .object({ requested: z.string(), used: z.string(), fallback: z.string().nullable() })
      .strict()
      .describe('execution provider (machine-dependent)'),
    images: z
      .array(
        z
          .object({
            index: z.number().int().nonnegative(),
            seed: z.number().int().nonnegative(),
            class: z.number().int().nullable(),
            className: z.string().nullable(),
            prompt: z.string().optional().describe('text-to-image: the prompt of this image'),
            negativePrompt: z.string().optional().describe("text-to-image: its negative prompt ('' for none)"),
          })
          .strict(),
      )
      .describe('the grid images, in order (class pipelines: the columns of grid.png; text-to-image: prompt by prompt, seed by seed)'),
    reference: z
      .object({
        data: z
          .object({
            source: z.string(),
            images: z.number().int().nonnegative(),
          })
          .strict()
          .nullable()
          .describe('the data reference for FID-to-data, or null when there is none'),
        featureExtractor: z.string().nullable().describe('the network whose features FID uses, or null'),
        featureDim: z.number().int().nonnegative().nullable(),
        judge: z
          .object({
            path: z.string().describe('the ONNX image model given with --judge'),
            output: z.string().describe('its feature output'),
            width: z.number().int().positive().describe('feature width'),
            preprocessing: z.string().describe('what is done to images before the judge sees them'),
            warnings: z.array(z.string()),
          })
          .strict()
          .nullable()
          .optional()
          .describe('--judge: the bring-your-own feature extractor; absent or null without one'),
      })
      .strict(),
    variants: z.array(VariantMetricsSchema).min(1),
    files: z
      .object({
        grid: z.string(),
        diffs: z.record(z.string(), z.string()).describe('variant name -> diff heatmap PNG'),
        diffScale: z
          .number()
          .nonnegative()
          .optional()
          .describe('the |variant - FP| value (model space, per pixel, mean over channels) at the top of every diff heatmap\'s colour ramp (0 at the bottom)'),
        trajectory: Video,
        walk: Video,
        report: z.string(),
        metrics: z.string(),
      })
      .strict(),
    videoFrames: z
      .object({
        frames: z.number().int().positive(),
        fps: z.number().positive(),
        side: z.string().describe('animated WebP: every variant\'s grid of videos side by side (FP first), frame by frame'),
        diffs: z.record(z.string(), z.string()).describe('variant name -> animated WebP of its |variant - FP| heatmaps, frame by frame, on diffScale'),
        diffScale: z.number().nonnegative().describe('the |variant - FP| value (model space, per pixel) at the top of every frame heatmap\'s ramp'),
        perFrame: z.array(
          z
            .object({
              name: z.string(),
              psnrDb: z.array(z.number().nullable()).describe('per frame: mean over the grid\'s videos of PSNR against FP\'s same frame (videos equal to FP\'s left out; null if all are)'),
              ssim: z.array(z.number()).describe('per frame: mean over the grid\'s videos of SSIM against FP\'s same frame'),
              meanAbs: z.array(z.number().nonnegative()).describe('per frame: mean |variant - FP| per pixel, model space'),
              flickerRatio: z.number().nonnegative().nullable().describe('mean squared frame-to-frame change over FP\'s; null when FP\'s videos are still'),
            })
            .strict(),
        ),
      })
      .strict()
      .optional()
      .describe('a video pipeline: its grid videos compared frame by frame; absent for image pipelines'),
    notes: z.array(z.string()).describe('caveats of this run, in words (FID bias, missing ffmpeg, ...)'),
  })
  .strict();

export type CompareMetrics = z.infer<typeof MetricsSchema>;
export type VariantMetrics = z.infer<typeof VariantMetricsSchema>;
export type StepErrorRow = z.infer<typeof StepError>;

/** The JSON Schema of metrics.json (the content of docs/metrics-schema.json). */
export function metricsJsonSchema(): Record<string, unknown> {
  const s = z.toJSONSchema(MetricsSchema) as Record<string, unknown>;
  return {
    $schema: s.$schema,
    $id: 'https://dq-studio.invalid/schemas/dq-compare-metrics-v1.json',
    title: 'metrics.json written by `dq compare`',
    description:
      'Same-seed comparison of pipeline variants against the full-precision (FP) pipeline. See docs/compare.md for how each metric is computed.',
    ...Object.fromEntries(Object.entries(s).filter(([k]) => k !== '$schema')),
  };
}
