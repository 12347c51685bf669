import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const TINY = join(ROOT, 'models', 'tiny-mnist');
export const CLASSIFIER = join(ROOT, 'models', 'mnist-classifier', 'model.onnx');

export function tmp(prefix = 'dq-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function dq(args: string[], env: Record<string, string> = {}): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'dq.js'), ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 300_000,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** A required capability is one CI installs (.ci/run sets the variable); elsewhere its absence skips with a reason. */
export function required(envVar: string): boolean {
  return process.env[envVar] === '1';
}

/** dq's stdout, or an error carrying its stderr when the command fails. */
export function dqOk(args: string[], env: Record<string, string> = {}): string {
  const r = dq(args, env);
  if (r.code !== 0) throw new Error(`dq failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

/** The largest |got - ref| and the largest |ref|, to bound a difference relative to the reference's scale. */
export function worstAgainst(got: ArrayLike<number>, ref: ArrayLike<number>): { worst: number; scale: number } {
  let worst = 0;
  let scale = 0;
  for (let k = 0; k < ref.length; k++) {
    worst = Math.max(worst, Math.abs(got[k]! - ref[k]!));
    scale = Math.max(scale, Math.abs(ref[k]!));
  }
  return { worst, scale };
}
