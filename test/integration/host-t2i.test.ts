/**
 * The host on a text-to-image pipeline (the SD 1.5 fixture in the Optimum layout): modelInfo describes it as the
 * Models view shows it (family, convention, components with the graphs' I/O and dtypes, sizes, text, VAE); the
 * `sample` job samples prompts with progress, returns the grid, token counts and truncation, and the same grid as
 * `dq sample` with the pipeline's defaults; cancel, and errors as data.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CalibrateResult, CompareResult, JobEvent, JobSpec, ModelInfo, QuantizeResult, SampleResult } from '../../src-main/contract/api';
import { createHost, dispatch, type Host } from '../../src-main/host';
import { dq, ROOT, tmp } from '../helpers';

const SD15 = join(ROOT, 'test', 'fixtures', 'sd15-optimum');
const readJson = (p: string) => JSON.parse(readFileSync(p, 'utf8')) as Record<string, unknown>;

let host: Host;
const events: JobEvent[] = [];
beforeAll(() => {
  host = createHost('browser', 'test');
  host.subscribe((e) => events.push(e));
});
afterAll(async () => {
  await host.dispose();
  rmSync(host.workspace, { recursive: true, force: true });
});

/** Starts a job through the validating dispatcher and waits for its last event. */
async function runJob(spec: JobSpec, onProgress?: (jobId: string) => void): Promise<JobEvent & { kind: 'done' | 'error' }> {
  const r = await dispatch(host, 'startJob', [spec]);
  if (!r.ok) throw new Error(`startJob refused: ${r.error.message}`);
  const jobId = (r.value as { jobId: string }).jobId;
  let progressed = false;
  for (;;) {
    const end = events.find((e): e is JobEvent & { kind: 'done' | 'error' } => e.jobId === jobId && (e.kind === 'done' || e.kind === 'error'));
    if (end) return end;
    if (!progressed && events.some((e) => e.jobId === jobId && e.kind === 'progress')) {
      progressed = true;
      onProgress?.(jobId);
    }
    await new Promise((ok) => setTimeout(ok, 20));
  }
}

