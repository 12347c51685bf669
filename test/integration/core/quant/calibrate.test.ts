/**
 * Calibration statistics equal independently computed values; cancelling leaves no record; resuming completes
 * it with the same numbers as an uninterrupted run.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { analyzeGraph } from '../../../../src-main/core/onnx/analysis';
import { encodeModel, loadOnnx } from '../../../../src-main/core/onnx/io';
import { exposeTensors } from '../../../../src-main/core/onnx/rewrite';
import { Rng } from '../../../../src-main/core/pipeline/noise';
import { releaseSessions } from '../../../../src-main/core/pipeline/pipeline';
import { calibrate, readRecord } from '../../../../src-main/core/quant/calibrate';
import { mergeStat, type Stat } from '../../../../src-main/core/quant/stats';
import { binWidth, bulkOffset, bulkStride, HIST_BINS, TAIL_QUANTILE } from '../../../../src-main/core/quant/taps';

/**
 * The statistic of one row of a tensor, computed independently: min and max; the bin width, the least power of two
 * with the range in HIST_BINS - 2 bins and >= absmax 2^-22 (binWidth); the histogram on the grid of that width
 * (bin = floor(v / w) - floor(min / w)): the bulk sample (one element per block of bulkStride(m), at bulkOffset)
 * weighted by the stride unless it is a tail, every tail element once. The tails lie beyond the bulk sample's
 * TAIL_QUANTILE order statistics (clamped to include 0).
 */
function rowStat(d: Float32Array): Stat {
  let min = Infinity;
  let max = -Infinity;
  for (const v of d) {
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  const S = bulkStride(d.length);
  const bulk: { v: number; real: boolean }[] = [];
  for (let blk = 0; blk * S < d.length; blk++) {
    const at = blk * S + bulkOffset(blk, S);
    bulk.push({ v: d[Math.min(at, d.length - 1)]!, real: at < d.length });
  }
  // thresholds: the k-th largest and smallest bulk value (the clamped last one included), k = max(1, floor(m q))
  const sorted = bulk.map((b) => b.v).sort((a, b) => a - b);
  const kq = Math.max(Math.floor(sorted.length / Math.round(1 / TAIL_QUANTILE)), 1);
  const hiT = Math.max(sorted[sorted.length - kq]!, 0);
  const loT = Math.min(sorted[kq - 1]!, 0);
  const tail = (v: number) => v > hiT || v < loT;
  const w = binWidth(min, max);
  const j0 = Math.floor(min / w);
  const counts = new Array<number>(HIST_BINS).fill(0);
  const add = (v: number, c: number) => (counts[Math.min(HIST_BINS - 1, Math.max(0, Math.floor(v / w) - j0))]! += c);
  for (const v of d) if (tail(v)) add(v, 1);
  for (const b of bulk) if (b.real && !tail(b.v)) add(b.v, S);
  return { min, max, absmax: Math.max(-min, max), hist: { lo: j0 * w, hi: (j0 + HIST_BINS) * w, counts }, n: 1 };
}
import { Session } from '../../../../src-main/core/runtime/onnx';
import { tmp, TINY } from '../../../helpers';

const work = tmp();
afterAll(async () => {
  await releaseSessions();
  rmSync(work, { recursive: true, force: true });
});

const settings = { samples: 6, steps: 3, batchSize: 3, guidance: 2, sampler: 'ddim' as const, timesteps: 'all' as const };

describe('dq calibrate', () => {
  it('records, at the first step, exactly the min/max of each site computed outside the engine, and the histograms\' mass', async () => {
    const rec = await calibrate(TINY, join(work, 'a.json'), settings);
    expect(rec.steps).toEqual([0, 1, 2]);
    expect(rec.sites.length).toBeGreaterThan(20);
    const splits = rec.sites.filter((s) => s.split !== null);
    expect(splits.length).toBeGreaterThanOrEqual(2); // the decoder skip concats, split at channel 64

    // Independent: the step-0 network input for the 6 images (seeds as calibrate draws them), through the FP
    // model with the site tensors exposed, then min/max in JavaScript.
    const model = loadOnnx(join(TINY, 'unet', 'model.onnx')).model;
    const map = analyzeGraph(model);
    const tensors = rec.sites.map((s) => s.tensor).filter((t) => t !== map.sampleInput);
    exposeTensors(model, tensors);
    const s = await Session.create(encodeModel(model));
    const want = new Map<string, Stat>();
    for (const batch of [[0, 1, 2], [3, 4, 5]]) {
      const b = batch.length;
      const x = new Float32Array(2 * b * 784);
      batch.forEach((i, k) => {
        const z = new Rng(i).normal(new Float64Array(784));
        for (let j = 0; j < 784; j++) x[k * 784 + j] = x[(b + k) * 784 + j] = z[j]!;
      });
      const t0 = rec.timesteps[0]!;
      const labels = BigInt64Array.from([...batch.map((i) => BigInt(i % 10)), ...batch.map(() => 10n)]);
      const out = await s.run({
        sample: { type: 'float32', data: x, dims: [2 * b, 1, 28, 28] },
        timestep: { type: 'float32', data: new Float32Array(2 * b).fill(t0), dims: [2 * b] },
        class_labels: { type: 'int64', data: labels, dims: [2 * b] },
      });
      for (const t of tensors) {
        const d = out[t]!.data as Float32Array;
        // statistics are per row (the first axis), merged
        const rows = out[t]!.dims[0]!;
        const m = d.length / rows;
        expect(m % 8, t).toBe(0); // no padding: a row's min and max are its own
        for (let r = 0; r < rows; r++) want.set(t, mergeStat(want.get(t), rowStat(d.subarray(r * m, (r + 1) * m))));
      }
    }
    for (const site of rec.sites) {
      if (site.tensor === map.sampleInput || site.split !== null) continue;
      const st = rec.stats[site.id]![0]![0]!;
      const w = want.get(site.tensor)!;
      expect(st.min, site.tensor).toBe(w.min);
      expect(st.max, site.tensor).toBe(w.max);
      expect(st.n, site.tensor).toBe(12); // 6 images, conditional and unconditional
      expect(st.hist, site.tensor).toEqual(w.hist);
    }
    await s.release();
  });

  it('cancel leaves no record; running again resumes and gives the same record as an uninterrupted run', async () => {
    const out = join(work, 'b.json');
    const ac = new AbortController();
    await expect(
      calibrate(TINY, out, { ...settings, signal: ac.signal, onProgress: (p) => p.done >= settings.steps + 1 && ac.abort() }),
    ).rejects.toThrow(/cancelled/);
    expect(existsSync(out)).toBe(false);
    expect(existsSync(`${out}.partial.json`)).toBe(true);
    expect(JSON.parse(readFileSync(`${out}.partial.json`, 'utf8')).batchesDone).toBe(1);
    const resumed = await calibrate(TINY, out, settings);
    expect(existsSync(`${out}.partial.json`)).toBe(false);
    const whole = readRecord(join(work, 'a.json'));
    expect(resumed.stats).toEqual(whole.stats);
  });
});

