/**
 * A model over 2 GB (2.6 GB of weights) lives in external data: saved, loaded, moved by a no-op rewrite, and run
 * by onnxruntime with identical outputs. The weights are generated here and deleted afterwards.
 */
import { rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { loadOnnx, saveOnnx, tensorBytes } from '../../../../src-main/core/onnx/io';
import { ModelProto, type ModelMsg } from '../../../../src-main/core/onnx/model';
import { Session } from '../../../../src-main/core/runtime/onnx';
import { tmp } from '../../../helpers';

const work = tmp('dq-large-');
afterAll(() => rmSync(work, { recursive: true, force: true }));

const PER = 220_000_000; // floats per weight: 880 MB each, 3 of them
const value = (w: number, i: number) => ((i * 2654435761 + w * 97) % 1000003) / 1000003;

async function run(path: string, idx: bigint[]): Promise<Float32Array> {
  const s = await Session.create(path, 'cpu');
  const out = await s.run({ idx: { type: 'int64', data: BigInt64Array.from(idx), dims: [idx.length] } });
  await s.release();
  return out.y!.data as Float32Array;
}

it('writes, reloads, moves and runs a 2.6 GB external-data model', async () => {
  const weights = [0, 1, 2].map((w) => {
    const a = new Float32Array(PER);
    for (let i = 0; i < PER; i++) a[i] = value(w, i);
    return { name: `W${w}`, dims: [PER], data_type: 1, raw_data: new Uint8Array(a.buffer) };
  });
  const model = ModelProto.fromObject({
    ir_version: 8,
    opset_import: [{ domain: '', version: 17 }],
    graph: {
      name: 'large',
      node: [
        { op_type: 'Gather', input: ['W0', 'idx'], output: ['g0'], name: 'g0' },
        { op_type: 'Gather', input: ['W1', 'idx'], output: ['g1'], name: 'g1' },
        { op_type: 'Gather', input: ['W2', 'idx'], output: ['g2'], name: 'g2' },
        { op_type: 'Add', input: ['g0', 'g1'], output: ['s'], name: 'a0' },
        { op_type: 'Add', input: ['s', 'g2'], output: ['y'], name: 'a1' },
      ],
      initializer: weights,
      input: [{ name: 'idx', type: { tensor_type: { elem_type: 7, shape: { dim: [{ dim_param: 'n' }] } } } }],
      output: [{ name: 'y', type: { tensor_type: { elem_type: 1, shape: { dim: [{ dim_param: 'n' }] } } } }],
    },
  }) as unknown as ModelMsg;
  const a = join(work, 'a', 'model.onnx');
  const r = saveOnnx(model, a, null, { externalize: { location: 'model.onnx.data' } });
  expect(r.externalBytes).toBeGreaterThan(2.5e9);
  expect(statSync(a).size).toBeLessThan(10_000);

  const idx = [0n, 1n, 12345n, BigInt(PER - 1)];
  const expected = Float32Array.from(idx, (i) => Math.fround(Math.fround(Math.fround(value(0, Number(i))) + Math.fround(value(1, Number(i)))) + Math.fround(value(2, Number(i)))));
  expect(await run(a, idx)).toEqual(expected);

  // no-op rewrite: load, save elsewhere (the external file travels), same outputs
  const loaded = loadOnnx(a);
  const last = tensorBytes(loaded, loaded.model.graph!.initializer![2]!);
  expect(new Float32Array(last.buffer, last.byteOffset, 4)[1]).toBe(Math.fround(value(2, 1)));
  const b = join(work, 'b', 'model.onnx');
  saveOnnx(loaded.model, b, loaded.dir);
  rmSync(join(work, 'a'), { recursive: true });
  expect(await run(b, idx)).toEqual(expected);
}, 600_000);
