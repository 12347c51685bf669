/**
 * The fuses a packaged studio flips (src-main/electron/fuses.ts), applied to a file laid out as Electron binaries
 * hold their fuse wire (the sentinel, the wire's version and length, one byte per fuse, every fuse "inherit" as
 * shipped): each lands as configured and nothing else in the file changes. The Electron binary itself cannot be
 * downloaded on our CI machines; on one that has it, `npm run fuses -- <binary>` does the same to the real thing.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { applyStudioFuses } from '../../../src-main/electron/fuses';

const SENTINEL = 'dL7pKGdnNz796PbbjQWNKmHXBZaB9tsX';
const INHERIT = 144;
const work = mkdtempSync(join(tmpdir(), 'dq-fuses-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function fakeBinary(name: string, withSentinel = true): { path: string; bytes: Buffer; wireAt: number } {
  const head = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 37) % 251));
  const wire = withSentinel ? Buffer.concat([Buffer.from(SENTINEL, 'ascii'), Buffer.from([1, 8]), Buffer.alloc(8, INHERIT)]) : Buffer.alloc(0);
  const tail = Buffer.from(Array.from({ length: 1024 }, (_, i) => (i * 11) % 241));
  const bytes = Buffer.concat([head, wire, tail]);
  const path = join(work, name);
  writeFileSync(path, bytes);
  return { path, bytes, wireAt: head.length + SENTINEL.length + 2 };
}

describe('the packaged app\'s fuses', () => {
  it('turns RunAsNode, NODE_OPTIONS, --inspect and file:// privileges off and ASAR integrity and cookie encryption on', async () => {
    const f = fakeBinary('electron');
    const wire = await applyStudioFuses(f.path);
    expect(wire).toEqual({
      RunAsNode: 'off',
      EnableCookieEncryption: 'on',
      EnableNodeOptionsEnvironmentVariable: 'off',
      EnableNodeCliInspectArguments: 'off',
      EnableEmbeddedAsarIntegrityValidation: 'on',
      OnlyLoadAppFromAsar: 'on',
      LoadBrowserProcessSpecificV8Snapshot: 'off',
      GrantFileProtocolExtraPrivileges: 'off',
    });
    // the eight fuse bytes ('0' off, '1' on) and nothing else changed
    const after = readFileSync(f.path);
    expect(after.subarray(f.wireAt, f.wireAt + 8).toString('ascii')).toBe('01001100');
    expect(Buffer.compare(after.subarray(0, f.wireAt), f.bytes.subarray(0, f.wireAt))).toBe(0);
    expect(Buffer.compare(after.subarray(f.wireAt + 8), f.bytes.subarray(f.wireAt + 8))).toBe(0);
  });

  it('refuses a file that is not an Electron binary', async () => {
    const f = fakeBinary('not-electron', false);
    await expect(applyStudioFuses(f.path)).rejects.toThrow(/sentinel/);
  });
});
