/**
 * readRecord validates the whole record: a record of the right kind and version with bad fields is a BAD_CONFIG
 * error naming the file and the field, never an internal error later (issue 15, section 4).
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DqError } from '../../../../src-main/core/errors';
import { readRecord, RECORD_VERSION } from '../../../../src-main/core/quant/calibrate';
import { tmp } from '../../../helpers';

const work = tmp();
afterAll(() => rmSync(work, { recursive: true, force: true }));

const stat = () => ({ min: -1, max: 2, absmax: 2, hist: { lo: -1, hi: 3, counts: [1, 2, 3, 4] }, n: 2 });
function valid(): Record<string, unknown> {
  return {
    version: RECORD_VERSION,
    kind: 'dq-calibration',
    pipeline: 'models/tiny-mnist',
    unetSha256: 'ab'.repeat(32),
    settings: { samples: 6, steps: 3, sampler: 'ddim', guidance: 2, timesteps: 'all', count: 10, seed: 0, batchSize: 3, gram: false },
    timesteps: [999, 666, 333],
    steps: [0, 1, 2],
    sites: [
      { id: 0, tensor: 'sample', layers: ['conv_in'], split: null, ops: ['Conv'], temporal: false },
      { id: 1, tensor: 'cat', layers: ['conv_up'], split: 64, ops: ['Conv'], temporal: false },
    ],
    stats: { 0: { 0: { 0: stat(), 1: stat(), 2: stat() } }, 1: { 0: { 0: stat() }, 1: { 0: stat() } } },
    seconds: 1.5,
  };
}

const DELETE = Symbol('delete');
type Edit = [path: string, value: unknown];

let n = 0;
/** Writes a record (JSON text, or a valid one with the value at a dotted path set or deleted) and reads it back. */
function read(edit: Edit | string | null): () => unknown {
  const path = join(work, `r${n++}.json`);
  if (typeof edit === 'string') writeFileSync(path, edit);
  else {
    const r = valid();
    if (edit) {
      const keys = edit[0].split('.');
      const parent = keys.slice(0, -1).reduce<Record<string, unknown>>((o, k) => o[k] as Record<string, unknown>, r);
      if (edit[1] === DELETE) delete parent[keys.at(-1)!];
      else parent[keys.at(-1)!] = edit[1];
    }
    writeFileSync(path, JSON.stringify(r));
  }
  return () => readRecord(path);
}

/** The error readRecord throws: a one-line BAD_CONFIG DqError. */
function failure(fn: () => unknown): DqError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(DqError);
    expect((e as DqError).code).toBe('BAD_CONFIG');
    expect((e as Error).message).not.toMatch(/\n/);
    return e as DqError;
  }
  throw new Error('readRecord accepted the record');
}

describe('readRecord validates the record', () => {
  it('a valid record reads back unchanged', () => {
    expect(read(null)()).toEqual(valid());
  });

  it.each([
    ['no stats', ['stats', DELETE], /calibration record: field 'stats' is missing \(object expected\)/],
    ['sites as a string', ['sites', 'conv_in'], /calibration record: field 'sites'.*array/],
    ['settings of the wrong type', ['settings.samples', '6'], /calibration record: field 'settings\.samples'.*number/],
    ['an unknown sampler', ['settings.sampler', 'magic'], /field 'settings\.sampler'/],
    ['a statistic without its histogram', ['stats.0.0.1.hist', DELETE], /field 'stats\.0\.0\.1\.hist' is missing/],
    ['a NaN written as null', ['stats.0.0.2.min', null], /field 'stats\.0\.0\.2\.min'/],
    ['histogram counts of the wrong type', ['stats.1.1.0.hist.counts', { a: 1 }], /field 'stats\.1\.1\.0\.hist\.counts'/],
    ['a negative count', ['stats.0.0.0.hist.counts.2', -3], /field 'stats\.0\.0\.0\.hist\.counts\[2\]'/],
    ['a histogram with hi below lo', ['stats.0.0.0.hist.hi', -5], /field 'stats\.0\.0\.0\.hist'.*hi is below lo/],
    ['statistics of an unknown site', ['stats.7', { 0: { 0: stat() } }], /'stats\.7': no site 7/],
    ['a second half of a site that has none', ['stats.0.1', { 0: stat() }], /site 0 has no half 1/],
    ['statistics at a step that was not calibrated', ['stats.0.0.5', stat()], /step 5 is not in 'steps'/],
    ['a step beyond the schedule', ['steps', [0, 1, 9]], /field 'steps' names step 9/],
    ['a stats key that is not an index', ['stats', { site: {} }], /field 'stats/],
    ['no sites', ['sites', DELETE], /field 'sites' is missing/],
    ['a Gram file outside the record folder', ['gram', { file: '../../etc/passwd', steps: [0], entries: [], rows: [], skipped: {} }], /field 'gram\.file'.*beside the record/],
    ['Gram rows that do not match the entries', ['gram', { file: 'x.gram', steps: [0], entries: [], rows: [4], skipped: {} }], /'gram\.rows' has 1 values for 0 entries/],
  ] as [string, Edit, RegExp][])('%s', (_what, edit, message) => {
    const e = failure(read(edit));
    expect(e.message).toMatch(/^\/.*\.json: /);
    expect(e.message).toMatch(message);
  });

  it('an infinite number (1e999 in the JSON) is refused', () => {
    const text = JSON.stringify(valid()).replace('"absmax":2', '"absmax":1e999');
    expect(failure(read(text)).message).toMatch(/field 'stats\.0\.0\.0\.absmax'/);
  });

  it('wrong kind, wrong version, not JSON, not an object', () => {
    expect(failure(read(['kind', 'dq-variant'])).message).toMatch(/is not a calibration record$/);
    expect(failure(read(['version', 99])).message).toMatch(/version 99, this studio reads version \d+: recalibrate/);
    expect(failure(read(['version', DELETE])).message).toMatch(/version missing/);
    expect(failure(read('{"kind": "dq-calibration", ')).message).toMatch(/is not a calibration record: /);
    expect(failure(read('[1, 2]')).message).toMatch(/is not a calibration record$/);
    expect(failure(read('null')).message).toMatch(/is not a calibration record$/);
  });
});
