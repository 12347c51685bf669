/** Errors as data: DqError keeps its code; anything else is reported as INTERNAL. */
import type { ApiError } from '../contract/api.js';
import { isDqError } from '../core/errors.js';

export function toApiError(e: unknown): ApiError {
  if (isDqError(e)) return { code: e.code, message: e.message };
  return { code: 'INTERNAL', message: e instanceof Error ? e.message : String(e) };
}
