/**
 * readTap merges a run's rows at once onto the coarsest grid they need: the statistic merging the rows one by one
 * with mergeStat gives (stats.ts), bit for bit, for plain and grouped outputs.
 */
import { expect, it } from 'vitest';
import { mergeStat, type Stat } from '../../../../src-main/core/quant/stats';
import { binWidth, HIST_BINS, readTap, type TapNames } from '../../../../src-main/core/quant/taps';

/** Outputs of `rows` rows, as the statistics graph gives them: min, max, a power-of-two width, counts on its grid. */
function fakeRows(rows: number, seed: number) {
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const mins = new Float32Array(rows);
  const maxs = new Float32Array(rows);
  const widths = new Float32Array(rows);
  const hist = new Float32Array(rows * (HIST_BINS + 1));
  for (let r = 0; r < rows; r++) {
    const scale = 2 ** Math.floor(rnd() * 12 - 6);
    const min = Math.fround(-rnd() * scale);
    const max = Math.fround(rnd() * scale * (1 + 3 * rnd()));
    mins[r] = min;
    maxs[r] = max;
    const w = binWidth(min, max);
    widths[r] = w;
    const j0 = Math.floor(min / w);
    const span = Math.floor(max / w) - j0;
    for (let k = 0; k <= span; k++) hist[r * (HIST_BINS + 1) + k] = rnd() < 0.3 ? 0 : Math.floor(rnd() * 50) * (rnd() < 0.5 ? 1 : 7);
  }
  return { mins, maxs, widths, hist };
}

function oneByOne(o: ReturnType<typeof fakeRows>, index: number, size: number): Stat {
  let acc: Stat | undefined;
  for (let r = index; r < o.mins.length; r += size) {
    const w = o.widths[r]!;
    const lo = Math.floor(o.mins[r]! / w) * w;
    const counts = Array.from(o.hist.subarray(r * (HIST_BINS + 1), r * (HIST_BINS + 1) + HIST_BINS));
    acc = mergeStat(acc, { min: o.mins[r]!, max: o.maxs[r]!, absmax: Math.max(-o.mins[r]!, o.maxs[r]!), hist: { lo, hi: lo + HIST_BINS * w, counts }, n: 1 });
  }
  return acc!;
}

it('merges rows at once as mergeStat merges them one by one', () => {
  const names: TapNames = { min: 'a', max: 'b', width: 'c', hist: 'd' };
  for (const seed of [1, 2, 3, 4, 5]) {
    const o = fakeRows(12, seed);
    const res = { a: { data: o.mins }, b: { data: o.maxs }, c: { data: o.widths }, d: { data: o.hist } };
    expect(readTap(res, names)).toEqual(oneByOne(o, 0, 1));
    // grouped: three halves stacked, each reads rows g, g + 3, ...
    for (const g of [0, 1, 2]) expect(readTap(res, { ...names, group: { index: g, size: 3 } })).toEqual(oneByOne(o, g, 3));
  }
  const o = fakeRows(4, 9);
  const res = { a: { data: o.mins }, b: { data: o.maxs }, c: { data: o.widths }, d: { data: o.hist } };
  expect(() => readTap(res, { ...names, group: { index: 0, size: 3 } })).toThrow(/4 rows/);
});
