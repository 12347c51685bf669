/**
 * The renderer talks to an abstract host that implements the contract: Electron (window.dq from the preload),
 * or a mock (for component tests and for opening the UI with no engine behind it, flagged in the UI).
 */
import type { StudioApi } from '../../../src-main/contract/api';
import { mockHost } from './mock';

declare global {
  interface Window {
    dq?: StudioApi;
  }
}

export function pickHost(): { api: StudioApi; kind: 'electron' | 'mock' } {
  if (typeof window !== 'undefined' && window.dq) return { api: window.dq, kind: 'electron' };
  return { api: mockHost(), kind: 'mock' };
}
