/** The models that ship with the studio, found under models/ at the repository root. */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { denoiserFolder } from './pipeline/pipeline.js';

export interface EmbeddedModelInfo {
  id: string;
  path: string;
  kind: 'diffusion-pipeline' | 'classifier';
  title: string;
  summary: string;
  classes: string[];
  sampleShape: number[] | null;
  /** A video pipeline's frames per video (model_index.json's default_frames). */
  frames?: number;
}

/** The repository root (the folder with package.json and models/ above this file). */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'models')) && existsSync(join(dir, 'package.json'))) return dir;
    dir = dirname(dir);
  }
  return resolve('.');
}

/** models/ at the repository root, or DQ_MODELS_DIR. */
export function modelsRoot(): string {
  if (process.env.DQ_MODELS_DIR) return resolve(process.env.DQ_MODELS_DIR);
  return join(repoRoot(), 'models');
}

/** The card's first paragraph as plain text (the studio shows it as text: no emphasis marks, code ticks or link targets). */
export function firstParagraph(md: string): string {
  const body = md.split('\n').filter((l) => !l.startsWith('#'));
  const para = body.join('\n').trim().split(/\n\s*\n/)[0]?.replace(/\s+/g, ' ').trim() ?? '';
  return para
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/`([^`]*)`/g, '$1')
    .replace(/(\*\*|__)(.+?)\1/g, '$2')
    .replace(/(^|[^\w*])\*([^*\s][^*]*?)\*(?!\w)/g, '$1$2');
}

function readConfig(path: string): Record<string, unknown> | null {
  try {
    const v = JSON.parse(readFileSync(path, 'utf8')) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/**
 * [C, H, W] of the images a pipeline makes, as the component configs state it (unet/config.json's sample_size and
 * in_channels; the VAE's factor and 3 channels for a latent pipeline); null when they do not say. A listing only:
 * loading the pipeline reads the graphs.
 */
export function imageShapeFromConfigs(dir: string): number[] | null {
  const unet = readConfig(join(dir, denoiserFolder(dir), 'config.json'));
  const size = unet?.sample_size;
  const hw = typeof size === 'number' ? [size, size] : Array.isArray(size) && size.length === 2 ? (size as number[]) : null;
  if (!unet || !hw || typeof unet.in_channels !== 'number') return null;
  const vae = readConfig(join(dir, 'vae_decoder', 'config.json'));
  if (!vae) return [unet.in_channels, hw[0]!, hw[1]!];
  const f = Array.isArray(vae.block_out_channels) ? 2 ** (vae.block_out_channels.length - 1) : 8;
  return [typeof vae.out_channels === 'number' ? vae.out_channels : 3, hw[0]! * f, hw[1]! * f];
}

export function listEmbeddedModels(root = modelsRoot()): EmbeddedModelInfo[] {
  if (!existsSync(root)) return [];
  const out: EmbeddedModelInfo[] = [];
  for (const id of readdirSync(root).sort()) {
    const dir = join(root, id);
    const card = existsSync(join(dir, 'README.md')) ? readFileSync(join(dir, 'README.md'), 'utf8') : '';
    const title = /^#\s+(.+)$/m.exec(card)?.[1]?.trim() ?? id;
    if (existsSync(join(dir, 'model_index.json'))) {
      const idx = JSON.parse(readFileSync(join(dir, 'model_index.json'), 'utf8')) as { classes?: unknown[]; default_frames?: unknown };
      out.push({
        id, path: dir, kind: 'diffusion-pipeline', title, summary: firstParagraph(card),
        classes: (idx.classes ?? []).map(String), sampleShape: imageShapeFromConfigs(dir),
        ...(typeof idx.default_frames === 'number' ? { frames: idx.default_frames } : {}),
      });
    } else if (existsSync(join(dir, 'model.onnx'))) {
      out.push({ id, path: dir, kind: 'classifier', title, summary: firstParagraph(card), classes: [], sampleShape: null });
    }
  }
  // diffusion pipelines first: the studio opens with them
  return out.sort((a, b) => (a.kind === b.kind ? a.id.localeCompare(b.id) : a.kind === 'diffusion-pipeline' ? -1 : 1));
}
