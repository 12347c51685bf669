/**
 * dq batch: a 1 pipeline x 2 presets matrix split into two shards; every job leaves a log and result.json, and a
 * second run skips finished jobs.
 */
import { cpSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { listJobs, parseShard, readJobs, runBatch } from '../../../src-main/core/batch/batch';
import { releaseSessions } from '../../../src-main/core/pipeline/pipeline';
import { tmp, TINY } from '../../helpers';

const work = tmp('dq-batch-');

afterAll(async () => {
  await releaseSessions();
  rmSync(work, { recursive: true, force: true });
});

describe('dq batch', () => {
  it('parses shards', () => {
    expect(parseShard('1/4')).toEqual({ index: 1, count: 4 });
    expect(() => parseShard('4/4')).toThrow(/0 <= i < n/);
  });

  it('runs a sharded matrix with a log per job and skips finished jobs on resume', async () => {
    cpSync(TINY, join(work, 'tiny'), { recursive: true });
    const file = join(work, 'jobs.json');
    writeFileSync(file, JSON.stringify({
      out: 'runs', pipelines: ['tiny'], presets: ['int4-w4a16', 'naive-w8a8'], steps: ['calibrate', 'quantize', 'export'],
      calibration: { samples: 4, steps: 4, batchSize: 4 }, export: { verifySeeds: '0', calibrationImages: 2 },
    }));
    const { jobs, base } = readJobs(file);
    expect(listJobs(jobs, base).map((j) => j.id)).toEqual(['tiny/int4-w4a16', 'tiny/naive-w8a8']);
    const a = await runBatch({ jobsFile: file, shard: { index: 0, count: 2 } });
    const b = await runBatch({ jobsFile: file, shard: { index: 1, count: 2 } });
    expect(a.ran).toEqual(['tiny/int4-w4a16']);
    expect(b.ran).toEqual(['tiny/naive-w8a8']);
    for (const id of ['int4-w4a16', 'naive-w8a8']) {
      const dir = join(work, 'runs', 'tiny', id);
      expect(readFileSync(join(dir, 'job.log'), 'utf8')).toMatch(/done in/);
      expect(existsSync(join(dir, 'export', 'unet', 'model.onnx'))).toBe(true);
      const r = JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8')) as { export: { ratio: number } };
      expect(r.export.ratio).toBeLessThan(0.3);
    }
    const again = await runBatch({ jobsFile: file });
    expect(again.skipped).toEqual(['tiny/int4-w4a16', 'tiny/naive-w8a8']);
    expect(again.ran).toEqual([]);
  }, 180_000);
});
