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

/**
 * Runs a long engine call that Ctrl-C cancels: SIGINT aborts the signal it is given (the engine then stops, leaving
 * no half-written output), and the handler is removed however the call ends.
 */
export async function untilInterrupted<T>(run: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once('SIGINT', stop);
  try {
    return await run(ac.signal);
  } finally {
    process.off('SIGINT', stop);
  }
}
