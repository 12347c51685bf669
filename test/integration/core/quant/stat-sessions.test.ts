/**
 * Statistics in slices of sites (quant/taps.ts statSessions): several tapped copies of the network, run on the same
 * feeds, give exactly the statistics of one session tapping every site, and the first slice still gives the output.
 */
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { analyzeGraph } from '../../../../src-main/core/onnx/analysis';
import { encodeModel, loadOnnx } from '../../../../src-main/core/onnx/io';
import { openPipeline } from '../../../../src-main/core/open';
import { releaseSessions } from '../../../../src-main/core/pipeline/pipeline';
import { buildFeeds } from '../../../../src-main/core/pipeline/sample';
import { Rng } from '../../../../src-main/core/pipeline/noise';
import { buildSites } from '../../../../src-main/core/quant/sites';
import { readTap, statSessions } from '../../../../src-main/core/quant/taps';
import { Session } from '../../../../src-main/core/runtime/onnx';
import { TINY } from '../../../helpers';

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
  const sliced = await statSessions(b.model, b.sites, create, per);
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
