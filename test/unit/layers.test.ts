/** The lint rules that keep the layers apart really bite (eslint.config.js). */
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const eslint = new ESLint();

async function restricted(file: string, code: string): Promise<string[]> {
  const [res] = await eslint.lintText(code, { filePath: file });
  return res!.messages.filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

describe('layer boundaries', () => {
  it.each([
    ['src-main/core/x.ts', "import { app } from 'electron';"],
    ['src-main/core/x.ts', "import { main } from '../cli/main';"],
    ['kernels/x.ts', "import { readFileSync } from 'node:fs';"],
    ['kernels/x.ts', "import { Session } from '../src-main/core/runtime/onnx';"],
    ['src-renderer/src/x.ts', "import { readFileSync } from 'fs';"],
    ['src-renderer/src/x.ts', "import { sample } from '../../src-main/core/pipeline/sample';"],
    ['src-main/contract/x.ts', "import { DqError } from '../core/errors';"],
    ['src-main/cli/x.ts', "import { app } from 'electron';"],
    ['src-main/core/quant/x.ts', "import * as ort from 'onnxruntime-node';"],
    ['src-main/x.ts', "import * as ort from 'onnxruntime-node';"],
    ['src-main/jobs/x.ts', "import * as ort from 'onnxruntime-node';"],
    ['src-main/cli/x.ts', "import * as ort from 'onnxruntime-node';"],
    ['src-main/core/pipeline/x.ts', "import { readManifest } from '../quant/variant.js';"],
    ['src-main/core/pipeline/x.ts', "import { signedInt8Model } from '../export/load-int8.js';"],
    ['src-main/core/pipeline/x.ts', "import { openPipeline } from '../open.js';"],
    ['src-main/core/pipeline/x.ts', "import { app } from 'electron';"],
    ['src-main/core/pipeline/x.ts', "import * as ort from 'onnxruntime-node';"],
  ])('%s may not: %s', async (file, code) => {
    expect(await restricted(file, code)).not.toEqual([]);
  });

  it.each([
    ['src-main/core/x.ts', "import { readFileSync } from 'node:fs';"],
    ['src-renderer/src/x.ts', "import type { StudioApi } from '../../src-main/contract/api';"],
    ['src-main/electron/x.ts', "import { app } from 'electron';"],
    ['src-main/cli/x.ts', "import { runInfo } from '../core/jobs/info-job';"],
    ['src-main/core/runtime/onnx.ts', "import * as ort from 'onnxruntime-node';"],
    ['src-main/core/pipeline/x.ts', "import { Session } from '../runtime/onnx.js';"],
    ['src-main/core/quant/x.ts', "import { loadPipeline } from '../pipeline/pipeline.js';"],
    ['src-main/core/open.ts', "import { variantDenoiser } from './quant/variant.js';"],
  ])('%s may: %s', async (file, code) => {
    expect(await restricted(file, code)).toEqual([]);
  });
});
