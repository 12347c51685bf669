/**
 * Weight-only quantization of a text-to-image pipeline's other components: the text encoder(s) and the VAE decoder
 * (issue 17, item 4; off by default, the caller opts in per component).
 *
 * What the output really is: each quantized layer's float weight initializer is replaced by int8 codes plus one
 * float32 scale per output channel (symmetric max calibration, round half to even: the kernels/ reference), and a
 * DequantizeLinear (per-axis, opset >= 13) that gives back a tensor of the original name, so every consumer of the
 * weight (the MatMul/Gemm/Conv, and anything else that reads it) is untouched and activations stay float.
 * onnxruntime runs the file as it is. Graph inputs and outputs (names, types, shapes) are not touched.
 * How onnxruntime 1.30 runs it (CPU, optimization level 'all'): Conv/Gemm read the decoded float weights;
 * DequantizeLinear(int8) -> MatMul is fused into MatMulNBits, which by default (session option
 * session.qdq_matmulnbits_accuracy_level = 4) would quantize its activations to int8 on the fly (dynamic W8A8). The
 * studio's sessions set level 1 (runtime/onnx.ts): the kernel reads the int8 weights and computes in float32, as the
 * file says. verifyComponent runs it as the studio does, so its numbers are those of float activations.
 *
 * - Layers: Conv, ConvTranspose, Gemm and MatMul whose weight is a float initializer, reached directly or through
 *   Identity / Transpose / Cast (a Transpose maps the output-channel axis back to the initializer's axis).
 * - Kept in float, each with its reason: embedding tables read by Gather (the token and position embeddings), layers
 *   with fewer than `minParams` weight parameters (the scale and the node would cost about what they save), weights
 *   that are not initializers, pass through a layout change (Reshape, ...), or are already quantized.
 * - float16 components: the weights are quantized from their float16 values and decoded back to float16
 *   (DequantizeLinear to float32, then Cast), so the graph's types stay float16.
 * - Models below opset 13 have no per-axis DequantizeLinear, and raising the opset would change other operators'
 *   meaning (Softmax, Squeeze, Reduce*): the weight is decoded by Cast + Mul (standard since opset 6) instead.
 * - External data: when the source keeps weights in an external file (Optimum's model.onnx_data, the legacy
 *   weights.pb), the output does the same, under the same file name; an inline source gives an inline output.
 *
 * `verifyComponent` runs the float and the quantized component on the same real inputs (token ids of prompts through
 * the pipeline's tokenizer; seeded Gaussian latents scaled by 1 / scaling_factor) and compares every output;
 * `verifyThresholds` is the pass/fail bound with a one-line message.
 */
import { existsSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fromHalfArray } from '../../../kernels/half.js';
import { maxCalibrate, quantizeInt } from '../../../kernels/quant.js';
import { DqError } from '../errors.js';
import { readJson } from '../fsutil.js';
import { psnr } from '../eval/metrics.js';
import { dimsOf, indexGraph, nodeAttr, type GraphIndex } from '../onnx/graph.js';
import { externalRef, loadOnnx, saveOnnx, tensorBytes, type LoadedModel } from '../onnx/io.js';
import { ModelProto, type ModelMsg, type NodeMsg, type TensorMsg } from '../onnx/model.js';
import { QUANTIZABLE_OPS, type QuantizableLayer } from '../onnx/analysis.js';
import { asFloat32, floatFeed, idsFeed, isFloatType } from '../pipeline/dtypes.js';
import { Rng } from '../pipeline/noise.js';
import { loadTokenizer } from '../pipeline/tokenizer.js';
import { tokenizerFolder } from '../pipeline/text.js';
import { LEGACY_SCALING } from '../pipeline/codec.js';
import { Session, type IoMeta, type TensorOut } from '../runtime/onnx.js';
import { weightAxes } from './weights.js';

const NodeProto = ModelProto.lookupType('onnx.NodeProto');
const TensorProtoT = ModelProto.lookupType('onnx.TensorProto');

const FLOAT = 1;
const INT8 = 3;
const FLOAT16 = 10;
/** Ops a weight may pass through between its initializer and the layer without changing its layout. */
const LAYOUT_KEEPING = new Set(['Identity', 'Cast']);

export type ComponentKind = 'text_encoder' | 'vae_decoder';

export interface QuantizeComponentOptions {
  format: 'int8';
  granularity: 'channel';
  /** Layers whose weight has fewer parameters stay float (default 256). */
  minParams?: number;
  /** Embedding tables read by Gather (token, position): 'float' (default) or 'int8' per row. */
  embeddings?: 'float' | 'int8';
  /** Check that onnxruntime loads the output and that its I/O equals the source's (default true). */
  checkLoad?: boolean;
  /** Aborting stops between layers; nothing is written. */
  signal?: AbortSignal;
  onProgress?: (p: { done: number; total: number }) => void;
}

export const DEFAULT_MIN_PARAMS = 256;

