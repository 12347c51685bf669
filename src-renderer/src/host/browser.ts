/**
 * The browser-mode host: the contract over HTTP to `dq serve`, authenticated by the page's token; job events
 * arrive over a WebSocket (/events) that carries the same token and reconnects when the server comes back.
 */
import type { JobEvent, Result, StudioApi, StudioClient } from '../../../src-main/contract/api';

export function browserHost(token: string): StudioClient {
  const call =
    <K extends keyof StudioApi>(name: K) =>
    async (...args: unknown[]): Promise<Awaited<ReturnType<StudioApi[K]>>> => {
      type R = Awaited<ReturnType<StudioApi[K]>>;
      try {
        const res = await fetch(`/api/${name}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-dq-token': token },
          body: JSON.stringify(args),
        });
        if (!res.ok) return { ok: false, error: { code: `HTTP_${res.status}`, message: await res.text() } } as R;
        return (await res.json()) as R;
      } catch (e) {
        return { ok: false, error: { code: 'DISCONNECTED', message: `the studio server is not reachable (${(e as Error).message})` } } satisfies Result<never> as R;
      }
    };

  const listeners = new Set<(e: JobEvent) => void>();
  let socket: WebSocket | null = null;
  const connect = () => {
    if (socket || !listeners.size) return;
    const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/events?token=${encodeURIComponent(token)}`);
    socket = ws;
    ws.onmessage = (m) => {
      let e: JobEvent;
      try {
        e = JSON.parse(String(m.data)) as JobEvent;
      } catch {
        return;
      }
      for (const l of listeners) l(e);
    };
    ws.onclose = () => {
      socket = null;
      if (listeners.size) setTimeout(connect, 1000);
    };
  };

  return {
    listModels: call('listModels'),
    hostInfo: call('hostInfo'),
    modelInfo: call('modelInfo'),
    listPresets: call('listPresets'),
    startJob: call('startJob'),
    cancelJob: call('cancelJob'),
    listJobs: call('listJobs'),
    getCalibration: call('getCalibration'),
    readArtifact: call('readArtifact'),
    variantLayers: call('variantLayers'),
    tweakVariant: call('tweakVariant'),
    revealJob: call('revealJob'),
    pickFolder: call('pickFolder'),
    onEvent(listener) {
      listeners.add(listener);
      connect();
      return () => {
        listeners.delete(listener);
        if (!listeners.size) socket?.close();
      };
    },
  };
}
