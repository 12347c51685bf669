/**
 * The Electron fuses a packaged DQ Studio flips on its Electron binary (Electron's security checklist): switches
 * compiled into the binary that no code or environment can turn back on. No packaging is set up in this repository
 * yet; a package step runs `npm run fuses -- <path to the packaged Electron binary>` (or calls applyStudioFuses) on
 * the copy it ships, never on node_modules' development binary (OnlyLoadAppFromAsar would stop `npm run dev`).
 *
 * - RunAsNode off: ELECTRON_RUN_AS_NODE cannot turn the app into a plain Node.js; the studio's job workers are
 *   Electron utility processes (electron/main.ts), which do not need it.
 * - NODE_OPTIONS and --inspect arguments ignored: no code or debugger injected at start-up.
 * - Cookie encryption on (the studio keeps no cookies, but nothing stored in the profile is left in clear).
 * - The app only from its ASAR archive, whose integrity is checked against the hash in the binary.
 * - No extra privileges for file:// (the page comes from the dq-studio:// scheme).
 * - The browser-process-specific V8 snapshot stays off (not used).
 */
import { FuseV1Options, FuseVersion, flipFuses, getCurrentFuseWire, type FuseV1Config } from '@electron/fuses';

export const STUDIO_FUSES = {
  version: FuseVersion.V1,
  strictlyRequireAllFuses: true,
  [FuseV1Options.RunAsNode]: false,
  [FuseV1Options.EnableCookieEncryption]: true,
  [FuseV1Options.EnableNodeOptionsEnvironmentVariable]: false,
  [FuseV1Options.EnableNodeCliInspectArguments]: false,
  [FuseV1Options.EnableEmbeddedAsarIntegrityValidation]: true,
  [FuseV1Options.OnlyLoadAppFromAsar]: true,
  [FuseV1Options.LoadBrowserProcessSpecificV8Snapshot]: false,
  [FuseV1Options.GrantFileProtocolExtraPrivileges]: false,
} satisfies FuseV1Config;

/** Flips the studio's fuses on an Electron binary and returns the wire as read back: fuse name -> on/off. */
export async function applyStudioFuses(binary: string): Promise<Record<string, 'on' | 'off' | 'other'>> {
  await flipFuses(binary, STUDIO_FUSES);
  const wire = await getCurrentFuseWire(binary);
  const out: Record<string, 'on' | 'off' | 'other'> = {};
  for (const [k, v] of Object.entries(wire)) {
    if (k === 'version') continue;
    const name = FuseV1Options[Number(k)] ?? k;
    out[name] = v === 49 ? 'on' : v === 48 ? 'off' : 'other'; // FuseState.ENABLE / DISABLE
  }
  return out;
}

// `npm run fuses -- <binary>`
if (process.argv[1] && /fuses\.[cm]?[jt]s$/.test(process.argv[1])) {
  const binary = process.argv[2];
  if (!binary) {
    console.error('usage: npm run fuses -- <path to the packaged Electron binary>');
    process.exit(2);
  }
  applyStudioFuses(binary).then(
    (wire) => {
      for (const [k, v] of Object.entries(wire)) console.log(`${k}: ${v}`);
    },
    (e: Error) => {
      console.error(`fuses: ${binary}: ${e.message}`);
      process.exit(1);
    },
  );
}
