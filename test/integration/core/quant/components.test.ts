/**
 * Int8 weight-only quantization of the other components of a text-to-image pipeline (issue 17, item 4): text
 * encoders and VAE decoders of the embedded model and the SD 1.5 / SDXL fixtures.
 *
 * The references are independent of the implementation: the int8 grid is recomputed here from its formula
 * (scale = max|w| / 127 per output channel, codes = round-half-even(w / scale)), a float model holding exactly those
 * fake-quantized weights is built here and run by onnxruntime (the int8 file must compute what it computes), the
 * agreement metrics are recomputed from raw outputs, and the error bound comes from the weights' own rounding error.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GraphBuilder, int, ints } from '../../../../kernels/onnx/graph';
import { isDqError } from '../../../../src-main/core/errors';
import { fragmentModel } from '../../../../src-main/core/onnx/fragment';
import { dimsOf } from '../../../../src-main/core/onnx/graph';
import { externalRef, loadOnnx, saveOnnx, tensorBytes } from '../../../../src-main/core/onnx/io';
import { decodeModel, type ModelMsg, type TensorMsg } from '../../../../src-main/core/onnx/model';
import { Rng } from '../../../../src-main/core/pipeline/noise';
import { loadTokenizer } from '../../../../src-main/core/pipeline/tokenizer';
import { quantizeComponent, verifyComponent, verifyThresholds, type ComponentKind } from '../../../../src-main/core/quant/components';
import type { FeedValue } from '../../../../src-main/core/runtime/onnx';
import * as ort from 'onnxruntime-node';
import { MATMULNBITS_ACCURACY_LEVEL } from '../../../../src-main/core/runtime/onnx';
import { fromHalfArray, toHalfArray } from '../../../../kernels/half';
import { ROOT, tmp } from '../../../helpers';

const work = tmp('dq-components-');
afterAll(() => rmSync(work, { recursive: true, force: true }));

const TINY_T2I = join(ROOT, 'models', 'tiny-t2i');
const SD15 = join(ROOT, 'test', 'fixtures', 'sd15-optimum');
const SDXL = join(ROOT, 'test', 'fixtures', 'sdxl-optimum');
const SD15_FP16 = join(ROOT, 'test', 'fixtures', 'sd15-fp16');
const SD15_LEGACY = join(ROOT, 'test', 'fixtures', 'sd15-legacy');
const OPTS = { format: 'int8' as const, granularity: 'channel' as const };

let n = 0;
const outPath = (name: string) => join(work, `${n++}-${name}`, 'model.onnx');

/* ----------------------------------------------------------- independent references -- */

function f32Values(t: TensorMsg, loaded: ReturnType<typeof loadOnnx>): Float32Array {
  const b = tensorBytes(loaded, t);
  const copy = b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
  return t.data_type === 10 ? fromHalfArray(new Uint16Array(copy)) : new Float32Array(copy);
}

/** round half to even, written out here */
const rne = (x: number) => {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 ? 2 * Math.round(x / 2) : r;
};

/** The int8 per-channel grid of a weight along `axis`, from its formula: scale and fake-quantized values. */
function int8Reference(w: Float32Array, dims: number[], axis: number): { scale: Float32Array; fq: Float32Array; relErr: number } {
  const C = dims[axis]!;
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const ch = (i: number) => Math.floor(i / inner) % C;
  const amax = new Float64Array(C);
  for (let i = 0; i < w.length; i++) amax[ch(i)] = Math.max(amax[ch(i)]!, Math.abs(w[i]!));
  const scale = Float32Array.from(amax, (a) => (a > 0 ? Math.fround(a / 127) : 1));
  const fq = new Float32Array(w.length);
  let e2 = 0;
  let w2 = 0;
  for (let i = 0; i < w.length; i++) {
    const s = scale[ch(i)]!;
    const q = Math.max(-128, Math.min(127, rne(Math.fround(w[i]! / s))));
    fq[i] = Math.fround(q * s);
    e2 += (w[i]! - fq[i]!) ** 2;
    w2 += w[i]! ** 2;
  }
  return { scale, fq, relErr: Math.sqrt(e2 / w2) };
}

