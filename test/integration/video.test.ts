/**
 * Text-to-video (issue 19) on the random-weight UNet3D fixture (tools/make_video_fixture.py: diffusers'
 * TextToVideoSDPipeline layout, sample [B, C, F, H, W]): frames fed on axis 2 and decoded one by one, the temporal
 * layers really mixing frames, the CLI's contact sheet and animated grid, and the quantize -> sample -> export path.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openPipeline } from '../../src-main/core/open';
import { decodeLatents, frameOf } from '../../src-main/core/pipeline/codec';
import { releaseSessions, withFrames } from '../../src-main/core/pipeline/pipeline';
import { buildFeeds, sample } from '../../src-main/core/pipeline/sample';
import { loadSharp } from '../../src-main/core/image/grid';
import { analyzeGraph } from '../../src-main/core/onnx/analysis';
import { encodeModel, loadOnnx } from '../../src-main/core/onnx/io';
import { exposeTensors } from '../../src-main/core/onnx/rewrite';
import { calibrate } from '../../src-main/core/quant/calibrate';
import { quantizePipeline } from '../../src-main/core/quant/quantize';
import { loadRecipe, parseRecipe } from '../../src-main/core/quant/recipe';
import { readParams } from '../../src-main/core/quant/variant';
import { Session } from '../../src-main/core/runtime/onnx';
import { dq, ROOT, tmp } from '../helpers';

afterAll(releaseSessions);

const FX = join(ROOT, 'test', 'fixtures', 'video-unet3d');
const PROMPT = 'a red seven on a blue background';

describe('a TextToVideoSDPipeline folder', () => {
  it('opens with its frames (diffusers\' 16 by default, --frames to change) stacked along the sample\'s height', async () => {
    const { pipeline } = await openPipeline(FX, 'cpu');
    expect(pipeline.io.video).toBe(true);
    expect(pipeline.index.frames).toBe(16);
    expect(pipeline.index.sampleShape).toEqual([4, 16 * 8, 8]);
    expect(pipeline.imageShape).toEqual([3, 16 * 64, 64]);
    const p4 = withFrames(pipeline, 4);
    expect(p4.index.sampleShape).toEqual([4, 32, 8]);
    expect(p4.imageShape).toEqual([3, 256, 64]);
    expect(() => withFrames(pipeline, 0)).toThrow(/--frames must be a whole number from 1/);
    const img = await openPipeline(join(ROOT, 'models', 'tiny-t2i'), 'cpu');
    expect(() => withFrames(img.pipeline, 4)).toThrow(/--frames is for video pipelines; .* makes images/);
  });

  it('feeds [rows, C, F, h, w] and its temporal layers mix the frames: changing one frame\'s input changes the others\' output', async () => {
    const { pipeline, session } = await openPipeline(FX, 'cpu');
    const p = withFrames(pipeline, 4);
    const ids = await p.text!.ids([PROMPT], [''], false);
    const size = 4 * 32 * 8;
    const x = Float64Array.from({ length: size }, (_, i) => Math.sin(i * 0.37));
    const run = async (v: Float64Array) => {
      const feeds = await buildFeeds(p, v, 501, ids, false, 1);
      expect(feeds[p.io.sample]!.dims).toEqual([1, 4, 4, 8, 8]);
      return (await session.run(feeds, [p.io.output]))[p.io.output]!.data as Float32Array;
    };
    const a = await run(x);
    const y = Float64Array.from(x);
    // frame 0 of every channel: [C, F, h, w] = stacked rows 0..7 of each channel plane
    for (let c = 0; c < 4; c++) for (let j = 0; j < 64; j++) y[c * 256 + j] += 0.5;
    const b = await run(y);
    const frameDiff = (k: number) => {
      let d = 0;
      for (let c = 0; c < 4; c++) for (let j = 0; j < 64; j++) d = Math.max(d, Math.abs(a[c * 256 + k * 64 + j]! - b[c * 256 + k * 64 + j]!));
      return d;
    };
    expect(frameDiff(0)).toBeGreaterThan(1e-3);
    for (const k of [1, 2, 3]) expect(frameDiff(k), `frame ${k}`).toBeGreaterThan(1e-5);
  });

  it('decodes every frame on its own: the filmstrip equals the VAE run frame by frame', async () => {
    const { pipeline, session } = await openPipeline(FX, 'cpu');
    const p = withFrames(pipeline, 3);
    const res = await sample(p, session, { seeds: [5], classes: [], prompts: [PROMPT], steps: 2, sampler: 'ddim', guidance: 3 });
    expect(res.images[0]!.length).toBe(3 * 3 * 64 * 64);
    const z = res.latents![0]!;
    for (let k = 0; k < 3; k++) {
      const lat = new Float32Array(4 * 64);
      for (let c = 0; c < 4; c++) lat.set(z.subarray((c * 3 + k) * 64, (c * 3 + k + 1) * 64), c * 64);
      const one = (await decodeLatents(p.codec!, p.decoderSession!, [lat], [4, 8, 8])).images[0]!;
      const got = frameOf(res.images[0]!, 3, k);
      let worst = 0;
      for (let j = 0; j < one.length; j++) worst = Math.max(worst, Math.abs(one[j]! - got[j]!));
      expect(worst, `frame ${k}`).toBeLessThan(1e-5);
    }
  });
});

describe('the layer map of a UNet3D', () => {
  it('finds the layers that mix frames from the graph: the temporal convolutions and the attentions over the frames', () => {
    const fx = analyzeGraph(loadOnnx(join(FX, 'unet', 'model.onnx')).model);
    // 8 TemporalConvLayers of 4 Conv3d each; 8 TransformerTemporalModels, each with a self-attention over the
    // frames and a cross-attention to the text: 10 linear layers on the frame sequence (proj_in, the self-attention's
    // 4, the cross-attention's query and output, the feed-forward's 2, proj_out); the cross-attention's keys and
    // values read the text, and its softmax is over the text's tokens
    expect(fx.frames.convs).toHaveLength(32);
    expect(fx.frames.softmax).toHaveLength(8);
    expect(fx.frames.attention).toHaveLength(80);
    expect(fx.crossAttention.filter((n) => n.includes('temp_attentions') || n.includes('transformer_in'))).toHaveLength(16);
    expect(fx.frames.convs.every((n) => n.includes('temp_convs'))).toBe(true);
    expect(fx.frames.attention.every((n) => n.includes('temp_attentions') || n.includes('transformer_in'))).toBe(true);
    // the spatial attentions, the cross-attention keys and values and the resnets' convolutions are not among them
    expect(fx.frames.attention.some((n) => fx.crossAttention.includes(n))).toBe(false);
    const t2i = analyzeGraph(loadOnnx(join(ROOT, 'models', 'tiny-t2i', 'unet', 'model.onnx')).model);
    expect(t2i.frames).toEqual({ convs: [], attention: [], softmax: [] });
    const info = dq(['info', FX]);
    expect(info.stdout).toMatch(/^ {2}frames {3}112 layers mix the frames: 32 temporal convolutions \(a kernel over the frame axis\), 80 linear layers in 8 attentions over the frames$/m);
  });
});

describe('dq on a video pipeline', () => {
  it('sample --frames writes a contact sheet (a row per video, a column per frame) and every video played together', async () => {
    const out = tmp();
    const r = dq(['sample', FX, '--prompt', PROMPT, '--prompt', 'a green two', '--seeds', '0-1', '--frames', '4', '--steps', '2', '--out', join(out, 's'), '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^4 videos of 4 frames 64x64, pndm 2 steps, guidance 9/);
    const rec = JSON.parse(readFileSync(join(out, 's', 'samples.json'), 'utf8')) as { imageShape: number[]; video: { frames: number; fps: number; webp: string; mp4: string | null; note?: string } };
    expect(rec.imageShape).toEqual([3, 64, 64]);
    expect(rec.video).toMatchObject({ frames: 4, fps: 8, webp: 'videos.webp' });
    expect(rec.video.mp4 !== null || /MP4 not written/.test(rec.video.note ?? '')).toBe(true);
    const sharp = await loadSharp();
    const sheet = await sharp(join(out, 's', 'grid.png')).metadata();
    const anim = await sharp(join(out, 's', 'videos.webp'), { animated: true }).metadata();
    expect(anim.pages).toBe(4);
    // the contact sheet has 4 rows of 4 frames; the animation 2 rows of 2 videos
    expect(sheet.height!).toBeGreaterThan(4 * 128);
    expect(anim.pageHeight!).toBeGreaterThan(2 * 128);
    expect(anim.pageHeight!).toBeLessThan(sheet.height!);
  });

  it('calibrate -> quantize -> sample -> compare -> export on the UNet3D', async () => {
    const sharp = await loadSharp();
    const out = tmp();
    const prompts = join(out, 'p.txt');
    writeFileSync(prompts, 'a red seven\na blue two\n');
    const cal = dq(['calibrate', FX, '--samples', '2', '--steps', '3', '--prompts', prompts, '--out', join(out, 'cal.json'), '--quiet']);
    expect(cal.code, cal.stderr).toBe(0);
    const q = dq(['quantize', FX, '--calib', join(out, 'cal.json'), '--preset', 'int8-w8a8', '--out', join(out, 'w8')]);
    expect(q.code, q.stderr).toBe(0);
    expect(q.stdout).toMatch(/247 layers quantized/);
    const s = dq(['sample', join(out, 'w8'), '--prompt', PROMPT, '--seeds', '0', '--frames', '2', '--steps', '2', '--out', join(out, 's'), '--quiet']);
    expect(s.code, s.stderr).toBe(0);
    expect(s.stdout).toMatch(/^1 videos of 2 frames 64x64/);
    // dq compare: the grid's videos frame by frame, side by side and as heatmaps, PSNR per frame and flicker
    const c = dq(['compare', FX, join(out, 'w8'), '--prompt', PROMPT, '--seeds', '0-1', '--steps', '2', '--frames', '3', '--fid-samples', '0', '--no-video', '--out', join(out, 'c')]);
    expect(c.code, c.stderr).toBe(0);
    expect(c.stdout).toMatch(/^ {2}3 frames: PSNR \d+\.\d\d dB at worst \(frame [123]\), flicker \d\.\d{3}x FP's$/m);
    const m = JSON.parse(readFileSync(join(out, 'c', 'metrics.json'), 'utf8'));
    expect(m.videoFrames).toMatchObject({ frames: 3, fps: 8, side: 'videos-side.webp', diffs: { 'int8-w8a8': 'videos-diff-int8-w8a8.webp' } });
    const pf = m.videoFrames.perFrame[0];
    expect(pf.psnrDb).toHaveLength(3);
    expect(pf.ssim).toHaveLength(3);
    for (const p of pf.psnrDb) expect(p).toBeGreaterThan(15);
    expect(pf.flickerRatio).toBeGreaterThan(0);
    const side = await sharp(join(out, 'c', 'videos-side.webp'), { animated: true }).metadata();
    const diff = await sharp(join(out, 'c', 'videos-diff-int8-w8a8.webp'), { animated: true }).metadata();
    expect([side.pages, diff.pages]).toEqual([3, 3]);
    // two models side by side: about twice as wide as one model's heatmap grid
    expect(side.width!).toBeGreaterThan(1.8 * diff.width!);
    const html = readFileSync(join(out, 'c', 'report.html'), 'utf8');
    expect(html).toContain('<h2>Videos, frame by frame</h2>');
    expect(html).toMatch(/<tr data-video-variant="int8-w8a8"><th scope="row">int8-w8a8<\/th><td>\d+\.\d\d<\/td>/);
    const e = dq(['export', join(out, 'w8'), '--out', join(out, 'x'), '--seeds', '0-1', '--calib-images', '2']);
    expect(e.code, e.stderr).toBe(0);
    expect(e.stdout).toMatch(/verdict: as expected/);
  }, 600_000);
});

describe('the text-feature cache of a UNet3D', () => {
  it('computes what the FP unet does at a batch and a frame count its size probes never saw', async () => {
    const out = tmp();
    const rec = await calibrate(FX, join(out, 'cal.json'), { samples: 2, steps: 2, prompts: ['a red seven', 'a blue two'] });
    const recipe = parseRecipe({ ...loadRecipe('naive-w8a8'), name: 'cache', text: 'cache' }, 'test');
    const m = await quantizePipeline({ pipelineDir: FX, recipe, record: rec, recordPath: join(out, 'cal.json'), out: join(out, 'v') });
    expect(m.text!.sizes).toMatch(/^the text-feature models read their batch from the text/);
    const params = readParams(join(out, 'v'))!;
    const { pipeline } = await openPipeline(FX, 'cpu');
    const p = withFrames(pipeline, 3);
    const ids = await p.text!.ids(['one', 'two', 'three'], ['', '', ''], false);
    const [C, H, W] = p.index.sampleShape;
    const feeds = await buildFeeds(p, Float64Array.from({ length: 3 * C * H * W }, (_, i) => Math.sin(i)), 400, ids, false, 3, async () => ({}));
    const fpModel = loadOnnx(p.unetPath).model;
    exposeTensors(fpModel, params.text!.features);
    const fp = await Session.create(encodeModel(fpModel), 'cpu');
    const text = await Session.create(join(out, 'v', params.text!.model), 'cpu');
    const a = await fp.run(feeds, params.text!.features);
    const b = await text.run(Object.fromEntries(text.inputNames.map((n) => [n, feeds[n]!])), params.text!.features);
    for (const f of params.text!.features) {
      expect(b[f]!.dims).toEqual(a[f]!.dims);
      expect(Array.from(b[f]!.data as Float32Array)).toEqual(Array.from(a[f]!.data as Float32Array));
    }
    await fp.release();
    await text.release();
  }, 300_000);
});

describe('the studio\'s host on a video model', () => {
  it('samples FP and a variant of the UNet3D and plays their videos side by side in one animation, with frame sheets, heatmaps and per-frame PSNR', async () => {
    const { createHost, dispatch } = await import('../../src-main/host');
    const host = createHost('browser', 'test');
    const events: { jobId: string; kind: string; result?: unknown; error?: { message: string } }[] = [];
    host.subscribe((e) => events.push(e as (typeof events)[number]));
    const runJob = async (spec: Record<string, unknown>) => {
      const r = await dispatch(host, 'startJob', [spec]);
      if (!r.ok) throw new Error(r.error.message);
      const jobId = (r.value as { jobId: string }).jobId;
      for (;;) {
        const end = events.find((e) => e.jobId === jobId && (e.kind === 'done' || e.kind === 'error'));
        if (end) {
          if (end.kind === 'error') throw new Error(end.error!.message);
          return { jobId, result: end.result as Record<string, unknown> };
        }
        await new Promise((ok) => setTimeout(ok, 20));
      }
    };
    try {
      const cal = await runJob({ kind: 'calibrate', model: FX, samples: 2, steps: 3, prompts: ['a red seven', 'a blue two'] });
      // the ranges view tells the sites of layers that mix frames from the spatial ones (the layer map's frames)
      const view = await dispatch(host, 'getCalibration', [cal.jobId]);
      if (!view.ok) throw new Error(view.error.message);
      const sites = (view.value as { sites: { layers: string[]; frames: boolean; text: boolean }[] }).sites;
      const { model: unet } = loadOnnx(join(FX, 'unet', 'model.onnx'));
      const mixing = new Set([...analyzeGraph(unet).frames.convs, ...analyzeGraph(unet).frames.attention]);
      expect(sites.filter((x) => x.frames).length).toBeGreaterThan(0);
      expect(sites.filter((x) => !x.frames).length).toBeGreaterThan(0);
      for (const x of sites) expect(x.frames).toBe(x.layers.some((l) => mixing.has(l)));
      const presets = await host.listPresets();
      if (!presets.ok) throw new Error(presets.error.message);
      const q = await runJob({ kind: 'quantize', model: FX, recipe: presets.value.find((p) => p.name === 'nvfp4-w4a4')!.recipe, calibration: cal.jobId });
      const s = await runJob({ kind: 'sample', model: FX, prompts: [PROMPT], seeds: [0, 1], steps: 2, variants: [q.jobId] });
      const video = s.result.video as { frames: number; fps: number; side: string; sheet: string; columns: string[] };
      expect(video).toMatchObject({ frames: 16, fps: 8, side: 'videos-side.webp', sheet: 'videos-side-frames.png', columns: ['FP', 'nvfp4-w4a4'] });
      const side = await host.readArtifact(s.jobId, video.side);
      const sheet = await host.readArtifact(s.jobId, video.sheet);
      if (!side.ok || !sheet.ok) throw new Error('video files not readable');
      const sharp = await loadSharp();
      const anim = await sharp(Buffer.from(side.value.base64, 'base64'), { animated: true }).metadata();
      const frames = await sharp(Buffer.from(sheet.value.base64, 'base64')).metadata();
      expect(anim.pages).toBe(16);
      expect(frames.height).toBe(16 * anim.pageHeight!);
      expect(frames.width).toBe(anim.width);
      // two columns (FP and the variant), each one model's grid of 2 videos, and they differ
      const raw = await sharp(Buffer.from(sheet.value.base64, 'base64')).raw().toBuffer({ resolveWithObject: true });
      const w = raw.info.width;
      const half = (w - 6) / 2;
      expect(Number.isInteger(half)).toBe(true);
      let differ = 0;
      for (let y = 0; y < anim.pageHeight!; y++) for (let x = 0; x < half; x++) differ += Number(raw.data[(y * w + x) * 3] !== raw.data[(y * w + x + half + 6) * 3]);
      expect(differ).toBeGreaterThan(0);
      // each model's frames alone (the A/B wipe's), one layout for both; the heatmap sheet and per-frame numbers
      const v = s.result.video as { sheets: string[]; diffs: { name: string; sheet: string; psnrDb: (number | null)[]; ssim: number[]; meanAbs: number[]; flickerRatio: number | null }[]; diffScale: number };
      expect(v.sheets).toEqual(['videos-fp-frames.png', 'videos-variant-0-frames.png']);
      const meta = await Promise.all([...v.sheets, v.diffs[0]!.sheet].map(async (f) => {
        const a = await host.readArtifact(s.jobId, f);
        if (!a.ok) throw new Error(`${f} not readable`);
        return sharp(Buffer.from(a.value.base64, 'base64')).metadata();
      }));
      for (const m of meta) expect([m.width, m.height]).toEqual([meta[0]!.width, meta[0]!.height]);
      expect(meta[0]!.height! % 16).toBe(0);
      expect(v.diffs).toHaveLength(1);
      const d = v.diffs[0]!;
      expect(d.name).toBe('nvfp4-w4a4');
      expect(d.psnrDb).toHaveLength(16);
      expect(d.meanAbs).toHaveLength(16);
      expect(d.ssim).toHaveLength(16);
      for (const x of d.ssim) expect(x).toBeLessThan(1);
      // a 4-bit variant of a random model differs from FP on every frame, within the heatmap's scale
      for (const [k, p] of d.psnrDb.entries()) {
        expect(p).not.toBeNull();
        expect(d.meanAbs[k]).toBeGreaterThan(0);
        expect(d.meanAbs[k]).toBeLessThanOrEqual(v.diffScale);
      }
      expect(d.flickerRatio).toBeGreaterThan(0);
    } finally {
      await host.dispose();
      rmSync(host.workspace, { recursive: true, force: true });
    }
  }, 300_000);
});
