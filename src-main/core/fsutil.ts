/** Filesystem helpers shared by every job that writes results. */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync, type Stats } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { DqError } from './errors.js';

/** Writes a file atomically: a temporary file beside it, then rename. Readers see the old or the new file. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  makeDirs(dirname(path));
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

const REASONS: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  ENAMETOOLONG: 'name too long',
  ENOENT: 'this file system does not allow new files there',
};

/** The system's own text of an error (for --verbose). */
function raw(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function reason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code ?? '';
  return REASONS[code] ?? (code || (e instanceof Error ? e.message : String(e)));
}

function statOf(path: string, what: string): Stats | undefined {
  try {
    return statSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    if (code === 'EACCES' || code === 'EPERM') throw new DqError('BAD_ARGUMENT', `${what}: cannot reach ${path} (permission denied)`, raw(e));
    throw new DqError('BAD_ARGUMENT', `${what}: cannot use ${path} (${reason(e)})`, raw(e));
  }
}

/**
 * Creates a folder and its missing parents, one level at a time. Node's own recursive mkdir never returns under
 * /proc (ENOENT for a child of a folder that exists makes it retry forever); this one fails with a clear message.
 */
export function makeDirs(dir: string, what = 'output'): void {
  const abs = resolve(dir);
  const missing: string[] = [];
  for (let p = abs; ; p = dirname(p)) {
    const st = statOf(p, what);
    if (st) {
      if (!st.isDirectory()) throw new DqError('BAD_ARGUMENT', `${what}: ${p} is a file, not a folder`);
      break;
    }
    missing.push(p);
    if (dirname(p) === p) break;
  }
  for (const p of missing.reverse()) {
    try {
      mkdirSync(p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST' && statOf(p, what)?.isDirectory()) continue;
      const r = reason(e);
      throw new DqError('BAD_ARGUMENT', r === 'permission denied' ? `${what}: cannot write to ${dirname(p)} (permission denied)` : `${what}: cannot create ${p} (${r})`, raw(e));
    }
  }
}

/** Creates and removes a file in `dir`: the only test of writability that also holds for root and odd file systems. */
function probeWritable(dir: string, what: string): void {
  const probe = join(dir, `.dq-write-test.${process.pid}.tmp`);
  try {
    closeSync(openSync(probe, 'w'));
  } catch (e) {
    throw new DqError('BAD_ARGUMENT', `${what}: cannot write to ${dir} (${reason(e)})`, raw(e));
  }
  try {
    unlinkSync(probe);
  } catch {
    /* written but not removable: the write test passed; the runner cleans such temporaries */
  }
}

/** Our own outputs that `dq quantize` and `dq export` may replace. */
export type OwnOutput = 'variant' | 'export';

/** What a folder is, if we wrote it: a variant (manifest.json of kind dq-variant + quant/params.json) or an export. */
export function ownOutputOf(dir: string): OwnOutput | null {
  try {
    const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { kind?: unknown; export?: unknown };
    if (m === null || typeof m !== 'object' || m.kind !== 'dq-variant') return null;
    if (!statSync(join(dir, 'quant', 'params.json')).isFile()) return null;
    return m.export !== undefined && m.export !== null ? 'export' : 'variant';
  } catch {
    return null;
  }
}

const OWN_LABEL: Record<OwnOutput, string> = { variant: 'a variant written by dq quantize', export: 'an export written by dq export' };

/**
 * What may sit at an output path that a command replaces as a whole: nothing, an empty folder, or our own output
 * of the same kind. Anything else (a folder with other files, a regular file) is refused unless `force`.
 */
export function checkReplaceable(out: string, own: OwnOutput, force: boolean, what = '--out'): void {
  const st = statOf(out, what);
  if (!st || force) return;
  if (!st.isDirectory()) throw new DqError('BAD_ARGUMENT', `${what}: ${out} is a file; choose another path, or use --force to replace it`);
  if (readdirSync(out).length === 0) return;
  const found = ownOutputOf(out);
  if (found === own) return;
  const is = found ? `is ${OWN_LABEL[found]}, not ${OWN_LABEL[own]}` : `is not empty and not ${OWN_LABEL[own]}`;
  throw new DqError('BAD_ARGUMENT', `${what}: ${out} ${is}; choose another folder, or use --force to replace it`);
}

/** How an output path is used: a folder that files are written into, a single file, or a folder replaced as a whole. */
export type OutputKind = 'folder' | 'file' | { replace: OwnOutput; force?: boolean };

/**
 * Checks an output path before any work starts, so that a bad --out fails at once, never after minutes of work,
 * never by hanging, and never by deleting what we did not write: no part of the path may be a file, the folder
 * that receives the output must be writable (tested by writing, which also holds for root), a 'file' output must
 * not be a folder, and a replaced folder must be ours (checkReplaceable). Creates nothing; returns the absolute path.
 */
export function prepareOutput(path: string, kind: OutputKind, what = '--out'): string {
  if (!path.trim()) throw new DqError('BAD_ARGUMENT', `${what}: the path is empty`);
  const abs = resolve(path);
  const st = statOf(abs, what);
  if (st) {
    if (kind === 'folder') {
      if (!st.isDirectory()) throw new DqError('BAD_ARGUMENT', `${what}: ${abs} is a file, not a folder`);
      probeWritable(abs, what);
      return abs;
    }
    if (kind === 'file') {
      if (st.isDirectory()) throw new DqError('BAD_ARGUMENT', `${what}: ${abs} is a folder; give a file name, e.g. ${join(abs, 'calibration.json')}`);
    } else checkReplaceable(abs, kind.replace, kind.force ?? false, what);
  }
  // the deepest folder that exists receives the new file or folders: it must be a folder, and writable
  let p = dirname(abs);
  for (;;) {
    const s = statOf(p, what);
    if (s) {
      if (!s.isDirectory()) throw new DqError('BAD_ARGUMENT', `${what}: ${p} is a file, not a folder`);
      break;
    }
    if (dirname(p) === p) break;
    p = dirname(p);
  }
  probeWritable(p, what);
  return abs;
}

function alive(pid: number): boolean {
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // it exists, owned by someone else
  }
}