interface Stored {
  weight: string;
  codes: Int8Array;
  scale: Float32Array;
  axis: number;
  dims: number[];
}

/** The int8 weights the quantized file holds: every DequantizeLinear fed by an int8 initializer. */
function storedInt8(path: string): Stored[] {
  const l = loadOnnx(path);
  const inits = new Map((l.model.graph!.initializer ?? []).map((t) => [t.name!, t]));
  const out: Stored[] = [];
  for (const node of l.model.graph!.node ?? []) {
    if (node.op_type !== 'DequantizeLinear') continue;
    const q = inits.get(node.input![0]!)!;
    const s = inits.get(node.input![1]!)!;
    expect(q.data_type).toBe(3);
    const qb = tensorBytes(l, q);
    const sb = tensorBytes(l, s);
    let weight = node.output![0]!;
    // a float16 weight is decoded to float32, then Cast back under the weight's name
    const cast = (l.model.graph!.node ?? []).find((m) => m.op_type === 'Cast' && m.input?.[0] === weight);
    if (cast) weight = cast.output![0]!;
    const axis = Number((node as { attribute?: { name?: string; i?: unknown }[] }).attribute?.find((a) => a.name === 'axis')?.i ?? 1);
    out.push({ weight, codes: new Int8Array(qb.buffer.slice(qb.byteOffset, qb.byteOffset + qb.byteLength)), scale: new Float32Array(sb.buffer.slice(sb.byteOffset, sb.byteOffset + sb.byteLength)), axis, dims: dimsOf(q) });
  }
  return out;
}

/** The source model with the named weights replaced by the given float values (same dtype): the reference model. */
function referenceModel(src: string, replace: Map<string, Float32Array>, to: string): void {
  const l = loadOnnx(src);
  for (const t of l.model.graph!.initializer ?? []) {
    const v = replace.get(t.name!);
    const bytes = v ? (t.data_type === 10 ? new Uint8Array(toHalfArray(v).buffer) : new Uint8Array(v.buffer.slice(0))) : Uint8Array.from(tensorBytes(l, t));
    Object.assign(t, { raw_data: bytes, data_location: 0, external_data: [] });
  }
  saveOnnx(l.model, to, null);
}

function graphIo(path: string): string {
  const g = decodeModel(new Uint8Array(readFileSync(path)), path).graph!;
  const vi = (v: unknown) => JSON.stringify(v);
  return `${(g.input ?? []).map(vi).join('|')} -> ${(g.output ?? []).map(vi).join('|')}`;
}

function opsetOf(m: ModelMsg): number {
  return Number((m.opset_import ?? []).find((o) => !o.domain)?.version ?? 0);
}

/**
 * Raw outputs of a model on feeds, as float32 per output name. `level`: onnxruntime's graph optimizations. At
 * 'basic' the graph computes what it says (constant folding, no kernel substitution); at 'all' (what the studio's
 * sessions use) onnxruntime turns DequantizeLinear(int8) -> MatMul into MatMulNBits, run at the studio's accuracy
 * level (runtime/onnx.ts: float32 arithmetic), as verification runs it.
 */
async function run(path: string, feeds: Record<string, FeedValue>[], level: 'basic' | 'all' = 'all'): Promise<Record<string, Float32Array[]>> {
  const s = await ort.InferenceSession.create(path, { graphOptimizationLevel: level, logSeverityLevel: 3, extra: { session: { qdq_matmulnbits_accuracy_level: MATMULNBITS_ACCURACY_LEVEL } } });
  try {
    const names = s.outputNames;
    const res: Record<string, Float32Array[]> = Object.fromEntries(names.map((k) => [k, []]));
    for (const f of feeds) {
      const r = await s.run(Object.fromEntries(Object.entries(f).map(([k, v]) => [k, new ort.Tensor(v.type, v.data as never, v.dims)])));
      for (const k of names) res[k]!.push(r[k]!.type === 'float16' ? fromHalfArray(r[k]!.data as Uint16Array) : Float32Array.from(r[k]!.data as Float32Array));
    }
    return res;
  } finally {
    await s.release();
  }
}

