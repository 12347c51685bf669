/**
 * The layer map of a diffusion denoiser, found from the graph alone (no layer-name lists from any one model):
 * quantizable layers, activation-by-activation MatMuls (attention), the time-only region and where it meets the
 * rest (TFMQ-DM's temporal features), decoder skip concats (Q-Diffusion's split shortcut), and the sensitive
 * places quantizers usually spare.
 *
 * Data dependence ignores Shape/Size: a tensor computed from the sample's shape does not depend on its values.
 * "Temporal" means: depends on the timestep input and not on the sample input. Other inputs (class labels) may
 * feed the region too (diffusers adds the class embedding to the time embedding); they are listed under
 * `temporalConditioning`, since a cache of temporal features is then keyed by (timestep, those inputs).
 *
 * "Text-only" (the conditioning region) means: depends on a float conditioning input (a text encoder's per-token
 * states, SDXL's pooled `text_embeds` and `time_ids`) and on neither the sample nor the timestep. In a cross-attention
 * UNet that is every attention block's key and value projection of the text, and SDXL's added-embedding MLP; where
 * the region meets the rest are the text features, computed once per prompt (the text-feature cache).
 */
import { DqError } from '../errors.js';
import { dimsOf, indexGraph, nodeAttr, type GraphIndex } from './graph.js';
import type { ModelMsg, NodeMsg } from './model.js';

export const QUANTIZABLE_OPS = new Set(['Conv', 'ConvTranspose', 'Gemm', 'MatMul']);
const NORM_OPS = new Set(['InstanceNormalization', 'LayerNormalization', 'GroupNormalization', 'BatchNormalization', 'SimplifiedLayerNormalization', 'RMSNormalization']);
const SHAPE_ONLY = new Set(['Shape', 'Size']);
/** Ops that pass a tensor on towards the next layer without being layers themselves. */
const PASS_OPS = new Set([
  ...NORM_OPS, 'Reshape', 'Identity', 'Cast', 'Sigmoid', 'Relu', 'Tanh', 'Erf', 'Gelu', 'LeakyRelu', 'Softplus', 'Elu',
  'HardSigmoid', 'HardSwish', 'Mul', 'Add', 'Div', 'Sub', 'Pow', 'Sqrt', 'Transpose', 'Flatten', 'Squeeze', 'Unsqueeze', 'Mish',
]);
/** Ops a weight may pass through between its initializer and the layer. */
const WEIGHT_CHAIN = new Set(['Identity', 'Transpose', 'Cast', 'Reshape', 'DequantizeLinear', 'Unsqueeze', 'Squeeze']);

const TIMESTEP_NAMES = ['timestep', 'timesteps', 't', 'time', 'sigma', 'sigmas', 't_emb_input'];
const SAMPLE_NAMES = ['sample', 'x', 'latent', 'latents', 'noisy_sample', 'hidden_states', 'x_t', 'noisy_latents'];

export interface QuantizableLayer {
  name: string;
  op: string;
  weight: string;
  weightShape: number[];
  /** The activation input. */
  input: string;
  output: string;
  /** Index of the weight among the node's inputs (1 for Conv/Gemm, 0 or 1 for MatMul). */
  weightIndex: number;
}

export interface AttentionMatMul {
  name: string;
  inputs: [string, string];
  output: string;
}

export interface ShortcutSplit {
  concat: string;
  output: string;
  axis: number;
  /** [decoder tensor, encoder skip tensor], in concat order. */
  inputs: [string, string];
  /** Which concat input is the encoder skip (0 or 1). */
  skipIndex: 0 | 1;
  /** Channel index where the second half starts (channels of the first input); null if unknown. */
  splitAt: number | null;
  /** Quantizable layers that consume the concat (directly or through normalization/activation). */
  consumers: string[];
}

