/** The browser-mode host: the contract over HTTP to `dq serve`, authenticated by the page's token. */
import type { Result, StudioApi } from '../../../src-main/contract/api';

export function browserHost(token: string): StudioApi {
  const call = async <T>(name: string, ...args: unknown[]): Promise<Result<T>> => {
    try {
      const res = await fetch(`/api/${name}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-dq-token': token },
        body: JSON.stringify(args),
      });
      if (!res.ok) return { ok: false, error: { code: `HTTP_${res.status}`, message: await res.text() } };
      return (await res.json()) as Result<T>;
    } catch (e) {
      return { ok: false, error: { code: 'DISCONNECTED', message: `the studio server is not reachable (${(e as Error).message})` } };
    }
  };
  return {
    listModels: () => call('listModels'),
    hostInfo: () => call('hostInfo'),
  };
}
