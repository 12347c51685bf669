/**
 * Real diffusers folders (issue 16): `dq info` names the family, every component with its I/O and dtypes, and the I/O
 * convention the graphs follow; commands that would sample refuse a family the studio cannot sample yet in one line.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeComponents } from '../../src-main/core/pipeline/components';
import { dq, ROOT, tmp, TINY } from '../helpers';

const F = (name: string) => join(ROOT, 'test', 'fixtures', name);

describe('dq info on real pipeline layouts', () => {
  it.each([
    ['sd15-optimum', 'StableDiffusionPipeline', 'Optimum', 'int64', 'float32'],
    ['sdxl-optimum', 'StableDiffusionXLPipeline', 'Optimum', 'int64', 'float32'],
    ['sd15-legacy', 'OnnxStableDiffusionPipeline', 'legacy diffusers script', 'int32', 'float32'],
    ['sd15-fp16', 'StableDiffusionPipeline', 'Optimum', 'int64', 'float16'],
  ])('%s: %s, %s convention, ids %s, unet %s', async (fixture, cls, convention, ids, dtype) => {
    const c = await describeComponents(F(fixture), { io: true });
    expect(c.className).toBe(cls);
    expect(c.family?.task).toBe('text-to-image');
    expect(c.convention).toBe(convention);
    const byName = new Map(c.components.map((x) => [x.name, x]));
    expect(byName.get('text_encoder')!.onnx!.inputs.find((m) => m.name === 'input_ids')!.type).toBe(ids);
    const unet = byName.get('unet')!;
    expect(unet.role).toBe('denoiser');
    expect(unet.onnx!.inputs.find((m) => m.name === 'sample')!.type).toBe(dtype);
    expect(unet.onnx!.inputs.map((m) => m.name)).toContain('encoder_hidden_states');
    expect(byName.get('vae_decoder')!.role).toBe('latent codec');
    expect(byName.get('tokenizer')!.files).toContain('vocab.json');
    if (fixture === 'sdxl-optimum') {
      expect(unet.onnx!.externalData).toBe('model.onnx_data');
      expect(unet.onnx!.inputs.map((m) => m.name)).toEqual(expect.arrayContaining(['text_embeds', 'time_ids']));
      expect(byName.get('text_encoder_2')!.role).toBe('conditioner');
      expect(byName.get('tokenizer_2')!.role).toBe('tokenizer');
    }
    if (fixture === 'sd15-legacy') expect(unet.onnx!.externalData).toBe('weights.pb');
  });

  it('prints the components through the CLI, and --json; exit 0', () => {
    const r = dq(['info', F('sd15-legacy')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^class\s+OnnxStableDiffusionPipeline \(Stable Diffusion 1\.x\/2\.x \(legacy ONNX\), text-to-image\)$/m);
    expect(r.stdout).toMatch(/^convention legacy diffusers script \(int32 input_ids, weights in weights\.pb/m);
    expect(r.stdout).toMatch(/^\s+input\s+input_ids int32 \[batch, sequence\]$/m);
    expect(r.stdout).toMatch(/^sample\s+4x64x64 latents \(the legacy ONNX pipeline default \(512x512 images\)\) -> images 3x512x512$/m);
    expect(r.stdout).toMatch(/^vae\s+factor 8, scaling 0\.18215, float32 \(from the legacy ONNX pipeline/m);
    expect(r.stdout).toMatch(/^defaults\s+sampler pndm, guidance 7\.5$/m);
    const j = dq(['info', F('sd15-fp16'), '--json']);
    expect(j.code).toBe(0);
    const parsed = JSON.parse(j.stdout) as { components: { convention: string; components: { name: string; onnx?: { outputs: { type: string }[] } }[] }; codec: { inputType: string } };
    expect(parsed.components.convention).toBe('Optimum');
    expect(parsed.components.components.find((c) => c.name === 'vae_decoder')!.onnx!.outputs[0]!.type).toBe('float16');
    expect(parsed.codec.inputType).toBe('float16');
  });

  it('our own pipeline is still described as before', () => {
    const r = dq(['info', TINY]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^class\s+DQClassConditionalPipeline$/m);
    expect(r.stdout).toMatch(/^layers\s+\d+ quantizable/m);
  });

  it('sample refuses a family it cannot sample yet, naming it in one line (a Sana folder); an SD3 folder without its transformer graph names what is missing', () => {
    const out = tmp();
    const sd3 = join(out, 'sd3');
    mkdirSync(join(sd3, 'transformer'), { recursive: true });
    writeFileSync(join(sd3, 'model_index.json'), JSON.stringify({ _class_name: 'StableDiffusion3Pipeline', transformer: ['diffusers', 'SD3Transformer2DModel'] }));
    const r = dq(['sample', sd3, '--prompt', 'a cat', '--out', join(out, 's')]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^dq: error: .*sd3: component 'transformer' is missing \(no transformer\/model.onnx\)/);
    const sana = join(out, 'sana');
    mkdirSync(join(sana, 'transformer'), { recursive: true });
    writeFileSync(join(sana, 'model_index.json'), JSON.stringify({ _class_name: 'SanaPipeline', transformer: ['diffusers', 'SanaTransformer2DModel'], scheduler: ['diffusers', 'FlowMatchEulerDiscreteScheduler'] }));
    const f = dq(['quantize', sana, '--preset', 'int4-w4a16', '--out', join(out, 'q')]);
    expect(f.code).toBe(1);
    expect(f.stderr).toMatch(/is a Sana \(DiT\) pipeline \(SanaPipeline, text-to-image\): DQ Studio cannot sample or quantize/);
    const i = dq(['info', sana]);
    expect(i.code).toBe(0);
    expect(i.stdout).toMatch(/transformer diffusers\.SanaTransformer2DModel/);
  });
});