export interface ComponentLayer {
  name: string;
  op: string;
  /** The weight initializer. */
  weight: string;
  shape: number[];
  params: number;
  quantized: boolean;
  /** Why a layer stayed float. */
  reason?: string;
  /** How the weight is stored (quantized layers). */
  storage?: string;
  /** The initializer axis the scales run along. */
  axis?: number;
  /** max |w - dequantized w| over the weight, and its bound: half the largest scale. */
  maxAbsError?: number;
  errorBound?: number;
}

export interface ComponentReport {
  /** The component folder's name (text_encoder, text_encoder_2, vae_decoder, ...). */
  component: string;
  source: string;
  output: string;
  format: 'int8';
  granularity: 'channel';
  weightDtype: 'float32' | 'float16';
  /** How the int8 weights are turned back into floats in the graph. */
  decode: 'DequantizeLinear' | 'Cast + Mul';
  layers: ComponentLayer[];
  summary: { layers: number; quantized: number; kept: number; keptReasons: Record<string, number> };
  /** Float parameters of the source (initializers of float type), and how many were quantized. */
  params: { total: number; quantized: number; float: number };
  /** Bytes of the .onnx plus its external data, before and after. */
  bytes: { before: number; after: number; ratio: number; external: string | null };
  /** Storage bits per parameter: of the quantized weights (codes + scales), and of the whole component. */
  bitsPerParam: { quantized: number; component: number };
  notes: string[];
}

function checkAbort(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new DqError('CANCELLED', 'quantizing the component was cancelled; nothing was written');
}

/** Bytes of a model file plus the external data files it names. */
export function componentBytes(path: string): number {
  const loaded = loadOnnx(path);
  let total = loaded.size;
  for (const loc of externalLocations(loaded.model)) total += statSync(join(loaded.dir, loc)).size;
  return total;
}

function externalLocations(m: ModelMsg): string[] {
  const seen = new Set<string>();
  for (const t of m.graph?.initializer ?? []) {
    const ref = externalRef(t);
    if (ref) seen.add(ref.location);
  }
  return [...seen];
}

function defaultOpset(m: ModelMsg): number {
  const def = (m.opset_import ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  return Number(def?.version ?? 0);
}

/** Float values of a float32 / float16 initializer (raw_data, external data or the typed fields). */
function floatValues(loaded: LoadedModel, t: TensorMsg): Float32Array {
  const n = dimsOf(t).reduce((a, b) => a * b, 1);
  const typed = t as { float_data?: number[]; int32_data?: number[] };
  const bytes = tensorBytes(loaded, t);
  if (t.data_type === FLOAT) {
    if (bytes.byteLength) return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    return Float32Array.from(typed.float_data ?? []).subarray(0, n);
  }
  // float16: raw bytes, or bit patterns in int32_data
  const bits = bytes.byteLength ? new Uint16Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)) : Uint16Array.from(typed.int32_data ?? []);
  return fromHalfArray(bits);
}

interface Candidate {
  layer: QuantizableLayer;
  node: NodeMsg;
  /** The initializer, or null with a reason. */
  init: TensorMsg | null;
  reason?: string;
  /** Output-channel axis of the initializer. */
  axis: number;
}

/** The weight input of a layer followed back to its initializer through layout-keeping ops and Transposes. */
function traceWeight(g: GraphIndex, tensor: string): { init: TensorMsg | null; perm: number[] | null; reason?: string } {
  let t = tensor;
  // permutations from the layer back towards the initializer: layer axis a is initializer axis perms applied in order
  const perms: number[][] = [];
  for (let hops = 0; hops < 8; hops++) {
    const init = g.initializers.get(t);
    if (init) {
      let perm: number[] | null = null;
      const rank = dimsOf(init).length;
      for (const p of perms) {
        const q = p.length ? p : [...Array(rank).keys()].reverse();
        perm = perm ? perm.map((a) => q[a]!) : q;
      }
      return { init, perm };
    }
    const p = g.producer.get(t);
    if (p === undefined) return { init: null, perm: null, reason: 'the weight is a graph input, not a stored weight' };
    const n = g.nodes[p]!;
    const op = n.op_type ?? '';
    if (op === 'Constant') return { init: null, perm: null, reason: 'the weight is a Constant node, not an initializer' };
    if (op === 'DequantizeLinear') return { init: null, perm: null, reason: 'the weight is already quantized (DequantizeLinear)' };
    if (op === 'Transpose') perms.push(((nodeAttr(n, 'perm')?.ints ?? []) as unknown[]).map(Number));
    else if (!LAYOUT_KEEPING.has(op)) return { init: null, perm: null, reason: `the weight passes through ${op} (only Identity, Cast and Transpose are followed)` };
    t = n.input?.[0] ?? '';
  }
  return { init: null, perm: null, reason: 'the weight is computed by a long chain of ops' };
}

