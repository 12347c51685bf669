/** Pipelines and sampling requests are checked before any work: model_index.json field types, shapes against the graph, request ranges. */
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DqError } from '../../../../src-main/core/errors';
import { loadPipeline, releaseSessions, type Pipeline } from '../../../../src-main/core/pipeline/pipeline';
import { checkShapes, explainRunError, MAX_GUIDANCE, validateRequest, type SampleRequest } from '../../../../src-main/core/pipeline/sample';
import type { IoMeta } from '../../../../src-main/core/runtime/onnx';
import { tmp, TINY } from '../../../helpers';

const work = tmp('dq-pipeline-');
afterAll(async () => {
  await releaseSessions();
  rmSync(work, { recursive: true, force: true });
});

/** A pipeline as loadPipeline returns it for tiny-mnist, with `inputs` replacing the unet's inputs. */
function fake(inputs?: IoMeta[], index: Partial<Pipeline['index']> = {}): Pipeline {
  return {
    dir: '/p',
    index: { className: 'x', family: null, classes: ['0', '1', '2'], nullClass: 3, sampleShape: [1, 28, 28], shapeSource: 'unet/model.onnx', defaultGuidance: 2, defaultSampler: 'ddim', components: {}, ...index },
    text: null,
    codec: null,
    decoderSession: null,
    imageShape: [1, 28, 28],
    unetHalvings: 0,
    scheduler: {} as Pipeline['scheduler'],
    unetPath: '/p/unet/model.onnx',
    unetInputs: inputs ?? [
      { name: 'sample', type: 'float32', shape: ['batch', 1, 28, 28] },
      { name: 'timestep', type: 'float32', shape: ['batch'] },
      { name: 'class_labels', type: 'int64', shape: ['batch'] },
    ],
    unetOutputs: [{ name: 'out', type: 'float32', shape: ['batch', 1, 28, 28] }],
    io: { sample: 'sample', timestep: 'timestep', timestepType: 'float32', classLabels: 'class_labels', output: 'out' },
  };
}
const req = (over: Partial<SampleRequest> = {}): SampleRequest => ({ steps: 2, sampler: 'ddim', guidance: 2, seeds: [0], classes: [1], ...over });
const code = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (e) {
    return e instanceof DqError ? e.code : `not a DqError: ${String(e)}`;
  }
  return undefined;
};

describe('validateRequest', () => {
  it('accepts a plain request', () => expect(() => validateRequest(fake(), req())).not.toThrow());
  it(`refuses guidance that is not finite or above ${MAX_GUIDANCE} (1e308 gave black images with exit 0)`, () => {
    expect(() => validateRequest(fake(), req({ guidance: 1e308 }))).toThrow(/guidance must be a number from 0 to 100, got 1e\+308/);
    expect(() => validateRequest(fake(), req({ guidance: Number.NaN }))).toThrow(/guidance/);
    expect(() => validateRequest(fake(), req({ guidance: -1 }))).toThrow(/guidance/);
    expect(() => validateRequest(fake(), req({ guidance: MAX_GUIDANCE }))).not.toThrow();
  });
  it('refuses seeds Rng cannot take, as a DqError (it was a RangeError)', () => {
    expect(code(() => validateRequest(fake(), req({ seeds: [2 ** 53] })))).toBe('BAD_ARGUMENT');
    expect(code(() => validateRequest(fake(), req({ seeds: [-1] })))).toBe('BAD_ARGUMENT');
    expect(code(() => validateRequest(fake(), req({ seeds: [0.5] })))).toBe('BAD_ARGUMENT');
  });
  it('refuses classes that do not match the seeds, as a DqError (it was a plain Error)', () => {
    expect(() => validateRequest(fake(), req({ seeds: [0, 1], classes: [1] }))).toThrow(/1 classes for 2 seeds/);
    expect(code(() => validateRequest(fake(), req({ seeds: [0, 1], classes: [1] })))).toBe('BAD_ARGUMENT');
  });
  it('refuses a batch size that is not a positive integer, and eta out of range', () => {
    for (const batchSize of [0, -2, 1.5, Number.NaN]) expect(code(() => validateRequest(fake(), req({ batchSize })))).toBe('BAD_ARGUMENT');
    expect(() => validateRequest(fake(), req({ eta: 1e308 }))).toThrow(/eta must be a number from 0 to 10/);
    expect(() => validateRequest(fake(), req({ eta: 1 }))).not.toThrow();
  });
});

