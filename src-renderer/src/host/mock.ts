/** A host with no engine behind it: fixed data, for component tests and UI work without Electron. */
import type { StudioApi } from '../../../src-main/contract/api';

export function mockHost(): StudioApi {
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
  };
}