const idsFeeds = (dir: string, tokenizer: string, type: 'int64' | 'int32', prompts: string[]): Record<string, FeedValue>[] => {
  const tok = loadTokenizer(join(dir, tokenizer));
  return prompts.map((p) => {
    const ids = tok.encode(p).ids;
    return { input_ids: type === 'int64' ? { type, data: BigInt64Array.from(ids, BigInt), dims: [1, ids.length] } : { type, data: Int32Array.from(ids), dims: [1, ids.length] } };
  });
};

const PROMPTS = ['a red seven on a blue background', 'nine, white on cyan', 'a cat', ''];

/** Quantizes, then checks everything the tests promise for one component. Returns the report and the verification. */
async function checkComponent(dir: string, component: string, kind: ComponentKind, feeds: Record<string, FeedValue>[], opts: { embeddings?: 'float' | 'int8' } = {}) {
  const src = join(dir, component, 'model.onnx');
  const out = outPath(component);
  const report = await quantizeComponent(src, out, { ...OPTS, ...opts });
  const srcModel = loadOnnx(src);

  // really smaller, by the bytes on disk
  const before = statSync(src).size;
  const after = statSync(out).size;
  expect(report.bytes.before).toBe(before);
  expect(report.bytes.after).toBe(after);
  expect(after).toBeLessThan(before);
  // graph I/O and opset unchanged
  expect(graphIo(out)).toBe(graphIo(src));
  expect(opsetOf(loadOnnx(out).model)).toBe(opsetOf(srcModel.model));

  // the stored int8 weights are the formula's grid, per output channel
  const stored = storedInt8(out);
  expect(stored.length).toBe(report.layers.filter((l) => l.quantized && !/shared with/.test(l.storage ?? '')).length);
  expect(stored.length).toBeGreaterThan(0);
  const srcInits = new Map((srcModel.model.graph!.initializer ?? []).map((t) => [t.name!, t]));
  const replace = new Map<string, Float32Array>();
  let sumRelErr = 0;
  for (const s of stored) {
    const t = srcInits.get(s.weight)!;
    expect(t, s.weight).toBeDefined();
    expect(s.dims).toEqual(dimsOf(t));
    const w = f32Values(t, srcModel);
    const ref = int8Reference(w, s.dims, s.axis);
    expect(Array.from(s.scale)).toEqual(Array.from(ref.scale));
    const inner = s.dims.slice(s.axis + 1).reduce((a, b) => a * b, 1);
    for (let i = 0; i < w.length; i++) {
      const sc = s.scale[Math.floor(i / inner) % s.dims[s.axis]!]!;
      // |w - q s| <= s / 2 (plus float32 rounding of the product)
      expect(Math.abs(w[i]! - s.codes[i]! * sc)).toBeLessThanOrEqual(sc / 2 + Math.abs(w[i]!) * 2 ** -22);
      expect(Math.fround(s.codes[i]! * sc) + 0).toBe(ref.fq[i]! + 0);
    }
    replace.set(s.weight, ref.fq);
    sumRelErr += ref.relErr;
  }
  // no float copy of a quantized weight is left in the file
  const outNames = new Set((loadOnnx(out).model.graph!.initializer ?? []).map((t) => t.name));
  for (const w of replace.keys()) expect(outNames.has(w)).toBe(false);

  // onnxruntime runs it, and it computes what a float model with the formula's int8 weights computes
  const refPath = outPath(`${component}-reference`);
  referenceModel(src, replace, refPath);
  const [fpOut, qOut] = [await run(src, feeds), await run(out, feeds)];
  const [qBasic, refOut] = [await run(out, feeds, 'basic'), await run(refPath, feeds, 'basic')];
  for (const k of Object.keys(fpOut)) {
    for (let i = 0; i < feeds.length; i++) {
      const q = qBasic[k]![i]!;
      const r = refOut[k]![i]!;
      let scale = 0;
      for (const v of r) scale = Math.max(scale, Math.abs(v));
      let d = 0;
      for (let j = 0; j < q.length; j++) d = Math.max(d, Math.abs(q[j]! - r[j]!));
      // float32 reassociation only (float16 graphs: a float16 ulp)
      expect(d, `${k}[${i}]`).toBeLessThanOrEqual(scale * (report.weightDtype === 'float16' ? 2e-3 : 1e-5) + 1e-6);
    }
  }

  // verification: the numbers equal ones recomputed from the raw outputs, and stay within the rounding bound
  const v = await verifyComponent(kind, src, out, kind === 'text_encoder' ? { prompts: PROMPTS } : { seeds: [0, 1, 2] });
  expect(v.inputs).toBe(kind === 'text_encoder' ? PROMPTS.length : 3);
  expect(Object.keys(v.outputs).sort()).toEqual(Object.keys(fpOut).sort());
  if (kind === 'text_encoder') {
    for (const k of Object.keys(fpOut)) {
      let maxAbs = 0;
      let worstRel = 0;
      let worstCos = 1;
      for (let i = 0; i < feeds.length; i++) {
        const a = fpOut[k]![i]!;
        const b = qOut[k]![i]!;
        let d2 = 0;
        let a2 = 0;
        let b2 = 0;
        let ab = 0;
        for (let j = 0; j < a.length; j++) {
          maxAbs = Math.max(maxAbs, Math.abs(a[j]! - b[j]!));
          d2 += (a[j]! - b[j]!) ** 2;
          a2 += a[j]! ** 2;
          b2 += b[j]! ** 2;
          ab += a[j]! * b[j]!;
        }
        worstRel = Math.max(worstRel, a2 ? Math.sqrt(d2 / a2) : 0);
        worstCos = Math.min(worstCos, a2 && b2 ? ab / Math.sqrt(a2 * b2) : 1);
      }
      // the same prompts: identical numbers (feeds built here with the same tokenizer)
      if (feeds.length === PROMPTS.length) {
        expect(v.outputs[k]!.maxAbs).toBeCloseTo(maxAbs, 6);
        expect(v.outputs[k]!.relL2).toBeCloseTo(worstRel, 6);
        expect(v.outputs[k]!.cosine).toBeCloseTo(worstCos, 6);
      }
    }
  }
  // first-order bound: each layer's weight perturbation adds at most its relative error to the output's
  expect(v.relL2).toBeGreaterThan(0);
  expect(v.relL2).toBeLessThanOrEqual(sumRelErr);
  const verdict = verifyThresholds(v);
  expect(verdict.pass, verdict.message).toBe(true);
  expect(verdict.message).not.toContain('\n');
  return { report, v, out, src };
}

