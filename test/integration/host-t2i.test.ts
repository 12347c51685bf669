/**
 * The host on a text-to-image pipeline (the SD 1.5 fixture in the Optimum layout): modelInfo describes it as the
 * Models view shows it (family, convention, components with the graphs' I/O and dtypes, sizes, text, VAE); the
 * `sample` job samples prompts with progress, returns the grid, token counts and truncation, and the same grid as
 * `dq sample` with the pipeline's defaults; cancel, and errors as data.
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobEvent, JobSpec, ModelInfo, SampleResult } from '../../src-main/contract/api';
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

  it('summarises the text conditioning, and says why quantization is not offered yet', () => {
    const tok = readJson(join(SD15, 'tokenizer', 'vocab.json'));
    expect(info.text).toMatchObject({ kind: 'clip', width: 32, zerosForEmptyNegative: false });
    expect(info.text!.encoders).toEqual([expect.objectContaining({ component: 'text_encoder', input: 'input_ids', idsType: 'int64', hidden: 'last_hidden_state' })]);
    expect(info.text!.tokenizers).toEqual([expect.objectContaining({ folder: 'tokenizer', vocab: Object.keys(tok).length, maxLength: 77, padId: tok['<|endoftext|>'] })]);
    expect(info.quantizeUnavailable).toMatch(/Stable Diffusion 1\.x\/2\.x is a latent text-to-image pipeline: the studio cannot calibrate, quantize or export it yet/);
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
    expect(refused).toEqual({ ok: false, error: { code: 'BAD_REQUEST', message: 'startJob: at most 64 prompts in one run (at 0.prompts)' } });
  }, 120_000);
});
