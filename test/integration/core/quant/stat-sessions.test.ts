/**
 * Statistics in slices of sites (quant/taps.ts statSessions): several tapped copies of the network, run on the same
 * feeds, give exactly the statistics of one session tapping every site, and the first slice still gives the output.
 */
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { analyzeGraph } from '../../../../src-main/core/onnx/analysis';
import { GraphBuilder } from '../../../../kernels/onnx/graph';
import { fragmentModel } from '../../../../src-main/core/onnx/fragment';
import { encodeModel, loadOnnx } from '../../../../src-main/core/onnx/io';
import { decodeModel } from '../../../../src-main/core/onnx/model';
import { openPipeline } from '../../../../src-main/core/open';
import { releaseSessions } from '../../../../src-main/core/pipeline/pipeline';
import { buildFeeds } from '../../../../src-main/core/pipeline/sample';
import { Rng } from '../../../../src-main/core/pipeline/noise';
import { buildSites } from '../../../../src-main/core/quant/sites';
import { probeSiteShapes, readTap, statSessions } from '../../../../src-main/core/quant/taps';
import { Session } from '../../../../src-main/core/runtime/onnx';
import { ROOT, TINY } from '../../../helpers';

afterAll(releaseSessions);

it('five slices of sites give the statistics of one session, bit for bit', async () => {
  const { pipeline, session: plain } = await openPipeline(TINY, 'cpu');
  const unet = join(TINY, 'unet', 'model.onnx');
  const sitesOf = () => {
    const model = loadOnnx(unet).model;
    const map = analyzeGraph(model, { sampleInput: pipeline.io.sample, timestepInput: pipeline.io.timestep });
    return { model, sites: buildSites(map, map.quantizable, true) };
  };
  const create = (m: Parameters<typeof encodeModel>[0]) => Session.create(encodeModel(m), 'cpu');
  const a = sitesOf();
  const one = await statSessions(a.model, a.sites, create);
  const b = sitesOf();
  const per = Math.ceil(b.sites.length / 5);
  const sliced = await statSessions(b.model, b.sites, create, { perSession: per });
  expect(b.sites.length).toBeGreaterThan(20);
  const [C, H, W] = pipeline.index.sampleShape;
  const x = new Rng(3).normal(new Float64Array(2 * C * H * W)) as Float64Array;
  const feeds = await buildFeeds(pipeline, x, 421, [3, 7], true, 2);
  const r1 = await one.session.run(feeds, [pipeline.io.output, ...one.fetch]);
  expect(Object.keys(await one.more(feeds))).toEqual([]);
  const r5 = { ...(await sliced.session.run(feeds, [pipeline.io.output, ...sliced.fetch])), ...(await sliced.more(feeds)) };
  // the first slice's network output is the plain network's
  const out = (await plain.run(feeds, [pipeline.io.output]))[pipeline.io.output]!.data as Float32Array;
  expect(Array.from(r5[pipeline.io.output]!.data as Float32Array)).toEqual(Array.from(out));
  expect(sliced.taps.map((h) => h.map((t) => t.hist))).toEqual(one.taps.map((h) => h.map((t) => t.hist)));
  for (const halves of one.taps) for (const names of halves) expect(readTap(r5, names)).toEqual(readTap(r1, names));
  await one.release();
  await sliced.release();
});

