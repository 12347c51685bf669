/**
 * Fuzz: a few hundred seeded mutations of the embedded model's unet (byte flips, truncations, protobuf field edits),
 * each run through `dq info` and one sampling step in-process (runInfo, openPipeline + sample). Whatever a broken
 * model does, what comes out is our error (a DqError with a known code, a message free of onnxruntime's C++ text)
 * or images; never a TypeError, RangeError or onnxruntime's raw Error.
 */
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DqError, type DqErrorCode } from '../../src-main/core/errors';
import { runInfo } from '../../src-main/core/jobs/info-job';
import { releaseSessions } from '../../src-main/core/pipeline/pipeline';
import { openPipeline } from '../../src-main/core/open';
import { sample } from '../../src-main/core/pipeline/sample';
import { tmp, TINY } from '../helpers';
import { mutate } from './mutate-onnx';

const COUNT = 300;
const CODES: readonly DqErrorCode[] = ['NOT_FOUND', 'NOT_A_PIPELINE', 'MISSING_COMPONENT', 'BAD_CONFIG', 'BAD_MODEL', 'NOT_DIFFUSION', 'BAD_ARGUMENT', 'PROVIDER_UNAVAILABLE', 'CANCELLED'];
const CPP = /onnxruntime::|\.(?:cc|h|cpp):\d+|onnxruntime_src|\[ONNXRuntimeError\]/;

const work = tmp('dq-fuzz-');
afterAll(async () => {
  await releaseSessions();
  rmSync(work, { recursive: true, force: true });
});

/** What one mutated model did: 'ok', or the error's class and code. */
async function probe(dir: string): Promise<{ stage: string; error: unknown } | null> {
  let stage = 'info';
  try {
    await runInfo(dir);
    stage = 'sample';
    const { pipeline, session } = await openPipeline(dir, 'cpu');
    await sample(pipeline, session, { steps: 1, sampler: 'ddim', guidance: 2, seeds: [0], classes: [3] });
    return null;
  } catch (error) {
    return { stage, error };
  } finally {
    await releaseSessions();
  }
}

describe('fuzz: mutated unets through dq info and one sampling step', () => {
  it(`${COUNT} seeded mutations end in images or one of our errors, never a raw one`, async () => {
    const orig = readFileSync(join(TINY, 'unet', 'model.onnx'));
    const dir = join(work, 'p');
    mkdirSync(join(dir, 'unet'), { recursive: true });
    cpSync(join(TINY, 'model_index.json'), join(dir, 'model_index.json'));
    cpSync(join(TINY, 'scheduler'), join(dir, 'scheduler'), { recursive: true });
    const outside: string[] = [];
    const tally = { ok: 0, info: 0, sample: 0 };
    for (let seed = 0; seed < COUNT; seed++) {
      const { kind, bytes } = mutate(orig, seed);
      writeFileSync(join(dir, 'unet', 'model.onnx'), bytes);
      const r = await probe(dir);
      if (!r) {
        tally.ok++;
        continue;
      }
      tally[r.stage as 'info' | 'sample']++;
      const e = r.error;
      const ours = e instanceof DqError && CODES.includes(e.code) && !CPP.test(e.message) && !e.message.includes('\n');
      if (!ours) outside.push(`seed ${seed} (${kind}, ${r.stage}): ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`.slice(0, 400));
    }
    console.log(`fuzz: ${COUNT} mutations: ${tally.ok} sampled, ${tally.info} refused at load, ${tally.sample} refused at the first step`);
    expect(outside).toEqual([]);
    // the mutations reach both stages: some models load and fail at the first step, some load and sample
    expect(tally.sample).toBeGreaterThan(0);
    expect(tally.ok).toBeGreaterThan(0);
    expect(tally.info).toBeGreaterThan(0);
  }, 120_000);
});
