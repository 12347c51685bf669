/**
 * Region size reads (pipeline/region.ts) on small graphs built here: a text feature whose reshape reads sizes from
 * a tensor of the sample's path. A read whose entries are constants or the batch times a constant on every probe is
 * replaced (and the sample drops out of the region's inputs); one whose entry follows the image size stays; the
 * slimmed region computes the same features at a batch and an image size no probe had.
 */
import { describe, expect, it } from 'vitest';
import { GraphBuilder, int } from '../../../../kernels/onnx/graph';
import { fragmentModel } from '../../../../src-main/core/onnx/fragment';
import { encodeModel } from '../../../../src-main/core/onnx/io';
import { decodeModel, type ModelMsg } from '../../../../src-main/core/onnx/model';
import { applySizePlan, planSizeReads, type RegionProbe } from '../../../../src-main/core/pipeline/region';
import { Session, type FeedValue } from '../../../../src-main/core/runtime/onnx';

const D = 8;
const T = 3;

/** text [B, T, D] -> K = text Wk; out_b: K reshaped by the sample's batch; out_2b: K tiled twice, reshaped by a
 * [2B, ...] tensor's batch; out_h (when asked): K tiled by the sample's height. */
function region(withHeight: boolean): ModelMsg {
  const b = new GraphBuilder('t');
  const wk = b.init('wk', 'float32', [D, D], Float32Array.from({ length: D * D }, (_, i) => Math.sin(i + 1)));
  const k = b.op('MatMul', ['text', wk]);
  const s = b.op('Shape', ['sample']);
  const batch = b.op('Gather', [s, b.i64([0])], { axis: int(0) });
  const chan = b.op('Gather', [s, b.i64([1])], { axis: int(0) });
  b.opTo('out_b', 'Reshape', [k, b.op('Concat', [batch, b.i64([-1]), chan], { axis: int(0) })]);
  const doubled = b.op('Concat', ['sample', 'sample'], { axis: int(0) });
  const rows2 = b.op('Gather', [b.op('Shape', [doubled]), b.i64([0])], { axis: int(0) });
  b.opTo('out_2b', 'Reshape', [b.op('Tile', [k, b.i64([2, 1, 1])]), b.op('Concat', [rows2, b.i64([-1])], { axis: int(0) })]);
  const outs = [{ name: 'out_b', dtype: 'float32' as const, dims: null }, { name: 'out_2b', dtype: 'float32' as const, dims: null }];
  if (withHeight) {
    const height = b.op('Gather', [s, b.i64([2])], { axis: int(0) });
    b.opTo('out_h', 'Tile', [k, b.op('Concat', [b.i64([1]), height, b.i64([1])], { axis: int(0) })]);
    outs.push({ name: 'out_h', dtype: 'float32', dims: null });
  }
  return decodeModel(fragmentModel(b.fragment([{ name: 'sample', dtype: 'float32', dims: null }, { name: 'text', dtype: 'float32', dims: null }], outs, 18)), 'region');
}

function feeds(rows: number, h: number, w: number): Record<string, FeedValue> {
  return {
    sample: { type: 'float32', data: new Float32Array(rows * D * h * w), dims: [rows, D, h, w] },
    text: { type: 'float32', data: Float32Array.from({ length: rows * T * D }, (_, i) => Math.cos(i)), dims: [rows, T, D] },
  };
}

const probes: RegionProbe[] = [
  { feeds: feeds(1, 4, 4), rows: 1 },
  { feeds: feeds(2, 4, 4), rows: 2 },
  { feeds: feeds(1, 6, 8), rows: 1 },
];

async function run(m: ModelMsg, f: Record<string, FeedValue>, names: string[]) {
  const s = await Session.create(encodeModel(m), 'cpu');
  const out = await s.run(Object.fromEntries(s.inputNames.map((n) => [n, f[n]!])), names);
  await s.release();
  return names.map((n) => ({ dims: out[n]!.dims, data: Array.from(out[n]!.data as Float32Array) }));
}

describe('region size reads', () => {
  it('replaces reads of constants, the batch and the batch times a constant; the region then reads the text only', async () => {
    const m = region(false);
    const plan = await planSizeReads(m, ['text'], probes);
    expect(plan).not.toBeNull();
    expect(plan!.anchor).toBe('text');
    // the sample's shape (batch, channels; H and W unread) and the doubled tensor's (2 x batch, ...)
    expect([...plan!.reads.values()].map((r) => r.slice(0, 2))).toEqual([[{ batch: 1 }, { value: D }], [{ batch: 2 }, { value: D }]]);
    const before = await run(m, feeds(3, 5, 7), ['out_b', 'out_2b']);
    const slim = decodeModel(encodeModel(m), 'copy');
    const r = applySizePlan(slim, plan!);
    expect(r.rewired).toBe(2);
    expect(r.inputs).toEqual(['text']);
    // a batch and an image size no probe had
    expect(await run(slim, feeds(3, 5, 7), ['out_b', 'out_2b'])).toEqual(before);
    expect(before[1]!.dims).toEqual([6, T * D]);
  });

  it('keeps a read whose entry follows the image size, and the sample with it', async () => {
    const m = region(true);
    const plan = await planSizeReads(m, ['text'], probes);
    // the sample's Shape node stays (its height is read); the doubled tensor's read still goes
    expect(plan!.reads.size).toBe(1);
    expect(plan!.kept).toBe(1);
    const slim = decodeModel(encodeModel(m), 'copy');
    const r = applySizePlan(slim, plan!);
    expect(r.inputs.sort()).toEqual(['sample', 'text']);
    const names = ['out_b', 'out_2b', 'out_h'];
    expect(await run(slim, feeds(3, 5, 7), names)).toEqual(await run(m, feeds(3, 5, 7), names));
  });

  it('without a probe of another image size, the image-following entry would pass for a constant: planning needs two probes at least and says nothing with one', async () => {
    expect(await planSizeReads(region(true), ['text'], probes.slice(0, 1))).toBeNull();
    // with only the batch probes, the height looks constant: the plan would bake it in (why the probes vary the size)
    const plan = await planSizeReads(region(true), ['text'], probes.slice(0, 2));
    expect([...plan!.reads.values()][0]!.slice(0, 3)).toEqual([{ batch: 1 }, { value: D }, { value: 4 }]);
  });
});