describe('host: modelInfo on a text-to-image pipeline', () => {
  let info: ModelInfo;
  beforeAll(async () => {
    const r = await host.modelInfo(SD15);
    if (!r.ok) throw new Error(r.error.message);
    info = r.value;
  }, 120_000);

  it('names the family, the task, the convention and what conditions a sample', () => {
    expect(info.className).toBe('StableDiffusionPipeline');
    expect(info.family).toEqual({ name: 'Stable Diffusion 1.x/2.x', task: 'text-to-image', sampled: true });
    expect(info.conditioning).toBe('text');
    expect(info.convention?.name).toBe('Optimum');
    expect(info.convention?.why).toMatch(/int64 input_ids/);
  });

  it('sizes and VAE from the component configs', () => {
    const unet = readJson(join(SD15, 'unet', 'config.json'));
    const vae = readJson(join(SD15, 'vae_decoder', 'config.json'));
    const factor = 2 ** ((vae.block_out_channels as number[]).length - 1);
    const side = unet.sample_size as number;
    expect(info.latentShape).toEqual([unet.in_channels, side, side]);
    expect(info.imageShape).toEqual([vae.out_channels, side * factor, side * factor]);
    expect(info.vae).toMatchObject({ factor, scalingFactor: vae.scaling_factor, shiftFactor: 0, dtype: 'float32' });
    // SD 1.x: guidance 7.5 (diffusers' default guidance_scale), PNDM from scheduler_config.json
    expect((readJson(join(SD15, 'scheduler', 'scheduler_config.json')))._class_name).toBe('PNDMScheduler');
    expect(info.defaults).toEqual({ sampler: 'pndm', guidance: 7.5 });
  });

  it('lists every component with its role, declared class and the graph I/O onnxruntime reports', async () => {
    const index = readJson(join(SD15, 'model_index.json'));
    const comps = info.components!;
    expect(comps.map((c) => [c.folder, c.role])).toEqual([
      ['tokenizer', 'tokenizer'], ['text_encoder', 'conditioner'], ['unet', 'denoiser'], ['vae_decoder', 'latent codec'], ['vae_encoder', 'latent codec'], ['scheduler', 'scheduler'],
    ]);
    for (const c of comps) expect(c.declared).toEqual(index[c.folder.startsWith('vae_') ? 'vae' : c.folder]);
    expect(comps.find((c) => c.folder === 'tokenizer')!.files).toEqual(expect.arrayContaining(['vocab.json', 'merges.txt']));
    for (const folder of ['text_encoder', 'unet', 'vae_decoder']) {
      const s = await ort.InferenceSession.create(join(SD15, folder, 'model.onnx'));
      const c = comps.find((x) => x.folder === folder)!;
      const meta = (m: readonly ort.InferenceSession.ValueMetadata[]) => m.map((x) => [x.name, x.isTensor ? x.type : '?']);
      expect(c.onnx!.inputs.map((x) => [x.name, x.type])).toEqual(meta(s.inputMetadata));
      expect(c.onnx!.outputs.map((x) => [x.name, x.type])).toEqual(meta(s.outputMetadata));
      await s.release();
    }
    const unet = comps.find((c) => c.folder === 'unet')!.onnx!;
    expect(unet.inputs.find((x) => x.name === 'timestep')).toEqual({ name: 'timestep', type: 'float32', shape: [] });
    expect(comps.find((c) => c.folder === 'text_encoder')!.onnx!.inputs[0]).toMatchObject({ name: 'input_ids', type: 'int64' });
  });

  it('summarises the text conditioning; calibrate, quantize and export are offered', () => {
    const tok = readJson(join(SD15, 'tokenizer', 'vocab.json'));
    expect(info.text).toMatchObject({ kind: 'clip', width: 32, zerosForEmptyNegative: false });
    expect(info.text!.encoders).toEqual([expect.objectContaining({ component: 'text_encoder', input: 'input_ids', idsType: 'int64', hidden: 'last_hidden_state' })]);
    expect(info.text!.tokenizers).toEqual([expect.objectContaining({ folder: 'tokenizer', vocab: Object.keys(tok).length, maxLength: 77, padId: tok['<|endoftext|>'] })]);
    expect(info.quantizeUnavailable).toBeNull();
    // the fixture ships no calibration prompts; its cross-attention K/V projections are marked text-only
    expect(info.calibrationPrompts).toBeNull();
    expect(info.layers!.filter((l) => l.text === 'cross-attention').every((l) => /attn2\/to_[kv]/.test(l.name))).toBe(true);
    expect(info.layers!.some((l) => l.text === 'cross-attention')).toBe(true);
    expect(info.quantizableComponents).toEqual(['text_encoder', 'vae_decoder']);
  });

  it('a class-conditional pixel model keeps its old description, with quantization available', async () => {
    const r = await host.modelInfo('tiny-mnist');
    if (!r.ok) throw new Error(r.error.message);
    expect(r.value).toMatchObject({ conditioning: 'class', latentShape: null, components: null, text: null, vae: null, quantizeUnavailable: null });
    expect(r.value.imageShape).toEqual(r.value.sampleShape);
    expect(r.value.layers!.length).toBeGreaterThan(10);
  });
});