/**
 * Cleans what an earlier run that replaced `out` as a whole (dq quantize, dq export) left when it was killed:
 * `.<name>.<pid>.tmp` folders of processes that are gone are removed, and `<name>.<pid>.old` (killed between the
 * two final renames) is put back when `out` is missing, else removed.
 */
export function cleanStaleOutputs(out: string): void {
  const abs = resolve(out);
  const dir = dirname(abs);
  const stem = `${basename(abs)}.`;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return; // no parent yet: nothing was left
  }
  for (const f of names) {
    const m = f.startsWith(`.${stem}`) ? /^\.(\d+)\.tmp$/.exec(f.slice(stem.length)) : f.startsWith(stem) ? /^(\d+)\.old$/.exec(f.slice(stem.length)) : null;
    if (!m) continue;
    const pid = Number(m[1]);
    if (alive(pid)) continue;
    const p = join(dir, f);
    if (f.endsWith('.old') && !existsSync(abs)) renameSync(p, abs);
    else rmSync(p, { recursive: true, force: true });
  }
}

/**
 * Puts a finished temporary folder in the place of `out`: the previous output is moved aside and removed only
 * after the new one is in place. Checks again (the work may have taken minutes) that what is replaced is ours.
 */
export function swapIntoPlace(tmp: string, out: string, own: OwnOutput, force = false): void {
  checkReplaceable(out, own, force);
  const old = `${out}.${process.pid}.old`;
  const had = existsSync(out);
  if (had) renameSync(out, old);
  try {
    renameSync(tmp, out);
  } catch (e) {
    if (had) renameSync(old, out);
    throw e;
  }
  rmSync(old, { recursive: true, force: true });
}

/** A JSON file's value; a missing or unreadable file is NOT_FOUND, bad JSON BAD_CONFIG, both naming `what` and the path. */
export function readJson(path: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new DqError('NOT_FOUND', `cannot read ${what} (${path}): ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (e) {
    throw new DqError('BAD_CONFIG', `${what} is not valid JSON (${path}): ${(e as Error).message.replace(/\s+/g, ' ').trim()}`);
  }
}

/** The SHA-256 of a file's bytes (hex), read in 8 MB pieces so a large model is never held whole. */
export function sha256File(path: string): string {
  const h = createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(8 << 20);
    for (let n = readSync(fd, buf, 0, buf.length, null); n > 0; n = readSync(fd, buf, 0, buf.length, null)) h.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}
