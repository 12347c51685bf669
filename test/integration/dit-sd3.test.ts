/**
 * Issue 18 on the SD3-convention fixture (random weights, reduced width: two CLIP encoders whose 32 + 40 channels are
 * zero-padded to the transformer's 96, no T5 so 256 zero tokens follow, 16 latent channels, patch 2, flow matching
 * with shift 3): what the transformer is fed, and info -> sample -> calibrate -> quantize -> compare -> export ->
 * sample the export, as a user runs it with the CLI. The export keeps the Optimum layout (transformer/, no unet/).
 */
import { cpSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { describeComponents } from '../../src-main/core/pipeline/components';
import { loadPipeline } from '../../src-main/core/pipeline/pipeline';
import { buildFeeds } from '../../src-main/core/pipeline/sample';
import { Session } from '../../src-main/core/runtime/onnx';
import { dq, dqOk, ROOT, tmp } from '../helpers';

const SD3 = join(ROOT, 'test', 'fixtures', 'sd3-optimum');
const work = tmp('dq-dit-sd3-');
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('SD3 conventions', () => {
  it('feeds CLIP penultimate states padded to the joint width, 256 zero T5 tokens, concatenated pooled text, sigma x 1000', async () => {
    const { pipeline: p } = await loadPipeline(SD3);
    expect(p.denoiser).toBe('transformer');
    expect(p.index.defaultSampler).toBe('flow-euler');
    expect(p.index.defaultGuidance).toBe(7);
    const [id] = await p.text!.ids(['a red cat'], [''], true);
    const feeds = await buildFeeds(p, new Float64Array(16 * 16 * 16), 857.5, [id!], true, 1);
    const ehs = feeds.encoder_hidden_states!;
    expect(ehs.dims).toEqual([2, 77 + 256, 96]);
    const data = ehs.data as Float32Array;
    // what each encoder gives for the prompt, read here from the graphs themselves
    const ids = p.text!.tokenizers.map((t) => t.encode('a red cat').ids);
    const outs = await Promise.all(
      ['text_encoder', 'text_encoder_2'].map(async (c, k) => {
        const s = await Session.create(join(SD3, c, 'model.onnx'), 'cpu', { label: c });
        const r = await s.run({ input_ids: { type: 'int64', data: BigInt64Array.from(Array.from(ids[k]!, BigInt)), dims: [1, 77] } });
        await s.release();
        return r;
      }),
    );
    const h1 = outs[0]!['hidden_states.1']!.data as Float32Array; // 2 layers: hidden_states[-2] = hidden_states.1
    const h2 = outs[1]!['hidden_states.1']!.data as Float32Array;
    for (const tok of [0, 5, 76]) {
      const row = data.subarray(tok * 96, (tok + 1) * 96);
      expect(Array.from(row.subarray(0, 32))).toEqual(Array.from(h1.subarray(tok * 32, (tok + 1) * 32)));
      expect(Array.from(row.subarray(32, 72))).toEqual(Array.from(h2.subarray(tok * 40, (tok + 1) * 40)));
      expect(row.subarray(72).every((v) => v === 0)).toBe(true);
    }
    expect(data.subarray(77 * 96, 333 * 96).every((v) => v === 0)).toBe(true);
    const pooled = feeds.pooled_projections!.data as Float32Array;
    expect(feeds.pooled_projections!.dims).toEqual([2, 72]);
    expect(Array.from(pooled.subarray(0, 32))).toEqual(Array.from(outs[0]!.text_embeds!.data as Float32Array));
    expect(Array.from(pooled.subarray(32, 72))).toEqual(Array.from(outs[1]!.text_embeds!.data as Float32Array));
    expect(feeds.timestep!.dims).toEqual([2]);
    expect(Array.from(feeds.timestep!.data as Float32Array)).toEqual([857.5, 857.5]);
  });

  it('with a T5 encoder (text_encoder_3): its 256 tokens follow the CLIP tokens', async () => {
    const dir = join(work, 'sd3-t5');
    cpSync(SD3, dir, { recursive: true });
    cpSync(join(ROOT, 'test', 'fixtures', 'sd3-t5-parts'), dir, { recursive: true });
    const index = JSON.parse(readFileSync(join(dir, 'model_index.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(dir, 'model_index.json'), JSON.stringify({ ...index, text_encoder_3: ['transformers', 'T5EncoderModel'], tokenizer_3: ['transformers', 'T5TokenizerFast'] }));
    const { pipeline: p } = await loadPipeline(dir);
    const [id] = await p.text!.ids(['a red cat'], [''], true);
    const feeds = await buildFeeds(p, new Float64Array(16 * 16 * 16), 500, [id!], true, 1);
    expect(feeds.encoder_hidden_states!.dims).toEqual([2, 77 + 256, 96]);
    const t5ids = p.text!.tokenizers[2]!.encode('a red cat').ids;
    expect(t5ids.length).toBe(256);
    const s = await Session.create(join(dir, 'text_encoder_3', 'model.onnx'), 'cpu', { label: 't5' });
    const r = await s.run({ input_ids: { type: 'int64', data: BigInt64Array.from(Array.from(t5ids, BigInt)), dims: [1, 256] } });
    await s.release();
    const t5 = r.last_hidden_state!.data as Float32Array;
    const data = feeds.encoder_hidden_states!.data as Float32Array;
    expect(Array.from(data.subarray(77 * 96, 333 * 96))).toEqual(Array.from(t5));
    expect(dqOk(['info', dir])).toMatch(/\+ T5's last_hidden_state \(256 tokens\)/);
  });

  it('info -> sample -> calibrate -> quantize -> compare -> export -> sample the export', async () => {
    const info = dqOk(['info', SD3]);
    expect(info).toMatch(/Stable Diffusion 3 \(DiT, flow matching\)/);
    expect(info).toMatch(/zero-padded to 96\) \+ 256 zero tokens in T5's place/);
    expect(info).toMatch(/^transformer +[\d.]+ MB/m);
    expect(info).toMatch(/flow matching .* shift 3/);
    const s0 = dqOk(['sample', SD3, '--prompt', 'a red cat', '--seeds', '0-1', '--steps', '3', '--out', join(work, 's0')]);
    expect(s0).toMatch(/2 images 128x128, flow-euler 3 steps, guidance 7/);
    const bad = dq(['sample', SD3, '--prompt', 'a red cat', '--seeds', '0', '--steps', '2', '--sampler', 'ddim', '--out', join(work, 'bad')]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/^dq: error: sampler 'ddim' cannot run this pipeline: it was trained with flow matching/m);

    writeFileSync(join(work, 'prompts.txt'), 'a red cat\na blue dog on grass\n');
    const cal = dqOk(['calibrate', SD3, '--prompts', join(work, 'prompts.txt'), '--samples', '2', '--steps', '3', '--quiet', '--gram', '--out', join(work, 'cal.json')]);
    expect(cal).toMatch(/^calibrated \d+ activation sites at 3 steps \(2 images\)/);
    const rec = JSON.parse(readFileSync(join(work, 'cal.json'), 'utf8')) as { settings: { sampler: string }; timesteps: number[] };
    expect(rec.settings.sampler).toBe('flow-euler');

    dqOk(['quantize', SD3, '--preset', 'tfmq-w4a8', '--calib', join(work, 'cal.json'), '--out', join(work, 'v4')]);
    dqOk(['quantize', SD3, '--preset', 'int8-w8a8', '--calib', join(work, 'cal.json'), '--out', join(work, 'v8')]);
    for (const v of ['v4', 'v8']) {
      expect(existsSync(join(work, v, 'transformer', 'model.onnx'))).toBe(true);
      expect(existsSync(join(work, v, 'unet'))).toBe(false);
    }
    const m4 = JSON.parse(readFileSync(join(work, 'v4', 'manifest.json'), 'utf8')) as { temporal?: { cached: string[] }; layers: { spared: string | null }[] };
    expect(m4.temporal!.cached.length).toBeGreaterThan(0);
    // only the patch embedding and the output projection are the recipe's first and last layers
    expect(m4.layers.filter((l) => /first layer/.test(l.spared ?? '')).length).toBe(1);

    const cmp = dqOk(['compare', SD3, join(work, 'v4'), join(work, 'v8'), '--prompt', 'a red cat', '--seeds', '0', '--steps', '3', '--fid-samples', '0', '--no-video', '--out', join(work, 'cmp')]);
    expect(cmp).toMatch(/int8-w8a8: PSNR [\d.]+ dB mean/);

    const exp = dqOk(['export', join(work, 'v8'), '--out', join(work, 'x')]);
    expect(exp).toMatch(/verdict: as expected/);
    const a = await describeComponents(SD3, {});
    const b = await describeComponents(join(work, 'x'), {});
    expect(b.convention).toBe(a.convention);
    expect(b.components.map((c) => c.name)).toEqual(a.components.map((c) => c.name));
    const s1 = dqOk(['sample', join(work, 'x'), '--prompt', 'a red cat', '--seeds', '0', '--steps', '3', '--out', join(work, 's1')]);
    expect(s1).toMatch(/1 images 128x128, flow-euler 3 steps/);
  }, 900_000);
});
