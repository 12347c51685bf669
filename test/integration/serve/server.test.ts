/** Browser mode refuses requests without the token and from other origins; with both right, it serves the contract. */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHost } from '../../../src-main/host';
import { serve, type Served } from '../../../src-main/serve/server';
import { tmp } from '../../helpers';

const ui = tmp('dq-ui-');
let s: Served;
const host = createHost('browser', 'test');

beforeAll(async () => {
  mkdirSync(join(ui, 'assets'));
  writeFileSync(join(ui, 'index.html'), '<!doctype html><html><head><title>t</title></head><body></body></html>');
  writeFileSync(join(ui, 'assets', 'a.js'), 'console.log(1)');
  s = await serve({ host, uiDir: ui });
});
afterAll(async () => {
  await s.close();
  await host.dispose();
  rmSync(ui, { recursive: true, force: true });
});

/** A raw HTTP request, so that Host and Origin are exactly what we say. */
function raw(path: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((ok, fail) => {
    const req = request({ host: '127.0.0.1', port: s.port, path, method: opts.method ?? 'GET', headers: opts.headers }, (res) => {
      let b = '';
      res.on('data', (c) => (b += c));
      res.on('end', () => ok({ status: res.statusCode ?? 0, body: b, headers: res.headers }));
    });
    req.on('error', fail);
    req.end(opts.body);
  });
}

const origin = () => `http://127.0.0.1:${s.port}`;
const api = (headers: Record<string, string>) => raw('/api/listModels', { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: '[]' });

describe('dq serve', () => {
  it('listens on 127.0.0.1 only', () => {
    expect((s.server.address() as { address: string }).address).toBe('127.0.0.1');
    expect(s.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/\?token=[A-Za-z0-9_-]{32}$/);
  });
  it('refuses the page without the token', async () => expect((await raw('/')).status).toBe(401));
  it('refuses a wrong token', async () => expect((await raw('/?token=nope')).status).toBe(401));
  it('serves the page with the token, sets the cookie and injects the token', async () => {
    const r = await raw(`/?token=${s.token}`);
    expect(r.status).toBe(200);
    expect(String(r.headers['set-cookie'])).toMatch(/dq_token=.+; HttpOnly; SameSite=Strict/);
    expect(r.body).toContain(`<meta name="dq-token" content="${s.token}" />`);
  });
  it('serves assets with the cookie, not without', async () => {
    expect((await raw('/assets/a.js')).status).toBe(401);
    expect((await raw('/assets/a.js', { headers: { cookie: `dq_token=${s.token}` } })).status).toBe(200);
  });
  it('refuses API calls without the token', async () => expect((await api({ origin: origin() })).status).toBe(401));
  it('refuses API calls from another origin, even with the token', async () => {
    expect((await api({ origin: 'http://evil.example', 'x-dq-token': s.token })).status).toBe(403);
    expect((await api({ origin: origin(), 'x-dq-token': s.token, 'sec-fetch-site': 'cross-site' })).status).toBe(403);
  });
  it('refuses other Host headers (DNS rebinding)', async () => {
    expect((await api({ host: `attacker.example:${s.port}`, origin: origin(), 'x-dq-token': s.token })).status).toBe(403);
  });
  it('refuses path traversal', async () => expect((await raw(`/../../etc/passwd?token=${s.token}`)).status).toBe(404));
  it('answers 400 to a malformed %-escape in the path, not 500', async () => {
    for (const path of ['/%E0%A4%A', '/assets/%', '/%ZZ']) {
      const r = await raw(`${path}?token=${s.token}`);
      expect(r.status, path).toBe(400);
      expect(r.body).not.toMatch(/URI malformed|internal error/);
    }
  });
  it('answers the contract with token and same origin; bad requests come back as data', async () => {
    const r = await api({ origin: origin(), 'x-dq-token': s.token });
    expect(r.status).toBe(200);
    const res = JSON.parse(r.body);
    expect(res.ok).toBe(true);
    expect(res.value.map((m: { id: string }) => m.id)).toEqual(expect.arrayContaining(['tiny-mnist', 'mnist-classifier']));
    const bad = JSON.parse((await raw('/api/deleteEverything', { method: 'POST', headers: { origin: origin(), 'x-dq-token': s.token }, body: '[]' })).body);
    expect(bad).toEqual({ ok: false, error: { code: 'BAD_REQUEST', message: "unknown request 'deleteEverything'" } });
    const badArgs = JSON.parse((await raw('/api/listModels', { method: 'POST', headers: { origin: origin(), 'x-dq-token': s.token }, body: '[1]' })).body);
    expect(badArgs.ok).toBe(false);
    expect(badArgs.error.code).toBe('BAD_REQUEST');
  });
});
