/**
 * The renderer talks to an abstract host that implements the contract: Electron (window.dq from the preload),
 * browser mode (`dq serve`, token in a meta tag), or a mock (component tests, UI work with no engine; the UI
 * says so).
 */
import type { StudioClient } from '../../../src-main/contract/api';
import { browserHost } from './browser';
import { mockHost } from './mock';

declare global {
  interface Window {
    dq?: StudioClient;
  }
}

export function pickHost(): { api: StudioClient; kind: 'electron' | 'browser' | 'mock' } {
  if (typeof window !== 'undefined' && window.dq) return { api: window.dq, kind: 'electron' };
  const token = typeof document !== 'undefined' ? document.querySelector('meta[name="dq-token"]')?.getAttribute('content') : null;
  if (token) return { api: browserHost(token), kind: 'browser' };
  return { api: mockHost(), kind: 'mock' };
}
