/**
 * One temporary folder per test run: every test's temporary files (helpers.ts tmp, the CLI's and onnxruntime's)
 * go under it through TMPDIR, which the workers and the processes they start inherit, and it is removed when the
 * run ends, passed or failed. DQ_KEEP_TEST_TMP=1 keeps it (its path is printed) to look at what a test wrote.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  const root = mkdtempSync(join(tmpdir(), 'dq-vitest-'));
  process.env.TMPDIR = root;
  process.env.TMP = root;
  process.env.TEMP = root;
  return () => {
    if (process.env.DQ_KEEP_TEST_TMP === '1') {
      console.log(`test files kept in ${root}`);
      return;
    }
    rmSync(root, { recursive: true, force: true });
  };
}
