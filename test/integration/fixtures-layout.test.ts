/**
 * The real-topology pipeline fixtures (tools/make_sd_fixtures.py) are what the exporters write: folder layout,
 * model_index.json, configs, tokenizer files, and each graph's input/output names, dtypes, ranks and dynamic axes
 * as ../shared/notes/real-pipelines.md §1.0-1.5 gives them per convention. Every component runs one forward pass
 * through our onnxruntime wrapper with the shapes a pipeline feeds it, and the conventions agree with each other:
 * the three SD 1.5 fixtures hold the same weights, so int32 vs int64 ids, a rank-1 int64 vs a scalar float
 * timestep, and float16 vs float32 must give the same outputs (float16 within its precision).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Session, type FeedValue, type IoMeta, type TensorOut } from '../../src-main/core/runtime/onnx';
import { ROOT } from '../helpers';

const FIX = join(ROOT, 'test', 'fixtures');
type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const readJson = (...p: string[]): Json => JSON.parse(readFileSync(join(FIX, ...p), 'utf8')) as Json;
const sessions = new Map<string, Session>();
async function open(fixture: string, component: string): Promise<Session> {
  const key = `${fixture}/${component}`;
  let s = sessions.get(key);
  if (!s) {
    s = await Session.create(join(FIX, fixture, component, 'model.onnx'), 'cpu', { threads: 1, label: key });
    sessions.set(key, s);
  }
  return s;
}
afterAll(async () => {
  for (const s of sessions.values()) await s.release();
});

// ---- float16 at the JS boundary (onnxruntime-node takes and gives the raw bits in a Uint16Array) ----
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function toHalf(x: number): number {
  f32[0] = x;
  const b = u32[0]!;
  const sign = (b >>> 16) & 0x8000;
  const exp = ((b >>> 23) & 0xff) - 127 + 15;
  const man = b & 0x7fffff;
  if (exp <= 0) return sign; // the fixture tests feed no float16 subnormals
  if (exp >= 31) return sign | 0x7c00;
  let h = sign | (exp << 10) | (man >>> 13);
  const rest = man & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h += 1; // round to nearest even
  return h;
}
function fromHalf(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const man = h & 0x3ff;
  if (exp === 0) return sign * man * 2 ** -24;
  if (exp === 31) return man ? NaN : sign * Infinity;
  return sign * (1 + man / 1024) * 2 ** (exp - 15);
}

/** A float tensor in the dtype the session declares for that input. */
function floatFeed(type: string, data: ArrayLike<number>, dims: number[]): FeedValue {
  if (type === 'float16') return { type: 'float16', data: Uint16Array.from(data, toHalf), dims } as unknown as FeedValue;
  expect(type).toBe('float32');
  return { type: 'float32', data: Float32Array.from(data), dims };
}
function intFeed(type: string, data: number[], dims: number[]): FeedValue {
  if (type === 'int64') return { type: 'int64', data: BigInt64Array.from(data, BigInt), dims };
  expect(type).toBe('int32');
  return { type: 'int32', data: Int32Array.from(data), dims };
}
function floats(t: TensorOut): Float32Array {
  if (t.type === 'float16') return Float32Array.from(t.data as Uint16Array, fromHalf);
  expect(t.type).toBe('float32');
  return t.data as Float32Array;
}
function allFinite(t: TensorOut): boolean {
  return floats(t).every(Number.isFinite);
}

/** Deterministic pseudo-normal numbers (xorshift + Box-Muller): test inputs, not reference values. */
function randn(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const u = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return ((s >>> 0) + 0.5) / 4294967296;
  };
  return Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u()));
}
function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}
function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function io(list: IoMeta[], name: string): IoMeta {
  const m = list.find((x) => x.name === name);
  if (!m) throw new Error(`no ${name} in ${list.map((x) => x.name).join(', ')}`);
  return m;
}
const names = (list: IoMeta[]) => list.map((x) => x.name);

/** The text every fixture tokenizes the same: "<bos> a photo of a cat <eos> <pad>...". */
function promptIds(vocab: Json, pad: number, extra: string[] = []): number[] {
  const words = ['a</w>', 'photo</w>', 'of</w>', 'a</w>', 'cat</w>', ...extra].map((w) => vocab[w] as number);
  const ids = [vocab['<|startoftext|>'] as number, ...words, vocab['<|endoftext|>'] as number];
  while (ids.length < 77) ids.push(pad);
  return ids;
}
const argmax = (a: number[]) => a.reduce((best, v, i) => (v > a[best]! ? i : best), 0);

