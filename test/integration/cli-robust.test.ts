/**
 * The CLI on hostile input (issue 15): numbers that used to loop forever, lists and counts beyond any sensible
 * job, output paths that hung (/proc), were refused only after the work (a file in the path) or deleted what we
 * did not write (an existing folder). Every case runs the real `dq` with a timeout, so a hang fails fast, and
 * checks the exit code, the single `dq: error:` line and that nothing was deleted.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, tmp, TINY } from '../helpers';

const work = tmp('dq-robust-');
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Above 2^53: `v++` no longer changes it, which is how the old parser looped forever. */
const BIG = '9007199254740993';

interface Run {
  args: string[];
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs dq; a run that outlives `timeoutMs` is killed (a hang then shows as signal SIGKILL, not a stuck suite). */
function dq(args: string[], timeoutMs = 30_000, env: Record<string, string> = {}): Promise<Run> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'dq.js'), ...args], { cwd: ROOT, env: { ...process.env, DQ_DEBUG: '', ...env }, timeout: timeoutMs, killSignal: 'SIGKILL' });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString('utf8')));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString('utf8')));
    child.on('close', (code, signal) => done({ args, code, signal, stdout, stderr }));
  });
}

/** Runs the commands two at a time (the machines have two cores). */
async function dqAll(cases: string[][]): Promise<Run[]> {
  const out: Run[] = new Array(cases.length);
  let next = 0;
  const lane = async () => {
    while (next < cases.length) {
      const i = next++;
      out[i] = await dq(cases[i]!);
    }
  };
  await Promise.all([lane(), lane()]);
  return out;
}

/** Exit 1 with one line `dq: error: ...` matching `pattern`, no stack trace, no hang. */
function expectError(r: Run, pattern: RegExp): void {
  const what = `dq ${r.args.join(' ')}\n${r.stderr}`;
  expect(r.signal, `killed (a hang?): ${what}`).toBe(null);
  expect(r.code, what).toBe(1);
  const lines = r.stderr.trim().split('\n');
  expect(lines, what).toHaveLength(1);
  expect(lines[0], what).toMatch(/^dq: error: /);
  expect(lines[0], what).toMatch(pattern);
}

/** A usage error (a number out of its option's range): exit 2, the limit named. */
function expectUsage(r: Run, pattern: RegExp): void {
  const what = `dq ${r.args.join(' ')}\n${r.stderr}`;
  expect(r.signal, `killed (a hang?): ${what}`).toBe(null);
  expect(r.code, what).toBe(2);
  expect(r.stderr, what).toMatch(pattern);
  expect(r.stderr, what).not.toMatch(/\n\s+at /);
}

