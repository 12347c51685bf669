/**
 * Electron main process: one window, sandboxed, context-isolated, no Node in the renderer, a strict CSP.
 * Every IPC request is validated (src-main/host.ts) before it reaches the engine.
 *
 * Hardening (Electron's security checklist):
 * - the page is served from our own `dq-studio://app/` scheme (only files under the built renderer folder, with the
 *   CSP as a response header), not `file://`, so the page's origin grants nothing on the file system;
 * - every permission request and check is denied: the studio uses no camera, microphone, notifications,
 *   geolocation, clipboard-read, MIDI, HID, USB or serial;
 * - navigation and new windows are refused; IPC answers only our own page;
 * - job workers run as Electron utility processes, so the packaged binary can have the RunAsNode fuse off
 *   (src-main/electron/fuses.ts lists the fuses a package must flip).
 */
import { app, BrowserWindow, dialog, ipcMain, net, protocol, session, shell, utilityProcess, type IpcMainInvokeEvent } from 'electron';
import { extname, join, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { IPC_EVENT, IPC_PREFIX, Requests } from '../contract/api.js';
import { createHost, dispatch, type Host } from '../host.js';
import type { FromWorker, SpawnWorker } from '../jobs/protocol.js';

let host: Host | null = null;

const SCHEME = 'dq-studio';
const ORIGIN = `${SCHEME}://app/`;
const RENDERER_DIR = resolve(import.meta.dirname, '../renderer');

/** Only our own page may call the host (not a frame or a page navigated elsewhere). */
function trustedSender(e: IpcMainInvokeEvent): boolean {
  const url = e.senderFrame?.url ?? '';
  const dev = process.env.ELECTRON_RENDERER_URL;
  if (dev) return url.startsWith(dev);
  return url.startsWith(ORIGIN);
}

const CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";
const TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml', '.png': 'image/png', '.json': 'application/json', '.woff2': 'font/woff2' };

// a standard, secure scheme: 'self' in the CSP, fetch and relative URLs work as on https
protocol.registerSchemesAsPrivileged([{ scheme: SCHEME, privileges: { standard: true, secure: true, supportFetchAPI: true } }]);

/** dq-studio://app/<path>: a file under the renderer folder, never outside it, with the CSP header. */
async function serveRenderer(req: Request): Promise<Response> {
  const url = new URL(req.url);
  const rel = decodeURIComponent(url.pathname === '/' ? '/index.html' : url.pathname);
  const file = resolve(RENDERER_DIR, `.${rel}`);
  if (url.host !== 'app' || !file.startsWith(RENDERER_DIR + sep)) return new Response('not found', { status: 404 });
  const r = await net.fetch(pathToFileURL(file).href).catch(() => null);
  if (!r || !r.ok) return new Response('not found', { status: 404 });
  return new Response(r.body, { status: 200, headers: { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream', 'Content-Security-Policy': CSP } });
}

/** Job workers as utility processes (no RunAsNode needed); the runner's messages travel over their parentPort. */
const utilityWorker: SpawnWorker = (entry) => {
  const child = utilityProcess.fork(entry, [], { stdio: ['ignore', 'ignore', 'pipe'], serviceName: 'DQ Studio job' });
  let alive = true;
  child.on('exit', () => (alive = false));
  return {
    send: (m) => {
      if (alive) child.postMessage(m);
    },
    onMessage: (l) => void child.on('message', (m: unknown) => l(m as FromWorker)),
    onExit: (l) => void child.on('exit', (code) => l(code, null)),
    onError: (l) => void child.on('error', (type: string, location: string) => l(new Error(`${type} at ${location}`))),
    onStderr: (l) => void child.stderr?.on('data', (b: Buffer) => l(b.toString('utf8'))),
    kill: () => {
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
      else child.kill();
    },
  };
};

function createWindow(): void {
  const win = new BrowserWindow({
    width: 1280,
    height: 800,
    title: 'DQ Studio',
    webPreferences: {
      preload: join(import.meta.dirname, '../preload/index.cjs'),
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      webSecurity: true,
    },
  });
  win.webContents.setWindowOpenHandler(() => ({ action: 'deny' }));
  // job events (progress, done, error) go to the window; the preload hands them to the renderer's listeners
  const unsubscribe = host!.subscribe((e) => {
    if (!win.isDestroyed()) win.webContents.send(IPC_EVENT, e);
  });
  win.on('closed', unsubscribe);
  win.webContents.on('will-navigate', (e) => e.preventDefault());
  if (process.env.ELECTRON_RENDERER_URL) void win.loadURL(process.env.ELECTRON_RENDERER_URL);
  else void win.loadURL(`${ORIGIN}index.html`);
}

void app.whenReady().then(() => {
  const ses = session.defaultSession;
  ses.webRequest.onHeadersReceived((details, cb) => {
    cb({ responseHeaders: { ...details.responseHeaders, 'Content-Security-Policy': [CSP] } });
  });
  // nothing the studio does needs a permission: deny every request and every check
  ses.setPermissionRequestHandler((_wc, _permission, cb) => cb(false));
  ses.setPermissionCheckHandler(() => false);
  ses.setDevicePermissionHandler(() => false);
  protocol.handle(SCHEME, serveRenderer);
  // long jobs run in worker processes (src-main/jobs); this main process stays free for the window
  host = createHost('electron', app.getVersion(), {
    workspace: join(app.getPath('userData'), 'workspace', String(Date.now())),
    workerEntry: join(app.getAppPath(), 'src-main', 'jobs', 'worker-entry.mjs'),
    spawnWorker: utilityWorker,
    // native UI: a result's folder in the file manager, a folder picker for opening pipelines
    desktop: {
      reveal: async (path) => {
        const err = await shell.openPath(path);
        if (err) throw new Error(`cannot open ${path}: ${err}`);
      },
      pickFolder: async () => {
        const win = BrowserWindow.getFocusedWindow();
        const opts = { title: 'Open a pipeline folder', properties: ['openDirectory' as const] };
        const r = win ? await dialog.showOpenDialog(win, opts) : await dialog.showOpenDialog(opts);
        return r.canceled ? null : (r.filePaths[0] ?? null);
      },
    },
  });
  const h = host;
  for (const name of Object.keys(Requests)) {
    ipcMain.handle(IPC_PREFIX + name, (e, ...args: unknown[]) => {
      if (!trustedSender(e)) return { ok: false, error: { code: 'FORBIDDEN', message: 'requests come from the studio page only' } };
      return dispatch(h, name, args);
    });
  }
  createWindow();
  app.on('activate', () => {
    if (BrowserWindow.getAllWindows().length === 0) createWindow();
  });
});

app.on('will-quit', () => {
  void host?.dispose();
});

app.on('window-all-closed', () => {
  if (process.platform !== 'darwin') app.quit();
});