export interface LayerMap {
  sampleInput: string;
  timestepInput: string;
  /** Other runtime inputs (class labels, text embeddings). */
  conditioningInputs: string[];
  quantizable: QuantizableLayer[];
  attention: AttentionMatMul[];
  /** Quantizable layers whose inputs depend on the timestep and not on the sample. */
  temporal: string[];
  /** Tensors where the time-only region meets the rest of the network. */
  temporalFeatures: string[];
  /** Inputs besides the timestep that feed the time-only region. */
  temporalConditioning: string[];
  /** Float conditioning inputs (text states, pooled text, size ids): what the text-only region reads. */
  textInputs: string[];
  /** Quantizable layers whose inputs depend on the text inputs and on neither the sample nor the timestep. */
  textOnly: string[];
  /** Text-only layers reading the per-token text states: cross-attention key and value projections. */
  crossAttention: string[];
  /** Text-only layers reading pooled text or size ids (SDXL's added embedding); part of the conditioning region. */
  addedEmbedding: string[];
  /** Tensors where the text-only region meets the rest (cross-attention keys and values, the added embedding). */
  textFeatures: string[];
  /** Text features read only by the time-only region (SDXL's added embedding): a temporal cache already covers them. */
  textFeaturesOfTime: string[];
  shortcutSplits: ShortcutSplit[];
  sensitive: { firstLayers: string[]; lastLayers: string[]; softmax: string[]; normalizationInputs: string[] };
  /** A video denoiser's layers that mix frames (frameMixing); empty lists for images. */
  frames: { convs: string[]; attention: string[]; softmax: string[] };
}

export interface AnalyzeOptions {
  timestepInput?: string;
  sampleInput?: string;
}

function pickInputs(g: GraphIndex, opts: AnalyzeOptions): { sample: string; timestep: string } {
  const rank = (n: string) => g.shapes.get(n)?.length ?? -1;
  const check = (name: string | undefined, what: string) => {
    if (name !== undefined && !g.inputs.includes(name)) {
      throw new DqError('BAD_ARGUMENT', `${what} '${name}' is not an input of the graph (inputs: ${g.inputs.join(', ') || 'none'})`);
    }
    return name;
  };
  const byName = (names: string[]) => g.inputs.find((n) => names.includes(n.toLowerCase()));
  const sample = check(opts.sampleInput, 'sample input') ?? byName(SAMPLE_NAMES) ?? g.inputs.find((n) => rank(n) >= 4);
  if (!sample) throw new DqError('NOT_DIFFUSION', `no sample input found (a [B,C,H,W] or [B,C,F,H,W] tensor); inputs: ${g.inputs.join(', ') || 'none'}`);
  let timestep = check(opts.timestepInput, 'timestep input') ?? byName(TIMESTEP_NAMES);
  if (!timestep) {
    const cands = g.inputs.filter((n) => n !== sample && rank(n) >= 0 && rank(n) <= 1);
    const floats = cands.filter((n) => elemType(g, n) === 1 || elemType(g, n) === 10);
    timestep = floats.length === 1 ? floats[0] : cands.length === 1 ? cands[0] : undefined;
    if (!timestep) {
      throw new DqError(
        'NOT_DIFFUSION',
        `no timestep input found (by name ${TIMESTEP_NAMES.join('/')} or as the one scalar-per-batch input); inputs: ${g.inputs.join(', ') || 'none'}; name it explicitly`,
      );
    }
  }
  return { sample, timestep };
}

function elemType(g: GraphIndex, name: string): number | undefined {
  const vi = (g.graph.input ?? []).find((v) => v.name === name) as { type?: { tensor_type?: { elem_type?: number } } } | undefined;
  return vi?.type?.tensor_type?.elem_type;
}

