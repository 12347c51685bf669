#!/usr/bin/env node
// Entry point of the `dq` command. The CLI is TypeScript; running it through tsx costs ~1 s at every start (the
// loader hooks and transforms of ~150 modules), so the first run bundles it with esbuild (tsx's own dependency)
// into node_modules/.cache/dq-cli/cli.mjs, and later runs import that bundle directly (~0.3 s to --help). The
// bundle is rebuilt whenever a source file under src-main/ or kernels/ is newer than it; packages stay external.
// If esbuild is missing or the build fails, the CLI runs through tsx as before. DQ_CLI_TSX=1 forces tsx.
import { existsSync, mkdirSync, readdirSync, renameSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bundle = join(root, 'node_modules', '.cache', 'dq-cli', 'cli.mjs');

/** The newest modification time of the CLI's sources (TypeScript under src-main/ and kernels/). */
function newestSource() {
  let newest = 0;
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(ts|mts|js|mjs|json)$/.test(e.name)) newest = Math.max(newest, statSync(p).mtimeMs);
    }
  };
  for (const d of ['src-main', 'kernels']) walk(join(root, d));
  return Math.max(newest, statSync(join(root, 'package.json')).mtimeMs);
}

async function build() {
  const esbuild = createRequire(createRequire(import.meta.url).resolve('tsx/package.json'))('esbuild');
  mkdirSync(dirname(bundle), { recursive: true });
  const tmp = `${bundle}.${process.pid}.tmp`;
  await esbuild.build({
    entryPoints: [join(root, 'src-main', 'cli', 'main.ts')],
    bundle: true, platform: 'node', format: 'esm', target: 'node20', packages: 'external', outfile: tmp, logLevel: 'silent',
  });
  renameSync(tmp, bundle); // atomic: a concurrent run sees the old bundle or the new one
}

async function load() {
  if (process.env.DQ_CLI_TSX !== '1') {
    try {
      if (!existsSync(bundle) || statSync(bundle).mtimeMs < newestSource()) await build();
      return await import(pathToFileURL(bundle).href);
    } catch (e) {
      if (process.env.DQ_VERBOSE === '1') console.error(`dq: running through tsx (the bundle could not be built: ${e.message})`);
    }
  }
  const { register } = await import('tsx/esm/api');
  register();
  return import('../src-main/cli/main.ts');
}

const { main } = await load();
process.exitCode = await main(process.argv.slice(2));