/* ------------------------------------------------------------------------------ tests -- */

describe('text encoders: int8 per-channel weights', () => {
  it('tiny-t2i text_encoder: smaller, same I/O, the formula grid, runs, verified; embeddings kept with reasons', async () => {
    const feeds = idsFeeds(TINY_T2I, 'tokenizer', 'int64', PROMPTS);
    const { report, v } = await checkComponent(TINY_T2I, 'text_encoder', 'text_encoder', feeds);
    expect(report.component).toBe('text_encoder');
    expect(report.decode).toBe('DequantizeLinear');
    const kept = report.layers.filter((l) => !l.quantized);
    expect(kept.map((l) => l.weight).sort()).toEqual(['position_embedding.weight', 'token_embedding.weight']);
    expect(kept.every((l) => /embedding table \(Gather\)/.test(l.reason ?? ''))).toBe(true);
    // every MatMul with a weight (q, k, v, out, fc1, fc2 of 2 layers) is quantized; attention MatMuls are not layers
    expect(report.layers.filter((l) => l.quantized && l.op === 'MatMul').length).toBe(12);
    // bits: 8 per weight plus one float32 scale per output channel
    const q = report.layers.filter((l) => l.quantized);
    const params = q.reduce((a, l) => a + l.params, 0);
    const channels = q.reduce((a, l) => a + l.shape[l.axis!]!, 0);
    expect(report.params.quantized).toBe(params);
    expect(report.bitsPerParam.quantized).toBeCloseTo((8 * params + 32 * channels) / params, 9);
    expect(v.output).toBe('last_hidden_state');
  });

  it("tiny-t2i text_encoder with embeddings: 'int8' quantizes the Gather tables per row, smaller still", async () => {
    const feeds = idsFeeds(TINY_T2I, 'tokenizer', 'int64', PROMPTS);
    const plain = await quantizeComponent(join(TINY_T2I, 'text_encoder', 'model.onnx'), outPath('te-plain'), OPTS);
    const { report } = await checkComponent(TINY_T2I, 'text_encoder', 'text_encoder', feeds, { embeddings: 'int8' });
    expect(report.summary.kept).toBe(0);
    const tok = report.layers.find((l) => l.weight === 'token_embedding.weight')!;
    expect(tok.quantized).toBe(true);
    expect(tok.axis).toBe(0);
    expect(report.bytes.after).toBeLessThan(plain.bytes.after);
  });

  it('SD 1.5 fixture text_encoder (int64 ids) and the legacy one (int32 ids, opset 14)', async () => {
    await checkComponent(SD15, 'text_encoder', 'text_encoder', idsFeeds(SD15, 'tokenizer', 'int64', PROMPTS));
    await checkComponent(SD15_LEGACY, 'text_encoder', 'text_encoder', idsFeeds(SD15_LEGACY, 'tokenizer', 'int32', PROMPTS));
  });

  it("SDXL fixture: text_encoder_2 (text_embeds, hidden states) verified with tokenizer_2; every output compared", async () => {
    const { v, report } = await checkComponent(SDXL, 'text_encoder_2', 'text_encoder', idsFeeds(SDXL, 'tokenizer_2', 'int64', PROMPTS));
    expect(report.component).toBe('text_encoder_2');
    expect(Object.keys(v.outputs)).toEqual(expect.arrayContaining(['text_embeds', 'last_hidden_state', 'hidden_states.1']));
    // the projection (text_projection MatMul) is a layer too
    expect(report.layers.some((l) => l.quantized && /text_projection/.test(l.name))).toBe(true);
  });

  it('float16 component: weights quantized from their float16 values, decoded back to float16; I/O types unchanged', async () => {
    const { report } = await checkComponent(SD15_FP16, 'text_encoder', 'text_encoder', idsFeeds(SD15_FP16, 'tokenizer', 'int64', PROMPTS));
    expect(report.weightDtype).toBe('float16');
  });
});