describe('host: the other conventions and dtypes', () => {
  const info = async (name: string) => {
    const r = await host.modelInfo(join(ROOT, 'test', 'fixtures', name));
    if (!r.ok) throw new Error(r.error.message);
    return r.value;
  };

  it("SDXL: two tokenizers and encoders, the pooled text_embeds and time_ids inputs", async () => {
    const i = await info('sdxl-optimum');
    expect(i.family?.name).toBe('Stable Diffusion XL');
    expect(i.text?.kind).toBe('sdxl');
    // pad ids as each tokenizer's files say: '<|endoftext|>' for the first, '!' (id 0) for the second
    const pads = ['tokenizer', 'tokenizer_2'].map((t) => {
      const special = readJson(join(ROOT, 'test', 'fixtures', 'sdxl-optimum', t, 'special_tokens_map.json'));
      const pad = special.pad_token as string | { content: string };
      return (readJson(join(ROOT, 'test', 'fixtures', 'sdxl-optimum', t, 'vocab.json')))[typeof pad === 'string' ? pad : pad.content];
    });
    expect(i.text!.tokenizers.map((t) => t.padId)).toEqual(pads);
    expect(i.text!.encoders.map((e) => [e.component, e.pooled])).toEqual([['text_encoder', null], ['text_encoder_2', 'text_embeds']]);
    const unet = i.components!.find((c) => c.folder === 'unet')!.onnx!;
    expect(unet.inputs.map((x) => x.name)).toEqual(expect.arrayContaining(['text_embeds', 'time_ids']));
    expect(unet.externalData).toBe('model.onnx_data');
  });

  it('legacy diffusers script: int32 ids; a size of our choosing reaches the sampler', async () => {
    const i = await info('sd15-legacy');
    expect(i.convention?.name).toBe('legacy diffusers script');
    expect(i.text!.encoders[0]!.idsType).toBe('int32');
    expect(i.imageShape).toEqual([3, 512, 512]);
    const end = await runJob({ kind: 'sample', model: join(ROOT, 'test', 'fixtures', 'sd15-legacy'), prompts: ['a red seven'], seeds: [0], steps: 2, height: 128, width: 64 });
    expect(end.kind === 'done' && (end.result as SampleResult).imageShape).toEqual([3, 128, 64]);
  }, 120_000);

  it('fp16: the VAE dtype is float16', async () => {
    const i = await info('sd15-fp16');
    expect(i.vae?.dtype).toBe('float16');
    expect(i.components!.find((c) => c.folder === 'unet')!.onnx!.inputs.find((x) => x.name === 'sample')?.type).toBe('float16');
  });
});

