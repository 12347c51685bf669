/**
 * Loading and saving: byte-identical round trips of models written by other tools (the ONNX backend corpus in
 * ../shared/corpus), their expected outputs reproduced by onnxruntime, inline <-> external data, and clear errors.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { analyzeGraph } from '../../../../src-main/core/onnx/analysis';
import { encodeModel, loadOnnx, saveOnnx, tensorBytes } from '../../../../src-main/core/onnx/io';
import { ModelProto, TensorProto, type ModelMsg } from '../../../../src-main/core/onnx/model';
import { decodeTensor, type DecodedTensor } from '../../../../src-main/core/onnx/tensor';
import { Session, type FeedValue } from '../../../../src-main/core/runtime/onnx';
import { ROOT, tmp, TINY } from '../../../helpers';

const CORPUS = join(ROOT, '..', 'shared', 'corpus', 'onnx-backend');
const work = tmp();
afterAll(() => rmSync(work, { recursive: true, force: true }));

function corpusModels(): string[] {
  if (!existsSync(CORPUS)) return [];
  return readdirSync(CORPUS)
    .filter((g) => !g.includes('.'))
    .flatMap((g) => readdirSync(join(CORPUS, g)).map((m) => join(CORPUS, g, m)))
    .filter((d) => existsSync(join(d, 'model.onnx')));
}

const ORT_TYPE: Record<number, FeedValue['type']> = { 1: 'float32', 7: 'int64', 11: 'float64', 6: 'int32', 3: 'int8', 2: 'uint8', 9: 'bool' };

function feed(t: DecodedTensor): FeedValue {
  const type = ORT_TYPE[t.dataType];
  if (!type) throw new Error(`type ${t.dataType}`);
  return { type, data: t.data, dims: t.dims } as FeedValue;
}

describe('the ONNX backend corpus (models written by other tools)', () => {
  const models = corpusModels();
  it('is present', () => expect(models.length).toBeGreaterThan(100));

  it('every model.onnx round-trips byte-identical through load and save', () => {
    const out = join(work, 'rt');
    mkdirSync(out);
    for (const d of models) {
      const src = join(d, 'model.onnx');
      const loaded = loadOnnx(src);
      expect(Buffer.from(encodeModel(loaded.model)).equals(readFileSync(src)), src).toBe(true);
      saveOnnx(loaded.model, join(out, 'm.onnx'), loaded.dir);
      expect(readFileSync(join(out, 'm.onnx')).equals(readFileSync(src)), src).toBe(true);
    }
  });

  it('where onnxruntime runs a model, its outputs reproduce the expected outputs', async () => {
    let ran = 0;
    const notRun: string[] = [];
    for (const d of models) {
      const name = d.slice(CORPUS.length + 1);
      let session: Session;
      try {
        session = await Session.create(readFileSync(join(d, 'model.onnx')), 'cpu');
      } catch (e) {
        notRun.push(`${name}: ${(e as Error).message.slice(0, 80)}`);
        continue;
      }
      for (const set of readdirSync(d).filter((f) => f.startsWith('test_data_set_'))) {
        const sd = join(d, set);
        const read = (f: string) => {
          const t = TensorProto.decode(readFileSync(join(sd, f))) as unknown as { data_type?: number };
          return ORT_TYPE[t.data_type ?? 0] ? decodeTensor(t as never) : null;
        };
        const inputs = readdirSync(sd).filter((f) => f.startsWith('input_')).sort().map(read);
        const expected = readdirSync(sd).filter((f) => f.startsWith('output_')).sort().map(read);
        if (![...inputs, ...expected].every((t) => t !== null) || inputs.length !== session.inputNames.length) {
          notRun.push(`${name}: tensor types or sequence inputs the JS binding does not feed`);
          break;
        }
        const feeds: Record<string, FeedValue> = {};
        session.inputNames.forEach((n, i) => (feeds[n] = feed(inputs[i]!)));
        const out = await session.run(feeds);
        session.outputNames.forEach((n, i) => {
          const got = out[n]!.data as ArrayLike<number | bigint>;
          const want = expected[i]!.data as ArrayLike<number | bigint>;
          expect(got.length, `${name} ${n}`).toBe(want.length);
          for (let k = 0; k < want.length; k++) {
            const a = Number(got[k]);
            const b = Number(want[k]);
            if (!(Number.isNaN(a) && Number.isNaN(b))) expect(Math.abs(a - b), `${name} ${n}[${k}]: ${a} vs ${b}`).toBeLessThanOrEqual(1e-4 + 1e-3 * Math.abs(b));
          }
        });
        ran++;
      }
      await session.release();
    }
    console.log(`corpus: ${ran} test data sets reproduced; ${notRun.length} models not run:\n  ${notRun.join('\n  ')}`);
    // 98 data sets run on onnxruntime-node 1.30 (the rest need old-opset kernels, training ops, sequences or strings: listed above)
    expect(ran).toBeGreaterThanOrEqual(98);
  });
});

async function runTiny(path: string): Promise<Float32Array> {
  const s = await Session.create(path, 'cpu');
  const n = 3;
  const x = Float32Array.from({ length: n * 784 }, (_, i) => Math.sin(i * 0.37));
  const out = await s.run({
    sample: { type: 'float32', data: x, dims: [n, 1, 28, 28] },
    timestep: { type: 'float32', data: Float32Array.from([5, 400, 981]), dims: [n] },
    class_labels: { type: 'int64', data: BigInt64Array.from([1n, 7n, 10n]), dims: [n] },
  });
  await s.release();
  return out.out_sample!.data as Float32Array;
}

describe('the tiny model', () => {
  const src = join(TINY, 'unet', 'model.onnx');
  it('saves byte-identical and runs identically after a no-op rewrite', async () => {
    const loaded = loadOnnx(src);
    const dst = join(work, 'tiny', 'model.onnx');
    saveOnnx(loaded.model, dst, loaded.dir);
    expect(readFileSync(dst).equals(readFileSync(src))).toBe(true);
    expect(await runTiny(dst)).toEqual(await runTiny(src));
  });

  it('moves weights to external data and back, outputs unchanged', async () => {
    const loaded = loadOnnx(src);
    const originals = new Map((loaded.model.graph!.initializer ?? []).map((t) => [t.name!, Buffer.from(t.raw_data ?? [])]));
    const dir = join(work, 'ext');
    const r = saveOnnx(loaded.model, join(dir, 'model.onnx'), loaded.dir, { externalize: { location: 'model.onnx.data', threshold: 1024 } });
    expect(r.externalBytes).toBeGreaterThan(2_000_000);
    expect(r.bytes).toBeLessThan(200_000);
    const back = loadOnnx(join(dir, 'model.onnx'));
    let external = 0;
    for (const t of back.model.graph!.initializer ?? []) {
      if (t.data_location === 1) external++;
      expect(Buffer.from(tensorBytes(back, t)).equals(originals.get(t.name!)!), t.name).toBe(true);
    }
    expect(external).toBeGreaterThan(20);
    expect(await runTiny(join(dir, 'model.onnx'))).toEqual(await runTiny(src));
    // and moved again: the external file travels with it
    saveOnnx(back.model, join(work, 'ext2', 'model.onnx'), back.dir);
    expect(await runTiny(join(work, 'ext2', 'model.onnx'))).toEqual(await runTiny(src));
  });
});

describe('bad input: a clear error naming the problem', () => {
  const src = join(TINY, 'unet', 'model.onnx');
  it('truncated file', () => {
    const f = join(work, 'trunc.onnx');
    writeFileSync(f, readFileSync(src).subarray(0, 100_000));
    expect(() => loadOnnx(f)).toThrow(/trunc\.onnx is not a valid ONNX model \(truncated or not a protobuf\)/);
  });
  it('not a protobuf', () => {
    const f = join(work, 'text.onnx');
    writeFileSync(f, 'this is not a model\n'.repeat(10));
    expect(() => loadOnnx(f)).toThrow(/text\.onnx is not a valid ONNX model/);
  });
  it('missing external data', () => {
    const d = join(work, 'ext-missing');
    saveOnnx(loadOnnx(src).model, join(d, 'model.onnx'), null, { externalize: { location: 'weights.bin' } });
    rmSync(join(d, 'weights.bin'));
    expect(() => loadOnnx(join(d, 'model.onnx'))).toThrow(/external data file 'weights\.bin' \(for tensor '.+'\) is missing/);
  });
  it('truncated external data', () => {
    const d = join(work, 'ext-trunc');
    saveOnnx(loadOnnx(src).model, join(d, 'model.onnx'), null, { externalize: { location: 'weights.bin' } });
    writeFileSync(join(d, 'weights.bin'), readFileSync(join(d, 'weights.bin')).subarray(0, 1000));
    expect(() => loadOnnx(join(d, 'model.onnx'))).toThrow(/has only 1000 bytes \(truncated\?\)/);
  });
  it('no timestep input', () => {
    const f = join(CORPUS, 'pytorch-converted', 'test_Conv2d', 'model.onnx');
    expect(() => analyzeGraph(loadOnnx(f).model)).toThrow(/no timestep input found/);
  });
  it('a cycle', () => {
    const m = ModelProto.fromObject({
      ir_version: 8,
      opset_import: [{ domain: '', version: 17 }],
      graph: {
        name: 'cyclic',
        node: [
          { op_type: 'Add', input: ['sample', 'b'], output: ['a'], name: 'first' },
          { op_type: 'Relu', input: ['a'], output: ['b'], name: 'second' },
        ],
        input: [{ name: 'sample', type: { tensor_type: { elem_type: 1, shape: { dim: [{ dim_value: 1 }, { dim_value: 1 }, { dim_value: 2 }, { dim_value: 2 }] } } } }, { name: 'timestep', type: { tensor_type: { elem_type: 1, shape: { dim: [{ dim_value: 1 }] } } } }],
        output: [{ name: 'b' }],
      },
    }) as unknown as ModelMsg;
    expect(() => analyzeGraph(m)).toThrow(/the graph has a cycle \(nodes that can never run: first, second\)/);
  });
});