/** Bitmask (bigint: any number of inputs) of the runtime inputs (g.inputs order) each tensor's values depend on; 0n for constants. */
export function dependence(g: GraphIndex): Map<string, bigint> {
  const dep = new Map<string, bigint>();
  g.inputs.forEach((n, i) => dep.set(n, 1n << BigInt(i)));
  for (const i of g.order) {
    const n = g.nodes[i]!;
    let m = 0n;
    if (!SHAPE_ONLY.has(n.op_type ?? '')) for (const inp of n.input ?? []) m |= dep.get(inp) ?? 0n;
    for (const o of n.output ?? []) if (o) dep.set(o, m);
  }
  return dep;
}

/** Follows a weight input back through Identity/Transpose/... to an initializer or Constant. */
function weightSource(g: GraphIndex, tensor: string): string | null {
  let t = tensor;
  for (let hops = 0; hops < 8; hops++) {
    if (g.constants.has(t)) return t;
    const p = g.producer.get(t);
    if (p === undefined) return null;
    const n = g.nodes[p]!;
    if (!WEIGHT_CHAIN.has(n.op_type ?? '')) return null;
    t = n.input?.[0] ?? '';
  }
  return null;
}

function constShape(g: GraphIndex, name: string): number[] {
  const init = g.initializers.get(name);
  if (init) return dimsOf(init);
  const p = g.producer.get(name);
  if (p !== undefined) {
    const attr = (g.nodes[p] as { attribute?: { name?: string; t?: { dims?: unknown[] } }[] }).attribute?.find((a) => a.name === 'value');
    if (attr?.t) return dimsOf(attr.t as never);
  }
  return [];
}

/** Channel count (axis 1) of a tensor: from recorded shapes, else by walking back to the producing layer. */
function channels(g: GraphIndex, tensor: string, depth = 0): number | null {
  const s = g.shapes.get(tensor);
  if (s && s.length >= 2 && s[1] !== null) return s[1]!;
  if (depth > 32) return null;
  const p = g.producer.get(tensor);
  if (p === undefined) return null;
  const n = g.nodes[p]!;
  const op = n.op_type ?? '';
  const ins = n.input ?? [];
  if (op === 'Conv') return constShape(g, weightSource(g, ins[1] ?? '') ?? '')[0] ?? null;
  if (op === 'ConvTranspose') {
    const w = constShape(g, weightSource(g, ins[1] ?? '') ?? '');
    const group = Number((n as { attribute?: { name?: string; i?: unknown }[] }).attribute?.find((a) => a.name === 'group')?.i ?? 1);
    return w[1] !== undefined ? w[1] * group : null;
  }
  if (op === 'Concat') {
    const axis = Number((n as { attribute?: { name?: string; i?: unknown }[] }).attribute?.find((a) => a.name === 'axis')?.i ?? 0);
    if (axis !== 1) return channels(g, ins[0] ?? '', depth + 1);
    let sum = 0;
    for (const i of ins) {
      const c = channels(g, i, depth + 1);
      if (c === null) return null;
      sum += c;
    }
    return sum;
  }
  if (op === 'Reshape') {
    // GroupNorm exports as Reshape -> InstanceNormalization -> Reshape(Shape(x)): follow the Shape's source.
    const sp = g.producer.get(ins[1] ?? '');
    if (sp !== undefined && g.nodes[sp]!.op_type === 'Shape') return channels(g, g.nodes[sp]!.input?.[0] ?? '', depth + 1);
    return null;
  }
  // elementwise and shape-preserving ops: the first non-constant input carries the channels
  const act = ins.find((i) => i && !g.constants.has(i));
  return act ? channels(g, act, depth + 1) : null;
}

function isAncestor(g: GraphIndex, ancestor: string, of: string): boolean {
  const seen = new Set<string>();
  const stack = [of];
  while (stack.length) {
    const t = stack.pop()!;
    if (t === ancestor) return true;
    if (seen.has(t)) continue;
    seen.add(t);
    const p = g.producer.get(t);
    if (p !== undefined) for (const i of g.nodes[p]!.input ?? []) if (i) stack.push(i);
  }
  return false;
}

