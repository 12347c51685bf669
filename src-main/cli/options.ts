/** Option parsers shared by the `dq` commands. */
import { InvalidArgumentError } from 'commander';

/**
 * A numeric option parser: rejects non-numbers, values below `min` or above `max` (the limit is named in the
 * message), and non-integers when `int`.
 */
export function num(name: string, min: number, int = false, max = Infinity) {
  return (v: string): number => {
    const n = Number(v);
    const kind = int ? 'an integer' : 'a number';
    if (!Number.isFinite(n) || n < min || n > max || (int && !Number.isInteger(n))) {
      throw new InvalidArgumentError(max === Infinity ? `${name} must be ${kind} >= ${min}` : `${name} must be ${kind} from ${min} to ${max}`);
    }
    return n;
  };
}