describe('VAE decoders: int8 per-channel weights', () => {
  const latentFeeds = (shape: [number, number, number], sf: number, type: 'float32' | 'float16' = 'float32'): Record<string, FeedValue>[] =>
    [0, 1, 2].map((s) => {
      const z = new Rng(s).normal(new Float32Array(shape[0] * shape[1] * shape[2])).map((x) => x / sf) as Float32Array;
      return { latent_sample: type === 'float16' ? { type, data: toHalfArray(z), dims: [1, ...shape] } : { type, data: z, dims: [1, ...shape] } };
    });

  it('tiny-t2i vae_decoder: smaller, runs, verified with image PSNR; tiny layers kept', async () => {
    // sample_size 32, 3 blocks (factor 4): latents 4 x 8 x 8, scaling 0.56945 (its config.json)
    const { report, v } = await checkComponent(TINY_T2I, 'vae_decoder', 'vae_decoder', latentFeeds([4, 8, 8], 0.56945));
    expect(report.layers.find((l) => /post_quant_conv/.test(l.name))!.reason).toMatch(/fewer than 256 weight parameters \(16\)/);
    expect(report.layers.filter((l) => l.quantized && l.op === 'Conv').length).toBeGreaterThan(15);
    // PSNR recomputed from the formula on the same latents
    const src = join(TINY_T2I, 'vae_decoder', 'model.onnx');
    const [a, b] = [await run(src, latentFeeds([4, 8, 8], 0.56945)), await run(report.output, latentFeeds([4, 8, 8], 0.56945))];
    const clamp = (x: number) => Math.max(-1, Math.min(1, x));
    const p = a.sample!.map((img, k) => {
      let se = 0;
      for (let j = 0; j < img.length; j++) se += (clamp(img[j]!) - clamp(b.sample![k]![j]!)) ** 2;
      return 10 * Math.log10(4 / (se / img.length));
    });
    expect(v.psnr!.min).toBeCloseTo(Math.min(...p), 6);
    expect(v.psnr!.min).toBeGreaterThan(30);
  });

  it('SD 1.5 fixture vae_decoder (float32) and its float16 twin', async () => {
    await checkComponent(SD15, 'vae_decoder', 'vae_decoder', latentFeeds([4, 16, 16], 0.18215));
    const { report } = await checkComponent(SD15_FP16, 'vae_decoder', 'vae_decoder', latentFeeds([4, 16, 16], 0.18215, 'float16'));
    expect(report.weightDtype).toBe('float16');
  });
});

