/**
 * Text-to-image pipelines as exporters write them (issue 16): the SD 1.5 fixtures in three I/O conventions (Optimum,
 * the legacy diffusers script, Optimum fp16) hold the same weights, so the same prompt and seed must give the same
 * image in each; SDXL's extra conditioning; text encoded once per prompt and the VAE once per image; guidance and
 * negative prompts; the size options; and bad input in one line.
 */
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DqError } from '../../src-main/core/errors';
import { readPromptFile } from '../../src-main/core/jobs/sample-job';
import { openPipeline } from '../../src-main/core/open';
import { cachedSession, withImageSize, type Pipeline } from '../../src-main/core/pipeline/pipeline';
import { sample, type SampleRequest } from '../../src-main/core/pipeline/sample';
import { Session, type FeedValue } from '../../src-main/core/runtime/onnx';
import { dq, ROOT, tmp, TINY } from '../helpers';

const F = (name: string) => join(ROOT, 'test', 'fixtures', name);
const PROMPTS = ['a red seven on a blue background', 'the digit two in green on black'];

async function open(name: string, size?: number): Promise<{ pipeline: Pipeline; session: Session }> {
  const o = await openPipeline(F(name), 'cpu');
  return { pipeline: size ? withImageSize(o.pipeline, size, size) : o.pipeline, session: o.session };
}

function req(over: Partial<SampleRequest> = {}): SampleRequest {
  return { seeds: [0, 1], classes: [], prompts: PROMPTS, steps: 3, sampler: 'pndm', guidance: 7.5, ...over };
}

function maxDiff(a: Float32Array[], b: Float32Array[]): number {
  let m = 0;
  a.forEach((x, i) => x.forEach((v, j) => (m = Math.max(m, Math.abs(v - b[i]![j]!)))));
  return m;
}

const code = async (f: () => Promise<unknown>): Promise<string> => {
  try {
    await f();
  } catch (e) {
    return e instanceof DqError ? `${e.code}: ${e.message}` : String(e);
  }
  return 'no error';
};

afterEach(() => {
  vi.restoreAllMocks();
});

