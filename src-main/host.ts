/**
 * The contract implemented over the engine, shared by every shell (Electron main, browser mode).
 * Errors become data here: DqError keeps its code; anything else is reported as INTERNAL.
 */
import * as ort from 'onnxruntime-node';
import type { ApiError, HostInfo, RequestName, Result, StudioApi } from './contract/api.js';
import { Requests } from './contract/api.js';
import { isDqError } from './core/errors.js';
import { listEmbeddedModels } from './core/models.js';

export function toApiError(e: unknown): ApiError {
  if (isDqError(e)) return { code: e.code, message: e.message };
  return { code: 'INTERNAL', message: e instanceof Error ? e.message : String(e) };
}

async function wrap<T>(f: () => T | Promise<T>): Promise<Result<T>> {
  try {
    return { ok: true, value: await f() };
  } catch (e) {
    return { ok: false, error: toApiError(e) };
  }
}

export function createHost(shell: HostInfo['shell'], version: string): StudioApi {
  return {
    listModels: () => wrap(() => listEmbeddedModels()),
    hostInfo: () => wrap(() => ({ shell, version, providers: ort.listSupportedBackends().filter((b) => b.bundled).map((b) => b.name) })),
  };
}

/** Validates raw arguments from the other side of a boundary, then calls the host. */
export async function dispatch(host: StudioApi, name: string, args: unknown[]): Promise<Result<unknown>> {
  if (!Object.hasOwn(Requests, name)) return { ok: false, error: { code: 'BAD_REQUEST', message: `unknown request '${name}'` } };
  const parsed = Requests[name as RequestName].safeParse(args);
  if (!parsed.success) return { ok: false, error: { code: 'BAD_REQUEST', message: `${name}: ${parsed.error.issues[0]?.message ?? 'bad arguments'}` } };
  const fn = host[name as RequestName] as (...a: unknown[]) => Promise<Result<unknown>>;
  return fn(...(parsed.data as unknown[]));
}
