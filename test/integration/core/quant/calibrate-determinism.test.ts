/**
 * The same calibration set gives the same record whatever the batch size (issue 15, section 7): every statistic
 * (min, max, histogram, count) is identical, so the activation parameters derived from it are too.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { releaseSessions } from '../../../../src-main/core/pipeline/pipeline';
import { calibrate, type CalibrationRecord } from '../../../../src-main/core/quant/calibrate';
import { tmp, TINY } from '../../../helpers';

const work = tmp();
afterAll(async () => {
  await releaseSessions();
  rmSync(work, { recursive: true, force: true });
});

const settings = { samples: 6, steps: 3, guidance: 2, sampler: 'ddim' as const, timesteps: 'all' as const };

/** Paths (site/half/step/field) where two records' statistics differ: min and max, then the histograms. */
function differences(a: CalibrationRecord['stats'], b: CalibrationRecord['stats']): string[] {
  const out: string[] = [];
  for (const site of new Set([...Object.keys(a), ...Object.keys(b)]))
    for (const half of new Set([...Object.keys(a[+site] ?? {}), ...Object.keys(b[+site] ?? {})]))
      for (const step of new Set([...Object.keys(a[+site]?.[+half] ?? {}), ...Object.keys(b[+site]?.[+half] ?? {})])) {
        const x = a[+site]?.[+half]?.[+step];
        const y = b[+site]?.[+half]?.[+step];
        const at = `${site}/${half}/${step}`;
        if (!x || !y) out.push(`${at}: missing`);
        else for (const k of ['min', 'max', 'absmax', 'n', 'hist'] as const) if (JSON.stringify(x[k]) !== JSON.stringify(y[k])) out.push(`${at}: ${k}`);
      }
  return out;
}

describe('calibration is independent of the batch size', () => {
  it('batches of 2, 3 and 6 give identical statistics', async () => {
    const recs: CalibrationRecord[] = [];
    for (const batchSize of [6, 3, 2]) recs.push(await calibrate(TINY, join(work, `b${batchSize}.json`), { ...settings, batchSize }));
    const [whole, ...others] = recs;
    // a real histogram was recorded (not an empty or trivial one), so the comparison can fail
    const st = whole!.stats[whole!.sites[1]!.id]![0]![0]!;
    expect(st.hist.counts.filter((c) => c > 0).length).toBeGreaterThan(10);
    for (const r of others) {
      expect(r.settings.batchSize).not.toBe(whole!.settings.batchSize);
      expect(differences(r.stats, whole!.stats)).toEqual([]);
    }
  });
});
