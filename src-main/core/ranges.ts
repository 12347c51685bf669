import { DqError } from './errors.js';

/** Parses "0-9", "3", "0,2,5" or "0-3,7" into a list of integers (order kept, duplicates dropped). */
export function parseIntList(text: string, what: string, max = 100_000): number[] {
  const out: number[] = [];
  for (const part of text.split(',').map((s) => s.trim())) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) throw new DqError('BAD_ARGUMENT', `${what}: '${part}' is not a number or range like 0-9`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) throw new DqError('BAD_ARGUMENT', `${what}: range '${part}' runs backwards`);
    if (b - a + out.length >= max) throw new DqError('BAD_ARGUMENT', `${what}: more than ${max} values`);
    for (let v = a; v <= b; v++) if (!out.includes(v)) out.push(v);
  }
  return out;
}
