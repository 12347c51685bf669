/**
 * The latent codec of a latent-diffusion pipeline: the VAE decoder (`vae_decoder/`), with the scaling and shift
 * factors of its config.json (diffusers: latents / scaling_factor + shift_factor; with latents_mean/std as SDXL's
 * config may give them: latents * std / scaling_factor + mean). The legacy ONNX pipeline has no config and hard-codes
 * SD's 0.18215 and a factor of 8. Each image is decoded once, after sampling; an fp16 decoder that overflows gives
 * NaN/inf, which is detected and reported (black pixels in the grid, a warning that says what to do).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DqError } from '../errors.js';
import { readJson } from '../fsutil.js';
import type { IoMeta, Session } from '../runtime/onnx.js';
import { asFloat32, floatFeed, isFloatType, type FloatType } from './dtypes.js';

export interface LatentCodec {
  decoderPath: string;
  input: string;
  output: string;
  inputType: FloatType;
  /** Image pixels per latent pixel, each way. */
  factor: number;
  latentChannels: number | null;
  imageChannels: number;
  scalingFactor: number;
  shiftFactor: number;
  latentsMean: number[] | null;
  latentsStd: number[] | null;
  /** Where the numbers came from (config.json, or the legacy pipeline's constants). */
  source: string;
}

/** SD 1.x's VAE scaling, which the legacy OnnxStableDiffusionPipeline hard-codes. */
export const LEGACY_SCALING = 0.18215;

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const nums = (v: unknown): number[] | null => (Array.isArray(v) && v.length > 0 && v.every((x) => num(x) !== null) ? (v as number[]) : null);

/** The VAE decoder's I/O and factors; null when the pipeline has no vae_decoder (pixel space). */
export function resolveCodec(dir: string, label: string, legacy: boolean, inputs: IoMeta[], outputs: IoMeta[]): LatentCodec {
  const where = `${label}: vae_decoder/model.onnx`;
  if (inputs.length !== 1) throw new DqError('BAD_MODEL', `${where}: a VAE decoder takes one latent input; it has ${inputs.map((m) => m.name).join(', ') || 'none'}`);
  const input = inputs[0]!;
  const output = outputs.find((m) => m.name === 'sample' || m.name === 'images') ?? outputs[0];
  if (!output) throw new DqError('BAD_MODEL', `${where} has no outputs`);
  if (!isFloatType(input.type)) throw new DqError('BAD_MODEL', `${where}: input '${input.name}' has type ${input.type}; float32 or float16 expected`);
  if (!isFloatType(output.type)) throw new DqError('BAD_MODEL', `${where}: output '${output.name}' has type ${output.type}; float32 or float16 expected`);
  const cfgPath = join(dir, 'vae_decoder', 'config.json');
  const cfg = existsSync(cfgPath) ? (readJson(cfgPath, 'vae_decoder/config.json') as Record<string, unknown>) : null;
  const staticDim = (m: IoMeta, k: number) => {
    const d = m.shape?.[k];
    return typeof d === 'number' && d > 0 ? d : null;
  };
  let factor = 8;
  let scaling = LEGACY_SCALING;
  let shift = 0;
  let source = legacy ? 'the legacy ONNX pipeline (scaling 0.18215, factor 8)' : 'defaults (no vae_decoder/config.json: scaling 0.18215, factor 8)';
  let mean: number[] | null = null;
  let std: number[] | null = null;
  if (cfg && typeof cfg === 'object') {
    const blocks = Array.isArray(cfg.block_out_channels) ? cfg.block_out_channels.length : null;
    if (blocks) factor = 2 ** (blocks - 1);
    const s = num(cfg.scaling_factor);
    if (cfg.scaling_factor !== undefined && cfg.scaling_factor !== null && (s === null || s <= 0)) {
      throw new DqError('BAD_CONFIG', `${label}: vae_decoder/config.json: scaling_factor must be a positive number, got ${JSON.stringify(cfg.scaling_factor)}`);
    }
    if (s !== null) scaling = s;
    shift = num(cfg.shift_factor) ?? 0;
    mean = nums(cfg.latents_mean);
    std = nums(cfg.latents_std);
    source = 'vae_decoder/config.json';
  }
  // the graph's own numbers win where it states them: latent channels and the output's size ratio
  const latentChannels = staticDim(input, 1) ?? (cfg ? num(cfg.latent_channels) : null);
  const lh = staticDim(input, 2);
  const oh = staticDim(output, 2);
  if (lh && oh) factor = oh / lh;
  if (!Number.isInteger(factor) || factor < 1) throw new DqError('BAD_MODEL', `${where}: its output is not a whole multiple of its input's size`);
  if (mean && std && latentChannels !== null && (mean.length !== latentChannels || std.length !== latentChannels)) {
    throw new DqError('BAD_CONFIG', `${label}: vae_decoder/config.json: latents_mean/latents_std need ${latentChannels} values, one per latent channel`);
  }
  return {
    decoderPath: join(dir, 'vae_decoder', 'model.onnx'),
    input: input.name,
    output: output.name,
    inputType: input.type,
    factor,
    latentChannels,
    imageChannels: staticDim(output, 1) ?? 3,
    scalingFactor: scaling,
    shiftFactor: shift,
    latentsMean: mean,
    latentsStd: std,
    source,
  };
}