function findLayers(g: GraphIndex): Candidate[] {
  const out: Candidate[] = [];
  for (const i of g.order) {
    const n = g.nodes[i]!;
    const op = n.op_type ?? '';
    if (n.domain || !QUANTIZABLE_OPS.has(op)) continue;
    const ins = n.input ?? [];
    // the weight: input 1 (Conv, ConvTranspose, Gemm's B, MatMul's right), or MatMul's left when only it is constant
    const isConst = (x: string | undefined) => !!x && (g.constants.has(x) || traceWeight(g, x).init !== null);
    const wi = isConst(ins[1]) ? 1 : op === 'MatMul' && isConst(ins[0]) ? 0 : -1;
    if (wi < 0) continue; // activation x activation (attention) or a runtime weight
    const tr = traceWeight(g, ins[wi]!);
    const rank = tr.init ? dimsOf(tr.init).length : 0;
    const viewShape = tr.init ? (tr.perm ? tr.perm.map((a) => dimsOf(tr.init!)[a]!) : dimsOf(tr.init)) : [];
    const layer: QuantizableLayer = {
      name: g.names[i]!, op, weight: tr.init?.name ?? ins[wi]!, weightShape: viewShape, input: ins[1 - wi] ?? '', output: n.output?.[0] ?? '', weightIndex: wi,
    };
    let reason = tr.reason;
    let axis = 0;
    if (tr.init) {
      if (op === 'Gemm' && wi !== 1) reason = "Gemm's constant input is A, not B";
      const transB = op === 'Gemm' && Number(nodeAttr(n, 'transB')?.i ?? 0) === 1;
      const outView = rank >= 2 ? weightAxes(layer, transB).out : 0;
      axis = tr.perm ? tr.perm[outView]! : outView;
      if (rank < 2) reason = `a weight of rank ${rank}`;
    }
    out.push({ layer, node: n, init: tr.init, reason, axis });
  }
  return out;
}

/** Gather nodes reading a float initializer table (embeddings). */
function embeddingTables(g: GraphIndex): { node: string; table: string; shape: number[] }[] {
  const out: { node: string; table: string; shape: number[] }[] = [];
  for (const i of g.order) {
    const n = g.nodes[i]!;
    if (n.op_type !== 'Gather' || n.domain) continue;
    const tr = traceWeight(g, n.input?.[0] ?? '');
    if (!tr.init || (tr.init.data_type !== FLOAT && tr.init.data_type !== FLOAT16)) continue;
    const shape = dimsOf(tr.init);
    if (shape.length >= 2) out.push({ node: g.names[i]!, table: tr.init.name ?? '', shape });
  }
  return out;
}

const shortReason = (r: string) => r.replace(/ \([^()]*\)$/, '').replace(/'[^']*'/g, '…');

/**
 * Quantizes a component's weights to int8 (per output channel) and writes `outOnnxPath` (plus its external data
 * file when the source has one). Returns what was quantized, what was kept and why, and the sizes.
 */