describe('checkShapes: model_index.json against the graph', () => {
  const inputs = (sample: (string | number)[], extra: Partial<IoMeta> = {}): IoMeta[] => [
    { name: 'sample', type: 'float32', shape: sample, ...extra },
    { name: 'timestep', type: 'float32', shape: ['batch'] },
    { name: 'class_labels', type: 'int64', shape: ['batch'] },
  ];
  it('a sample_shape that disagrees with a static graph (it was multi-line onnxruntime text)', () => {
    expect(() => checkShapes(fake(inputs(['batch', 1, 28, 28]), { sampleShape: [1, 32, 32], shapeSource: 'model_index.json: sample_shape' }))).toThrow(
      "/p: model_index.json: sample_shape [1, 32, 32] disagrees with the unet's sample input 'sample' [batch, 1, 28, 28]",
    );
    expect(code(() => checkShapes(fake(inputs(['batch', 3, 28, 28]))))).toBe('BAD_CONFIG');
  });
  it('dynamic dimensions accept any sample_shape', () => {
    expect(() => checkShapes(fake(inputs(['batch', 'channels', 'height', 'width']), { sampleShape: [4, 64, 64] }))).not.toThrow();
    expect(() => checkShapes(fake(inputs([-1, 1, -1, -1]), { sampleShape: [1, 40, 40] }))).not.toThrow();
  });
  it('a fixed batch, a sample of another rank or type, int32 labels', () => {
    expect(() => checkShapes(fake(inputs([1, 1, 28, 28])))).toThrow(/its input 'sample' has a fixed batch size of 1; dq needs a dynamic batch dimension/);
    expect(() => checkShapes(fake(inputs(['batch', 28, 28])))).toThrow(/has 3 dimensions/);
    expect(() => checkShapes(fake(inputs(['batch', 1, 28, 28], { type: 'float16' })))).not.toThrow(); // fp16 graphs are fed float16
    expect(() => checkShapes(fake(inputs(['batch', 1, 28, 28], { type: 'float64' })))).toThrow(/its sample input 'sample' has type float64; float32 or float16 expected/);
    const i = inputs(['batch', 1, 28, 28]);
    i[2] = { name: 'class_labels', type: 'int32', shape: ['batch'] };
    expect(() => checkShapes(fake(i))).toThrow(/class-label input 'class_labels' has type int32; int64 expected/);
  });
});

describe('explainRunError: a label outside the class embedding', () => {
  const gather = (idx: number) =>
    new DqError('BAD_MODEL', 'x', `Non-zero status code returned while running Gather node. Name:'/class_emb/Gather' Status Message: indices element out of data bounds, idx=${idx} must be within the inclusive range [-11,10]`);
  const feeds = (labels: number[]) => ({ class_labels: { type: 'int64' as const, data: BigInt64Array.from(labels.map(BigInt)), dims: [labels.length] } });
  it('names the null class and the file', () => {
    const e = explainRunError(fake(undefined, { nullClass: 20 }), gather(20), feeds([1, 20])) as DqError;
    expect(e.code).toBe('BAD_CONFIG');
    expect(e.message).toBe("/p: model_index.json: null_class 20 is outside the unet's class embedding (labels 0-10)");
    expect(e.detail).toMatch(/Gather/);
  });
  it('names a class label', () => {
    expect((explainRunError(fake(undefined, { classes: Array.from({ length: 13 }, String), nullClass: 13 }), gather(12), feeds([12, 13])) as DqError).message).toBe(
      "class 12 is outside the unet's class embedding (labels 0-10)",
    );
  });
  it('leaves other errors as they are', () => {
    const other = new DqError('BAD_MODEL', 'y', 'Non-zero status code returned while running Add node.');
    expect(explainRunError(fake(), other, feeds([1]))).toBe(other);
    const notFed = gather(7);
    expect(explainRunError(fake(), notFed, feeds([1, 3]))).toBe(notFed);
  });
});

describe('model_index.json fields of the wrong type are refused, not ignored', () => {
  const withIndex = (name: string, fields: Record<string, unknown>) => {
    const dir = join(work, name);
    cpSync(TINY, dir, { recursive: true });
    const f = join(dir, 'model_index.json');
    writeFileSync(f, JSON.stringify({ ...JSON.parse(readFileSync(f, 'utf8')), ...fields }));
    return dir;
  };
  it.each([
    ['classes', 7, /field 'classes' must be a list of class names, got 7/],
    ['classes', [['a'], 'b'], /field 'classes'/],
    ['null_class', 'ten', /field 'null_class' must be a label \(an integer >= 0\) or null, got "ten"/],
    ['null_class', 10.5, /field 'null_class'/],
    ['null_class', 4, /must be a label of its own, not one of the classes 0-9/],
    ['default_guidance', 'two', /field 'default_guidance' must be a number from 0 to 100, got "two"/],
    ['default_guidance', 1000, /field 'default_guidance'/],
    ['sample_shape', [1, 28.5, 28], /field 'sample_shape' must be \[channels, height, width\]/],
    ['sample_shape', [1, 100000, 100000], /is too large \(at most 16384 per dimension and 16777216 values per sample\)/],
    ['sample_shape', [64, 4096, 4096], /is too large/],
    ['_class_name', 3, /field '_class_name' must be a string/],
  ] as const)('%s: %j', async (field, value, message) => {
    const p = loadPipeline(withIndex(`${field}-${JSON.stringify(value).replace(/\W/g, '_')}`, { [field]: value }));
    await expect(p).rejects.toThrow(message);
    await expect(p).rejects.toMatchObject({ code: 'BAD_CONFIG' });
  });
  it('null for null_class and default_guidance means none / the default', async () => {
    const { pipeline } = await loadPipeline(withIndex('nulls', { null_class: null, default_guidance: null }));
    expect(pipeline.index.nullClass).toBeNull();
    expect(pipeline.index.defaultGuidance).toBe(1);
  });
});