describe('SD 1.5 in every convention', () => {
  it('the same prompt and seed give the same images in the Optimum, legacy (int32 ids, int64 timestep, weights.pb) and fp16 exports', async () => {
    const opt = await open('sd15-optimum');
    const legacy = await open('sd15-legacy', 128);
    const fp16 = await open('sd15-fp16');
    expect(opt.pipeline.imageShape).toEqual([3, 128, 128]);
    expect(legacy.pipeline.index.sampleShape).toEqual([4, 16, 16]);
    expect(legacy.pipeline.io.timestepType).toBe('int64');
    expect(legacy.pipeline.io.timestepRank).toBe(1);
    expect(opt.pipeline.io.timestepRank).toBe(0);
    expect(fp16.pipeline.io.sampleType).toBe('float16');
    expect(legacy.pipeline.text!.encoders[0]!.idsType).toBe('int32');
    const a = await sample(opt.pipeline, opt.session, req());
    const b = await sample(legacy.pipeline, legacy.session, req());
    const c = await sample(fp16.pipeline, fp16.session, req());
    expect(a.images).toHaveLength(2);
    expect(a.images[0]).toHaveLength(3 * 128 * 128);
    expect(a.latents![0]).toHaveLength(4 * 16 * 16);
    // the two float32 exports run the same arithmetic; fp16 carries ~3 significant digits through every layer
    expect(maxDiff(a.images, b.images)).toBeLessThan(1e-3);
    expect(maxDiff(a.images, c.images)).toBeLessThan(0.05);
    // and the prompts matter: two prompts, two different images
    expect(maxDiff([a.images[0]!], [a.images[1]!])).toBeGreaterThan(1e-3);
    for (const img of [...a.images, ...c.images]) expect(img.every(Number.isFinite)).toBe(true);
  });

  it('encodes each prompt once and decodes each image once; the text encoder is fed the ids type its graph declares', async () => {
    const { pipeline, session } = await open('sd15-legacy', 128);
    const te = await cachedSession(join(F('sd15-legacy'), 'text_encoder', 'model.onnx'), 'cpu');
    const spy = vi.spyOn(Session.prototype, 'run');
    const prompts = ['a cat', 'a dog', 'a cat'];
    await sample(pipeline, session, req({ seeds: [5, 6, 7], prompts, negativePrompts: ['blurry', 'blurry', 'blurry'] }));
    const calls = spy.mock.contexts.map((ctx, i) => ({ ctx, feeds: spy.mock.calls[i]![0] as Record<string, FeedValue> }));
    const teCalls = calls.filter((c) => c.ctx === te);
    // 'a cat', 'a dog' and the negative 'blurry': three texts
    expect(teCalls).toHaveLength(3);
    expect(teCalls[0]!.feeds.input_ids!.type).toBe('int32');
    expect(teCalls[0]!.feeds.input_ids!.dims).toEqual([1, 77]);
    expect(calls.filter((c) => c.ctx === pipeline.decoderSession)).toHaveLength(3);
    const unetCalls = calls.filter((c) => c.ctx === session);
    // guided: every evaluation runs [cond; uncond] = 2 x 3 rows; the timestep is one per row (rank 1) as int64
    const f = unetCalls[0]!.feeds;
    expect(f.sample!.dims).toEqual([6, 4, 16, 16]);
    expect(f.encoder_hidden_states!.dims).toEqual([6, 77, 32]);
    expect(f.timestep!.type).toBe('int64');
    expect(f.timestep!.dims).toEqual([6]);
  });

  it('guidance 1 (or below) runs the unet once per image, without the negative branch, as diffusers does', async () => {
    const { pipeline, session } = await open('sd15-optimum');
    const te = await cachedSession(join(F('sd15-optimum'), 'text_encoder', 'model.onnx'), 'cpu');
    const spy = vi.spyOn(Session.prototype, 'run');
    const r = await sample(pipeline, session, req({ guidance: 1, steps: 2, prompts: ['unguided one', 'unguided two'], negativePrompts: ['never encoded', 'never encoded'] }));
    // the two prompts only: the negative branch is not run, so not encoded either, and the user is told
    expect(spy.mock.contexts.filter((c) => c === te)).toHaveLength(2);
    expect(r.warnings).toContain('the negative prompt has no effect at guidance 1: it steers only when guidance is above 1');
    const feeds = spy.mock.calls.map((c) => c[0] as Record<string, FeedValue>).filter((f) => f.sample && f.encoder_hidden_states);
    expect(feeds.length).toBeGreaterThan(0);
    for (const f of feeds) {
      expect(f.sample!.dims[0]).toBe(2);
      expect(f.timestep!.dims).toEqual([]); // Optimum's scalar timestep
    }
  });

  it('images do not depend on the batch; a negative prompt changes them; fp16 feeds are float16', async () => {
    const { pipeline, session } = await open('sd15-fp16');
    const spy = vi.spyOn(Session.prototype, 'run');
    const one = await sample(pipeline, session, req({ batchSize: 1 }));
    expect((spy.mock.calls[spy.mock.calls.length - 1]![0] as Record<string, FeedValue>).latent_sample!.type).toBe('float16');
    const all = await sample(pipeline, session, req({ batchSize: 4 }));
    expect(maxDiff(one.images, all.images)).toBe(0);
    const neg = await sample(pipeline, session, req({ negativePrompts: ['green', 'green'] }));
    expect(maxDiff(one.images, neg.images)).toBeGreaterThan(1e-3);
  });

  it('a prompt longer than 75 tokens is truncated with a warning that names what was dropped', async () => {
    const { pipeline, session } = await open('sd15-optimum');
    const long = Array.from({ length: 90 }, (_, i) => (i === 85 ? 'zebra' : 'red')).join(' ');
    const r = await sample(pipeline, session, req({ seeds: [0], prompts: [long], steps: 1 }));
    expect(r.tokens![0]!.truncated).toBe(true);
    expect(r.tokens![0]!.tokens[0]).toBeGreaterThanOrEqual(90);
    expect(r.warnings!.join('\n')).toMatch(/prompt truncated to 75 tokens \(it has \d+\): dropped ".*zebra.*"/);
  });
});

describe('SDXL', () => {
  it('feeds both encoders\' penultimate states, the pooled text_embeds and time_ids [H, W, 0, 0, H, W]; an empty negative prompt is zeros', async () => {
    const { pipeline: p0, session } = await open('sdxl-optimum');
    const pipeline = withImageSize(p0, 64, 128);
    expect(pipeline.text!.kind).toBe('sdxl');
    expect(pipeline.text!.encoders.map((e) => e.hidden)).toEqual(['hidden_states.1', 'hidden_states.1']);
    expect(pipeline.text!.encoders[1]!.pooled).toBe('text_embeds');
    const spy = vi.spyOn(Session.prototype, 'run');
    const r = await sample(pipeline, session, req({ sampler: 'euler', guidance: 5, seeds: [3] , prompts: [PROMPTS[0]!] }));
    expect(r.images[0]).toHaveLength(3 * 64 * 128);
    const f = spy.mock.calls.map((c) => c[0] as Record<string, FeedValue>).find((x) => x.time_ids)!;
    expect(f.encoder_hidden_states!.dims).toEqual([2, 77, 72]);
    expect(f.text_embeds!.dims).toEqual([2, 40]);
    expect(Array.from(f.time_ids!.data as Float32Array)).toEqual([64, 128, 0, 0, 64, 128, 64, 128, 0, 0, 64, 128]);
    // rows are [cond; uncond]: the uncond half is all zeros (force_zeros_for_empty_prompt)
    const hs = f.encoder_hidden_states!.data as Float32Array;
    expect(hs.subarray(77 * 72).every((v) => v === 0)).toBe(true);
    expect(hs.subarray(0, 77 * 72).some((v) => v !== 0)).toBe(true);
    expect((f.text_embeds!.data as Float32Array).subarray(40).every((v) => v === 0)).toBe(true);
    spy.mockClear();
    await sample(pipeline, session, req({ sampler: 'euler', guidance: 5, seeds: [3], prompts: [PROMPTS[0]!], negativePrompts: ['blue'], steps: 1 }));
    const g = spy.mock.calls.map((c) => c[0] as Record<string, FeedValue>).find((x) => x.time_ids)!;
    expect((g.encoder_hidden_states!.data as Float32Array).subarray(77 * 72).some((v) => v !== 0)).toBe(true);
  });
});