describe('layouts, options and refusals', () => {
  it('external data: a source with model.onnx_data gives an output with model.onnx_data; an inline source an inline output', async () => {
    // the SD 1.5 text encoder saved as Optimum saves large models: weights in model.onnx_data beside model.onnx
    const dir = join(work, 'ext', 'text_encoder');
    mkdirSync(dir, { recursive: true });
    const l = loadOnnx(join(SD15, 'text_encoder', 'model.onnx'));
    saveOnnx(l.model, join(dir, 'model.onnx'), null, { externalize: { location: 'model.onnx_data', threshold: 1024 } });
    const out = join(work, 'ext-out', 'text_encoder', 'model.onnx');
    const r = await quantizeComponent(join(dir, 'model.onnx'), out, OPTS);
    expect(r.bytes.external).toBe('model.onnx_data');
    expect(readdirSync(join(work, 'ext-out', 'text_encoder')).sort()).toEqual(['model.onnx', 'model.onnx_data']);
    const q = loadOnnx(out);
    const ext = (q.model.graph!.initializer ?? []).filter((t) => externalRef(t));
    expect(ext.length).toBeGreaterThan(0);
    expect(ext.every((t) => externalRef(t)!.location === 'model.onnx_data')).toBe(true);
    // int8 codes of at least 1024 bytes went to the external file
    expect(ext.some((t) => t.data_type === 3)).toBe(true);
    const total = (p: string, d: string) => statSync(p).size + statSync(join(d, 'model.onnx_data')).size;
    expect(r.bytes.before).toBe(total(join(dir, 'model.onnx'), dir));
    expect(r.bytes.after).toBe(total(out, join(work, 'ext-out', 'text_encoder')));
    expect(r.bytes.after).toBeLessThan(r.bytes.before);
    // it computes exactly what the inline quantization of the same weights computes
    const inline = await quantizeComponent(join(SD15, 'text_encoder', 'model.onnx'), outPath('te-inline'), OPTS);
    expect(readdirSync(join(inline.output, '..'))).toEqual(['model.onnx']);
    expect((loadOnnx(inline.output).model.graph!.initializer ?? []).some((t) => externalRef(t))).toBe(false);
    const feeds = idsFeeds(SD15, 'tokenizer', 'int64', PROMPTS);
    const [a, b] = [await run(out, feeds), await run(inline.output, feeds)];
    expect(a.last_hidden_state).toEqual(b.last_hidden_state);
    // the same folder would overwrite the float weights the source refers to: refused in one line
    await expect(quantizeComponent(join(dir, 'model.onnx'), join(dir, 'model.int8.onnx'), OPTS)).rejects.toThrow(/keeps its weights in model.onnx_data: write the quantized component to another folder/);
  });

  it('below opset 13 (no per-axis DequantizeLinear): Cast + Mul decoding, opset unchanged; Gemm transB and a Transposed weight quantized per output channel', async () => {
    const b = new GraphBuilder('m');
    const rng = new Rng(7);
    const rand = (k: number) => rng.normal(new Float32Array(k)).map((x) => x * 0.3) as Float32Array;
    const w1 = b.init('conv', 'float32', [16, 4, 3, 3], rand(16 * 4 * 9));
    const h = b.op('Relu', [b.op('Conv', ['x', w1], { pads: ints([1, 1, 1, 1]) })]);
    const flat = b.op('Flatten', [h], { axis: int(1) }); // [1, 16 * 6 * 6]
    const wg = b.init('gemm', 'float32', [24, 576], rand(24 * 576)); // [out, in] with transB
    const g1 = b.op('Gemm', [flat, wg], { transB: int(1) });
    const wt = b.init('tw', 'float32', [10, 24], rand(240)); // [out, in], transposed before the MatMul
    b.opTo('y', 'MatMul', [g1, b.op('Transpose', [wt], { perm: ints([1, 0]) })]);
    const bytes = fragmentModel(b.fragment([{ name: 'x', dtype: 'float32', dims: [1, 4, 6, 6] }], [{ name: 'y', dtype: 'float32', dims: [1, 10] }], 11));
    const dir = join(work, 'opset11', 'vae_decoder');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'model.onnx'), bytes);
    const src = join(dir, 'model.onnx');
    const out = outPath('opset11');
    const r = await quantizeComponent(src, out, { ...OPTS, minParams: 0 });
    expect(r.decode).toBe('Cast + Mul');
    expect(opsetOf(loadOnnx(out).model)).toBe(11);
    expect(r.notes.join(' ')).toMatch(/opset 11 has no per-axis DequantizeLinear/);
    const axes = Object.fromEntries(r.layers.map((l) => [l.op, l.axis]));
    // Conv: axis 0; Gemm with transB: B is [out, in], axis 0; MatMul on Transpose([10, 24]): the initializer's axis 0
    expect(axes).toEqual({ Conv: 0, Gemm: 0, MatMul: 0 });
    // the Mul scales broadcast along that axis: [C, 1, ...]
    const l = loadOnnx(out);
    const scaleShapes = (l.model.graph!.node ?? []).filter((nd) => nd.op_type === 'Mul').map((nd) => dimsOf((l.model.graph!.initializer ?? []).find((t) => t.name === nd.input![1])!));
    expect(scaleShapes.sort()).toEqual([[10, 1], [16, 1, 1, 1], [24, 1]].sort());
    // runs, and equals the float model with the formula's weights
    const x = { x: { type: 'float32' as const, data: rand(144), dims: [1, 4, 6, 6] } };
    const src0 = loadOnnx(src);
    const replace = new Map<string, Float32Array>();
    for (const t of src0.model.graph!.initializer ?? []) {
      const d = dimsOf(t);
      if (d.length >= 2) replace.set(t.name!, int8Reference(f32Values(t, src0), d, 0).fq);
    }
    const refPath = outPath('opset11-ref');
    referenceModel(src, replace, refPath);
    const [q, ref, fp] = [await run(out, [x], 'basic'), await run(refPath, [x], 'basic'), await run(src, [x])];
    for (let j = 0; j < 10; j++) expect(q.y![0]![j]!).toBeCloseTo(ref.y![0]![j]!, 4);
    expect(q.y![0]).not.toEqual(fp.y![0]);
  });

  it('minParams keeps small layers; a weight read by two layers is quantized once', async () => {
    const r = await quantizeComponent(join(TINY_T2I, 'text_encoder', 'model.onnx'), outPath('min'), { ...OPTS, minParams: 5000 });
    // q/k/v/out projections are 64 x 64 = 4096 parameters; fc1/fc2 64 x 256
    expect(r.layers.filter((l) => !l.quantized && /fewer than 5000 weight parameters \(4096\)/.test(l.reason ?? '')).length).toBe(8);
    expect(r.layers.filter((l) => l.quantized).map((l) => l.shape)).toEqual([[64, 256], [256, 64], [64, 256], [256, 64]]);
    expect(r.summary.keptReasons['fewer than 5000 weight parameters']).toBe(8);

    // two MatMuls sharing one initializer
    const b = new GraphBuilder('s');
    const w = b.init('w', 'float32', [32, 32], new Rng(3).normal(new Float32Array(1024)) as Float32Array);
    b.opTo('y', 'Add', [b.op('MatMul', ['x', w]), b.op('MatMul', [b.op('Relu', ['x']), w])]);
    const dir = join(work, 'shared', 'text_encoder');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'model.onnx'), fragmentModel(b.fragment([{ name: 'x', dtype: 'float32', dims: [2, 32] }], [{ name: 'y', dtype: 'float32', dims: [2, 32] }], 17)));
    const s = await quantizeComponent(join(dir, 'model.onnx'), outPath('shared'), OPTS);
    expect(s.layers.map((l) => l.quantized)).toEqual([true, true]);
    expect(s.layers[1]!.storage).toMatch(/shared with/);
    expect(storedInt8(s.output).length).toBe(1);
    expect(s.params.quantized).toBe(1024);
  });

  it('refusals and cancel: one-line DqErrors, nothing written', async () => {
    const src = join(TINY_T2I, 'text_encoder', 'model.onnx');
    await expect(quantizeComponent(src, src, OPTS)).rejects.toThrow(/must be written to another file/);
    await expect(quantizeComponent(src, outPath('x'), { ...OPTS, format: 'int4' as never })).rejects.toThrow(/int8 only/);
    await expect(quantizeComponent(src, outPath('x'), { ...OPTS, granularity: 'tensor' as never })).rejects.toThrow(/channel only/);
    await expect(quantizeComponent(join(work, 'nope.onnx'), outPath('x'), OPTS)).rejects.toThrow(/no such file/);
    const ac = new AbortController();
    const out = outPath('cancel');
    const p = quantizeComponent(src, out, { ...OPTS, signal: ac.signal, onProgress: (q) => q.done === 3 && ac.abort() });
    await expect(p).rejects.toSatisfy((e: unknown) => isDqError(e) && e.code === 'CANCELLED' && !e.message.includes('\n'));
    expect(existsSync(out)).toBe(false);
  });
});

