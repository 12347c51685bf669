/** Format-independent rewrites: taps, dead-node pruning, and cutting the time-only region (TFMQ cache mode). */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { analyzeGraph } from '../../../../src-main/core/onnx/analysis';
import { encodeModel, loadOnnx } from '../../../../src-main/core/onnx/io';
import { cutTemporalRegion, exposeTensors, pruneDead } from '../../../../src-main/core/onnx/rewrite';
import { Session, type FeedValue } from '../../../../src-main/core/runtime/onnx';
import { ROOT, TINY } from '../../../helpers';

const fixture = (f: string) => join(ROOT, 'test', 'fixtures', 'graphs', f);

function inputsFor(path: string, n: number): Record<string, FeedValue> {
  const m = analyzeGraph(loadOnnx(path).model);
  const shape = path.endsWith('dit.onnx') ? [n, 4, 8, 8] : path.includes('unet2d') ? [n, 4, 16, 16] : [n, 1, 28, 28];
  const size = shape.reduce((a, b) => a * b, 1);
  const feeds: Record<string, FeedValue> = {
    [m.sampleInput]: { type: 'float32', data: Float32Array.from({ length: size }, (_, i) => Math.cos(i * 0.11)), dims: shape },
  };
  const ts = [7, 503, 990].slice(0, n);
  feeds[m.timestepInput] = path.includes('condition')
    ? { type: 'int64', data: BigInt64Array.from(ts.map(BigInt)), dims: [n] }
    : { type: 'float32', data: Float32Array.from(ts), dims: [n] };
  for (const c of m.conditioningInputs) {
    feeds[c] = c === 'encoder_hidden_states'
      ? { type: 'float32', data: Float32Array.from({ length: n * 8 * 24 }, (_, i) => Math.sin(i)), dims: [n, 8, 24] }
      : { type: 'int64', data: BigInt64Array.from([1n, 4n, 10n].slice(0, n)), dims: [n] };
  }
  return feeds;
}

describe.each([
  ['tiny-mnist', join(TINY, 'unet', 'model.onnx')],
  ['UNet2DModel-like', fixture('unet2d.onnx')],
  ['UNet2DConditionModel-like', fixture('unet2d_condition.onnx')],
  ['DiT-like', fixture('dit.onnx')],
])('%s', (_label, path) => {
  it('taps: exposing intermediate tensors leaves the output unchanged', async () => {
    const base = loadOnnx(path).model;
    const feeds = inputsFor(path, 3);
    const s0 = await Session.create(encodeModel(base));
    const out0 = await s0.run(feeds);
    const tapped = loadOnnx(path).model;
    const map = analyzeGraph(tapped);
    const added = exposeTensors(tapped, map.temporalFeatures);
    expect(added).toEqual(map.temporalFeatures);
    const s1 = await Session.create(encodeModel(tapped));
    const out1 = await s1.run(feeds);
    const o = s0.outputNames[0]!;
    expect(out1[o]!.data).toEqual(out0[o]!.data);
    for (const f of added) expect(out1[f]!.data.length).toBeGreaterThan(0);
  });

  it('cut: the network fed the FP temporal features gives the same output, and the time-only region is gone', async () => {
    const feeds = inputsFor(path, 3);
    const tapped = loadOnnx(path).model;
    const map = analyzeGraph(tapped);
    exposeTensors(tapped, map.temporalFeatures);
    const full = await (await Session.create(encodeModel(tapped))).run(feeds);

    const cut = loadOnnx(path).model;
    const r = cutTemporalRegion(cut);
    expect(r.removedInputs).toContain(map.timestepInput);
    const s = await Session.create(encodeModel(cut));
    expect(s.inputNames).not.toContain(map.timestepInput);
    const cutFeeds: Record<string, FeedValue> = {};
    for (const n of s.inputNames) {
      if (feeds[n]) cutFeeds[n] = feeds[n]!;
      else cutFeeds[n] = { type: 'float32', data: full[n]!.data as Float32Array, dims: full[n]!.dims };
    }
    const out = await s.run(cutFeeds);
    const o = s.outputNames[0]!;
    expect(out[o]!.data).toEqual(full[o]!.data);
    // no temporal layer is left
    const names = new Set((cut.graph!.node ?? []).map((n) => n.name));
    for (const l of map.temporal) expect(names.has(l)).toBe(false);
  });
});

it('pruneDead removes what no output needs', () => {
  const m = loadOnnx(join(TINY, 'unet', 'model.onnx')).model;
  const r = pruneDead(m);
  expect(r.nodes).toBe(0); // an exported model has no dead nodes
  expect(() => exposeTensors(m, ['no-such-tensor'])).toThrow(/no tensor named 'no-such-tensor'/);
});
