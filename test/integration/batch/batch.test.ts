/**
 * dq batch: a 1 pipeline x 2 presets matrix split into two shards; every job leaves a log and result.json, and a
 * second run skips finished jobs. A bad entry fails its own jobs while the others run; a bad job file is refused
 * before any work; the shared calibration is reused only when it was made with the settings the batch asks for.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { listJobs, parseShard, readJobs, runBatch } from '../../../src-main/core/batch/batch';
import { releaseSessions } from '../../../src-main/core/pipeline/pipeline';
import { ROOT, tmp, TINY } from '../../helpers';

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

  it('fails a bad entry (missing pipeline, unknown preset, broken recipe file) as its own jobs; the others run; exit 1', async () => {
    const dir = join(work, 'bad-entries');
    mkdirSync(dir);
    cpSync(TINY, join(dir, 'tiny'), { recursive: true });
    writeFileSync(join(dir, 'broken.json'), '{ "name": "broken", "weights": ');
    const file = join(dir, 'jobs.json');
    // mxfp4-w4a8 needs no calibration: quantize alone is quick
    writeFileSync(file, JSON.stringify({ out: 'runs', pipelines: ['missing', 'tiny'], presets: ['no-such-preset', 'broken.json', 'mxfp4-w4a8'], steps: ['quantize'] }));
    const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'dq.js'), 'batch', file], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
    expect(r.status).toBe(1);
    const lines = r.stdout.trim().split('\n');
    // every job was tried, in matrix order; only the good one ran
    expect(lines.filter((l) => /^\[\d\] /.test(l)).map((l) => /^\[(\d)\]/.exec(l)![1])).toEqual(['0', '1', '2', '3', '4', '5', '5']);
    expect(lines.find((l) => l.startsWith('[0] missing/no-such-preset: FAILED: '))).toMatch(/no such file or folder/);
    expect(lines.find((l) => l.startsWith('[2] missing/mxfp4-w4a8: FAILED: '))).toMatch(/no such file or folder/);
    expect(lines.find((l) => l.startsWith('[3] tiny/no-such-preset: FAILED: '))).toMatch(/no preset or recipe file 'no-such-preset'/);
    expect(lines.find((l) => l.startsWith('[4] tiny/broken: FAILED: '))).toMatch(/broken\.json is not valid JSON/);
    expect(lines.find((l) => l.startsWith('[5] tiny/mxfp4-w4a8: done in '))).toBeDefined();
    expect(existsSync(join(dir, 'runs', 'tiny', 'mxfp4-w4a8', 'result.json'))).toBe(true);
    // each failed job says why in its log and has no result
    for (const id of ['missing/no-such-preset', 'missing/broken', 'missing/mxfp4-w4a8', 'tiny/no-such-preset', 'tiny/broken']) {
      expect(readFileSync(join(dir, 'runs', id, 'job.log'), 'utf8')).toMatch(/FAILED: /);
      expect(existsSync(join(dir, 'runs', id, 'result.json'))).toBe(false);
    }
    // one error line at the end, naming the failed jobs; no stack trace
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^dq: error: 5 of 6 jobs failed \(missing\/no-such-preset, .*tiny\/broken\)/)]);
    // a dry run shows the same: the bad entries' jobs cannot run, the good one is done
    const dryLines: string[] = [];
    const dry = await runBatch({ jobsFile: file, dryRun: true, onLine: (l) => dryLines.push(l) });
    expect(dry.failed).toHaveLength(5);
    expect(dry.skipped).toEqual(['tiny/mxfp4-w4a8']);
    expect(dryLines.find((l) => l.startsWith('[4] tiny/broken: cannot run: '))).toMatch(/broken\.json is not valid JSON/);
  }, 150_000);

  it('refuses a malformed job file, a bad seed list or an unusable out folder before any work, in one line', async () => {
    const dir = join(work, 'bad-files');
    mkdirSync(dir);
    const write = (name: string, body: string) => {
      writeFileSync(join(dir, name), body);
      return join(dir, name);
    };
    const good = { out: 'runs', pipelines: [TINY], presets: ['naive-w8a8'] };
    await expect(runBatch({ jobsFile: write('a.json', '{ "out": ') })).rejects.toThrow(/a\.json is not valid JSON/);
    await expect(runBatch({ jobsFile: write('b.json', JSON.stringify({ ...good, presets: [] })) })).rejects.toThrow(/b\.json: field 'presets'/);
    await expect(runBatch({ jobsFile: write('c.json', JSON.stringify({ ...good, calibration: { samples: 0 } })) })).rejects.toThrow(/c\.json: field 'calibration\.samples'/);
    // a calibration of 100 million images is refused, not started
    await expect(runBatch({ jobsFile: write('c2.json', JSON.stringify({ ...good, calibration: { samples: 100_000_000 } })) })).rejects.toThrow(/c2\.json: field 'calibration\.samples': .*100000/);
    await expect(runBatch({ jobsFile: write('d.json', JSON.stringify({ ...good, compare: { seeds: '0-x' } })) })).rejects.toThrow(/d\.json: field 'compare\.seeds': '0-x' is not a number/);
    await expect(runBatch({ jobsFile: write('e.json', JSON.stringify({ ...good, export: { verifySeeds: '3-1' } })) })).rejects.toThrow(/e\.json: field 'export\.verifySeeds': range '3-1' runs backwards/);
    // the seed list is read even when compare is not among the steps
    await expect(runBatch({ jobsFile: write('f.json', JSON.stringify({ ...good, steps: ['quantize'], compare: { seeds: '' } })) })).rejects.toThrow(/field 'compare\.seeds'/);
    // out is a file, or under a file
    write('afile', 'not a folder');
    await expect(runBatch({ jobsFile: write('g.json', JSON.stringify({ ...good, out: 'afile' })) })).rejects.toThrow(/field 'out': .*afile is a file, not a folder/);
    await expect(runBatch({ jobsFile: write('h.json', JSON.stringify({ ...good, out: 'afile/runs' })) })).rejects.toThrow(/field 'out': .*afile is a file, not a folder/);
    expect(existsSync(join(dir, 'runs'))).toBe(false);
  });

  it('refuses a seed above 2^53 in the job file at once (no endless loop), through the CLI', () => {
    const dir = join(work, 'big-seed');
    mkdirSync(dir);
    const file = join(dir, 'jobs.json');
    writeFileSync(file, JSON.stringify({ out: 'runs', pipelines: [TINY], presets: ['naive-w8a8'], compare: { seeds: '9007199254740993' } }));
    // a spawned CLI with a timeout: an endless loop fails this test instead of hanging the suite
    const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'dq.js'), 'batch', file], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    expect(r.signal).toBeNull();
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^dq: error: .*jobs\.json: field 'compare\.seeds': .*9007199254740993/)]);
    expect(existsSync(join(dir, 'runs'))).toBe(false);
  }, 90_000);

  it('reuses the shared calibration only when it was made with the settings the batch asks for', async () => {
    const dir = join(work, 'recalibrate');
    mkdirSync(dir);
    cpSync(TINY, join(dir, 'tiny'), { recursive: true });
    const file = join(dir, 'jobs.json');
    const jobDir = join(dir, 'runs', 'tiny', 'naive-w8a8');
    const batch = async (calibration: Record<string, number>, steps = ['calibrate', 'quantize']) => {
      writeFileSync(file, JSON.stringify({ out: 'runs', pipelines: ['tiny'], presets: ['naive-w8a8'], steps, calibration }));
      const lines: string[] = [];
      const r = await runBatch({ jobsFile: file, onLine: (s) => lines.push(s) });
      return { ...r, lines };
    };
    const recorded = () => {
      const m = JSON.parse(readFileSync(join(jobDir, 'variant', 'manifest.json'), 'utf8')) as { calibration: { settings: { samples: number; steps: number } } };
      const rec = JSON.parse(readFileSync(join(dir, 'runs', 'tiny', 'calibration.json'), 'utf8')) as { settings: { samples: number; steps: number } };
      return { variant: [m.calibration.settings.samples, m.calibration.settings.steps], record: [rec.settings.samples, rec.settings.steps] };
    };
    const log = () => readFileSync(join(jobDir, 'job.log'), 'utf8');

    expect((await batch({ samples: 4, steps: 4, batchSize: 4 })).ran).toEqual(['tiny/naive-w8a8']);
    expect(recorded()).toEqual({ variant: [4, 4], record: [4, 4] });
    expect(log()).not.toMatch(/calibration: reusing/);

    // other samples and steps: calibrated again, and the variant records the new settings
    rmSync(join(jobDir, 'job.log'));
    expect((await batch({ samples: 2, steps: 3, batchSize: 2 })).ran).toEqual(['tiny/naive-w8a8']);
    expect(log()).not.toMatch(/calibration: reusing/);
    expect(log()).toMatch(/calibration: not reusing .*calibration\.json: it was made with samples 4, steps 4; this batch asks for samples 2, steps 3: calibrating again/);
    expect(recorded()).toEqual({ variant: [2, 3], record: [2, 3] });

    // only the batch size differs (a new job key, the same record): reused
    rmSync(join(jobDir, 'job.log'));
    expect((await batch({ samples: 2, steps: 3, batchSize: 1 })).ran).toEqual(['tiny/naive-w8a8']);
    expect(log()).toMatch(/calibration: reusing /);
    expect(recorded()).toEqual({ variant: [2, 3], record: [2, 3] });

    // a record that does not fit and no 'calibrate' step: the job fails and says why
    rmSync(join(jobDir, 'job.log'));
    const q = await batch({ samples: 3, steps: 3, batchSize: 3 }, ['quantize']);
    expect(q.failed).toEqual(['tiny/naive-w8a8']);
    expect(q.lines.find((l) => l.includes('FAILED'))).toMatch(/does not fit: it was made with samples 2; this batch asks for samples 3, and 'calibrate' is not among the steps/);
    expect(recorded()).toEqual({ variant: [2, 3], record: [2, 3] });
  }, 180_000);
});