export async function quantizeComponent(srcOnnxPath: string, outOnnxPath: string, opts: QuantizeComponentOptions): Promise<ComponentReport> {
  if (opts.format !== 'int8') throw new DqError('BAD_ARGUMENT', `component weight format '${String(opts.format)}' is not supported (int8 only)`);
  if (opts.granularity !== 'channel') throw new DqError('BAD_ARGUMENT', `component weight granularity '${String(opts.granularity)}' is not supported (channel only)`);
  const minParams = opts.minParams ?? DEFAULT_MIN_PARAMS;
  if (!Number.isInteger(minParams) || minParams < 0) throw new DqError('BAD_ARGUMENT', `minParams must be a non-negative integer, got ${minParams}`);
  const src = resolve(srcOnnxPath);
  const out = resolve(outOnnxPath);
  if (src === out) throw new DqError('BAD_ARGUMENT', `${srcOnnxPath}: the quantized component must be written to another file (the float one is needed to verify it)`);
  const loaded = loadOnnx(src);
  const model = loaded.model;
  const graph = model.graph!;
  const component = basename(loaded.dir);
  const where = `${component}/${basename(src)}`;
  const locations = externalLocations(model);
  if (locations.length && dirname(out) === loaded.dir) {
    throw new DqError('BAD_ARGUMENT', `${where} keeps its weights in ${locations.join(', ')}: write the quantized component to another folder (the same file name would replace the float weights)`);
  }
  const before = componentBytes(src);
  const g = indexGraph(model);
  const opset = defaultOpset(model);
  const useDq = opset >= 13;
  const notes: string[] = [];
  if (!useDq) notes.push(`opset ${opset} has no per-axis DequantizeLinear (opset 13): weights are decoded by Cast + Mul, the model's opset is unchanged`);

  // float initializers: what the component is made of
  const floatInits = (graph.initializer ?? []).filter((t) => t.data_type === FLOAT || t.data_type === FLOAT16);
  const dtypes = new Set(floatInits.map((t) => t.data_type));
  if (dtypes.size > 1) notes.push('the component mixes float32 and float16 weights; each is decoded back to its own type');
  const weightDtype = floatInits.some((t) => t.data_type === FLOAT16) && !floatInits.some((t) => t.data_type === FLOAT) ? 'float16' : 'float32';
  const other = (graph.initializer ?? []).filter((t) => t.data_type === 11 || t.data_type === 16); // float64, bfloat16
  if (other.length) notes.push(`${other.length} float64/bfloat16 initializers stay as they are`);

  const candidates = findLayers(g);
  const layers: ComponentLayer[] = [];
  const done = new Map<string, string>(); // initializer -> layer that quantized it
  const newNodes: unknown[] = [];
  const newInits: unknown[] = [];
  const drop = new Set<string>();
  let qParams = 0;
  let qBits = 0;
  const taken = new Set<string>([...g.initializers.keys(), ...g.inputs, ...g.nodes.flatMap((n) => n.output ?? [])]);
  const fresh = (hint: string) => {
    let name = hint;
    for (let k = 1; taken.has(name); k++) name = `${hint}_${k}`;
    taken.add(name);
    return name;
  };
  /** Replaces initializer `init` by int8 codes + per-channel scales along `axis` and a decoder giving its name back. */
  const emit = (init: TensorMsg, dims: number[], axis: number): Pick<ComponentLayer, 'storage' | 'maxAbsError' | 'errorBound'> => {
    const wname = init.name ?? '';
    const params = dims.reduce((a, b) => a * b, 1);
    const values = floatValues(loaded, init);
    const gr = { kind: 'channel' as const, axis };
    const fmt = { kind: 'int' as const, bits: 8, symmetric: true };
    const { scale } = maxCalibrate(values, dims, gr, fmt);
    const codes = Int8Array.from(quantizeInt(values, dims, gr, fmt, scale));
    // the error the stored weight carries: |w - q s| <= s / 2 (reported, and checked by the tests)
    let maxErr = 0;
    const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
    const C = dims[axis]!;
    for (let i = 0; i < values.length; i++) maxErr = Math.max(maxErr, Math.abs(values[i]! - Math.fround(codes[i]! * scale[Math.floor(i / inner) % C]!)));
    const half = init.data_type === FLOAT16;
    const qName = fresh(`${wname}_int8`);
    const sName = fresh(`${wname}_scale`);
    newInits.push(TensorProtoT.fromObject({ name: qName, dims, data_type: INT8, raw_data: new Uint8Array(codes.buffer) }));
    const decoded = half ? fresh(`${wname}_f32`) : wname;
    if (useDq) {
      newInits.push(TensorProtoT.fromObject({ name: sName, dims: [C], data_type: FLOAT, raw_data: new Uint8Array(scale.buffer) }));
      newNodes.push(NodeProto.fromObject({ name: fresh(`${wname}_dequantize`), op_type: 'DequantizeLinear', input: [qName, sName], output: [decoded], attribute: [{ name: 'axis', type: 2, i: axis }] }));
    } else {
      const codesF = fresh(`${wname}_codes`);
      newInits.push(TensorProtoT.fromObject({ name: sName, dims: dims.map((d, a) => (a === axis ? d : 1)), data_type: FLOAT, raw_data: new Uint8Array(scale.buffer) }));
      newNodes.push(NodeProto.fromObject({ name: fresh(`${wname}_cast`), op_type: 'Cast', input: [qName], output: [codesF], attribute: [{ name: 'to', type: 2, i: FLOAT }] }));
      newNodes.push(NodeProto.fromObject({ name: fresh(`${wname}_dequantize`), op_type: 'Mul', input: [codesF, sName], output: [decoded] }));
    }
    if (half) newNodes.push(NodeProto.fromObject({ name: fresh(`${wname}_to_f16`), op_type: 'Cast', input: [decoded], output: [wname], attribute: [{ name: 'to', type: 2, i: FLOAT16 }] }));
    drop.add(wname);
    qParams += params;
    qBits += params * 8 + C * 32;
    return { storage: `int8 per channel (axis ${axis}), float32 scales${half ? ', decoded to float16' : ''}`, maxAbsError: maxErr, errorBound: Math.max(...scale) / 2 };
  };
  const total = candidates.length;
  for (const [k, c] of candidates.entries()) {
    if (opts.signal) await new Promise((ok) => setImmediate(ok));
    checkAbort(opts.signal);
    opts.onProgress?.({ done: k, total });
    const base = { name: c.layer.name, op: c.layer.op, weight: c.layer.weight, shape: c.init ? dimsOf(c.init) : c.layer.weightShape };
    const params = base.shape.reduce((a, b) => a * b, 1);
    const keep = (reason: string) => layers.push({ ...base, params, quantized: false, reason });
    if (!c.init) {
      keep(c.reason ?? 'the weight is not an initializer');
      continue;
    }
    if (c.reason) {
      keep(c.reason);
      continue;
    }
    const wname = c.init.name ?? '';
    const by = done.get(wname);
    if (by !== undefined) {
      const first = layers.find((l) => l.name === by)!;
      layers.push({ ...base, params, quantized: first.quantized, ...(first.quantized ? { storage: `${first.storage} (shared with ${by})`, axis: first.axis } : { reason: first.reason }) });
      continue;
    }
    done.set(wname, c.layer.name);
    if (c.init.data_type !== FLOAT && c.init.data_type !== FLOAT16) {
      keep(`the weight is of ONNX type ${c.init.data_type} (float32 or float16 expected)`);
      continue;
    }
    if (params < minParams) {
      keep(`fewer than ${minParams} weight parameters (${params})`);
      continue;
    }
    const st = emit(c.init, base.shape, c.axis);
    layers.push({ ...base, params, quantized: true, axis: c.axis, ...st });
  }
  checkAbort(opts.signal);
  opts.onProgress?.({ done: total, total });

  // embedding tables (Gather): float by default (listed, so the report says where the rest of the parameters are);
  // with `embeddings: 'int8'`, int8 per row (each token's vector has its own scale)
  for (const e of embeddingTables(g)) {
    if (drop.has(e.table) || layers.some((l) => l.weight === e.table)) continue;
    const params = e.shape.reduce((a, b) => a * b, 1);
    const what = /position/i.test(e.table) || /position/i.test(e.node) ? 'position embedding table' : 'embedding table';
    const base = { name: e.node, op: 'Gather', weight: e.table, shape: e.shape, params };
    if (opts.embeddings !== 'int8') {
      layers.push({ ...base, quantized: false, reason: `${what} (Gather): kept in float (embeddings: 'int8' quantizes it per row)` });
    } else if (params < minParams) {
      layers.push({ ...base, quantized: false, reason: `fewer than ${minParams} weight parameters (${params})` });
    } else {
      layers.push({ ...base, quantized: true, axis: 0, ...emit(g.initializers.get(e.table)!, e.shape, 0) });
    }
  }

  // the rewritten graph: decoders first (their inputs are initializers), then the original nodes
  graph.node = [...(newNodes as NodeMsg[]), ...(graph.node ?? [])];
  graph.initializer = [...(graph.initializer ?? []).filter((t) => !drop.has(t.name ?? '')), ...(newInits as TensorMsg[])];
  // IR 3 models list initializers among the inputs: a weight now computed in the graph is no longer one
  if ((graph.input ?? []).some((v) => drop.has(v.name ?? ''))) graph.input = (graph.input ?? []).filter((v) => !drop.has(v.name ?? ''));

  // external data: read into memory, then written beside the output under the source's file name
  let external: string | null = null;
  if (locations.length) {
    for (const t of graph.initializer ?? []) {
      if (!externalRef(t)) continue;
      const bytes = Uint8Array.from(tensorBytes(loaded, t));
      Object.assign(t, { raw_data: bytes, data_location: 0, external_data: [] });
    }
    external = locations[0]!;
    if (locations.length > 1) notes.push(`the source spreads its weights over ${locations.length} files; the output keeps them in one, ${external}`);
  }
  checkAbort(opts.signal);
  saveOnnx(model, out, null, external ? { externalize: { location: external, threshold: 1024 } } : {});
  const after = componentBytes(out);

  if (opts.checkLoad ?? true) await checkSameIo(src, out, where);

  const totalParams = floatInits.reduce((a, t) => a + dimsOf(t).reduce((x, y) => x * y, 1), 0);
  const floatBits = floatInits.reduce((a, t) => (drop.has(t.name ?? '') ? a : a + dimsOf(t).reduce((x, y) => x * y, 1) * (t.data_type === FLOAT16 ? 16 : 32)), 0);
  const keptReasons: Record<string, number> = {};
  for (const l of layers) if (!l.quantized && l.reason) keptReasons[shortReason(l.reason)] = (keptReasons[shortReason(l.reason)] ?? 0) + 1;
  const nq = layers.filter((l) => l.quantized).length;
  if (nq === 0) notes.push('no layer was quantized: the output computes exactly what the source does');
  return {
    component, source: src, output: out, format: 'int8', granularity: 'channel', weightDtype,
    decode: useDq ? 'DequantizeLinear' : 'Cast + Mul',
    layers,
    summary: { layers: layers.length, quantized: nq, kept: layers.length - nq, keptReasons },
    params: { total: totalParams, quantized: qParams, float: totalParams - qParams },
    bytes: { before, after, ratio: before / after, external },
    bitsPerParam: { quantized: qParams ? qBits / qParams : 0, component: totalParams ? (qBits + floatBits) / totalParams : 0 },
    notes,
  };
}

