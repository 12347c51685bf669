/** Preload (sandboxed, CommonJS): exposes exactly the contract as window.dq. */
import { contextBridge, ipcRenderer } from 'electron';
import type { StudioApi } from '../contract/api.js';

const call = (name: keyof StudioApi) => (...args: unknown[]) => ipcRenderer.invoke(`dq:${name}`, ...args);

const api: StudioApi = {
  listModels: call('listModels') as StudioApi['listModels'],
  hostInfo: call('hostInfo') as StudioApi['hostInfo'],
};

contextBridge.exposeInMainWorld('dq', api);
