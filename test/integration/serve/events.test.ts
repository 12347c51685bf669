/**
 * Browser mode's event channel (WebSocket /events): refused without the token, from other origins and other Host
 * headers; with both right, it carries a job's events (started, progress, done) from the host.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { JobEvent } from '../../../src-main/contract/api';
import { createHost, dispatch, type Host } from '../../../src-main/host';
import { serve, type Served } from '../../../src-main/serve/server';
import { tmp } from '../../helpers';

const ui = tmp('dq-ui-');
let s: Served;
let host: Host;

beforeAll(async () => {
  mkdirSync(join(ui, 'assets'));
  writeFileSync(join(ui, 'index.html'), '<!doctype html><html><head><title>t</title></head><body></body></html>');
  host = createHost('browser', 'test');
  s = await serve({ host, uiDir: ui });
});
afterAll(async () => {
  await s.close();
  await host.dispose();
  rmSync(host.workspace, { recursive: true, force: true });
  rmSync(ui, { recursive: true, force: true });
});

const origin = () => `http://127.0.0.1:${s.port}`;

/** Connects; resolves with the socket once open, or with the HTTP status of the refusal. */
function connect(query: string, headers: Record<string, string>): Promise<WebSocket | number> {
  return new Promise((ok, fail) => {
    const ws = new WebSocket(`ws://127.0.0.1:${s.port}/events${query}`, { headers });
    ws.on('open', () => ok(ws));
    ws.on('unexpected-response', (_req, res) => ok(res.statusCode ?? 0));
    ws.on('error', fail);
  });
}

describe('dq serve: /events', () => {
  it('refuses a connection without the token', async () => expect(await connect('', { origin: origin() })).toBe(401));
  it('refuses a wrong token', async () => expect(await connect('?token=nope', { origin: origin() })).toBe(401));
  it('refuses other origins and connections without an Origin, even with the token', async () => {
    expect(await connect(`?token=${s.token}`, { origin: 'http://evil.example' })).toBe(403);
    expect(await connect(`?token=${s.token}`, {})).toBe(403);
  });
  it('refuses other Host headers (DNS rebinding)', async () => {
    expect(await connect(`?token=${s.token}`, { origin: origin(), host: `attacker.example:${s.port}` })).toBe(403);
  });
  it('accepts the cookie as the token', async () => {
    const ws = await connect('', { origin: origin(), cookie: `dq_token=${s.token}` });
    expect(ws).toBeInstanceOf(WebSocket);
    (ws as WebSocket).close();
  });

  it("carries a job's events; a request for an unknown job comes back as data", async () => {
    const ws = (await connect(`?token=${s.token}`, { origin: origin() })) as WebSocket;
    const events: JobEvent[] = [];
    const finished = new Promise<void>((ok) =>
      ws.on('message', (m) => {
        const e = JSON.parse(String(m)) as JobEvent;
        events.push(e);
        if (e.kind === 'done' || e.kind === 'error') ok();
      }),
    );
    const presets = await host.listPresets();
    if (!presets.ok) throw new Error(presets.error.message);
    const preset = presets.value.find((p) => p.name === 'int4-w4a16')!.recipe;
    const recipe = { ...preset, weights: { ...preset.weights, rounding: 'nearest' as const } }; // weight-only, round to nearest: no calibration needed
    const r = await dispatch(host, 'startJob', [{ kind: 'quantize', model: 'tiny-mnist', recipe, calibration: null }]);
    expect(r.ok).toBe(true);
    await finished;
    ws.close();
    const jobId = (r as { ok: true; value: { jobId: string } }).value.jobId;
    expect(events[0]).toMatchObject({ jobId, kind: 'started' });
    const last = events.at(-1)!;
    expect(last).toMatchObject({ jobId, kind: 'done', result: { kind: 'quantize', name: 'int4-w4a16' } });
    expect(await dispatch(host, 'cancelJob', [jobId])).toEqual({ ok: true, value: { cancelled: false } });
    expect(await dispatch(host, 'getCalibration', ['calibrate-99-abc'])).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
    expect(await dispatch(host, 'readArtifact', [jobId, '../etc/passwd'])).toMatchObject({ ok: false, error: { code: 'BAD_REQUEST' } });
    expect(await dispatch(host, 'startJob', [{ kind: 'calibrate', model: 'tiny-mnist', samples: -1, steps: 5 }])).toMatchObject({ ok: false, error: { code: 'BAD_REQUEST' } });
    expect(await dispatch(host, 'startJob', [{ kind: 'rm -rf', model: 'x' }])).toMatchObject({ ok: false, error: { code: 'BAD_REQUEST' } });
    // the field named as the user knows it, never zod's raw wording
    const cases: [unknown, string][] = [
      [{ kind: 'calibrate', model: 'tiny-mnist', samples: null, steps: 5 }, "startJob: field 'samples' is empty (number expected)"],
      [{ kind: 'calibrate', model: 'tiny-mnist', steps: 5 }, "startJob: field 'samples' is missing (number expected)"],
      [{ kind: 'calibrate', model: 'tiny-mnist', samples: 0, steps: 5 }, "startJob: field 'samples' must be at least 1"],
      [{ kind: 'sample', model: 'tiny-mnist', prompts: ['a', 7], seeds: [0], steps: 5 }, "startJob: field 'prompts[1]' must be of type string, not number"],
    ];
    for (const [spec, message] of cases) expect(await dispatch(host, 'startJob', [spec])).toEqual({ ok: false, error: { code: 'BAD_REQUEST', message } });
    expect((await dispatch(host, 'cancelJob', ['../x'])).ok).toBe(false);
  }, 60_000);
});