const ioKey = (m: IoMeta) => `${m.name}:${m.type}:[${(m.shape ?? []).join(',')}]`;

/** onnxruntime loads both; their inputs and outputs are identical (names, types, shapes). */
async function checkSameIo(src: string, out: string, where: string): Promise<void> {
  const a = await Session.create(src, 'cpu', { label: where });
  let b: Session;
  try {
    b = await Session.create(out, 'cpu', { label: `${where} (int8)` });
  } finally {
    await a.release();
  }
  try {
    const [ai, ao, bi, bo] = [a.inputs, a.outputs, b.inputs, b.outputs].map((l) => l.map(ioKey).join(' '));
    if (ai !== bi || ao !== bo) throw new DqError('BAD_MODEL', `${where}: the quantized graph's inputs/outputs differ from the source's (${bi} -> ${bo} vs ${ai} -> ${ao})`);
  } finally {
    await b.release();
  }
}

/* ------------------------------------------------------------------ verification -- */

export interface Agreement {
  /** max |fp - q| over every element of every input. */
  maxAbs: number;
  /** The worst input's ||fp - q|| / ||fp||. */
  relL2: number;
  /** The worst input's cosine similarity of fp and q (flattened). */
  cosine: number;
}

export interface ComponentVerification extends Agreement {
  kind: ComponentKind;
  /** The output the top-level numbers describe: last_hidden_state (text encoders), the decoded image (VAE). */
  output: string;
  /** Every float output. */
  outputs: Record<string, Agreement>;
  /** How many inputs were run (prompts or latents). */
  inputs: number;
  /** VAE decoders: PSNR (dB, model space [-1, 1] clamped) of each quantized image against the float one. */
  psnr?: { mean: number; min: number };
  seconds: { float: number; quantized: number };
}

