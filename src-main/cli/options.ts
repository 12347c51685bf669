/** Option parsers shared by the `dq` commands. */
import { InvalidArgumentError } from 'commander';

/** A numeric option parser: rejects non-numbers, values below `min`, and non-integers when `int`. */
export function num(name: string, min: number, int = false) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || (int && !Number.isInteger(n))) {
      throw new InvalidArgumentError(`${name} must be ${int ? 'an integer' : 'a number'} >= ${min}`);
    }
    return n;
  };
}
