import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkReplaceable, cleanStaleOutputs, makeDirs, ownOutputOf, prepareOutput, swapIntoPlace } from '../../../src-main/core/fsutil';

const work = mkdtempSync(join(tmpdir(), 'dq-fsutil-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

let n = 0;
const fresh = () => join(work, `case-${++n}`);

/** A folder that looks like our own output: a variant, or an export (a variant manifest with an export section). */
function ours(dir: string, kind: 'variant' | 'export'): string {
  mkdirSync(join(dir, 'quant'), { recursive: true });
  writeFileSync(join(dir, 'quant', 'params.json'), '{}');
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ kind: 'dq-variant', version: 1, ...(kind === 'export' ? { export: { version: 1 } } : {}) }));
  return dir;
}

/** The pid of a process that has exited. */
const deadPid = () => spawnSync(process.execPath, ['-e', '0']).pid!;

describe('makeDirs', () => {
  it('creates missing parents one by one', () => {
    const d = join(fresh(), 'a', 'b', 'c');
    makeDirs(d);
    expect(existsSync(d)).toBe(true);
    makeDirs(d); // existing: fine
  });
  it('fails under /proc instead of looping (Node\'s recursive mkdir never returns there)', () => {
    expect(() => makeDirs('/proc/self/dq-x/y', '--out')).toThrow(/^--out: cannot create \/proc\/self\/dq-x/);
  });
  it('names a file in the way', () => {
    const f = join(fresh() + '.txt');
    writeFileSync(f, 'hi');
    expect(() => makeDirs(join(f, 'x'), '--out')).toThrow(`--out: ${f} is a file, not a folder`);
  });
});

describe('prepareOutput', () => {
  it('accepts a new path below a writable folder and creates nothing', () => {
    const p = join(fresh(), 'x', 'y');
    expect(prepareOutput(p, 'folder')).toBe(p);
    expect(existsSync(join(p, '..'))).toBe(false);
    expect(readdirSync(work).filter((f) => f.startsWith('.'))).toEqual([]); // the write probe is gone
  });
  it('refuses a path under a regular file, and a file where a folder belongs', () => {
    const f = fresh();
    writeFileSync(f, 'hi');
    expect(() => prepareOutput(join(f, 'x', 'y'), 'folder')).toThrow(`--out: ${f} is a file, not a folder`);
    expect(() => prepareOutput(f, 'folder')).toThrow(`--out: ${f} is a file, not a folder`);
    expect(readFileSync(f, 'utf8')).toBe('hi');
  });
  it('refuses a folder where a file (a calibration record) belongs', () => {
    const d = fresh();
    mkdirSync(d);
    expect(() => prepareOutput(d, 'file')).toThrow(/^--out: .* is a folder; give a file name/);
    expect(prepareOutput(join(d, 'rec.json'), 'file')).toBe(join(d, 'rec.json'));
  });
  it('refuses folders that cannot be written, also as root', () => {
    // /sys refuses new entries even to root; /proc/self takes no new files
    expect(() => prepareOutput('/sys/dq-x', 'folder', '--workspace')).toThrow('--workspace: cannot write to /sys (permission denied)');
    expect(() => prepareOutput('/sys', 'folder')).toThrow('--out: cannot write to /sys (permission denied)');
    expect(() => prepareOutput('/proc/self/x', 'folder')).toThrow(/^--out: cannot write to \/proc\/self \(/);
  });
  it('refuses an empty path', () => expect(() => prepareOutput(' ', 'folder')).toThrow('--out: the path is empty'));
});

describe('replacing an output folder', () => {
  it('recognises our variants and exports only', () => {
    expect(ownOutputOf(ours(fresh(), 'variant'))).toBe('variant');
    expect(ownOutputOf(ours(fresh(), 'export'))).toBe('export');
    const half = ours(fresh(), 'variant');
    rmSync(join(half, 'quant'), { recursive: true });
    expect(ownOutputOf(half)).toBe(null);
    const other = fresh();
    mkdirSync(other);
    writeFileSync(join(other, 'manifest.json'), '{"kind": "something-else"}');
    expect(ownOutputOf(other)).toBe(null);
  });
  it('allows nothing, an empty folder, our own output of the same kind; refuses the rest unless forced', () => {
    const empty = fresh();
    mkdirSync(empty);
    expect(() => checkReplaceable(join(work, 'none'), 'variant', false)).not.toThrow();
    expect(() => checkReplaceable(empty, 'variant', false)).not.toThrow();
    expect(() => checkReplaceable(ours(fresh(), 'variant'), 'variant', false)).not.toThrow();
    const notes = fresh();
    mkdirSync(notes);
    writeFileSync(join(notes, 'notes.txt'), 'hi');
    expect(() => checkReplaceable(notes, 'variant', false)).toThrow(`--out: ${notes} is not empty and not a variant written by dq quantize; choose another folder, or use --force to replace it`);
    expect(() => checkReplaceable(ours(fresh(), 'variant'), 'export', false)).toThrow(/is a variant written by dq quantize, not an export written by dq export/);
    const f = fresh();
    writeFileSync(f, 'hi');
    expect(() => checkReplaceable(f, 'export', false)).toThrow(`--out: ${f} is a file; choose another path, or use --force to replace it`);
    expect(() => checkReplaceable(notes, 'variant', true)).not.toThrow();
    expect(() => prepareOutput(notes, { replace: 'variant' })).toThrow(/not empty/);
  });
  it('swaps a finished folder into place, keeping what it may not replace', () => {
    const out = ours(fresh(), 'variant');
    const tmp = fresh();
    mkdirSync(tmp);
    writeFileSync(join(tmp, 'new'), '1');
    swapIntoPlace(tmp, out, 'variant');
    expect(readdirSync(out)).toEqual(['new']);
    expect(readdirSync(work).filter((f) => f.endsWith('.old'))).toEqual([]);
    const tmp2 = fresh();
    mkdirSync(tmp2);
    expect(() => swapIntoPlace(tmp2, out, 'variant')).toThrow(/not empty/); // 'new' alone is not a variant
    expect(readdirSync(out)).toEqual(['new']);
  });
});

describe('cleanStaleOutputs', () => {
  it('removes the temporaries of dead processes, keeps a live one\'s, and restores an interrupted swap', () => {
    const dir = fresh();
    mkdirSync(dir);
    const out = join(dir, 'v');
    const dead = deadPid();
    for (const f of [`.v.${dead}.tmp`, `.v.${process.ppid}.tmp`, `.vv.${dead}.tmp`, `v.${dead}.old`]) mkdirSync(join(dir, f));
    writeFileSync(join(dir, `v.${dead}.old`, 'marker'), '');
    cleanStaleOutputs(out);
    expect(readdirSync(dir).sort()).toEqual([`.v.${process.ppid}.tmp`, `.vv.${dead}.tmp`, 'v'].sort());
    expect(readdirSync(out)).toEqual(['marker']); // the previous output, put back
    mkdirSync(join(dir, `v.${dead}.old`));
    cleanStaleOutputs(out); // the output exists: the leftover goes
    expect(existsSync(join(dir, `v.${dead}.old`))).toBe(false);
    expect(readdirSync(out)).toEqual(['marker']);
  });
});