export interface TextEncoderInputs {
  /** Token id rows (each as the encoder takes it, e.g. 77 ids with BOS/EOS/padding). */
  ids?: ArrayLike<number>[];
  /** Prompts, tokenized with the pipeline's tokenizer (default: the tokenizer folder beside the encoder's). */
  prompts?: string[];
  tokenizerDir?: string;
}

export interface VaeDecoderInputs {
  /** Latents as the decoder takes them ([C, h, w] each, already divided by the scaling factor). */
  latents?: Float32Array[];
  /** Seeds of N(0, 1) latents, divided by the scaling factor (default [0, 1, 2]). */
  seeds?: number[];
  /** [C, h, w] (default: the graph's static dims, else config.json's latent_channels and sample_size / factor). */
  shape?: [number, number, number];
  /** Default: vae_decoder/config.json's scaling_factor, else SD's 0.18215. */
  scalingFactor?: number;
}

/** Prompts for a text encoder's check when none are given. */
export const DEFAULT_VERIFY_PROMPTS = [
  'a red seven on a blue background',
  'the digit two in green on black',
  'a photograph of an astronaut riding a horse on the moon, highly detailed',
  'a lighthouse at dusk, oil painting',
  '',
];

/** Agreement of quantized outputs with float ones (lists of the same length, one entry per input). */
export function agreement(fp: ArrayLike<number>[], q: ArrayLike<number>[]): Agreement {
  if (fp.length !== q.length || fp.length === 0) throw new Error('agreement needs the same, non-zero number of outputs on both sides');
  let maxAbs = 0;
  let relL2 = 0;
  let cosine = 1;
  for (let k = 0; k < fp.length; k++) {
    const a = fp[k]!;
    const b = q[k]!;
    if (a.length !== b.length) throw new Error(`output ${k}: ${a.length} vs ${b.length} elements`);
    let d2 = 0;
    let a2 = 0;
    let b2 = 0;
    let ab = 0;
    for (let i = 0; i < a.length; i++) {
      const x = a[i]!;
      const y = b[i]!;
      const d = x - y;
      d2 += d * d;
      a2 += x * x;
      b2 += y * y;
      ab += x * y;
      const ad = Math.abs(d);
      if (!(ad <= maxAbs)) maxAbs = Number.isNaN(ad) ? NaN : ad;
    }
    const r = a2 > 0 ? Math.sqrt(d2 / a2) : d2 > 0 ? Infinity : 0;
    const c = a2 > 0 && b2 > 0 ? ab / Math.sqrt(a2 * b2) : a2 === b2 ? 1 : 0;
    if (!(r <= relL2)) relL2 = r;
    if (!(c >= cosine)) cosine = c;
  }
  return { maxAbs, relL2, cosine };
}

function componentConfig(onnxPath: string): Record<string, unknown> | null {
  const p = join(dirname(resolve(onnxPath)), 'config.json');
  if (!existsSync(p)) return null;
  const c = readJson(p, `${basename(dirname(resolve(onnxPath)))}/config.json`);
  return c && typeof c === 'object' ? (c as Record<string, unknown>) : null;
}