export function analyzeGraph(model: ModelMsg, opts: AnalyzeOptions = {}): LayerMap {
  const g = indexGraph(model);
  const { sample, timestep } = pickInputs(g, opts);
  const dep = dependence(g);
  const bit = (n: string) => 1n << BigInt(g.inputs.indexOf(n));
  const S = bit(sample);
  const T = bit(timestep);
  const dependsOnSample = (t: string) => ((dep.get(t) ?? 0n) & S) !== 0n;
  const isTemporal = (t: string) => {
    const m = dep.get(t) ?? 0n;
    return (m & T) !== 0n && (m & S) === 0n;
  };

  const quantizable: QuantizableLayer[] = [];
  const attention: AttentionMatMul[] = [];
  const layerByNode = new Map<number, QuantizableLayer>();
  for (const i of g.order) {
    const n = g.nodes[i]!;
    const op = n.op_type ?? '';
    if (n.domain || !QUANTIZABLE_OPS.has(op)) continue;
    const ins = n.input ?? [];
    const w1 = weightSource(g, ins[1] ?? '');
    const w0 = op === 'MatMul' ? weightSource(g, ins[0] ?? '') : null;
    if (w1 || w0) {
      const weightIndex = w1 ? 1 : 0;
      const weight = (w1 ?? w0)!;
      const layer: QuantizableLayer = {
        name: g.names[i]!, op, weight, weightShape: constShape(g, weight), input: ins[1 - weightIndex] ?? '', output: n.output?.[0] ?? '', weightIndex,
      };
      quantizable.push(layer);
      layerByNode.set(i, layer);
    } else if (op === 'MatMul') {
      attention.push({ name: g.names[i]!, inputs: [ins[0] ?? '', ins[1] ?? ''], output: n.output?.[0] ?? '' });
    }
  }

  const temporal = quantizable.filter((l) => isTemporal(l.input)).map((l) => l.name);
  // the text-only region: float conditioning inputs (not integer class labels, whose embedding joins the time path)
  const textInputs = g.inputs.filter((n) => n !== sample && n !== timestep && [1, 10, 16].includes(elemType(g, n) ?? 0));
  let X = 0n;
  for (const n of textInputs) X |= bit(n);
  const isTextOnly = (t: string) => {
    const m = dep.get(t) ?? 0n;
    return (m & X) !== 0n && (m & (S | T)) === 0n;
  };
  // per-token states: the rank-3 text inputs; others (pooled text, size ids) feed the added embedding
  const tokenMask = textInputs.filter((n) => (g.shapes.get(n)?.length ?? 3) >= 3).reduce((a, n) => a | bit(n), 0n);
  const textOnlyLayers = quantizable.filter((l) => isTextOnly(l.input));
  const textOnly = textOnlyLayers.map((l) => l.name);
  const crossAttention = textOnlyLayers.filter((l) => ((dep.get(l.input) ?? 0n) & tokenMask) !== 0n).map((l) => l.name);
  const addedEmbedding = textOnlyLayers.filter((l) => ((dep.get(l.input) ?? 0n) & tokenMask) === 0n).map((l) => l.name);
  const textFeatures = new Set<string>();
  const meetsSample = new Set<string>();
  for (const i of g.order) {
    const n = g.nodes[i]!;
    const outs = n.output ?? [];
    if (!outs.some((o) => ((dep.get(o) ?? 0n) & (S | T)) !== 0n)) continue;
    for (const inp of n.input ?? []) {
      if (!inp || !isTextOnly(inp) || g.inputs.includes(inp)) continue;
      textFeatures.add(inp);
      if (outs.some(dependsOnSample)) meetsSample.add(inp);
    }
  }
  const features = new Set<string>();
  let condMask = 0n;
  for (const i of g.order) {
    const n = g.nodes[i]!;
    const outs = n.output ?? [];
    if (!outs.some(dependsOnSample)) continue;
    for (const inp of n.input ?? []) {
      if (inp && isTemporal(inp)) {
        features.add(inp);
        condMask |= dep.get(inp) ?? 0n;
      }
    }
  }
  const temporalConditioning = g.inputs.filter((n) => n !== timestep && (condMask & bit(n)) !== 0n);

  // Split shortcuts: Concat of two sample-dependent tensors where one (the encoder skip) is an ancestor of the other.
  const shortcutSplits: ShortcutSplit[] = [];
  for (const i of g.order) {
    const n = g.nodes[i]!;
    if (n.op_type !== 'Concat' || n.domain) continue;
    const ins = (n.input ?? []).filter(Boolean);
    if (ins.length !== 2 || !ins.every(dependsOnSample)) continue;
    const axisAttr = (n as { attribute?: { name?: string; i?: unknown }[] }).attribute?.find((a) => a.name === 'axis');
    const axis = Number(axisAttr?.i ?? 0);
    const [a, b] = ins as [string, string];
    const skipIndex = isAncestor(g, b, a) ? 1 : isAncestor(g, a, b) ? 0 : -1;
    if (skipIndex < 0) continue;
    const out = n.output?.[0] ?? '';
    const consumers = forwardLayers(g, out, layerByNode);
    if (!consumers.some((l) => l.op === 'Conv' || l.op === 'ConvTranspose' || l.op === 'Gemm' || l.op === 'MatMul')) continue;
    shortcutSplits.push({
      concat: g.names[i]!, output: out, axis, inputs: [a, b], skipIndex: skipIndex as 0 | 1,
      splitAt: axis === 1 ? channels(g, a) : null, consumers: consumers.map((l) => l.name),
    });
  }

  const firstLayers = forwardLayers(g, sample, layerByNode, true).map((l) => l.name);
  const lastLayers = new Set<string>();
  for (const o of g.outputs) for (const l of backwardLayers(g, o, layerByNode)) lastLayers.add(l.name);
  const softmax = g.order.filter((i) => g.nodes[i]!.op_type === 'Softmax').map((i) => g.names[i]!);
  const normalizationInputs = g.order.filter((i) => NORM_OPS.has(g.nodes[i]!.op_type ?? '')).map((i) => g.nodes[i]!.input?.[0] ?? '');

  return {
    frames: frameMixing(g, quantizable),
    sampleInput: sample,
    timestepInput: timestep,
    conditioningInputs: g.inputs.filter((n) => n !== sample && n !== timestep),
    quantizable,
    attention,
    temporal,
    temporalFeatures: [...features],
    temporalConditioning,
    textInputs,
    textOnly,
    crossAttention,
    addedEmbedding,
    textFeatures: [...textFeatures],
    textFeaturesOfTime: [...textFeatures].filter((f) => !meetsSample.has(f)),
    shortcutSplits,
    sensitive: { firstLayers, lastLayers: [...lastLayers], softmax, normalizationInputs: [...new Set(normalizationInputs)] },
  };
}