function folderBytes(dir: string): number {
  let n = 0;
  for (const f of readdirSync(dir)) {
    const p = join(dir, f);
    n += statSync(p).isDirectory() ? folderBytes(p) : statSync(p).size;
  }
  return n;
}

// ---------------------------------------------------------------------------------------------------------------
// What each convention has (real-pipelines.md §1.0, §1.2, §1.5, §3.2)

interface Fixture {
  name: string;
  className: string;
  convention: 'optimum' | 'legacy';
  float: 'float32' | 'float16';
  scheduler: string;
  scaling?: number;
  textEncoders: string[];
  tokenizers: { dir: string; pad: string }[];
  externalData?: [string, string];
}
const FIXTURES: Fixture[] = [
  {
    name: 'sd15-optimum', className: 'StableDiffusionPipeline', convention: 'optimum', float: 'float32', scheduler: 'PNDMScheduler',
    scaling: 0.18215, textEncoders: ['text_encoder'], tokenizers: [{ dir: 'tokenizer', pad: '<|endoftext|>' }],
  },
  {
    name: 'sdxl-optimum', className: 'StableDiffusionXLPipeline', convention: 'optimum', float: 'float32',
    scheduler: 'EulerDiscreteScheduler', scaling: 0.13025, textEncoders: ['text_encoder', 'text_encoder_2'],
    tokenizers: [{ dir: 'tokenizer', pad: '<|endoftext|>' }, { dir: 'tokenizer_2', pad: '!' }], externalData: ['unet', 'model.onnx_data'],
  },
  {
    name: 'sd15-legacy', className: 'OnnxStableDiffusionPipeline', convention: 'legacy', float: 'float32', scheduler: 'PNDMScheduler',
    textEncoders: ['text_encoder'], tokenizers: [{ dir: 'tokenizer', pad: '<|endoftext|>' }], externalData: ['unet', 'weights.pb'],
  },
  {
    name: 'sd15-fp16', className: 'StableDiffusionPipeline', convention: 'optimum', float: 'float16', scheduler: 'PNDMScheduler',
    scaling: 0.18215, textEncoders: ['text_encoder'], tokenizers: [{ dir: 'tokenizer', pad: '<|endoftext|>' }],
  },
];
const MODELS = ['text_encoder', 'text_encoder_2', 'unet', 'vae_decoder', 'vae_encoder'];