/** The feeds of each input, for the float model's I/O. */
async function buildFeeds(kind: ComponentKind, fpPath: string, session: Session, inputs: TextEncoderInputs | VaeDecoderInputs): Promise<Record<string, ReturnType<typeof floatFeed>>[]> {
  const where = `${basename(dirname(resolve(fpPath)))}/${basename(fpPath)}`;
  const ins = session.inputs;
  if (kind === 'text_encoder') {
    const ti = inputs as TextEncoderInputs;
    const idsIn = ins.find((m) => m.name === 'input_ids') ?? ins.find((m) => m.type === 'int32' || m.type === 'int64');
    if (!idsIn || (idsIn.type !== 'int32' && idsIn.type !== 'int64') || ins.length !== 1) {
      throw new DqError('BAD_MODEL', `${where}: a text encoder with one int32/int64 input_ids input was expected; its inputs are ${ins.map((m) => `${m.name} ${m.type}`).join(', ') || 'none'}`);
    }
    let rows = ti.ids;
    if (!rows) {
      const dir = ti.tokenizerDir ?? join(dirname(dirname(resolve(fpPath))), tokenizerFolder(basename(dirname(resolve(fpPath)))));
      const tok = loadTokenizer(dir);
      rows = (ti.prompts ?? DEFAULT_VERIFY_PROMPTS).map((p) => tok.encode(p).ids);
    }
    if (!rows.length) throw new DqError('BAD_ARGUMENT', 'verifying a text encoder needs at least one prompt or row of token ids');
    return rows.map((r) => ({ [idsIn.name]: idsFeed(idsIn.type as 'int32' | 'int64', r, [1, r.length]) as never }));
  }
  const vi = inputs as VaeDecoderInputs;
  if (ins.length !== 1 || !isFloatType(ins[0]!.type)) throw new DqError('BAD_MODEL', `${where}: a VAE decoder with one float latent input was expected; its inputs are ${ins.map((m) => `${m.name} ${m.type}`).join(', ') || 'none'}`);
  const input = ins[0]!;
  const type = input.type as 'float32' | 'float16';
  let latents = vi.latents;
  let shape = vi.shape;
  if (!latents) {
    const cfg = componentConfig(fpPath);
    if (!shape) {
      const dim = (k: number) => (typeof input.shape?.[k] === 'number' && (input.shape[k] as number) > 0 ? (input.shape[k] as number) : null);
      const blocks = Array.isArray(cfg?.block_out_channels) ? cfg.block_out_channels.length : null;
      const factor = blocks ? 2 ** (blocks - 1) : 8;
      const size = typeof cfg?.sample_size === 'number' ? Math.max(1, Math.round(cfg.sample_size / factor)) : 8;
      const C = dim(1) ?? (typeof cfg?.latent_channels === 'number' ? cfg.latent_channels : 4);
      shape = [C, dim(2) ?? size, dim(3) ?? size];
    }
    const sf = vi.scalingFactor ?? (typeof cfg?.scaling_factor === 'number' && cfg.scaling_factor > 0 ? cfg.scaling_factor : LEGACY_SCALING);
    const n = shape[0] * shape[1] * shape[2];
    latents = (vi.seeds ?? [0, 1, 2]).map((s) => new Rng(s).normal(new Float32Array(n)).map((v) => v / sf) as Float32Array);
  }
  if (!latents.length) throw new DqError('BAD_ARGUMENT', 'verifying a VAE decoder needs at least one latent');
  const sh = shape ?? [input.shape?.[1], input.shape?.[2], input.shape?.[3]].map((d) => (typeof d === 'number' ? d : NaN));
  return latents.map((z) => {
    const dims = [1, ...(sh as number[])];
    if (dims.some((d) => !Number.isInteger(d)) || dims.reduce((a, b) => a * b, 1) !== z.length) {
      throw new DqError('BAD_ARGUMENT', `a latent of ${z.length} values does not have the shape [${sh.join(', ')}]: give 'shape'`);
    }
    return { [input.name]: floatFeed(type, z, dims) };
  });
}

const floatOut = (o: TensorOut, what: string) => Float32Array.from(asFloat32(o, what));

/**
 * Runs the float and the quantized component on the same inputs and compares every float output (their I/O must be
 * identical). Text encoders: token ids of prompts; VAE decoders: latents, plus PSNR of the images.
 */
