/**
 * The data reference for FID-to-data: MNIST digits from the `mnist` package, of which the last 150 per digit were
 * held out of training the embedded model (models/tiny-mnist). Images come back in model space ([0, 1] -> [-1, 1]).
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export const HELD_OUT_PER_DIGIT = 150;
export const MNIST_SIZE = 28 * 28;

export function mnistDigitsDir(): string | null {
  try {
    const pkg = createRequire(import.meta.url).resolve('mnist/package.json');
    const dir = join(dirname(pkg), 'src', 'digits');
    return existsSync(dir) ? dir : null;
  } catch {
    return null;
  }
}

const cache = new Map<number, Float32Array[]>();

/** The held-out images of one digit, in model space. Throws when the package is missing. */
export function heldOutDigit(digit: number, dir = mnistDigitsDir()): Float32Array[] {
  if (!Number.isInteger(digit) || digit < 0 || digit > 9) throw new RangeError(`not a digit: ${digit}`);
  if (!dir) throw new Error('the mnist package (the data reference) is not installed');
  const hit = cache.get(digit);
  if (hit) return hit;
  const raw = JSON.parse(readFileSync(join(dir, `${digit}.json`), 'utf8')) as { data?: unknown };
  if (!Array.isArray(raw.data) || raw.data.length % MNIST_SIZE !== 0) throw new Error(`mnist digit ${digit}: unexpected file layout`);
  const data = raw.data as number[];
  const total = data.length / MNIST_SIZE;
  if (total < HELD_OUT_PER_DIGIT) throw new Error(`mnist digit ${digit}: only ${total} images`);
  const out: Float32Array[] = [];
  for (let i = total - HELD_OUT_PER_DIGIT; i < total; i++) {
    const img = new Float32Array(MNIST_SIZE);
    for (let j = 0; j < MNIST_SIZE; j++) img[j] = data[i * MNIST_SIZE + j]! * 2 - 1;
    out.push(img);
  }
  cache.set(digit, out);
  return out;
}
