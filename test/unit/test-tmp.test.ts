/**
 * The test run's temporary files live under one folder that test/global-setup.ts makes and removes: the workers
 * (and the CLI processes they start) see it as their temporary directory, so nothing a test writes is left in the
 * system's /tmp after `npm test`.
 */
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { basename, dirname } from 'node:path';
import { expect, it } from 'vitest';
import { tmp } from '../helpers';

it('gives tests and the processes they start a temporary directory of the run', () => {
  expect(basename(tmpdir())).toMatch(/^dq-vitest-/);
  expect(dirname(tmp())).toBe(tmpdir());
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(require("node:os").tmpdir())'], { encoding: 'utf8' });
  expect(child.stdout).toBe(tmpdir());
});
