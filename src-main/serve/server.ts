/**
 * Browser mode (`dq serve`): the studio's renderer and contract over HTTP on 127.0.0.1 only.
 * - A random token is required on every request: `?token=` on the first page load (which sets an HttpOnly,
 *   SameSite=Strict cookie for the page's assets), the `x-dq-token` header on API calls.
 * - Cross-origin requests are refused (Origin must be this server's), and so are Host headers other than
 *   127.0.0.1/localhost on our port (DNS rebinding).
 * - API: POST /api/<request> with a JSON array of arguments; the reply is the contract's Result as JSON.
 * - Events: a WebSocket at /events carries the contract's JobEvents (server to page only). The connection needs
 *   the token (`?token=` or the cookie) and this server's Origin, like every request.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { extname, join, normalize, resolve, sep } from 'node:path';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { JobEvent, StudioApi } from '../contract/api.js';
import { DqError } from '../core/errors.js';
import { dispatch } from '../host.js';

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.png': 'image/png', '.svg': 'image/svg+xml', '.webp': 'image/webp', '.json': 'application/json', '.woff2': 'font/woff2',
};
const MAX_BODY = 1 << 20;

export interface ServeOptions {
  /** The contract; with `subscribe`, its job events are pushed to pages over /events. */
  host: StudioApi & { subscribe?(listener: (e: JobEvent) => void): () => void };
  /** Folder with the built renderer (index.html). */
  uiDir: string;
  port?: number;
  token?: string;
}

export interface Served {
  server: Server;
  url: string;
  port: number;
  token: string;
  close(): Promise<void>;
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function cookieToken(req: IncomingMessage): string | null {
  const m = /(?:^|;\s*)dq_token=([A-Za-z0-9_-]+)/.exec(req.headers.cookie ?? '');
  return m?.[1] ?? null;
}

function send(res: ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8', extra: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, 'x-content-type-options': 'nosniff', 'cache-control': 'no-store', ...extra });
  res.end(body);
}

export async function serve(opts: ServeOptions): Promise<Served> {
  const uiDir = resolve(opts.uiDir);
  if (!existsSync(join(uiDir, 'index.html'))) {
    throw new DqError('NOT_FOUND', `the UI is not built (no ${join(uiDir, 'index.html')}): run \`npm run build\` first`);
  }
  const token = opts.token ?? randomBytes(24).toString('base64url');
  let port = 0;
  const allowedHosts = () => [`127.0.0.1:${port}`, `localhost:${port}`];
  const allowedOrigins = () => allowedHosts().map((h) => `http://${h}`);

  const server = createServer((req, res) => {
    void handle(req, res).catch((e) => send(res, 500, `internal error: ${(e as Error).message}`));
  });

  // job events: one WebSocket per page, server to page only
  const wss = new WebSocketServer({ noServer: true, maxPayload: 4096 });
  const sockets = new Set<WebSocket>();
  const unsubscribe = opts.host.subscribe?.((e) => {
    const msg = JSON.stringify(e);
    for (const ws of sockets) if (ws.readyState === ws.OPEN) ws.send(msg);
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const refuse = (status: number, why: string) => {
      socket.end(`HTTP/1.1 ${status} ${why}\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(why)}\r\n\r\n${why}`);
    };
    if (!allowedHosts().includes(req.headers.host ?? '')) return refuse(403, 'forbidden host');
    // browsers always send Origin on WebSocket connections: it must be this server's
    if (!allowedOrigins().includes(req.headers.origin ?? '')) return refuse(403, 'cross-origin connections are refused');
    const url = new URL(req.url ?? '/', `http://127.0.0.1:${port}`);
    if (url.pathname !== '/events') return refuse(404, 'not found');
    const given = url.searchParams.get('token') ?? cookieToken(req);
    if (!given || !same(given, token)) return refuse(401, 'a valid token is required');
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.add(ws);
      ws.on('close', () => sockets.delete(ws));
      ws.on('error', () => sockets.delete(ws));
      // nothing is accepted from the page on this channel
      ws.on('message', () => ws.close(1003, 'requests go over HTTP'));
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!allowedHosts().includes(req.headers.host ?? '')) return send(res, 403, 'forbidden host');
    const origin = req.headers.origin;
    if (origin !== undefined && !allowedOrigins().includes(origin)) return send(res, 403, 'cross-origin requests are refused');
    if (req.headers['sec-fetch-site'] === 'cross-site') return send(res, 403, 'cross-origin requests are refused');
    const url = new URL(req.url ?? '/', `http://127.0.0.1:${port}`);
    const given = url.searchParams.get('token') ?? (req.headers['x-dq-token'] as string | undefined) ?? cookieToken(req);
    if (!given || !same(given, token)) return send(res, 401, 'a valid token is required (use the URL `dq serve` printed)');

    if (url.pathname.startsWith('/api/')) {
      if (req.method !== 'POST') return send(res, 405, 'use POST', 'text/plain', { allow: 'POST' });
      if (!origin) return send(res, 403, 'API requests must come from the studio page');
      const name = url.pathname.slice('/api/'.length);
      let raw = '';
      for await (const chunk of req) {
        raw += chunk;
        if (raw.length > MAX_BODY) return send(res, 413, 'request too large');
      }
      let args: unknown;
      try {
        args = raw ? JSON.parse(raw) : [];
      } catch {
        return send(res, 400, JSON.stringify({ ok: false, error: { code: 'BAD_REQUEST', message: 'the body is not JSON' } }), 'application/json');
      }
      const result = await dispatch(opts.host, name, Array.isArray(args) ? args : [args]);
      return send(res, 200, JSON.stringify(result), 'application/json');
    }

    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'method not allowed');
    let path: string;
    try {
      path = decodeURIComponent(url.pathname);
    } catch {
      return send(res, 400, 'bad request: the path has a malformed %-escape');
    }
    const rel = normalize(path).replace(/^[/\\]+/, '');
    const file = resolve(uiDir, rel || 'index.html');
    if (file !== uiDir && !file.startsWith(uiDir + sep)) return send(res, 404, 'not found');
    if (!existsSync(file) || !statSync(file).isFile()) return send(res, 404, 'not found');
    let body: Buffer | string = readFileSync(file);
    const headers: Record<string, string> = {};
    if (file.endsWith('index.html')) {
      // the page learns its token from a meta tag; its assets ride on the cookie
      body = body.toString('utf8').replace('<head>', `<head>\n    <meta name="dq-token" content="${token}" />`);
      headers['set-cookie'] = `dq_token=${token}; HttpOnly; SameSite=Strict; Path=/`;
    }
    res.writeHead(200, { 'content-type': MIME[extname(file)] ?? 'application/octet-stream', 'x-content-type-options': 'nosniff', 'cache-control': 'no-store', ...headers });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(opts.port ?? 0, '127.0.0.1', () => ok());
  });
  port = (server.address() as { port: number }).port;
  return {
    server,
    port,
    token,
    url: `http://127.0.0.1:${port}/?token=${token}`,
    close: () =>
      new Promise<void>((ok) => {
        unsubscribe?.();
        for (const ws of sockets) ws.terminate();
        wss.close();
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}
