/**
 * Electron main process: one window, sandboxed, context-isolated, no Node in the renderer, a strict CSP.
 * Every IPC request is validated (src-main/host.ts) before it reaches the engine.
 */
import { app, BrowserWindow, ipcMain, session, type IpcMainInvokeEvent } from 'electron';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { IPC_EVENT, IPC_PREFIX, Requests } from '../contract/api.js';
import { createHost, dispatch, type Host } from '../host.js';

let host: Host | null = null;

/** Only our own page may call the host (not a frame or a page navigated elsewhere). */
function trustedSender(e: IpcMainInvokeEvent): boolean {
  const url = e.senderFrame?.url ?? '';
  const dev = process.env.ELECTRON_RENDERER_URL;
  if (dev) return url.startsWith(dev);
  return url.startsWith(pathToFileURL(join(import.meta.dirname, '../renderer/')).href);
}

const CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

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
  else void win.loadFile(join(import.meta.dirname, '../renderer/index.html'));
}

void app.whenReady().then(() => {
  session.defaultSession.webRequest.onHeadersReceived((details, cb) => {
    cb({ responseHeaders: { ...details.responseHeaders, 'Content-Security-Policy': [CSP] } });
  });
  // long jobs run in worker processes (src-main/jobs); this main process stays free for the window
  host = createHost('electron', app.getVersion(), {
    workspace: join(app.getPath('userData'), 'workspace', String(Date.now())),
    workerEntry: join(app.getAppPath(), 'src-main', 'jobs', 'worker-entry.mjs'),
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