/** Latents as the sampler leaves them -> what the decoder takes. */
export function unscaleLatents(c: LatentCodec, latents: Float32Array, channels: number): Float32Array {
  const out = new Float32Array(latents.length);
  const per = latents.length / channels;
  for (let ch = 0; ch < channels; ch++) {
    const m = c.latentsMean && c.latentsStd ? c.latentsMean[ch]! : c.shiftFactor;
    const s = c.latentsMean && c.latentsStd ? c.latentsStd[ch]! / c.scalingFactor : 1 / c.scalingFactor;
    for (let j = ch * per; j < (ch + 1) * per; j++) out[j] = latents[j]! * s + m;
  }
  return out;
}

export interface Decoded {
  /** One [C*H*W] image per latent, in [-1, 1] (non-finite values replaced by -1: black). */
  images: Float32Array[];
  /** How many images had NaN/inf pixels. */
  nonFinite: number;
}

/**
 * Decodes latents [C*h*w] one image at a time. A video's latents ([C, frames * h, w]: its frames stacked, see
 * PipelineIndex.sampleShape) are decoded frame by frame, as diffusers' text-to-video pipelines decode them (one
 * batch of `frames` images per video), and come back stacked the same way: [3, frames * H, W].
 */
export async function decodeLatents(c: LatentCodec, session: Session, latents: Float32Array[], shape: [number, number, number], signal?: AbortSignal, frames = 1): Promise<Decoded> {
  const [C, hs, w] = shape;
  const h = hs / frames;
  if (!Number.isInteger(h)) throw new RangeError(`latents of height ${hs} do not hold ${frames} frames`);
  const images: Float32Array[] = [];
  let nonFinite = 0;
  for (const z of latents) {
    if (signal?.aborted) throw new DqError('CANCELLED', 'decoding was cancelled');
    const un = unscaleLatents(c, z, C);
    const plane = h * w;
    // [C, F, h, w] -> [F, C, h, w]
    const batch = frames === 1 ? un : new Float32Array(un.length);
    if (frames > 1) for (let ch = 0; ch < C; ch++) for (let f = 0; f < frames; f++) batch.set(un.subarray((ch * frames + f) * plane, (ch * frames + f + 1) * plane), (f * C + ch) * plane);
    const res = await session.run({ [c.input]: floatFeed(c.inputType, batch, [frames, C, h, w]) }, [c.output]);
    const out = Float32Array.from(asFloat32(res[c.output]!, `vae_decoder/model.onnx: output '${c.output}'`));
    let img = out;
    if (frames > 1) {
      // [F, 3, H, W] -> [3, F, H, W] (= [3, F H, W])
      const per = out.length / frames;
      const P = per / c.imageChannels;
      img = new Float32Array(out.length);
      for (let f = 0; f < frames; f++) for (let ch = 0; ch < c.imageChannels; ch++) img.set(out.subarray(f * per + ch * P, f * per + (ch + 1) * P), (ch * frames + f) * P);
    }
    let bad = false;
    for (let j = 0; j < img.length; j++) {
      if (!Number.isFinite(img[j]!)) {
        img[j] = -1;
        bad = true;
      }
    }
    if (bad) nonFinite++;
    images.push(img);
  }
  return { images, nonFinite };
}

/** Frame k of a video's filmstrip ([C, frames * H, W], as decodeLatents gives it) as [C, H, W]; C = 3 by default. */
export function frameOf(video: Float32Array, frames: number, k: number, channels = 3): Float32Array {
  const plane = video.length / channels / frames;
  const out = new Float32Array(channels * plane);
  for (let ch = 0; ch < channels; ch++) out.set(video.subarray((ch * frames + k) * plane, (ch * frames + k + 1) * plane), ch * plane);
  return out;
}

/** The warning for an fp16 decoder that overflowed. */
export function overflowWarning(c: LatentCodec, nonFinite: number, total: number): string {
  const fp16 = c.inputType === 'float16';
  return (
    `${nonFinite} of ${total} images came out of the VAE decoder with NaN/inf pixels (shown black)` +
    (fp16
      ? ': its float16 arithmetic overflowed. Use a float32 vae_decoder (export the VAE in fp32, or an fp16-safe VAE such as sdxl-vae-fp16-fix for SDXL)'
      : ': the decoder or the latents are broken (check the denoiser output and the VAE scaling factor)')
  );
}
