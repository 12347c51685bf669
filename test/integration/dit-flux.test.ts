/**
 * Issue 18 on the Flux-convention fixture (random weights, reduced width: CLIP pooled + a T5 encoder with its Unigram
 * tokenizer.json, 16 latent channels packed 2x2 into tokens, rotary img_ids/txt_ids as int64, a guidance input,
 * dynamic shifting): the whole sampling loop against FluxPipeline's loop replayed in PyTorch on the fixture's own
 * modules (tools/make_sd_fixtures.py writes flux-optimum.reference.json), and the CLI chain a user runs.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runLoop } from '../../src-main/core/pipeline/loop';
import { loadPipeline } from '../../src-main/core/pipeline/pipeline';
import { createScheduler, schedulerOptions } from '../../src-main/core/pipeline/schedulers';
import { dqOk, ROOT, tmp, worstAgainst } from '../helpers';

const FLUX = join(ROOT, 'test', 'fixtures', 'flux-optimum');
const REF = JSON.parse(readFileSync(`${FLUX}.reference.json`, 'utf8')) as { prompt: string; steps: number; guidance: number; sigmas: number[]; final: number[] };
const work = tmp('dq-dit-flux-');
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('Flux conventions', () => {
  it('T5 ids from tokenizer.json: the words, </s>, <pad> to the length', async () => {
    const { pipeline: p } = await loadPipeline(FLUX);
    const t5 = p.text!.tokenizers[1]!;
    expect(t5.maxLength).toBe(64);
    const e = t5.encode(REF.prompt);
    expect(Array.from(e.ids.subarray(0, 6))).toEqual([4, 5, 6, 8, 1, 0]);
    expect(e.ids.length).toBe(64);
    expect(t5.encode('cat '.repeat(80)).truncated).toBe(true);
  });

  it('the sampling loop matches FluxPipeline in PyTorch: packing, ids, sigma as the timestep, guidance input, dynamic shift', async () => {
    const { pipeline: p, session } = await loadPipeline(FLUX);
    expect(p.io.packed).toBe(true);
    expect(p.index.defaultGuidance).toBe(3.5);
    const s = createScheduler('flow-euler', p.scheduler, REF.steps, schedulerOptions(p));
    REF.sigmas.slice(0, -1).forEach((v, i) => expect(s.timesteps[i]! / 1000).toBeCloseTo(v, 5));
    const [C, H, W] = p.index.sampleShape;
    const init = new Float64Array(C * H * W);
    for (let c = 0; c < C; c++) for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) init[(c * H + y) * W + x] = Math.fround(Math.sin(0.37 * c + 0.11 * y + 0.07 * x));
    const labels = await p.text!.ids([REF.prompt], [''], false);
    const r = await runLoop(p, session, { steps: REF.steps, sampler: 'flow-euler', guidance: REF.guidance, eta: 0, batchSize: 1, init: [init], rngs: [], labels });
    const got = r.images[0]!;
    const { worst, scale } = worstAgainst(got, REF.final);
    expect(scale).toBeGreaterThan(0.5);
    expect(worst).toBeLessThan(1e-4 * scale);
  });

  it('info -> sample -> calibrate -> quantize -> export -> sample the export', () => {
    const info = dqOk(['info', FLUX]);
    expect(info).toMatch(/Flux: T5 last_hidden_state \(width 24, 64 tokens\) \+ CLIP pooler_output; latents packed 2x2/);
    expect(info).toMatch(/dynamic shift/);
    const s0 = dqOk(['sample', FLUX, '--prompt', 'a red cat', '--negative-prompt', 'blurry', '--seeds', '0-1', '--steps', '3', '--out', join(work, 's0')]);
    expect(s0).toMatch(/2 images 128x128, flow-euler 3 steps, guidance 3.5/);
    writeFileSync(join(work, 'prompts.txt'), 'a red cat\na blue dog on grass\n');
    dqOk(['calibrate', FLUX, '--prompts', join(work, 'prompts.txt'), '--samples', '2', '--steps', '3', '--quiet', '--out', join(work, 'cal.json')]);
    dqOk(['quantize', FLUX, '--preset', 'int8-w8a8', '--calib', join(work, 'cal.json'), '--out', join(work, 'v8')]);
    expect(existsSync(join(work, 'v8', 'transformer', 'model.onnx'))).toBe(true);
    const exp = dqOk(['export', join(work, 'v8'), '--out', join(work, 'x')]);
    expect(exp).toMatch(/verdict: as expected/);
    const s1 = dqOk(['sample', join(work, 'x'), '--prompt', 'a red cat', '--seeds', '0', '--steps', '3', '--out', join(work, 's1')]);
    expect(s1).toMatch(/1 images 128x128, flow-euler 3 steps/);
  }, 600_000);
});
