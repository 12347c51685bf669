/** Preload (sandboxed, CommonJS): exposes exactly the contract as window.dq, plus the job event subscription. */
import { contextBridge, ipcRenderer, type IpcRendererEvent } from 'electron';
import type { JobEvent, StudioApi, StudioClient } from '../contract/api.js';

const call =
  <K extends keyof StudioApi>(name: K) =>
  (...args: unknown[]) =>
    ipcRenderer.invoke(`dq:${name}`, ...args) as ReturnType<StudioApi[K]>;

const api: StudioClient = {
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
  onEvent(listener: (e: JobEvent) => void) {
    const h = (_e: IpcRendererEvent, ev: JobEvent) => listener(ev);
    ipcRenderer.on('dq:event', h);
    return () => {
      ipcRenderer.removeListener('dq:event', h);
    };
  },
};

contextBridge.exposeInMainWorld('dq', api);
