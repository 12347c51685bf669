import { DqError } from './errors.js';

/*
 * Limits on what one command may ask for. The CLI refuses anything above them with the limit named, instead of
 * starting a job that cannot finish (or, for numbers above 2^53, a loop that never ends).
 */

/** Seeds: the noise generator takes any safe integer; one is kept free because the seed walk also uses seed + 1. */
export const MAX_SEED = Number.MAX_SAFE_INTEGER - 1;
/** Values in one --seeds list. */
export const MAX_SEEDS = 1024;
/** Values in one --class list. */
export const MAX_CLASSES = 1024;
/** Images in one sample grid (classes x seeds). */
export const MAX_GRID_IMAGES = 16_384;
/** Images one calibration, evaluation or FID run may generate (the same cap as the studio's server). */
export const MAX_SAMPLES = 100_000;
/** Sampling steps recorded by --count, frames of a walk segment and the like: small counts. */
export const MAX_COUNT = 1000;
/** Images per network batch. */
export const MAX_BATCH = 1024;
/** --height / --width in pixels (SDXL's native size is 1024; 8192 leaves room and refuses typos). */
export const MAX_IMAGE_PX = 8192;

export interface IntListLimits {
  /** At most this many distinct values (default MAX_SEEDS). */
  count?: number;
  /** No value above this (default MAX_SEED). */
  value?: number;
}

/**
 * Parses "0-9", "3", "0,2,5" or "0-3,7" into a list of integers (order kept, duplicates dropped). Refuses lists
 * longer than `limits.count` and values above `limits.value` (both named in the message). Linear in the output.
 * A number as the third argument is the count limit (older callers).
 */
export function parseIntList(text: string, what: string, limits: IntListLimits | number = {}): number[] {
  const lim = typeof limits === 'number' ? { count: limits } : limits;
  const maxCount = lim.count ?? MAX_SEEDS;
  const maxValue = Math.min(lim.value ?? MAX_SEED, Number.MAX_SAFE_INTEGER);
  const seen = new Set<number>();
  const tooMany = () => new DqError('BAD_ARGUMENT', `${what}: more than ${maxCount} values (the limit)`);
  for (const part of text.split(',').map((s) => s.trim())) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) throw new DqError('BAD_ARGUMENT', `${what}: '${part}' is not a number or range like 0-9`);
    for (const digits of [m[1]!, m[2]]) {
      // compare as text too: above 2^53 Number() rounds, and 9007199254740993 would read as 9007199254740992
      if (digits !== undefined && (digits.replace(/^0+(?=\d)/, '').length > 16 || Number(digits) > maxValue)) {
        throw new DqError('BAD_ARGUMENT', `${what}: ${digits} is too large (at most ${maxValue})`);
      }
    }
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) throw new DqError('BAD_ARGUMENT', `${what}: range '${part}' runs backwards`);
    if (b - a + 1 > maxCount) throw tooMany();
    for (let v = a; v <= b; v++) {
      seen.add(v);
      if (seen.size > maxCount) throw tooMany();
    }
  }
  return [...seen];
}

/** A --seeds list: at most MAX_SEEDS values, each at most MAX_SEED. */
export function parseSeeds(text: string, what = '--seeds'): number[] {
  return parseIntList(text, what, { count: MAX_SEEDS, value: MAX_SEED });
}

/** A --class list: at most MAX_CLASSES values (the model decides which exist). */
export function parseClasses(text: string, what = '--class'): number[] {
  return parseIntList(text, what, { count: MAX_CLASSES, value: Number.MAX_SAFE_INTEGER });
}