for (const fx of FIXTURES) {
  const batchAxis = fx.convention === 'optimum' ? 'batch_size' : 'batch';
  const idsType = fx.convention === 'optimum' ? 'int64' : 'int32';
  const sdxl = fx.className === 'StableDiffusionXLPipeline';

  describe(`${fx.name} (${fx.convention}${fx.float === 'float16' ? ', float16' : ''})`, () => {
    const index = readJson(fx.name, 'model_index.json');
    const cfg = (c: string): Json | undefined => (existsSync(join(FIX, fx.name, c, 'config.json')) ? readJson(fx.name, c, 'config.json') : undefined);

    it('folder layout, model_index.json and scheduler are the exporter\'s', () => {
      expect(index._class_name).toBe(fx.className);
      expect(typeof index._diffusers_version).toBe('string');
      const present = MODELS.filter((m) => existsSync(join(FIX, fx.name, m, 'model.onnx')));
      expect(present).toEqual(['unet', 'vae_decoder', 'vae_encoder', ...fx.textEncoders].sort());
      expect(existsSync(join(FIX, fx.name, 'vae'))).toBe(false); // model_index says vae, the folders are vae_encoder/vae_decoder
      if (fx.convention === 'optimum') {
        expect(index.vae).toEqual(['diffusers', 'AutoencoderKL']);
        expect(index.unet).toEqual(['diffusers', 'UNet2DConditionModel']);
        expect(index.text_encoder).toEqual(['transformers', 'CLIPTextModel']);
        if (sdxl) {
          expect(index.text_encoder_2).toEqual(['transformers', 'CLIPTextModelWithProjection']);
          expect(index.force_zeros_for_empty_prompt).toBe(true);
        }
        for (const m of present) expect(cfg(m), `${m}/config.json`).toBeDefined();
      } else {
        for (const m of ['text_encoder', 'unet', 'vae_encoder', 'vae_decoder']) expect(index[m]).toEqual(['diffusers', 'OnnxRuntimeModel']);
        for (const m of present) expect(cfg(m), `${m}/config.json`).toBeUndefined(); // OnnxRuntimeModel saves none
      }
      for (const t of fx.tokenizers) expect(index[t.dir]).toEqual(['transformers', 'CLIPTokenizer']);
      expect(index.scheduler).toEqual(['diffusers', fx.scheduler]);
      const sched = readJson(fx.name, 'scheduler', 'scheduler_config.json');
      expect(sched._class_name).toBe(fx.scheduler);
      expect(sched).toMatchObject({ beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012, num_train_timesteps: 1000, steps_offset: 1 });
      if (fx.externalData) {
        const [dir, file] = fx.externalData;
        expect(existsSync(join(FIX, fx.name, dir, file))).toBe(true);
        // the weights really are outside: the graph file alone is smaller than its external data
        expect(statSync(join(FIX, fx.name, dir, 'model.onnx')).size).toBeLessThan(statSync(join(FIX, fx.name, dir, file)).size);
      }
      expect(folderBytes(join(FIX, fx.name))).toBeLessThan(2_000_000); // checked in: keep them small
    });

    it('tokenizer folders are CLIP-format and match the text encoders', async () => {
      for (const t of fx.tokenizers) {
        const dir = join(FIX, fx.name, t.dir);
        for (const f of ['vocab.json', 'merges.txt', 'special_tokens_map.json', 'tokenizer_config.json']) expect(existsSync(join(dir, f)), f).toBe(true);
        const v = readJson(fx.name, t.dir, 'vocab.json');
        const ids = Object.values(v) as number[];
        expect(new Set(ids).size).toBe(ids.length);
        expect(Math.max(...ids)).toBe(ids.length - 1);
        expect(v['!']).toBe(0); // byte symbols first, "!" = 0 as in CLIP
        expect(v['!</w>']).toBe(256);
        expect(v['<|endoftext|>']).toBe(ids.length - 1); // EOS has the largest id: pooling at argmax(ids) finds it
        expect(v['<|startoftext|>']).toBe(ids.length - 2);
        const merges = readFileSync(join(dir, 'merges.txt'), 'utf8').split('\n').filter(Boolean);
        expect(merges[0]).toMatch(/^#version: 0\.2/);
        expect(ids.length).toBe(512 + (merges.length - 1) + 2); // bytes, bytes</w>, merges, two specials
        for (const m of merges.slice(1)) expect(v[m.replace(' ', '')], m).toBeDefined();
        const tc = readJson(fx.name, t.dir, 'tokenizer_config.json');
        expect(tc.model_max_length).toBe(77);
        expect(tc.pad_token).toBe(t.pad);
        const stm = readJson(fx.name, t.dir, 'special_tokens_map.json');
        expect(typeof stm.pad_token === 'string' ? stm.pad_token : stm.pad_token.content).toBe(t.pad);
        if (t.pad === '!') expect(tc.added_tokens_decoder['0']).toMatchObject({ content: '!', special: true });
      }
      // vocabulary size = the text encoders' embedding rows: the last id embeds, one past it does not
      for (const [k, te] of fx.textEncoders.entries()) {
        const s = await open(fx.name, te);
        const n = Object.keys(readJson(fx.name, fx.tokenizers[k]!.dir, 'vocab.json')).length;
        if (cfg(te)) expect(cfg(te)!.vocab_size).toBe(n);
        const feed = (id: number) => ({ input_ids: intFeed(idsType, [...Array(76).fill(0), id], [1, 77]) });
        await expect(s.run(feed(n - 1))).resolves.toBeDefined();
        await expect(s.run(feed(n))).rejects.toThrow(/out of|bounds|indices/i);
      }
    });

    it('text encoders: I/O as the convention has it; [B,77] ids -> [B,77,hidden]; pooled at the EOS; causal', async () => {
      for (const [k, te] of fx.textEncoders.entries()) {
        const s = await open(fx.name, te);
        const withProj = te === 'text_encoder_2';
        const c = cfg(te);
        const layers = c?.num_hidden_layers as number | undefined;
        const hidden = sdxl ? Array.from({ length: layers! + 1 }, (_, i) => `hidden_states.${i}`) : [];
        expect(names(s.inputs)).toEqual(['input_ids']);
        const ids = io(s.inputs, 'input_ids');
        expect(ids.type).toBe(idsType);
        expect(ids.shape).toEqual(fx.convention === 'optimum' ? ['batch_size', 'sequence_length'] : ['batch', 'sequence']);
        expect(names(s.outputs)).toEqual(withProj ? ['text_embeds', 'last_hidden_state', ...hidden] : ['last_hidden_state', 'pooler_output', ...hidden]);
        for (const o of s.outputs) {
          expect(o.type, o.name).toBe(fx.float);
          expect(o.shape!.length, o.name).toBe(o.name === 'pooler_output' || o.name === 'text_embeds' ? 2 : 3);
        }
        if (fx.convention === 'optimum') expect(io(s.outputs, 'last_hidden_state').shape!.slice(0, 2)).toEqual(['batch_size', 'sequence_length']);

        const v = readJson(fx.name, fx.tokenizers[k]!.dir, 'vocab.json');
        const pad = v[fx.tokenizers[k]!.pad] as number;
        const a = promptIds(v, pad);
        const b = promptIds(v, pad, ['on</w>', 'the</w>', 'red</w>']); // differs from a from position 6 on
        const out = await s.run({ input_ids: intFeed(idsType, [...a, ...b], [2, 77]) });
        const last = out.last_hidden_state!;
        const width = last.dims[2]!;
        expect(last.dims).toEqual([2, 77, width]);
        if (c) expect(width).toBe(c.hidden_size);
        for (const o of Object.values(out)) expect(allFinite(o)).toBe(true);
        const L = floats(last);
        const row = (bi: number, pos: number) => L.subarray((bi * 77 + pos) * width, (bi * 77 + pos + 1) * width);
        if (withProj) {
          expect(out.text_embeds!.dims).toEqual([2, c!.projection_dim]);
        } else {
          const pooled = floats(out.pooler_output!);
          expect(out.pooler_output!.dims).toEqual([2, width]);
          for (const [bi, seq] of [a, b].entries()) {
            expect(maxDiff(pooled.subarray(bi * width, (bi + 1) * width), row(bi, argmax(seq)))).toBe(0);
          }
        }
        // causal attention: positions before the first difference see the same prefix
        for (let pos = 0; pos < 6; pos++) expect(maxDiff(row(0, pos), row(1, pos)), `position ${pos}`).toBeLessThan(1e-5);
        expect(maxDiff(row(0, 6), row(1, 6))).toBeGreaterThan(1e-3);
        for (const h of hidden) expect(out[h]!.dims).toEqual([2, 77, width]);
      }
    });

    it('unet: I/O as the convention has it; out_sample has the shape of sample; the batch rows are independent', async () => {
      const s = await open(fx.name, 'unet');
      const u = cfg('unet');
      const extra = sdxl ? ['text_embeds', 'time_ids'] : [];
      expect(names(s.inputs)).toEqual(['sample', 'timestep', 'encoder_hidden_states', ...extra]);
      expect(names(s.outputs)).toEqual(['out_sample']);
      const sample = io(s.inputs, 'sample');
      const ts = io(s.inputs, 'timestep');
      const ehs = io(s.inputs, 'encoder_hidden_states');
      expect(sample.type).toBe(fx.float);
      expect(ehs.type).toBe(fx.float);
      expect(io(s.outputs, 'out_sample').type).toBe(fx.float);
      expect(sample.shape![0]).toBe(batchAxis);
      expect(ehs.shape!.slice(0, 2)).toEqual(fx.convention === 'optimum' ? ['batch_size', 'sequence_length'] : ['batch', 'sequence']);
      if (fx.convention === 'optimum') {
        expect(ts.shape).toEqual([]); // a scalar
        expect(ts.type).toBe(fx.float);
        expect(sample.shape).toEqual(['batch_size', u!.in_channels, 'height', 'width']);
        expect(io(s.outputs, 'out_sample').shape).toEqual(['batch_size', u!.out_channels, 'height', 'width']);
      } else {
        expect(ts.shape).toEqual(['batch']); // rank 1
        expect(['int64', 'float32']).toContain(ts.type);
        expect(sample.shape).toEqual(['batch', 'channels', 'height', 'width']);
      }
      const ctxWidth = ehs.shape![2] as number;
      expect(typeof ctxWidth).toBe('number');
      if (u) expect(ctxWidth).toBe(u.cross_attention_dim);
      let projDim = 0;
      if (sdxl) {
        for (const n of extra) {
          expect(io(s.inputs, n).type).toBe(fx.float);
          expect(io(s.inputs, n).shape![0]).toBe('batch_size');
        }
        projDim = io(s.inputs, 'text_embeds').shape![1] as number;
        expect(io(s.inputs, 'time_ids').shape![1]).toBe(6);
      }

      const [B, C, H, W] = [2, 4, u?.sample_size ?? 16, u?.sample_size ?? 16];
      const x = randn(B * C * H * W, 1);
      const ctx = randn(B * 77 * ctxWidth, 2);
      const tfeed = fx.convention === 'optimum'
        ? floatFeed(ts.type, [981], [])
        : ts.type === 'int64' ? intFeed('int64', [981], [1]) : floatFeed('float32', [981], [1]); // legacy: [t], broadcast over the batch
      const feeds = (b: number, from = 0): Record<string, FeedValue> => {
        const f: Record<string, FeedValue> = {
          sample: floatFeed(sample.type, x.subarray(from * C * H * W, (from + b) * C * H * W), [b, C, H, W]),
          timestep: tfeed,
          encoder_hidden_states: floatFeed(ehs.type, ctx.subarray(from * 77 * ctxWidth, (from + b) * 77 * ctxWidth), [b, 77, ctxWidth]),
        };
        if (sdxl) {
          f.text_embeds = floatFeed(fx.float, randn(B * projDim, 3).subarray(from * projDim, (from + b) * projDim), [b, projDim]);
          f.time_ids = floatFeed(fx.float, Array.from({ length: b }, () => [H * 8, W * 8, 0, 0, H * 8, W * 8]).flat(), [b, 6]);
        }
        return f;
      };
      const both = (await s.run(feeds(2))).out_sample!;
      expect(both.dims).toEqual([B, C, H, W]);
      expect(allFinite(both)).toBe(true);
      expect(maxAbs(floats(both))).toBeGreaterThan(0);
      const second = (await s.run(feeds(1, 1))).out_sample!;
      const tol = fx.float === 'float16' ? 2e-2 : 1e-4;
      expect(maxDiff(floats(second), floats(both).subarray(C * H * W))).toBeLessThan(tol * Math.max(1, maxAbs(floats(second))));
      // a different latent size runs too (dynamic height and width)
      const f = feeds(1);
      f.sample = floatFeed(sample.type, randn(C * 8 * 16, 4), [1, C, 8, 16]);
      expect((await s.run(f)).out_sample!.dims).toEqual([1, C, 8, 16]);
    });

    it('vae_decoder and vae_encoder: latent <-> image at the factor the VAE config gives', async () => {
      const dec = await open(fx.name, 'vae_decoder');
      const enc = await open(fx.name, 'vae_encoder');
      const vc = cfg('vae_decoder');
      const factor = vc ? 2 ** (vc.block_out_channels.length - 1) : 8;
      expect(factor).toBe(8);
      if (vc) {
        expect(vc.scaling_factor).toBe(fx.scaling);
        expect(cfg('vae_encoder')).toEqual(vc);
        expect(vc.latent_channels).toBe(cfg('unet')!.in_channels);
        expect(vc.sample_size).toBe(cfg('unet')!.sample_size * factor);
      }
      expect(names(dec.inputs)).toEqual(['latent_sample']);
      expect(names(dec.outputs)).toEqual(['sample']);
      expect(names(enc.inputs)).toEqual(['sample']);
      const encOut = fx.convention === 'optimum' ? 'latent_parameters' : 'latent_sample';
      expect(names(enc.outputs)).toEqual([encOut]);
      for (const m of [...dec.inputs, ...enc.inputs]) expect(m.shape, m.name).toEqual(fx.convention === 'optimum' ? ['batch_size', expect.anything(), expect.any(String), expect.any(String)] : ['batch', 'channels', 'height', 'width']);
      for (const m of [...dec.inputs, ...dec.outputs, ...enc.inputs, ...enc.outputs]) {
        expect(m.type, m.name).toBe(fx.float);
        expect(m.shape!.length).toBe(4);
        // the legacy script names no output axes: torch makes up names for the dynamic ones
        expect(typeof m.shape![0]).toBe('string');
      }
      if (fx.convention === 'optimum') {
        expect(io(dec.inputs, 'latent_sample').shape).toEqual(['batch_size', 4, 'latent_height', 'latent_width']);
        expect(io(enc.inputs, 'sample').shape).toEqual(['batch_size', 3, 'sample_height', 'sample_width']);
      }
      const lat = 4;
      for (const [h, w] of [[16, 16], [8, 12]] as const) {
        const img = (await dec.run({ latent_sample: floatFeed(fx.float, randn(lat * h * w, 5), [1, lat, h, w]) })).sample!;
        expect(img.dims).toEqual([1, 3, h * factor, w * factor]);
        expect(allFinite(img)).toBe(true);
      }
      const z = (await enc.run({ sample: floatFeed(fx.float, randn(2 * 3 * 64 * 64, 6), [2, 3, 64, 64]) }))[encOut]!;
      expect(z.dims).toEqual([2, fx.convention === 'optimum' ? 2 * lat : lat, 64 / factor, 64 / factor]);
      expect(allFinite(z)).toBe(true);
    });
  });
}

describe('the SD 1.5 conventions hold the same model', () => {
  const vocab = readJson('sd15-optimum', 'tokenizer', 'vocab.json');
  const ids = promptIds(vocab, vocab['<|endoftext|>'] as number, ['on</w>', 'the</w>', 'red</w>']);
  const x = randn(4 * 16 * 16, 11);
  const ctx = randn(77 * 32, 12);

  async function runAll(fixture: string) {
    const te = await open(fixture, 'text_encoder');
    const unet = await open(fixture, 'unet');
    const dec = await open(fixture, 'vae_decoder');
    const enc = await open(fixture, 'vae_encoder');
    const idsType = io(te.inputs, 'input_ids').type;
    const ts = io(unet.inputs, 'timestep');
    const ft = io(unet.inputs, 'sample').type;
    const text = await te.run({ input_ids: intFeed(idsType, ids, [1, 77]) });
    const timestep = ts.shape!.length === 0 ? floatFeed(ts.type, [981], []) : ts.type === 'int64' ? intFeed('int64', [981], [1]) : floatFeed(ts.type, [981], [1]);
    const eps = await unet.run({ sample: floatFeed(ft, x, [1, 4, 16, 16]), timestep, encoder_hidden_states: floatFeed(ft, ctx, [1, 77, 32]) });
    const img = await dec.run({ latent_sample: floatFeed(ft, x, [1, 4, 16, 16]) });
    const encOut = await enc.run({ sample: floatFeed(ft, floats(img.sample!), [1, 3, 128, 128]) });
    return {
      last: floats(text.last_hidden_state!), pooled: floats(text.pooler_output!), eps: floats(eps.out_sample!), img: floats(img.sample!),
      latent: floats(Object.values(encOut)[0]!),
    };
  }

  it('legacy (int32 ids, rank-1 timestep, weights.pb) gives the Optimum export\'s outputs', async () => {
    const a = await runAll('sd15-optimum');
    const b = await runAll('sd15-legacy');
    expect(maxDiff(a.last, b.last)).toBeLessThan(1e-5);
    expect(maxDiff(a.pooled, b.pooled)).toBeLessThan(1e-5);
    expect(maxDiff(a.eps, b.eps)).toBeLessThan(1e-4 * Math.max(1, maxAbs(a.eps)));
    expect(maxDiff(a.img, b.img)).toBeLessThan(1e-4 * Math.max(1, maxAbs(a.img)));
    // Optimum's encoder gives mean||logvar, the legacy one a sample: the same latent size, different contents
    expect(a.latent.length).toBe(2 * b.latent.length);
  });

  it('fp16 gives the float32 outputs within float16 precision', async () => {
    const a = await runAll('sd15-optimum');
    const h = await runAll('sd15-fp16');
    for (const k of ['last', 'pooled', 'eps', 'img', 'latent'] as const) {
      const scale = Math.max(1e-3, maxAbs(a[k]));
      const err = maxDiff(a[k], h[k]) / scale;
      expect(err, k).toBeLessThan(0.03);
      expect(err, k).toBeGreaterThan(0); // really computed in float16
    }
  });
});