export async function verifyComponent(kind: ComponentKind, fpPath: string, qPath: string, inputs: TextEncoderInputs | VaeDecoderInputs = {}): Promise<ComponentVerification> {
  const where = `${basename(dirname(resolve(fpPath)))}/${basename(fpPath)}`;
  const fp = await Session.create(fpPath, 'cpu', { label: where });
  let q: Session | null = null;
  try {
    q = await Session.create(qPath, 'cpu', { label: `${where} (quantized)` });
    const [fi, fo, qi, qo] = [fp.inputs, fp.outputs, q.inputs, q.outputs].map((l) => l.map(ioKey).join(' '));
    if (fi !== qi || fo !== qo) throw new DqError('BAD_MODEL', `${qPath}: its inputs/outputs differ from the float component's (${qi} -> ${qo} vs ${fi} -> ${fo})`);
    const feeds = await buildFeeds(kind, fpPath, fp, inputs);
    const outs = fp.outputs.filter((m) => isFloatType(m.type)).map((m) => m.name);
    if (!outs.length) throw new DqError('BAD_MODEL', `${where} has no float outputs to compare`);
    const main = kind === 'text_encoder' ? (outs.find((n) => n === 'last_hidden_state') ?? outs[0]!) : (outs.find((n) => n === 'sample' || n === 'images') ?? outs[0]!);
    const a: Record<string, Float32Array[]> = Object.fromEntries(outs.map((n) => [n, []]));
    const b: Record<string, Float32Array[]> = Object.fromEntries(outs.map((n) => [n, []]));
    const secs = { float: 0, quantized: 0 };
    for (const f of feeds) {
      let t = performance.now();
      const ra = await fp.run(f, outs);
      secs.float += (performance.now() - t) / 1000;
      t = performance.now();
      const rb = await q.run(f, outs);
      secs.quantized += (performance.now() - t) / 1000;
      for (const n of outs) {
        a[n]!.push(floatOut(ra[n]!, `${where}: output '${n}'`));
        b[n]!.push(floatOut(rb[n]!, `${qPath}: output '${n}'`));
      }
    }
    const outputs = Object.fromEntries(outs.map((n) => [n, agreement(a[n]!, b[n]!)]));
    const res: ComponentVerification = { kind, output: main, ...outputs[main]!, outputs, inputs: feeds.length, seconds: secs };
    if (kind === 'vae_decoder') {
      const clamp = (x: Float32Array) => x.map((v) => (Number.isNaN(v) ? -1 : Math.max(-1, Math.min(1, v))));
      const p = a[main]!.map((img, k) => psnr(clamp(img), clamp(b[main]![k]!), 2));
      res.psnr = { mean: p.reduce((s, x) => s + Math.min(x, 200), 0) / p.length, min: Math.min(...p) };
    }
    return res;
  } finally {
    await fp.release();
    await q?.release();
  }
}

export interface VerifyBounds {
  minCosine: number;
  maxRelL2: number;
  /** VAE decoders only: the worst image's PSNR against the float one. */
  minPsnr?: number;
}

/**
 * The default pass/fail bounds for int8 per-channel weights. A per-channel int8 grid has a relative rounding
 * error of about (max|w| / 127) / sqrt(12) / rms(w), i.e. 1-2% for Gaussian-like weights; stacked layers add up
 * but normalization keeps it from growing, so a correct export stays well inside 10% relative L2 and a cosine of
 * 0.995, and a VAE's images above 30 dB. A wrong scale, a transposed axis or a wrong layer breaks these by far.
 */
export const DEFAULT_VERIFY_BOUNDS: Record<ComponentKind, VerifyBounds> = {
  text_encoder: { minCosine: 0.995, maxRelL2: 0.1 },
  vae_decoder: { minCosine: 0.995, maxRelL2: 0.1, minPsnr: 30 },
};

const fmt = (x: number, d = 4) => (Number.isFinite(x) ? x.toFixed(d) : String(x));

/** Pass/fail of a verification against the bounds (default: DEFAULT_VERIFY_BOUNDS), with a one-line message. */
export function verifyThresholds(v: ComponentVerification, bounds: VerifyBounds = DEFAULT_VERIFY_BOUNDS[v.kind]): { pass: boolean; failures: string[]; message: string } {
  const failures: string[] = [];
  for (const [name, o] of Object.entries(v.outputs)) {
    if (!(o.cosine >= bounds.minCosine)) failures.push(`${name} cosine ${fmt(o.cosine)} < ${bounds.minCosine}`);
    if (!(o.relL2 <= bounds.maxRelL2)) failures.push(`${name} relative L2 ${fmt(o.relL2)} > ${bounds.maxRelL2}`);
  }
  if (bounds.minPsnr !== undefined && v.psnr && !(v.psnr.min >= bounds.minPsnr)) failures.push(`image PSNR ${fmt(v.psnr.min, 1)} dB < ${bounds.minPsnr} dB`);
  const label = v.kind === 'text_encoder' ? 'text encoder' : 'VAE decoder';
  const message = failures.length
    ? `the int8 ${label} fails verification on ${v.inputs} inputs: ${failures.join('; ')}`
    : `the int8 ${label} agrees with the float one on ${v.inputs} inputs: ${v.output} cosine ${fmt(v.cosine, 5)}, relative L2 ${fmt(v.relL2)}, max |diff| ${fmt(v.maxAbs)}${v.psnr ? `, image PSNR >= ${fmt(v.psnr.min, 1)} dB` : ''}`;
  return { pass: failures.length === 0, failures, message };
}
