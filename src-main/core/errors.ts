/**
 * Errors the engine reports to users. Every shell (CLI, Electron, browser mode) prints or transports
 * `code` and `message` as data; a stack trace is only for bugs, never for a user's bad input.
 */
export type DqErrorCode =
  | 'NOT_FOUND'
  | 'NOT_A_PIPELINE'
  | 'MISSING_COMPONENT'
  | 'BAD_CONFIG'
  | 'BAD_MODEL'
  | 'NOT_DIFFUSION'
  /** A pipeline of a family the studio does not open yet (text-to-image, DiT, video). */
  | 'UNSUPPORTED'
  | 'BAD_ARGUMENT'
  | 'PROVIDER_UNAVAILABLE'
  | 'CANCELLED';

export class DqError extends Error {
  readonly code: DqErrorCode;
  /** The underlying text (e.g. onnxruntime's own message), for `--verbose`; never part of the one-line message. */
  readonly detail?: string;
  constructor(code: DqErrorCode, message: string, detail?: string) {
    super(message);
    this.name = 'DqError';
    this.code = code;
    if (detail !== undefined) this.detail = detail;
  }
}

export function isDqError(e: unknown): e is DqError {
  return e instanceof DqError;
}

/** A schema issue's path as users write it: `weights.format.bits`, `prompts[3]`. */
export function fieldPath(path: readonly PropertyKey[]): string {
  return path.map((k, i) => (typeof k === 'number' ? `[${k}]` : `${i ? '.' : ''}${String(k)}`)).join('');
}
