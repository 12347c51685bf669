/** The models that ship with the studio, found under models/ at the repository root. */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface EmbeddedModelInfo {
  id: string;
  path: string;
  kind: 'diffusion-pipeline' | 'classifier';
  title: string;
  summary: string;
  classes: string[];
  sampleShape: number[] | null;
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

function firstParagraph(md: string): string {
  const body = md.split('\n').filter((l) => !l.startsWith('#'));
  return body.join('\n').trim().split(/\n\s*\n/)[0]?.replace(/\s+/g, ' ').trim() ?? '';
}

export function listEmbeddedModels(root = modelsRoot()): EmbeddedModelInfo[] {
  if (!existsSync(root)) return [];
  const out: EmbeddedModelInfo[] = [];
  for (const id of readdirSync(root).sort()) {
    const dir = join(root, id);
    const card = existsSync(join(dir, 'README.md')) ? readFileSync(join(dir, 'README.md'), 'utf8') : '';
    const title = /^#\s+(.+)$/m.exec(card)?.[1]?.trim() ?? id;
    if (existsSync(join(dir, 'model_index.json'))) {
      const idx = JSON.parse(readFileSync(join(dir, 'model_index.json'), 'utf8')) as { classes?: unknown[]; sample_shape?: number[] };
      out.push({
        id, path: dir, kind: 'diffusion-pipeline', title, summary: firstParagraph(card),
        classes: (idx.classes ?? []).map(String), sampleShape: idx.sample_shape ?? null,
      });
    } else if (existsSync(join(dir, 'model.onnx'))) {
      out.push({ id, path: dir, kind: 'classifier', title, summary: firstParagraph(card), classes: [], sampleShape: null });
    }
  }
  // diffusion pipelines first: the studio opens with them
  return out.sort((a, b) => (a.kind === b.kind ? a.id.localeCompare(b.id) : a.kind === 'diffusion-pipeline' ? -1 : 1));
}