it('site halves of one shape tapped together give each half its own statistics, bit for bit', async () => {
  const dir = join(ROOT, 'models', 'tiny-t2i');
  const { pipeline } = await openPipeline(dir, 'cpu');
  const sitesOf = () => {
    const model = loadOnnx(join(dir, 'unet', 'model.onnx')).model;
    const map = analyzeGraph(model, { sampleInput: pipeline.io.sample, timestepInput: pipeline.io.timestep });
    return { model, sites: buildSites(map, map.quantizable, true) };
  };
  const create = (m: Parameters<typeof encodeModel>[0]) => Session.create(encodeModel(m), 'cpu');
  const [C, H, W] = pipeline.index.sampleShape;
  const x = new Rng(5).normal(new Float64Array(3 * C * H * W)) as Float64Array;
  const ids = await pipeline.text!.ids(['a red three', 'a small blue seven on green', 'a big yellow zero'], ['', '', ''], true);
  const feeds = await buildFeeds(pipeline, x, 601, ids, true, 3, undefined, 3);
  const a = sitesOf();
  const alone = await statSessions(a.model, a.sites, create);
  const b = sitesOf();
  const nodesBefore = b.model.graph!.node!.length;
  const shapes = await probeSiteShapes(b.model, b.sites, await buildFeeds(pipeline, x.subarray(0, 2 * C * H * W), 601, ids.slice(0, 2), true, 2, undefined, 3), create);
  expect(b.model.graph!.node!.length).toBe(nodesBefore);
  const together = await statSessions(b.model, b.sites, create, { shapes });
  const groups = together.taps.flat().filter((t) => t.group);
  // most halves are small here (latents of 8 x 8): they share a few statistics subgraphs
  expect(groups.length).toBeGreaterThan(b.sites.length / 2);
  expect(new Set(groups.map((t) => t.hist)).size).toBeLessThan(groups.length / 4);
  expect(together.fetch.length).toBeLessThan(alone.fetch.length / 4);
  // 6 rows (guided), not the probe's 4: the stacked shapes follow the batch
  const r1 = { ...(await alone.session.run(feeds, [pipeline.io.output, ...alone.fetch])), ...(await alone.more(feeds)) };
  const r2 = { ...(await together.session.run(feeds, [pipeline.io.output, ...together.fetch])), ...(await together.more(feeds)) };
  expect(Array.from(r2[pipeline.io.output]!.data as Float32Array)).toEqual(Array.from(r1[pipeline.io.output]!.data as Float32Array));
  alone.taps.forEach((halves, s) => halves.forEach((names, h) => expect(readTap(r2, together.taps[s]![h]!), `site ${s} half ${h}`).toEqual(readTap(r1, names))));
  await alone.release();
  await together.release();
});

it('rows padded to whole blocks (15 elements) count their zeros in min and max, grouped or not', async () => {
  const toy = () => {
    const b = new GraphBuilder('toy');
    b.identity(b.op('Relu', ['x']), 'a');
    b.identity(b.op('Neg', ['x']), 'n');
    const model = decodeModel(fragmentModel(b.fragment([{ name: 'x', dtype: 'float32', dims: [null as never, 3, 5] }], [{ name: 'a', dtype: 'float32', dims: null }, { name: 'n', dtype: 'float32', dims: null }], 18)), 'toy');
    const sites = ['a', 'n'].map((tensor, id) => ({ id, tensor, layers: [], split: null, ops: ['MatMul'], temporal: false }));
    return { model, sites };
  };
  const create = (m: Parameters<typeof encodeModel>[0]) => Session.create(encodeModel(m), 'cpu');
  const rng = new Rng(11);
  const x = Float32Array.from(rng.normal(new Float64Array(4 * 15)), (v) => Math.abs(v) + 0.25);
  const feeds = { x: { type: 'float32' as const, data: x, dims: [4, 3, 5] } };
  const a = toy();
  const alone = await statSessions(a.model, a.sites, create);
  const b = toy();
  const together = await statSessions(b.model, b.sites, create, { shapes: await probeSiteShapes(b.model, b.sites, feeds, create) });
  expect(together.taps.flat().every((t) => t.group?.size === 2)).toBe(true);
  const r1 = await alone.session.run(feeds, alone.fetch);
  const r2 = await together.session.run(feeds, together.fetch);
  alone.taps.forEach((halves, s) => {
    const st = readTap(r2, together.taps[s]![0]!);
    expect(st).toEqual(readTap(r1, halves[0]!));
    // every x is positive: Relu's rows have min 0 only from the padding, Neg's max 0 likewise
    expect(s === 0 ? st.min : st.max).toBe(0);
    expect(st.hist.counts.reduce((p, c) => p + c, 0)).toBe(4 * 15);
  });
  await alone.release();
  await together.release();
});
