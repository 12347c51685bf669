/**
 * Issue 18 on the PixArt-style fixture (adaLN-single: one timestep modulation shared by every block plus each block's
 * scale_shift_table; a T5 caption with its attention mask; a learned variance beside the noise; random weights,
 * reduced width; VP noise prediction with DPM-Solver++): one guided evaluation against PixArtSigmaPipeline's, replayed
 * in PyTorch on the fixture's own modules (tools/make_sd_fixtures.py writes pixart-optimum.reference.json), the layer
 * map of an adaLN-single DiT, and the CLI chain.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { analyzeGraph } from '../../src-main/core/onnx/analysis';
import { readModel } from '../../src-main/core/onnx/model';
import { loadPipeline } from '../../src-main/core/pipeline/pipeline';
import { buildFeeds, combineGuided, outputLayout } from '../../src-main/core/pipeline/sample';
import { dqOk, ROOT, tmp, worstAgainst } from '../helpers';

const PIX = join(ROOT, 'test', 'fixtures', 'pixart-optimum');
const REF = JSON.parse(readFileSync(`${PIX}.reference.json`, 'utf8')) as { prompt: string; timestep: number; guidance: number; eps: number[] };
const work = tmp('dq-dit-pixart-');
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('PixArt conventions (adaLN-single)', () => {
  it('one guided evaluation matches PixArtSigmaPipeline in PyTorch: T5 states, their mask, the noise half of the output', async () => {
    const { pipeline: p, session } = await loadPipeline(PIX);
    expect(p.io.learnedSigma).toBe(true);
    expect(p.io.textMask).toBe('encoder_attention_mask');
    expect(p.index.defaultGuidance).toBe(4.5);
    expect(p.text!.tokenizers[0]!.maxLength).toBe(300);
    const [C, H, W] = p.index.sampleShape;
    const x = new Float64Array(C * H * W);
    for (let c = 0; c < C; c++) for (let y = 0; y < H; y++) for (let z = 0; z < W; z++) x[(c * H + y) * W + z] = Math.fround(Math.sin(0.37 * c + 0.11 * y + 0.07 * z));
    const ids = await p.text!.ids([REF.prompt], [''], true);
    const feeds = await buildFeeds(p, x, REF.timestep, ids, true, 1, undefined, REF.guidance);
    const mask = feeds.encoder_attention_mask!;
    expect(mask.dims).toEqual([2, 300]);
    expect(Array.from(mask.data as BigInt64Array).slice(0, 6).map(Number)).toEqual([1, 1, 1, 1, 1, 0]);
    expect(Array.from(mask.data as BigInt64Array).slice(300, 302).map(Number)).toEqual([1, 0]);
    const out = (await session.run(feeds, [p.io.output]))[p.io.output]!;
    expect(out.dims).toEqual([2, 8, 16, 16]);
    const eps = combineGuided(out, REF.guidance, true, 1, C * H * W, outputLayout(p));
    const { worst, scale } = worstAgainst(eps, REF.eps);
    expect(scale).toBeGreaterThan(0.1);
    expect(worst).toBeLessThan(1e-4 * scale);
  });

  it('the layer map of an adaLN-single DiT: the shared timestep modulation is the time-only region, the caption projection and cross-attention K/V the text-only region', async () => {
    const { pipeline: p } = await loadPipeline(PIX);
    const map = analyzeGraph(readModel(p.unetPath), { sampleInput: p.io.sample, timestepInput: p.io.timestep });
    expect([...map.temporal].sort()).toEqual(['/adaln_single/timestep_embedder/linear_1/Gemm', '/adaln_single/timestep_embedder/linear_2/Gemm', '/adaln_single/linear/Gemm'].sort());
    expect(map.textOnly.length).toBe(6);
    expect(map.textOnly.some((l) => /caption_projection/.test(l))).toBe(true);
    expect(map.textOnly.filter((l) => /attn2\/to_[kv]/.test(l)).length).toBe(4);
  });

  it('info -> sample -> calibrate -> quantize -> export -> sample the export', () => {
    const info = dqOk(['info', PIX]);
    expect(info).toMatch(/PixArt-Σ \(DiT\)/);
    expect(info).toMatch(/PixArt: T5 last_hidden_state \(width 24, 300 tokens\) with its attention mask/);
    dqOk(['sample', PIX, '--prompt', 'a red cat', '--seeds', '0-1', '--steps', '3', '--out', join(work, 's0')]);
    writeFileSync(join(work, 'prompts.txt'), 'a red cat\na blue dog on grass\n');
    dqOk(['calibrate', PIX, '--prompts', join(work, 'prompts.txt'), '--samples', '1', '--steps', '2', '--quiet', '--out', join(work, 'cal.json')]);
    dqOk(['quantize', PIX, '--preset', 'tfmq-w4a8', '--calib', join(work, 'cal.json'), '--out', join(work, 'v4')]);
    dqOk(['quantize', PIX, '--preset', 'int8-w8a8', '--calib', join(work, 'cal.json'), '--out', join(work, 'v8')]);
    expect(existsSync(join(work, 'v8', 'transformer', 'model.onnx'))).toBe(true);
    const exp = dqOk(['export', join(work, 'v8'), '--out', join(work, 'x')]);
    expect(exp).toMatch(/verdict: as expected/);
    const s1 = dqOk(['sample', join(work, 'x'), '--prompt', 'a red cat', '--seeds', '0', '--steps', '3', '--out', join(work, 's1')]);
    expect(s1).toMatch(/1 images 128x128, dpm\+\+2m 3 steps, guidance 4\.5/);
  }, 600_000);
});