/** Ops whose inputs after the first are shapes, indices or sizes, not data. */
const DATA_FIRST = new Set(['Reshape', 'Expand', 'Slice', 'Tile', 'Unsqueeze', 'Squeeze', 'Gather', 'Pad', 'Resize']);

/**
 * A video denoiser's layers that mix frames (its sample [B, C, F, H, W]), from the graph alone:
 * - convolutions whose 5-D kernel spans more than one frame (diffusers' TemporalConvLayer: (3, 1, 1));
 * - linear layers and softmaxes inside a block that lays the frames out as its sequence axis: downstream of a
 *   Transpose of a 5-D tensor that puts axis 2 (the frames) just before the last (TransformerTemporalModel's
 *   [B, H, W, F, C]), up to the next 5-D Transpose (the way back).
 */
function frameMixing(g: GraphIndex, quantizable: QuantizableLayer[]): { convs: string[]; attention: string[]; softmax: string[] } {
  const convs = quantizable.filter((l) => l.op === 'Conv' && l.weightShape.length === 5 && l.weightShape[2]! > 1).map((l) => l.name);
  const seq = new Set<string>();
  for (const i of g.order) {
    const n = g.nodes[i]!;
    let on = false;
    const perm = n.op_type === 'Transpose' ? ((nodeAttr(n, 'perm')?.ints ?? []) as unknown[]).map(Number) : [];
    // values, not shapes: a shape read from a frame-sequence tensor (Shape, or a Reshape's or Expand's target)
    // carries no frame data
    const data = SHAPE_ONLY.has(n.op_type ?? '') || n.op_type === 'ConstantOfShape' ? [] : DATA_FIRST.has(n.op_type ?? '') ? (n.input ?? []).slice(0, 1) : (n.input ?? []);
    if (perm.length === 5) on = perm[3] === 2;
    else on = data.some((t) => seq.has(t));
    if (on) for (const o of n.output ?? []) if (o) seq.add(o);
  }
  const attention = quantizable.filter((l) => (l.op === 'MatMul' || l.op === 'Gemm') && seq.has(l.input)).map((l) => l.name);
  // a softmax over the frames: its scores are a product of two frame-sequence tensors (queries and keys of the
  // frames; a cross-attention to the text has keys from the text), reached back through a scaling
  const overFrames = (t: string): boolean => {
    for (let hops = 0; hops < 8; hops++) {
      const p = g.producer.get(t);
      if (p === undefined) return false;
      const n = g.nodes[p]!;
      const ins = (n.input ?? []).filter((x) => x && !g.constants.has(x));
      if (n.op_type === 'MatMul') return ins.length === 2 && ins.every((x) => seq.has(x));
      // a scaling (by a constant or a size-derived scalar): follow the frame-sequence operand
      const next = ins.find((x) => seq.has(x));
      if (next === undefined) return false;
      t = next;
    }
    return false;
  };
  const softmax = g.order.filter((i) => g.nodes[i]!.op_type === 'Softmax' && overFrames(g.nodes[i]!.input?.[0] ?? '')).map((i) => g.names[i]!);
  return { convs, attention, softmax };
}

