/**
 * Latent consistency models (issue 16, item 4) on the lcm-optimum fixture: a LatentConsistencyModelPipeline as
 * Optimum exports it, whose unet takes diffusers' guidance embedding through `timestep_cond` instead of running the
 * batch twice for classifier-free guidance. The reference embeddings come from tools/make_sd_fixtures.py, which
 * computes diffusers' get_guidance_scale_embedding from its formula in numpy (lcm-optimum.reference.json).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { openPipeline } from '../../src-main/core/open';
import { sample, type SampleRequest } from '../../src-main/core/pipeline/sample';
import { Session, type FeedValue } from '../../src-main/core/runtime/onnx';
import { dq, ROOT, tmp } from '../helpers';

const LCM_DIR = join(ROOT, 'test', 'fixtures', 'lcm-optimum');
const PROMPTS = ['a red seven on a blue background', 'the digit two in green on black'];

interface RefCase {
  guidance: number;
  embedding: number[];
  float32_max_abs_diff: number;
}
const REF = JSON.parse(readFileSync(join(ROOT, 'test', 'fixtures', 'lcm-optimum.reference.json'), 'utf8')) as { time_cond_proj_dim: number; cases: RefCase[] };
const refFor = (g: number): RefCase => {
  const c = REF.cases.find((x) => x.guidance === g);
  if (!c) throw new Error(`no reference embedding for guidance ${g}`);
  return c;
};

// two prompts, one seed: two images
const req = (guidance: number, over: Partial<SampleRequest> = {}): SampleRequest => ({ seeds: [0, 0], classes: [], prompts: PROMPTS, steps: 4, sampler: 'lcm', guidance, ...over });

async function unetFeeds(guidance: number): Promise<{ feeds: Record<string, FeedValue>[]; images: Float32Array[] }> {
  const { pipeline, session } = await openPipeline(LCM_DIR, 'cpu');
  const spy = vi.spyOn(Session.prototype, 'run');
  const r = await sample(pipeline, session, req(guidance));
  const feeds = spy.mock.calls.filter((_, i) => spy.mock.contexts[i] === session).map((c) => c[0] as Record<string, FeedValue>);
  spy.mockRestore();
  return { feeds, images: r.images };
}

function maxDiff(a: Float32Array[], b: Float32Array[]): number {
  let m = 0;
  a.forEach((x, i) => x.forEach((v, j) => (m = Math.max(m, Math.abs(v - b[i]![j]!)))));
  return m;
}

/** Every row of a timestep_cond feed against the reference, within the distance torch's float32 arithmetic has from it. */
function expectEmbeddingRows(f: FeedValue, rows: number, ref: RefCase): void {
  const n = REF.time_cond_proj_dim;
  expect(f.type).toBe('float32');
  expect(f.dims).toEqual([rows, n]);
  const data = f.data as Float32Array;
  const tol = ref.float32_max_abs_diff + 1e-6;
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < n; k++) expect(Math.abs(data[r * n + k]! - ref.embedding[k]!), `row ${r} channel ${k}`).toBeLessThanOrEqual(tol);
  }
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('LCM: guidance through timestep_cond', () => {
  it('openPipeline finds the timestep_cond input and its width; LCM sampler and diffusers\' default guidance 8.5', async () => {
    const { pipeline } = await openPipeline(LCM_DIR, 'cpu');
    expect(pipeline.index.className).toBe('LatentConsistencyModelPipeline');
    expect(pipeline.io.timestepCond).toBe('timestep_cond');
    expect(pipeline.io.widths?.timestepCond).toBe(16);
    expect(REF.time_cond_proj_dim).toBe(16);
    expect(pipeline.index.defaultSampler).toBe('lcm');
    expect(pipeline.index.defaultGuidance).toBe(8.5);
    expect(pipeline.index.sampleShape).toEqual([4, 16, 16]);
  });

  it('guidance 8.5: no CFG doubling, one unet call per step, timestep_cond = get_guidance_scale_embedding(7.5) on every row', async () => {
    const { feeds, images } = await unetFeeds(8.5);
    // diffusers' LCMScheduler.set_timesteps(4) on original_inference_steps 50: every 12.5th of 999, 979, ..., 19
    expect(feeds.map((f) => Number((f.timestep!.data as Float32Array)[0]))).toEqual([999, 759, 499, 259]);
    for (const f of feeds) {
      expect(f.sample!.dims).toEqual([2, 4, 16, 16]);
      expect(f.encoder_hidden_states!.dims).toEqual([2, 77, 32]);
      expectEmbeddingRows(f.timestep_cond!, 2, refFor(8.5));
    }
    // the rows are the two prompts (not a prompt and its unconditional twin)
    const hs = feeds[0]!.encoder_hidden_states!.data as Float32Array;
    let d = 0;
    for (let j = 0; j < 77 * 32; j++) d = Math.max(d, Math.abs(hs[j]! - hs[77 * 32 + j]!));
    expect(d).toBeGreaterThan(1e-3);
    expect(images).toHaveLength(2);
    for (const img of images) {
      expect(img).toHaveLength(3 * 128 * 128);
      expect(img.every(Number.isFinite)).toBe(true);
    }
  });

  it('guidance 1: w = 0, the embedding is sin 0 and cos 1, still one row per image', async () => {
    const { feeds } = await unetFeeds(1);
    expect(feeds).toHaveLength(4);
    const ref = refFor(1);
    expect(ref.embedding).toEqual([...Array<number>(8).fill(0), ...Array<number>(8).fill(1)]);
    for (const f of feeds) {
      expect(f.sample!.dims[0]).toBe(2);
      expectEmbeddingRows(f.timestep_cond!, 2, ref);
    }
  });

  it('the embedding matters: another guidance (2, 3.25) gives its own embedding and different images from the same seeds', async () => {
    const a = await unetFeeds(8.5);
    for (const g of [2, 3.25]) {
      const b = await unetFeeds(g);
      for (const f of b.feeds) expectEmbeddingRows(f.timestep_cond!, 2, refFor(g));
      expect(maxDiff(a.images, b.images)).toBeGreaterThan(1e-3);
    }
    // and the same guidance, the same images
    const c = await unetFeeds(8.5);
    expect(maxDiff(a.images, c.images)).toBe(0);
  });
});

describe('dq sample on an LCM folder', () => {
  it('defaults to the lcm sampler and guidance 8.5', () => {
    const out = join(tmp(), 's');
    const r = dq(['sample', LCM_DIR, '--prompt', 'a red seven', '--seeds', '0', '--steps', '4', '--out', out, '--quiet']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/lcm 4 steps, guidance 8\.5/);
    const rec = JSON.parse(readFileSync(join(out, 'samples.json'), 'utf8')) as { imageShape: number[]; prompts: { prompt: string }[] };
    expect(rec.imageShape).toEqual([3, 128, 128]);
    expect(rec.prompts.map((p) => p.prompt)).toEqual(['a red seven']);
    expect(readFileSync(join(out, 'grid.png')).subarray(1, 4).toString()).toBe('PNG');
  });

  it('dq info shows the timestep_cond input and the LCM defaults', () => {
    const i = dq(['info', LCM_DIR]);
    expect(i.code).toBe(0);
    expect(i.stdout).toMatch(/^class\s+LatentConsistencyModelPipeline /m);
    expect(i.stdout).toMatch(/^\s+input\s+timestep_cond float32 \[batch_size, 16\]$/m);
    expect(i.stdout).toMatch(/^scheduler\s+scheduler diffusers\.LCMScheduler/m);
    expect(i.stdout).toMatch(/^defaults\s+sampler lcm, guidance 8\.5$/m);
  });
});
