// Lint rules that keep the layers apart (see README, "Architecture"):
//   renderer -> contract <- shells -> core -> kernels  (the renderer may use kernels too)
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import svelte from 'eslint-plugin-svelte';
import globals from 'globals';
import { builtinModules } from 'node:module';

const nodeBuiltins = [...builtinModules, ...builtinModules.map((m) => `node:${m}`)];
const noNode = { paths: nodeBuiltins.map((name) => ({ name, message: 'this layer runs in the browser too: no Node.js modules' })) };
const ban = (group, message) => ({ group, message });
const onlyOnnxTs = ban(['onnxruntime-*'], 'only src-main/core/runtime/onnx.ts imports onnxruntime (the one place that decides the backend)');
const noElectron = { name: 'electron', message: 'src-main/core must run without Electron (CLI, browser mode, workers)' };
const noShells = ban(['**/cli/**', '**/electron/**', '**/serve/**', '**/src-renderer/**', 'electron/*'], 'core must not depend on the shells or the renderer');
/** The engine's rule, with more banned patterns for a folder inside it (an ESLint rule set per file replaces, not adds). */
const coreImports = (...more) => ['error', { paths: [noElectron], patterns: [noShells, ...more, onlyOnnxTs] }];

export default tseslint.config(
  { ignores: ['node_modules/', 'out/', 'dist/', '.train-cache/', 'test-results/', 'models/', 'tools/', 'shared/', '.bench/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  ...svelte.configs['flat/recommended'],
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['**/*.svelte', '**/*.svelte.ts'],
    languageOptions: { parserOptions: { parser: tseslint.parser, extraFileExtensions: ['.svelte'] }, globals: { ...globals.browser } },
  },
  {
    // kernels: pure TypeScript numerics, usable from main and renderer alike.
    files: ['kernels/**'],
    rules: {
      'no-restricted-imports': ['error', {
        ...noNode,
        patterns: [ban(['electron', '**/src-main/**', '**/src-renderer/**', 'onnxruntime-*', 'sharp'], 'kernels/ depends on nothing but itself')],
      }],
    },
  },
  {
    // the contract: types and validators shared by renderer and hosts; no Node, no engine.
    files: ['src-main/contract/**'],
    rules: {
      'no-restricted-imports': ['error', {
        ...noNode,
        patterns: [ban(['electron', '**/core/**', '**/cli/**', '**/electron/**', '**/src-renderer/**'], 'the contract depends on nothing but zod and kernels')],
      }],
    },
  },
  {
    // the engine: pure Node; never Electron, never a shell or the renderer.
    files: ['src-main/core/**'],
    rules: { 'no-restricted-imports': coreImports() },
  },
  {
    // inside the engine: a pipeline is its components; quantized variants and exports replace the denoiser from
    // above (core/open.ts hands the pipeline loader a denoiser loader), so the pipeline layer never imports them.
    files: ['src-main/core/pipeline/**'],
    rules: {
      'no-restricted-imports': coreImports(
        ban(['**/quant/**', '**/export/**', '**/compare/**', '**/batch/**', '**/jobs/**', '**/core/open', '**/core/open.js', '../open', '../open.js'], 'core/pipeline knows nothing of variants, exports or jobs: they build on it (a denoiser loader is handed in)'),
      ),
    },
  },
  {
    // the native boundary: the one module that imports onnxruntime-node.
    files: ['src-main/core/runtime/onnx.ts'],
    rules: {
      'no-restricted-imports': ['error', { paths: [noElectron] }],
    },
  },
  {
    // the shared host and the job runner behind the shells: no onnxruntime of their own either.
    files: ['src-main/*.ts', 'src-main/jobs/**', 'src-main/electron/**', 'bench/**'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [onlyOnnxTs, ban(['**/src-renderer/**'], 'shells talk to the renderer through the contract only')],
      }],
    },
  },
  {
    // only the Electron shell may import electron.
    files: ['src-main/cli/**', 'src-main/serve/**'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: [{ name: 'electron', message: 'only src-main/electron may import electron' }],
        patterns: [ban(['**/src-renderer/**'], 'shells talk to the renderer through the contract only'), onlyOnnxTs],
      }],
    },
  },
  {
    // the renderer: browser code; sees the contract and kernels only.
    files: ['src-renderer/**'],
    languageOptions: { globals: { ...globals.browser } },
    rules: {
      'no-restricted-imports': ['error', {
        paths: [...noNode.paths, { name: 'electron', message: 'the renderer talks to its host through the contract' }],
        patterns: [ban(['**/src-main/core/**', '**/src-main/cli/**', '**/src-main/electron/**', '**/src-main/serve/**', 'onnxruntime-*', 'sharp'], 'the renderer may import src-main/contract and kernels only')],
      }],
    },
  },
);