describe('bad input, in one line', () => {
  const copy = (name: string) => {
    const d = join(tmp(), name);
    cpSync(F(name), d, { recursive: true });
    return d;
  };

  it('missing tokenizer files, a text encoder of another width, a missing VAE decoder', async () => {
    const a = copy('sd15-optimum');
    rmSync(join(a, 'tokenizer'), { recursive: true });
    expect(await code(() => openPipeline(a))).toMatch(/^MISSING_COMPONENT: .*component 'tokenizer' is missing \(no tokenizer\/ folder beside text_encoder\/\)$/);
    const b = copy('sd15-optimum');
    rmSync(join(b, 'tokenizer', 'merges.txt'));
    expect(await code(() => openPipeline(b))).toMatch(/tokenizer: .*merges\.txt/);
    const c = copy('sd15-optimum');
    cpSync(join(F('sdxl-optimum'), 'text_encoder_2'), join(c, 'text_encoder'), { recursive: true });
    expect(await code(() => openPipeline(c))).toMatch(/^BAD_MODEL: .*the unet's cross-attention width 32 \(encoder_hidden_states\) disagrees with text_encoder's 40: the text encoder does not belong to this unet$/);
    const d = copy('sd15-optimum');
    rmSync(join(d, 'vae_decoder'), { recursive: true });
    expect(await code(() => openPipeline(d))).toMatch(/^MISSING_COMPONENT: .*component 'vae_decoder' is missing/);
  });

  it('a height or width that is not a multiple of the VAE factor, or that the unet cannot halve evenly', async () => {
    const { pipeline } = await open('sd15-optimum');
    expect(() => withImageSize(pipeline, 100, undefined)).toThrow(/--height 100 is not a multiple of 8, the VAE's factor .*: try 104/);
    expect(() => withImageSize(pipeline, 128, 72)).toThrow(/--width 72 does not fit the unet: it halves the latents 3 times, so sizes must be multiples of 64 pixels: try 64/);
    expect(withImageSize(pipeline, 64, 192).index.sampleShape).toEqual([4, 8, 24]);
  });

  it('an fp16 VAE decoder that overflows: NaN/inf detected, shown black, and a warning that says what to do', async () => {
    const d = copy('sd15-fp16');
    const cfgPath = join(d, 'vae_decoder', 'config.json');
    const cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
    // latents / 1e-6 are far beyond float16's 65504: the decoder overflows as an fp16 SDXL VAE does
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, scaling_factor: 1e-6 }));
    const { pipeline, session } = await openPipeline(d);
    const r = await sample(pipeline, session, req({ steps: 1 }));
    expect(r.warnings!.join('\n')).toMatch(/2 of 2 images came out of the VAE decoder with NaN\/inf pixels \(shown black\): its float16 arithmetic overflowed\. Use a float32 vae_decoder/);
    for (const img of r.images) expect(img.every(Number.isFinite)).toBe(true);
  });

  it('prompt files: empty, not UTF-8, bad JSON, a folder; lines and JSON lists read', () => {
    const d = tmp();
    const w = (name: string, data: string | Buffer) => {
      writeFileSync(join(d, name), data);
      return join(d, name);
    };
    expect(() => readPromptFile(w('empty.txt', '\n \n'))).toThrow(/empty\.txt has no prompts/);
    expect(() => readPromptFile(w('latin1.txt', Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a])))).toThrow(/latin1\.txt is not UTF-8 text/);
    expect(() => readPromptFile(w('bad.json', '[ "a", '))).toThrow(/bad\.json: not valid JSON/);
    expect(() => readPromptFile(w('obj.json', '[{"text": "a"}]'))).toThrow(/entry 1 is neither a string nor \{"prompt": "..."\}/);
    expect(() => readPromptFile(d)).toThrow(/it is a folder/);
    expect(() => readPromptFile(join(d, 'nope.txt'))).toThrow(/prompt file not found/);
    expect(readPromptFile(w('lines.txt', '\uFEFFa red one\r\n\r\n  a blue two  \n'))).toEqual([{ prompt: 'a red one' }, { prompt: 'a blue two' }]);
    expect(readPromptFile(w('list.json', '["x", {"prompt": "y", "negative_prompt": "z"}]'))).toEqual([{ prompt: 'x' }, { prompt: 'y', negative: 'z' }]);
  });
});

