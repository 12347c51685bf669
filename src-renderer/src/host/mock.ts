/** A host with no engine behind it: fixed data, for component tests and UI work without Electron. Jobs refuse. */
import type { Result, StudioClient } from '../../../src-main/contract/api';

const noEngine = async (): Promise<Result<never>> => ({ ok: false, error: { code: 'NO_ENGINE', message: 'no engine is connected (mock host)' } });

export function mockHost(): StudioClient {
  return {
    async listModels() {
      return {
        ok: true,
        value: [
          { id: 'tiny-mnist', path: '/mock/models/tiny-mnist', kind: 'diffusion-pipeline', title: 'tiny-mnist (mock)', summary: 'Mock entry: no engine is connected.', classes: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'], sampleShape: [1, 28, 28] },
        ],
      };
    },
    async hostInfo() {
      return { ok: true, value: { shell: 'mock', version: '0', providers: [] } };
    },
    async modelInfo() {
      return {
        ok: true,
        value: {
          path: '/mock/models/tiny-mnist', className: 'mock', sampleShape: [1, 28, 28], classes: [], scheduler: { trainSteps: 1000, betaSchedule: 'linear', prediction: 'epsilon' },
          unet: { bytes: 0, parameters: 0, nodes: 0, ops: {} }, layers: [], attention: 0, temporalFeatures: [], shortcutSplits: [], variant: null,
        },
      };
    },
    async listPresets() {
      return { ok: true, value: [] };
    },
    startJob: noEngine,
    cancelJob: noEngine,
    async listJobs() {
      return { ok: true, value: [] };
    },
    getCalibration: noEngine,
    readArtifact: noEngine,
    onEvent() {
      return () => {};
    },
  };
}