/** Every file under `dir`, with its content, to show that nothing changed. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    if (statSync(join(dir, f)).isFile()) out[f] = readFileSync(join(dir, f)).toString('base64');
  }
  return out;
}

let variant = '';
let aFile = '';
let notes = '';

beforeAll(async () => {
  // a variant without calibration (mxfp4-w4a8 quantizes activations per block, from the tensor itself)
  variant = join(work, 'variant');
  const r = await dq(['quantize', TINY, '--preset', 'mxfp4-w4a8', '--out', variant], 120_000);
  expect(r.code, r.stderr).toBe(0);
  aFile = join(work, 'a-file.txt');
  writeFileSync(aFile, 'not ours\n');
  notes = join(work, 'notes');
  mkdirSync(notes);
  writeFileSync(join(notes, 'notes.txt'), 'hi\n');
}, 120_000);

describe('no hangs', () => {
  it('integers above 2^53 in --seeds, --class and a batch file are refused at once', async () => {
    const o = join(work, 'big');
    const batch = join(work, 'big-jobs.json');
    writeFileSync(batch, JSON.stringify({ out: 'runs', pipelines: [TINY], presets: ['mxfp4-w4a8'], steps: ['quantize', 'compare'], compare: { seeds: BIG, steps: 2 } }));
    const [sample, cls, compare, exp, bat] = await dqAll([
      ['sample', TINY, '--steps', '2', '--class', '0', '--seeds', BIG, '--out', o],
      ['sample', TINY, '--steps', '2', '--class', BIG, '--seeds', '0', '--out', o],
      ['compare', TINY, '--variants', 'fp', '--steps', '2', '--seeds', BIG, '--out', o],
      ['export', variant, '--seeds', BIG, '--steps', '2', '--out', o],
      ['batch', batch],
    ]);
    for (const r of [sample, compare, exp]) expectError(r!, new RegExp(`--seeds: ${BIG} is too large \\(at most \\d+\\)`));
    expectError(cls!, new RegExp(`--class: ${BIG} is too large`));
    expectError(bat!, new RegExp(`compare\\.seeds.*${BIG} is too large`));
    expect(existsSync(o)).toBe(false);
    expect(existsSync(join(work, 'runs'))).toBe(false);
  });

  it('lists and counts beyond the limits are refused with the limit named', async () => {
    const o = join(work, 'many');
    // (the other lists and counts share these parsers: test/unit/core/ranges.test.ts)
    const [seeds, calib, evalN] = await dqAll([
      ['sample', TINY, '--steps', '2', '--class', '0', '--seeds', '0-99999', '--out', o],
      ['calibrate', TINY, '--samples', '100000000', '--out', join(work, 'c.json')],
      ['eval', TINY, '--samples', '100000000', '--out', o],
    ]);
    expectError(seeds!, /--seeds: more than 1024 values \(the limit\)/);
    expectUsage(calib!, /--samples must be an integer from 1 to 100000/);
    expectUsage(evalN!, /--samples must be an integer from 2 to 100000/);
    expect(existsSync(o)).toBe(false);
  });

  it('--out under /proc fails with a clear line (recursive mkdir looped there)', async () => {
    const p = '/proc/self/dq-out';
    const runs = await dqAll([
      ['sample', TINY, '--steps', '2', '--class', '0', '--seeds', '0', '--quiet', '--out', p],
      ['quantize', TINY, '--preset', 'mxfp4-w4a8', '--out', p],
      ['export', variant, '--steps', '2', '--seeds', '0', '--out', p],
      ['serve', '--port', '0', '--workspace', p],
    ]);
    for (const r of runs) expectError(r, /(--out|--workspace): cannot write to \/proc\/self \(/);
  });
});

describe('nothing we did not write is deleted', () => {
  it('quantize and export refuse an existing folder of other files, a file, and the other kind of output', async () => {
    const before = { notes: snapshot(notes), variant: snapshot(variant), file: readFileSync(aFile, 'utf8') };
    const [q, e, eFile, eVariant] = await dqAll([
      ['quantize', TINY, '--preset', 'mxfp4-w4a8', '--out', notes],
      ['export', variant, '--no-verify', '--calib-images', '1', '--out', notes],
      ['export', variant, '--no-verify', '--calib-images', '1', '--out', aFile],
      ['export', variant, '--no-verify', '--calib-images', '1', '--out', variant],
    ]);
    expectError(q!, /--out: .*notes is not empty and not a variant written by dq quantize; choose another folder, or use --force/);
    expectError(e!, /--out: .*notes is not empty and not an export written by dq export; .*--force/);
    expectError(eFile!, /--out: .*a-file\.txt is a file; .*--force/);
    expectError(eVariant!, /--out: .*variant is a variant written by dq quantize, not an export/);
    expect(snapshot(notes)).toEqual(before.notes);
    expect(snapshot(variant)).toEqual(before.variant);
    expect(readFileSync(aFile, 'utf8')).toBe(before.file);
  });

  it('quantize replaces its own variant, cleans what a killed run left, and --force replaces the rest', async () => {
    // a killed quantize leaves .<out>.<pid>.tmp: one of a process that is gone, one of a live process (this one)
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    for (const pid of [dead, process.pid]) mkdirSync(join(work, `.variant.${pid}.tmp`), { recursive: true });
    const forced = join(work, 'forced');
    mkdirSync(forced);
    writeFileSync(join(forced, 'old.txt'), 'x');
    const [again, force] = await dqAll([
      ['quantize', TINY, '--preset', 'mxfp4-w4a8', '--out', variant],
      ['quantize', TINY, '--preset', 'mxfp4-w4a8', '--force', '--out', forced],
    ]);
    for (const r of [again, force]) expect(r!.code, r!.stderr).toBe(0);
    expect(existsSync(join(work, `.variant.${dead}.tmp`))).toBe(false);
    expect(existsSync(join(work, `.variant.${process.pid}.tmp`))).toBe(true);
    for (const d of [variant, forced]) expect(JSON.parse(readFileSync(join(d, 'manifest.json'), 'utf8')).kind).toBe('dq-variant');
    expect(existsSync(join(forced, 'old.txt'))).toBe(false);
    expect(readdirSync(work).filter((f) => f.endsWith('.old'))).toEqual([]);
  });
});

describe('output paths are checked before the work starts', () => {
  it('--out under a file, or a file where a folder belongs', async () => {
    const under = join(aFile, 'out');
    const runs = await dqAll([
      ['sample', TINY, '--steps', '2', '--class', '0', '--seeds', '0', '--out', under],
      ['sample', TINY, '--steps', '2', '--class', '0', '--seeds', '0', '--out', aFile],
      ['quantize', TINY, '--preset', 'mxfp4-w4a8', '--out', under],
      ['export', variant, '--steps', '2', '--seeds', '0', '--out', under],
      // no --quiet: a single stderr line also shows that no sampling (no progress line) came first
      ['compare', TINY, '--variants', 'fp', '--steps', '2', '--seeds', '0-3', '--out', under],
    ]);
    for (const r of runs) expectError(r, /--out: .*a-file\.txt is a file, not a folder/);
    expect(readFileSync(aFile, 'utf8')).toBe('not ours\n');
  });

  it('calibrate --out must name a file, not a folder', async () => {
    const [r] = await dqAll([['calibrate', TINY, '--samples', '2', '--steps', '2', '--out', notes]]);
    expectError(r!, /--out: .*notes is a folder; give a file name/);
    expect(readdirSync(notes)).toEqual(['notes.txt']);
  });

  it('a folder that cannot be written (refused to root too) in every write command and serve --workspace', async () => {
    const ro = '/sys/dq-out';
    const runs = await dqAll([
      ['sample', TINY, '--steps', '2', '--class', '0', '--seeds', '0', '--out', ro],
      ['calibrate', TINY, '--samples', '2', '--steps', '2', '--out', join(ro, 'c.json')],
      ['quantize', TINY, '--preset', 'mxfp4-w4a8', '--out', ro],
      ['export', variant, '--steps', '2', '--seeds', '0', '--out', ro],
      ['compare', TINY, '--variants', 'fp', '--steps', '2', '--seeds', '0', '--out', ro],
      ['eval', TINY, '--presets', 'mxfp4-w4a8', '--samples', '2', '--steps', '2', '--out', ro],
      ['serve', '--port', '0', '--workspace', ro],
    ]);
    for (const r of runs) expectError(r, /(--out|--workspace): cannot write to \/sys \(permission denied\)/);
  });

  it('serve --port outside 0..65535', async () => {
    const [r] = await dqAll([['serve', '--port', '99999', '--workspace', join(work, 'ws')]]);
    expectUsage(r!, /--port must be an integer from 0 to 65535/);
    expect(existsSync(join(work, 'ws'))).toBe(false);
  });

  it('--verbose (or DQ_DEBUG=1) adds the underlying text on a second line', async () => {
    // without it: the one line of the read-only test above
    const args = ['sample', TINY, '--seeds', '0', '--out', '/sys/dq-out'];
    const [verbose, debug] = await Promise.all([dq(['--verbose', ...args]), dq(args, 30_000, { DQ_DEBUG: '1' })]);
    for (const r of [verbose, debug]) {
      expect(r.code, r.stderr).toBe(1);
      const lines = r.stderr.trim().split('\n');
      expect(lines, r.stderr).toHaveLength(2);
      expect(lines[0]).toBe('dq: error: --out: cannot write to /sys (permission denied)');
      expect(lines[1]).toMatch(/^dq: detail: EACCES: permission denied/);
    }
  });
});