describe('dq sample / dq info on text-to-image folders', () => {
  it('a prompt file with a negative prompt: a row per prompt, samples.json with prompts, token counts and the size', () => {
    const out = tmp();
    const file = join(out, 'prompts.json');
    writeFileSync(file, JSON.stringify([PROMPTS[0], { prompt: PROMPTS[1], negative_prompt: 'blurry' }]));
    const r = dq(['sample', F('sd15-optimum'), '--prompts', file, '--negative-prompt', 'noise', '--seeds', '0-2', '--steps', '2', '--scheduler', 'euler', '--height', '64', '--width', '128', '--out', join(out, 's'), '--quiet']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^6 images 64x128, euler 2 steps, guidance 7\.5/);
    const rec = JSON.parse(readFileSync(join(out, 's', 'samples.json'), 'utf8')) as { prompts: { prompt: string; negative: string; tokens: number[]; truncated: boolean }[]; imageShape: number[]; images: { prompt: number; row: number; col: number; seed: number }[] };
    expect(rec.imageShape).toEqual([3, 64, 128]);
    expect(rec.prompts.map((p) => [p.prompt, p.negative])).toEqual([[PROMPTS[0], 'noise'], [PROMPTS[1], 'blurry']]);
    expect(rec.prompts[0]!.tokens[0]).toBeGreaterThan(0);
    expect(rec.images.filter((i) => i.prompt === 1).map((i) => [i.row, i.seed])).toEqual([[1, 0], [1, 1], [1, 2]]);
    expect(readFileSync(join(out, 's', 'grid.png')).subarray(1, 4).toString()).toBe('PNG');
  });

  it('info shows the text conditioning and the VAE; class options on text models and prompts on class models are refused', () => {
    const i = dq(['info', F('sdxl-optimum')]);
    expect(i.code).toBe(0);
    expect(i.stdout).toMatch(/^sample\s+4x16x16 latents \(unet\/config\.json: sample_size\) -> images 3x128x128$/m);
    expect(i.stdout).toMatch(/^text\s+SDXL: both encoders' penultimate hidden states \+ text_embeds \+ time_ids, width 72; tokenizer vocab\.json\+merges\.txt 546 tokens, 77 max, pad 545; tokenizer_2 .* pad 0; empty negative prompt = zeros$/m);
    expect(i.stdout).toMatch(/^vae\s+factor 8, scaling 0\.13025, float32 \(from vae_decoder\/config\.json\); sizes in multiples of 32 pixels$/m);
    const out = tmp();
    const c = dq(['sample', F('sd15-optimum'), '--class', '1', '--out', join(out, 'a')]);
    expect(c.code).toBe(1);
    expect(c.stderr).toMatch(/^dq: error: this is a text-to-image pipeline: give --prompt or --prompts, not --class\n$/);
    const n = dq(['sample', F('sd15-optimum'), '--out', join(out, 'b')]);
    expect(n.stderr).toMatch(/^dq: error: this is a text-to-image pipeline: give --prompt "\.\.\." or --prompts <file>\n$/);
    const t = dq(['sample', TINY, '--prompt', 'a seven', '--out', join(out, 'c')]);
    expect(t.stderr).toMatch(/^dq: error: .*tiny-mnist takes no text \(it is class-conditional: use --class\): leave out --prompt\n$/);
    const q = dq(['quantize', F('sd15-optimum'), '--preset', 'int8-w8a8', '--out', join(out, 'q')]);
    expect(q.code).toBe(1);
    expect(q.stderr).toMatch(/^dq: error: recipe 'int8-w8a8' quantizes activations \(int8 asym\): give a calibration record \(--calib, from dq calibrate --prompts <file>\); .*sd15-optimum has no calibration_prompts\.txt to calibrate with\n$/);
    const cal = dq(['calibrate', F('sd15-optimum'), '--out', join(out, 'c.json')]);
    expect(cal.stderr).toMatch(/^dq: error: .*sd15-optimum is a text-to-image pipeline: give calibration prompts \(--prompts <file>; the folder has no calibration_prompts\.txt\)\n$/);
  });
});