describe('verification catches a broken file', () => {
  it('scales of one layer off by 3x: the text encoder fails its bound with a one-line message', async () => {
    const src = join(TINY_T2I, 'text_encoder', 'model.onnx');
    const good = await quantizeComponent(src, outPath('good'), OPTS);
    const l = loadOnnx(good.output);
    const dq = (l.model.graph!.node ?? []).find((nd) => nd.op_type === 'DequantizeLinear' && /MatMul_280/.test(nd.output![0]!))!; // layers.0 fc1
    const st = (l.model.graph!.initializer ?? []).find((t) => t.name === dq.input![1])!;
    const s = new Float32Array(Uint8Array.from(tensorBytes(l, st)).buffer).map((x) => x * 3);
    Object.assign(st, { raw_data: new Uint8Array(s.buffer) });
    const broken = outPath('broken');
    saveOnnx(l.model, broken, null);
    const v = await verifyComponent('text_encoder', src, broken, { prompts: PROMPTS });
    const verdict = verifyThresholds(v);
    expect(verdict.pass).toBe(false);
    expect(verdict.message).toMatch(/^the int8 text encoder fails verification on 4 inputs: .*last_hidden_state (cosine|relative L2)/);
    expect(verdict.message).not.toContain('\n');
    // the good one passes the same check
    expect(verifyThresholds(await verifyComponent('text_encoder', src, good.output, { prompts: PROMPTS })).pass).toBe(true);
  });

  it('a VAE decoder with one conv weight zeroed fails on PSNR; a file with other outputs is refused', async () => {
    const src = join(TINY_T2I, 'vae_decoder', 'model.onnx');
    const good = await quantizeComponent(src, outPath('vgood'), OPTS);
    const l = loadOnnx(good.output);
    const q = (l.model.graph!.initializer ?? []).find((t) => t.name === 'vae.decoder.conv_in.weight_int8')!;
    Object.assign(q, { raw_data: new Uint8Array(tensorBytes(l, q).length) });
    const broken = outPath('vbroken');
    saveOnnx(l.model, broken, null);
    const v = await verifyComponent('vae_decoder', src, broken, { seeds: [0, 1] });
    const verdict = verifyThresholds(v);
    expect(verdict.pass).toBe(false);
    expect(verdict.failures.join(' ')).toMatch(/image PSNR/);

    // I/O that differs (an output renamed) is not compared at all
    const m = loadOnnx(good.output);
    m.model.graph!.output![0]!.name = 'other';
    for (const nd of m.model.graph!.node ?? []) nd.output = (nd.output ?? []).map((o) => (o === 'sample' ? 'other' : o));
    const renamed = outPath('vrenamed');
    saveOnnx(m.model, renamed, null);
    await expect(verifyComponent('vae_decoder', src, renamed)).rejects.toThrow(/inputs\/outputs differ from the float component's/);
  });
});
