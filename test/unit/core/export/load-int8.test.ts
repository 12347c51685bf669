/** When an export's u8 int8 weights are loaded as s8 (export/load-int8.ts): the decision and its setting. */
import { describe, expect, it } from 'vitest';
import { loadPolicy, signedAtLoad } from '../../../../src-main/core/export/load-int8';

describe('int8 weights at load', () => {
  it('u8 exports on the CPU provider load as s8 only where the u8s8 kernels are exact, unless told otherwise', () => {
    expect(signedAtLoad('u8', 'cpu', 'vnni', 'auto')).toBe(true);
    expect(signedAtLoad('u8', 'cpu', 'avx2', 'auto')).toBe(false);
    expect(signedAtLoad('u8', 'cpu', 'unknown', 'auto')).toBe(false);
    expect(signedAtLoad('u8', 'cpu', 'vnni', 'keep')).toBe(false);
    expect(signedAtLoad('u8', 'cpu', 'avx2', 's8')).toBe(true);
    // other storages and other providers are left as exported
    for (const w of ['s8', 's7', undefined]) expect(signedAtLoad(w, 'cpu', 'vnni', 's8')).toBe(false);
    expect(signedAtLoad('u8', 'webgpu', 'vnni', 'auto')).toBe(false);
  });

  it('reads DQ_INT8_WEIGHTS_AT_LOAD and refuses values it does not know', () => {
    expect(loadPolicy(undefined)).toBe('auto');
    expect(loadPolicy('')).toBe('auto');
    expect(loadPolicy('keep')).toBe('keep');
    expect(loadPolicy(' s8 ')).toBe('s8');
    expect(() => loadPolicy('u8')).toThrow(/auto, keep or s8/);
  });
});
