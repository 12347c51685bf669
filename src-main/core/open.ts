/**
 * Opens any pipeline folder the studio works with: a plain diffusers pipeline, a quantized variant or an export. A
 * variant or an export replaces the denoiser component and nothing else, so this is the pipeline loader
 * (pipeline/pipeline.ts) with the denoiser loader that knows them (quant/variant.ts, export/load.ts).
 */
import { exportDenoiser } from './export/load.js';
import { loadPipeline, type DenoiserLoader, type Pipeline } from './pipeline/pipeline.js';
import { readManifest, variantDenoiser } from './quant/variant.js';
import type { Provider, Session } from './runtime/onnx.js';

/** A variant's or an export's denoiser, by the folder's manifest.json; null (the plain graph) without one. */
export const studioDenoiser: DenoiserLoader = async (ctx) => {
  const manifest = readManifest(ctx.dir);
  if (!manifest) return null;
  const m = manifest as Parameters<typeof exportDenoiser>[1];
  return m.export ? exportDenoiser(ctx, m) : variantDenoiser(ctx, manifest);
};

export function openPipeline(dir: string, provider: Provider = 'cpu'): Promise<{ pipeline: Pipeline; session: Session }> {
  return loadPipeline(dir, provider, studioDenoiser);
}