describe('host: the sample job', () => {
  const long = Array(40).fill('a red seven').join(' ');
  let result: SampleResult;
  let jobId: string;
  beforeAll(async () => {
    const end = await runJob({ kind: 'sample', model: SD15, prompts: ['a red seven on a blue background', long], seeds: [0, 1], steps: 3 });
    if (end.kind !== 'done') throw new Error(`sample failed: ${end.error.message}`);
    result = end.result as SampleResult;
    jobId = end.jobId;
  }, 120_000);

  it('reports started, progress and done, and lists the job', async () => {
    const mine = events.filter((e) => e.jobId === jobId);
    expect(mine[0]!.kind).toBe('started');
    expect(mine.some((e) => e.kind === 'progress' && e.progress.done === e.progress.total)).toBe(true);
    const list = await host.listJobs();
    expect(list.ok && list.value.find((j) => j.id === jobId)).toMatchObject({ kind: 'sample', state: 'done' });
  });

  it('uses the pipeline defaults, gives token counts and names what truncation dropped', () => {
    expect(result.settings).toEqual({ steps: 3, sampler: 'pndm', guidance: 7.5 });
    expect(result.imageShape).toEqual([3, 128, 128]);
    expect(result.seeds).toEqual([0, 1]);
    expect(result.tokenLimits).toEqual([75]);
    const [short, longer] = result.prompts;
    expect(short).toMatchObject({ prompt: 'a red seven on a blue background', negative: '', truncated: false, dropped: '' });
    expect(short!.tokens).toHaveLength(1);
    expect(short!.tokens[0]).toBeGreaterThanOrEqual(7); // at least a token a word
    expect(longer!.truncated).toBe(true);
    expect(longer!.tokens[0]).toBeGreaterThan(75);
    expect(long.endsWith(longer!.dropped)).toBe(true);
    expect(result.warnings.some((w) => w.includes('truncated') && w.includes(longer!.dropped))).toBe(true);
  });

  it('writes the same grid as `dq sample` with the same settings, readable as an artifact', async () => {
    const out = join(tmp('dq-host-t2i-'), 'cli');
    const r = dq(['sample', SD15, '--prompt', 'a red seven on a blue background', '--prompt', long, '--seeds', '0-1', '--steps', '3', '--sampler', 'pndm', '--guidance', '7.5', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const a = await host.readArtifact(jobId, result.files.grid);
    expect(a.ok).toBe(true);
    if (!a.ok) return;
    expect(a.value.mime).toBe('image/png');
    expect(Buffer.from(a.value.base64, 'base64').equals(readFileSync(join(out, 'grid.png')))).toBe(true);
    const rec = await host.readArtifact(jobId, result.files.record);
    expect(rec.ok && JSON.parse(Buffer.from(rec.value.base64, 'base64').toString('utf8')).prompts).toHaveLength(2);
    rmSync(join(out, '..'), { recursive: true, force: true });
  }, 120_000);

  it('cancels a running sample job', async () => {
    const end = await runJob({ kind: 'sample', model: SD15, prompts: ['a red seven', 'a blue two'], seeds: [0, 1, 2, 3], steps: 900, sampler: 'ddim' }, (id) => {
      void host.cancelJob(id);
    });
    expect(end.kind).toBe('error');
    if (end.kind === 'error') expect(end.error.code).toBe('CANCELLED');
    const list = await host.listJobs();
    expect(list.ok && list.value.find((j) => j.id === end.jobId)?.state).toBe('cancelled');
    expect(await host.cancelJob(end.jobId)).toEqual({ ok: true, value: { cancelled: false } });
  }, 120_000);

  it('errors come back as data: a size off the VAE grid, a model without text, a schema refusal', async () => {
    const bad = await runJob({ kind: 'sample', model: SD15, prompts: ['x'], seeds: [0], steps: 1, height: 100 });
    expect(bad.kind === 'error' && bad.error.code).toBe('BAD_ARGUMENT');
    expect(bad.kind === 'error' && bad.error.message).toMatch(/100.*8|8.*100/);
    const mnist = await runJob({ kind: 'sample', model: 'tiny-mnist', prompts: ['x'], seeds: [0], steps: 1 });
    expect(mnist.kind === 'error' && mnist.error).toEqual({ code: 'BAD_ARGUMENT', message: 'tiny-mnist takes no prompts (it is class-conditional: compare it by class in Samples)' });
    const refused = await dispatch(host, 'startJob', [{ kind: 'sample', model: SD15, prompts: Array(65).fill('x'), seeds: [0], steps: 1 }]);
    expect(refused).toEqual({ ok: false, error: { code: 'BAD_REQUEST', message: "startJob: field 'prompts': at most 64 prompts in one run" } });
  }, 120_000);
});

describe('host: calibrate, quantize and sample variants on a text-to-image pipeline (models/tiny-t2i)', () => {
  const T2I = join(ROOT, 'models', 'tiny-t2i');
  const ownPrompts = readFileSync(join(T2I, 'calibration_prompts.txt'), 'utf8').split('\n').map((l) => l.trim()).filter(Boolean);
  let info: ModelInfo;
  let calId: string;
  let quantId: string;
  beforeAll(async () => {
    const r = await host.modelInfo('tiny-t2i');
    if (!r.ok) throw new Error(r.error.message);
    info = r.value;
  }, 120_000);

  it('modelInfo: quantization offered, its own calibration prompts, the text-only layers and features, the components', () => {
    expect(info.quantizeUnavailable).toBeNull();
    expect(info.calibrationPrompts).toEqual(ownPrompts);
    const text = info.layers!.filter((l) => l.text);
    expect(text.length).toBeGreaterThan(0);
    for (const l of text) expect(l).toMatchObject({ text: 'cross-attention', temporal: false });
    for (const l of text) expect(l.name).toMatch(/attn2\/to_[kv]/);
    expect(info.layers!.filter((l) => /attn2\/to_[kv]/.test(l.name)).every((l) => l.text === 'cross-attention')).toBe(true);
    expect(info.textFeatures!.length).toBeGreaterThan(0);
    expect(info.quantizableComponents).toEqual(['text_encoder', 'vae_decoder']);
  });

  it('calibrates on the prompts given, with the pipeline\'s sampler and guidance; text-only sites read the same at every step', async () => {
    const prompts = ['a red seven on a blue background', 'the digit two in green on black'];
    const end = await runJob({ kind: 'calibrate', model: 'tiny-t2i', samples: 4, steps: 3, prompts: [...prompts, '  '], negativePrompt: 'blurry' });
    if (end.kind !== 'done') throw new Error(end.error.message);
    calId = end.jobId;
    expect((end.result as CalibrateResult).steps).toEqual([0, 1, 2]);
    const job = (await host.listJobs()) as { ok: true; value: { id: string; label: string }[] };
    expect(job.value.find((j) => j.id === calId)!.label).toMatch(/4 images × 3 steps, 2 prompts/);
    const c = await host.getCalibration(calId);
    if (!c.ok) throw new Error(c.error.message);
    expect(c.value.settings).toMatchObject({ samples: 4, steps: 3, sampler: info.defaults.sampler, guidance: info.defaults.guidance, prompts, negativePrompt: 'blurry' });
    const text = c.value.sites.filter((s) => s.text);
    expect(text.length).toBeGreaterThan(0);
    expect(c.value.sites.filter((s) => !s.text).length).toBeGreaterThan(0);
    for (const s of text) {
      expect(s.tensor).toBe('encoder_hidden_states');
      for (const half of Object.values(c.value.stats[s.id]!)) {
        const per = Object.values(half);
        expect(per.length).toBe(3);
        for (const st of per) expect([st.min, st.max]).toEqual([per[0]!.min, per[0]!.max]);
      }
    }
    // a sample-dependent site does change across the steps
    const conv = c.value.sites.find((s) => s.tensor === 'sample')!;
    const cs = Object.values(c.value.stats[conv.id]![0]!);
    expect(new Set(cs.map((x) => x.absmax)).size).toBeGreaterThan(1);
  }, 180_000);

  it('a prompt file on the host, or (neither) the pipeline\'s own prompts; refusals as data', async () => {
    const dir = tmp('dq-host-t2i-prompts-');
    const file = join(dir, 'p.json');
    writeFileSync(file, JSON.stringify([{ prompt: 'a blue four', negative_prompt: 'noise' }, { prompt: 'a yellow one', negative_prompt: 'noise' }]));
    const fromFile = await runJob({ kind: 'calibrate', model: 'tiny-t2i', samples: 2, steps: 1, promptFile: file });
    if (fromFile.kind !== 'done') throw new Error(fromFile.error.message);
    const c1 = await host.getCalibration(fromFile.jobId);
    expect(c1.ok && c1.value.settings).toMatchObject({ prompts: ['a blue four', 'a yellow one'], negativePrompt: 'noise' });
    const own = await runJob({ kind: 'calibrate', model: 'tiny-t2i', samples: 1, steps: 1 });
    if (own.kind !== 'done') throw new Error(own.error.message);
    const c2 = await host.getCalibration(own.jobId);
    expect(c2.ok && c2.value.settings.prompts).toEqual(ownPrompts);

    const refused = async (spec: Record<string, unknown>) => {
      const r = await dispatch(host, 'startJob', [{ kind: 'calibrate', model: 'tiny-t2i', samples: 1, steps: 1, ...spec }]);
      return r.ok ? null : r.error;
    };
    expect(await refused({ prompts: ['x'], promptFile: file })).toEqual({ code: 'BAD_ARGUMENT', message: 'give calibration prompts or a prompt file, not both' });
    expect(await refused({ promptFile: 'p.txt' })).toMatchObject({ code: 'BAD_ARGUMENT', message: expect.stringMatching(/absolute path/) });
    expect(await refused({ promptFile: join(dir, 'none.txt') })).toMatchObject({ code: 'NOT_FOUND', message: expect.stringMatching(/prompt file not found/) });
    expect(await refused({ prompts: [' ', ''] })).toMatchObject({ code: 'BAD_ARGUMENT', message: expect.stringMatching(/calibration prompts are empty/) });
    writeFileSync(file, JSON.stringify([{ prompt: 'a', negative_prompt: 'x' }, { prompt: 'b' }]));
    expect(await refused({ promptFile: file })).toMatchObject({ code: 'BAD_ARGUMENT', message: expect.stringMatching(/different negative prompts/) });
    rmSync(dir, { recursive: true, force: true });
    // a class-conditional model takes no prompts: the engine says so, as data
    const mnist = await runJob({ kind: 'calibrate', model: 'tiny-mnist', samples: 1, steps: 1, prompts: ['x'] });
    expect(mnist.kind === 'error' && mnist.error.message).toMatch(/takes no text/);
  }, 240_000);

  it('quantizes with the text-feature cache and an int8 text encoder, and reports both', async () => {
    const presets = await host.listPresets();
    if (!presets.ok) throw new Error(presets.error.message);
    const recipe = { ...presets.value.find((p) => p.name === 'int8-w8a8')!.recipe, name: 'w8a8-textcache', text: 'cache' };
    const end = await runJob({ kind: 'quantize', model: 'tiny-t2i', recipe, calibration: calId, components: ['text_encoder'] });
    if (end.kind !== 'done') throw new Error(end.error.message);
    quantId = end.jobId;
    const r = end.result as QuantizeResult;
    expect(r.name).toBe('w8a8-textcache');
    expect(r.text).toMatchObject({ mode: 'cache' });
    expect(r.text!.cached.length).toBeGreaterThan(0);
    expect(r.text!.cached.every((f) => info.textFeatures!.includes(f))).toBe(true);
    expect(r.components!.map((c) => c.name)).toEqual(['text_encoder']);
    const enc = r.components![0]!;
    expect(enc.bytes.after).toBeLessThan(enc.bytes.before);
    expect(enc.layers.quantized).toBeGreaterThan(0);
    const variant = join(host.workspace, quantId, 'variant');
    expect(existsSync(join(variant, 'text', 'model.onnx'))).toBe(true);
  }, 240_000);

  it('samples FP and the variant with the same prompts and seeds: a grid each, same size', async () => {
    const end = await runJob({ kind: 'sample', model: 'tiny-t2i', prompts: ['a red seven on a blue background', 'a green two'], seeds: [0, 1], steps: 3, variants: [quantId] });
    if (end.kind !== 'done') throw new Error(end.error.message);
    const r = end.result as SampleResult;
    expect(r.variants).toHaveLength(1);
    expect(r.variants![0]).toMatchObject({ jobId: quantId, name: 'w8a8-textcache' });
    const fp = await host.readArtifact(end.jobId, r.files.grid);
    const v = await host.readArtifact(end.jobId, r.variants![0]!.grid);
    if (!fp.ok || !v.ok) throw new Error('grid not readable');
    const size = (b64: string) => { const b = Buffer.from(b64, 'base64'); return [b.readUInt32BE(16), b.readUInt32BE(20)]; };
    expect(size(v.value.base64)).toEqual(size(fp.value.base64));
    expect(v.value.base64).not.toBe(fp.value.base64);
    const bad = await dispatch(host, 'startJob', [{ kind: 'sample', model: 'tiny-t2i', prompts: ['x'], seeds: [0], steps: 1, variants: [calId] }]);
    expect(bad).toEqual({ ok: false, error: { code: 'NOT_FOUND', message: `no quantize job '${calId}'` } });
  }, 240_000);

  it('compares FP and the variant on prompts, with the pipeline\'s sampler and guidance', async () => {
    const prompts = ['a red seven on a blue background', 'a green two'];
    const end = await runJob({ kind: 'compare', model: 'tiny-t2i', variants: [quantId], seeds: [0, 1], classes: [], prompts, steps: 3, video: false });
    if (end.kind !== 'done') throw new Error(end.error.message);
    const r = end.result as CompareResult;
    expect(r.variants.map((v) => [v.name, v.isFp])).toEqual([['fp', true], ['w8a8-textcache', false]]);
    expect(r.images.map((i) => [i.prompt, i.seed])).toEqual([[prompts[0], 0], [prompts[0], 1], [prompts[1], 0], [prompts[1], 1]]);
    expect(r.variants[1]!.psnrDb.perImage).toHaveLength(4);
    expect(r.variants[1]!.psnrDb.mean).toBeGreaterThan(10);
    expect(r.files.strips).toHaveLength(2);
    const m = await host.readArtifact(end.jobId, r.files.metrics);
    if (!m.ok) throw new Error(m.error.message);
    const settings = JSON.parse(Buffer.from(m.value.base64, 'base64').toString('utf8')).settings;
    expect(settings).toMatchObject({ sampler: info.defaults.sampler, guidance: info.defaults.guidance, steps: 3 });
    expect(settings.prompts.map((p: { prompt: string }) => p.prompt)).toEqual(prompts);
  }, 240_000);
});
