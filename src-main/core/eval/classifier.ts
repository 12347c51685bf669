/**
 * The embedded MNIST classifier as a judge of generated digits: class agreement now, penultimate features
 * for Frechet distances later. Input convention: images in model space [-1, 1], mapped to [0, 1].
 */
import { join } from 'node:path';
import { DqError } from '../errors.js';
import { modelsRoot } from '../models.js';
import { sessionFor } from '../pipeline/pipeline.js';
import type { Provider } from '../runtime/onnx.js';

export interface Classified {
  labels: number[];
  features: Float32Array[];
}

export function classifierPath(): string {
  return join(modelsRoot(), 'mnist-classifier', 'model.onnx');
}

export async function classify(images: Float32Array[], opts: { path?: string; provider?: Provider; batch?: number } = {}): Promise<Classified> {
  const session = await sessionFor(opts.path ?? classifierPath(), opts.provider ?? 'cpu');
  const size = 28 * 28;
  const labels: number[] = [];
  const features: Float32Array[] = [];
  const bs = opts.batch ?? 256;
  for (let s = 0; s < images.length; s += bs) {
    const chunk = images.slice(s, s + bs);
    const data = new Float32Array(chunk.length * size);
    chunk.forEach((img, k) => {
      if (img.length !== size) throw new DqError('BAD_ARGUMENT', `the MNIST classifier takes 1x28x28 images, got ${img.length} values`);
      for (let j = 0; j < size; j++) data[k * size + j] = Math.min(1, Math.max(0, (img[j]! + 1) / 2));
    });
    const out = await session.run({ image: { type: 'float32', data, dims: [chunk.length, 1, 28, 28] } });
    const logits = out.logits!.data as Float32Array;
    const feats = out.features!.data as Float32Array;
    const fdim = feats.length / chunk.length;
    for (let k = 0; k < chunk.length; k++) {
      let best = 0;
      for (let c = 1; c < 10; c++) if (logits[k * 10 + c]! > logits[k * 10 + best]!) best = c;
      labels.push(best);
      features.push(feats.slice(k * fdim, (k + 1) * fdim));
    }
  }
  return { labels, features };
}

/** Fraction of images the classifier labels with the requested class. */
export function agreement(requested: number[], predicted: number[]): number {
  if (requested.length !== predicted.length || requested.length === 0) throw new Error('agreement needs two equal, non-empty lists');
  return requested.filter((c, i) => c === predicted[i]).length / requested.length;
}
