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
  | 'BAD_ARGUMENT'
  | 'PROVIDER_UNAVAILABLE'
  | 'CANCELLED';

export class DqError extends Error {
  readonly code: DqErrorCode;
  constructor(code: DqErrorCode, message: string) {
    super(message);
    this.name = 'DqError';
    this.code = code;
  }
}

export function isDqError(e: unknown): e is DqError {
  return e instanceof DqError;
}