/** The first quantizable layers reached from `tensor` through pass-through ops (or any op, with `anyOp`). */
function forwardLayers(g: GraphIndex, tensor: string, layers: Map<number, QuantizableLayer>, anyOp = false): QuantizableLayer[] {
  const found = new Map<string, QuantizableLayer>();
  const seen = new Set<string>();
  const stack = [tensor];
  while (stack.length) {
    const t = stack.pop()!;
    if (seen.has(t)) continue;
    seen.add(t);
    for (const c of g.consumers.get(t) ?? []) {
      const layer = layers.get(c);
      const n: NodeMsg = g.nodes[c]!;
      if (layer) {
        if (layer.input === t || !g.constants.has(t)) found.set(layer.name, layer);
        continue;
      }
      // a shape read is not a value read (a DiT crops its position table by the sample's size)
      if (n.op_type === 'Shape' || n.op_type === 'Size') continue;
      if (anyOp || PASS_OPS.has(n.op_type ?? '')) for (const o of n.output ?? []) if (o) stack.push(o);
    }
  }
  return [...found.values()];
}

/** The last quantizable layers on any path into `tensor`. */
function backwardLayers(g: GraphIndex, tensor: string, layers: Map<number, QuantizableLayer>): QuantizableLayer[] {
  const found = new Map<string, QuantizableLayer>();
  const seen = new Set<string>();
  const stack = [tensor];
  while (stack.length) {
    const t = stack.pop()!;
    if (seen.has(t)) continue;
    seen.add(t);
    const p = g.producer.get(t);
    if (p === undefined) continue;
    const layer = layers.get(p);
    if (layer) {
      found.set(layer.name, layer);
      continue;
    }
    for (const i of g.nodes[p]!.input ?? []) if (i && !g.constants.has(i)) stack.push(i);
  }
  return [...found.values()];
}
