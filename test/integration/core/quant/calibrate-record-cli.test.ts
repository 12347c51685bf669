/**
 * A calibration record of the right kind and version with bad fields gives one `dq: error:` line and exit 1, not an
 * internal error (issue 15, section 4).
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { sha256File } from '../../../../src-main/core/fsutil';
import { RECORD_VERSION } from '../../../../src-main/core/quant/calibrate';
import { dq, tmp, TINY } from '../../../helpers';

const work = tmp();
afterAll(() => rmSync(work, { recursive: true, force: true }));

const settings = { samples: 6, steps: 3, sampler: 'ddim', guidance: 2, timesteps: 'all', count: 10, seed: 0, batchSize: 3, gram: false };
// made for the right model: its fields are what is wrong
const head = { version: RECORD_VERSION, kind: 'dq-calibration', pipeline: 'models/tiny-mnist', unetSha256: sha256File(join(TINY, 'unet', 'model.onnx')), settings, timesteps: [999, 666, 333], steps: [0, 1, 2], seconds: 1 };

describe('dq quantize --calib with a damaged record', () => {
  it.each([
    ['no stats', { ...head, sites: [] }, /field 'stats' is missing/],
    ['sites as a string', { ...head, sites: 'conv_in', stats: {} }, /field 'sites': must be of type array, not string/],
  ])('%s: one line, exit 1', (_what, rec, message) => {
    const path = join(work, `${_what.replace(/ /g, '-')}.json`);
    writeFileSync(path, JSON.stringify(rec));
    const r = dq(['quantize', 'models/tiny-mnist', '--preset', 'int8-w8a8', '--calib', path, '--out', join(work, 'v')]);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^dq: error: /);
    expect(r.stderr).toMatch(message);
    expect(r.code).toBe(1);
  });
});
