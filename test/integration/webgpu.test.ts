/**
 * The WebGPU execution provider gives the CPU's images. CI runs this on Mesa's lavapipe (software Vulkan from
 * bookworm-backports, installed by .ci/install-system-deps.sh) and sets DQ_REQUIRE_WEBGPU=1, so there a missing
 * adapter fails the test instead of skipping it.
 */
import { afterAll, expect, it } from 'vitest';
import { releaseSessions } from '../../src-main/core/pipeline/pipeline';
import { openPipeline } from '../../src-main/core/open';
import { sample } from '../../src-main/core/pipeline/sample';
import { Session } from '../../src-main/core/runtime/onnx';
import { required, TINY } from '../helpers';
import { join } from 'node:path';

afterAll(releaseSessions);

async function webgpuAvailable(): Promise<string | null> {
  try {
    const s = await Session.create(join(TINY, 'unet', 'model.onnx'), 'webgpu');
    await s.release();
    return s.info.provider === 'webgpu' ? null : (s.info.fallback ?? 'fell back to cpu');
  } catch (e) {
    return (e as Error).message;
  }
}

const why = await webgpuAvailable();
const run = why === null || required('DQ_REQUIRE_WEBGPU');

const title = 'WebGPU sampling matches the CPU (same seeds, 4 images, 6 DDIM steps)';
it.skipIf(!run)(run ? title : `${title}: skipped, no WebGPU adapter here (${why}); .ci/install-system-deps.sh installs lavapipe`, async () => {
  expect(why, 'WebGPU adapter required here (DQ_REQUIRE_WEBGPU=1)').toBeNull();
  const req = { seeds: [0, 1, 2, 3], classes: [0, 3, 5, 8], steps: 6, sampler: 'ddim' as const, guidance: 2 };
  const cpu = await openPipeline(TINY, 'cpu');
  const gpu = await openPipeline(TINY, 'webgpu');
  expect(gpu.session.info.provider).toBe('webgpu');
  const a = await sample(cpu.pipeline, cpu.session, req);
  const b = await sample(gpu.pipeline, gpu.session, req);
  let maxDiff = 0;
  a.images.forEach((img, i) => img.forEach((v, j) => (maxDiff = Math.max(maxDiff, Math.abs(v - b.images[i]![j]!)))));
  console.log(`webgpu vs cpu: max |diff| = ${maxDiff.toExponential(2)}`);
  expect(maxDiff).toBeLessThan(1e-3);
});

