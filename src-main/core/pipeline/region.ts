/**
 * A cut-out FP region (a variant's text/model.onnx: the cross-attention keys and values computed once per prompt)
 * without the part of the network it reads only for sizes. Quantization slims the text-feature models it measures
 * and the one it writes (quant/quantize.ts); an export slims a variant's that predates it (export/export.ts), both
 * through textSizePlan.
 *
 * The region is found by values: the keys and values depend on the text and not on the sample. But the graph reads
 * sizes for their head reshape from the attention's query input (diffusers' `batch_size, _, _ = hidden_states
 * .shape`, and in some exports the head width from its channels), so a region model cut by graph reachability keeps
 * every node upstream of every attention block: the whole network up to there, its weights included, run once per
 * prompt for a few numbers.
 *
 * Those numbers are found by running the region model on probes that differ in batch size and in image size: a
 * Shape node outside the text's reach whose every entry is either the same on every probe (a channel count: a
 * constant) or the batch times one constant on every probe (every text input is batch-first, as the query is) is
 * replaced by constants joined with the batch read from a text input's shape; a video's probes differ in frame count
 * too, so its batch x frames rows are not taken for the batch times a constant. An entry that follows the image size
 * (the query's token count) keeps its Shape node. What only fed replaced Shape nodes is then dead and pruned.
 */
import { GraphBuilder, int } from '../../../kernels/onnx/graph.js';
import { nodeProtos, tensorProto } from '../onnx/fragment.js';
import { indexGraph, sortTopologically } from '../onnx/graph.js';
import { encodeModel } from '../onnx/io.js';
import { decodeModel, ModelProto, type ModelMsg, type NodeMsg, type TensorMsg } from '../onnx/model.js';
import { pruneDead } from '../onnx/rewrite.js';
import type { FeedValue } from '../runtime/onnx.js';
import { sizeMultiple, withFrames, withImageSize, type Pipeline } from './pipeline.js';
import { buildFeeds, timestepInput } from './sample.js';
import { Session } from '../runtime/onnx.js';

/** One probe: the region's inputs, and the batch (rows) they carry. */
export interface RegionProbe {
  feeds: Record<string, FeedValue>;
  rows: number;
}

/** An int64 constant's values (an initializer or a Constant node's value), or null. */
function int64Values(name: string, inits: Map<string, TensorMsg>, constants: Map<string, TensorMsg>): number[] | null {
  const t = inits.get(name) ?? constants.get(name);
  if (!t || t.data_type !== 7) return null;
  if (t.raw_data && t.raw_data.length) {
    const b = Uint8Array.from(t.raw_data);
    return Array.from(new BigInt64Array(b.buffer, 0, b.length >> 3), Number);
  }
  const v = (t as { int64_data?: { toString(): string }[] }).int64_data;
  return v?.length ? v.map((x) => Number(x.toString())) : null;
}

/** The entries of the shape vector `vec` (of `len` entries) node `u` reads, when they are constants; else null. */
function readEntries(u: NodeMsg, vec: string, len: number, inits: Map<string, TensorMsg>, constants: Map<string, TensorMsg>): number[] | null {
  const ins = u.input ?? [];
  if (ins.indexOf(vec) !== 0 || ins.lastIndexOf(vec) !== 0) return null;
  const norm = (j: number) => (j < 0 ? j + len : j);
  if (u.op_type === 'Gather') {
    const idx = int64Values(ins[1] ?? '', inits, constants);
    const axis = (u as { attribute?: { name?: string; i?: unknown }[] }).attribute?.find((a) => a.name === 'axis');
    return idx && Number(axis?.i ?? 0) === 0 ? idx.map(norm) : null;
  }
  if (u.op_type === 'Slice') {
    const starts = int64Values(ins[1] ?? '', inits, constants);
    const ends = int64Values(ins[2] ?? '', inits, constants);
    const axes = ins[3] ? int64Values(ins[3], inits, constants) : [0];
    const steps = ins[4] ? int64Values(ins[4], inits, constants) : [1];
    if (starts?.length !== 1 || ends?.length !== 1 || axes?.length !== 1 || axes[0] !== 0 || steps?.length !== 1 || steps[0] !== 1) return null;
    const a = Math.max(0, Math.min(len, norm(starts[0]!)));
    const b = Math.max(0, Math.min(len, norm(ends[0]!)));
    return Array.from({ length: Math.max(0, b - a) }, (_, i) => a + i);
  }
  return null;
}

export interface SlimResult {
  /** Shape nodes replaced by constants and the batch. */
  rewired: number;
  /** Shape nodes outside the text's reach that had to stay (an entry follows the image size). */
  kept: number;
  /** Nodes and initializers that became dead and were removed. */
  nodes: number;
  initializers: number;
  /** The model's inputs afterwards (the sample and timestep drop out when nothing reads them any more). */
  inputs: string[];
}

/**
 * One size read's replacement: each entry of the Shape node's vector a constant or the batch times a constant (a
 * graph that folds a fixed factor into its batch; a video's batch x frames is not one: the frames vary).
 */
export type SizeRead = ({ batch: number } | { value: number })[];

/** What slimming a region does: its Shape nodes (by output) that become constants and the batch of `anchor`. */
export interface SizePlan {
  /** A text input (batch-first) the batch is read from. */
  anchor: string;
  reads: Map<string, SizeRead>;
  /** Shape nodes outside the text's reach that must stay (an entry follows the image size). */
  kept: number;
}

/**
 * Which size reads of a region model can go (the model is not changed). `textInputs`: its inputs that carry text
 * (batch-first); `probes`: at least two feeds of the region's inputs differing in batch size and at least one
 * differing in image size (otherwise an entry that follows the image size could pass for a constant). Null when
 * there is nothing to rewire.
 */
export async function planSizeReads(model: ModelMsg, textInputs: string[], probes: RegionProbe[]): Promise<SizePlan | null> {
  const graph = model.graph!;
  const inputNames = (graph.input ?? []).map((v) => v.name ?? '');
  const anchor = textInputs.find((n) => inputNames.includes(n));
  if (!anchor || probes.length < 2) return null;
  const g = indexGraph(model);
  const fromText = new Set<string>([...textInputs, ...g.initializers.keys()]);
  for (const i of g.order) {
    const n = g.nodes[i]!;
    if ((n.input ?? []).filter(Boolean).every((x) => fromText.has(x))) for (const o of n.output ?? []) fromText.add(o);
  }
  const shapes = g.nodes.filter((n) => n.op_type === 'Shape' && !fromText.has(n.input?.[0] ?? ''));
  if (!shapes.length) return null;
  // the entries of every such Shape node on every probe
  const probe = decodeModel(encodeModel(model), 'the region model');
  const names = shapes.map((n) => n.output![0]!);
  const have = new Set((probe.graph!.output ?? []).map((v) => v.name ?? ''));
  probe.graph!.output = [...(probe.graph!.output ?? []), ...(names.filter((n) => !have.has(n)).map((name) => ({ name, type: { tensor_type: { elem_type: 7 } } })) as never[])];
  const session = await Session.create(encodeModel(probe), 'cpu');
  const seen: number[][][] = [];
  try {
    for (const p of probes) {
      const feeds: Record<string, FeedValue> = {};
      for (const name of session.inputNames) if (p.feeds[name]) feeds[name] = p.feeds[name]!;
      const out = await session.run(feeds, names);
      seen.push(names.map((nm) => Array.from(out[nm]!.data as BigInt64Array, Number)));
    }
  } finally {
    await session.release();
  }
  const constants = new Map<string, TensorMsg>();
  for (const n of g.nodes) {
    const attrs = (n as { attribute?: { name?: string; t?: TensorMsg }[] }).attribute ?? [];
    if (n.op_type === 'Constant' && attrs[0]?.name === 'value' && attrs[0].t) constants.set(n.output?.[0] ?? '', attrs[0].t);
  }
  const consumers = new Map<string, NodeMsg[]>();
  for (const n of g.nodes) for (const x of n.input ?? []) (consumers.get(x) ?? consumers.set(x, []).get(x)!).push(n);
  const outputs = new Set(g.outputs);
  const reads = new Map<string, SizeRead>();
  shapes.forEach((n, k) => {
    const len = seen[0]![k]!.length;
    if (seen.some((s) => s[k]!.length !== len)) return;
    const entries: SizeRead = [];
    const varies: number[] = [];
    for (let j = 0; j < len; j++) {
      const vals = seen.map((s) => s[k]![j]!);
      if (vals.every((v) => v === vals[0])) entries.push({ value: vals[0]! });
      else if (vals[0]! % probes[0]!.rows === 0 && vals.every((v, q) => v === (vals[0]! / probes[0]!.rows) * probes[q]!.rows)) entries.push({ batch: vals[0]! / probes[0]!.rows });
      else {
        // an entry that follows the image size (the token count): fine only where nothing reads it
        varies.push(j);
        entries.push({ value: 0 });
      }
    }
    const out = n.output![0]!;
    if (varies.length) {
      const users = consumers.get(out) ?? [];
      if (outputs.has(out) || !users.length || !users.every((u) => readEntries(u, out, len, g.initializers, constants)?.every((j) => !varies.includes(j)))) return;
    }
    reads.set(out, entries);
  });
  return reads.size ? { anchor, reads, kept: shapes.length - reads.size } : null;
}

/**
 * Applies a plan (in place) to a region model of the same graph (the region it was made on, or the same region of
 * another variant of the network: Shape nodes are found by output name): each planned Shape node becomes an Identity
 * of constants joined with the batch read from the anchor's shape; what only fed them is pruned.
 */
export function applySizePlan(model: ModelMsg, plan: SizePlan): SlimResult {
  const graph = model.graph!;
  const b = new GraphBuilder('dqx/region');
  let batch: string | null = null;
  let rewired = 0;
  for (const n of graph.node ?? []) {
    const out = n.output?.[0] ?? '';
    const entries = n.op_type === 'Shape' ? plan.reads.get(out) : undefined;
    if (!entries) continue;
    // a constant run of entries, or the batch read from the anchor's shape
    const parts: string[] = [];
    let run: number[] = [];
    const flush = () => {
      if (run.length) parts.push(b.i64(run));
      run = [];
    };
    for (const x of entries) {
      if ('value' in x) run.push(x.value);
      else {
        flush();
        batch ??= b.op('Slice', [b.op('Shape', [plan.anchor]), b.i64([0]), b.i64([1]), b.i64([0])]);
        parts.push(x.batch === 1 ? batch : b.op('Mul', [batch, b.i64([x.batch])]));
      }
    }
    flush();
    // the Shape node becomes an Identity of the rebuilt vector (its output name stays)
    const vec = parts.length === 1 ? parts[0]! : b.op('Concat', parts, { axis: int(0) });
    Object.assign(n, { op_type: 'Identity', input: [vec], output: [out], attribute: [], domain: '' });
    rewired++;
  }
  const inputs = () => (graph.input ?? []).map((v) => v.name ?? '');
  if (!rewired) return { rewired: 0, kept: plan.kept, nodes: 0, initializers: 0, inputs: inputs() };
  const f = b.fragment([], [], 13);
  const NodeProto = ModelProto.lookupType('onnx.NodeProto');
  const TensorProto = ModelProto.lookupType('onnx.TensorProto');
  graph.node = [...nodeProtos(f).map((x) => NodeProto.fromObject(x) as never), ...(graph.node ?? [])];
  graph.initializer = [...(graph.initializer ?? []), ...f.initializers.map((t) => TensorProto.fromObject(tensorProto(t)) as never)];
  const pruned = pruneDead(model);
  sortTopologically(model);
  return { rewired, kept: plan.kept, nodes: pruned.nodes, initializers: pruned.initializers, inputs: inputs() };
}

/**
 * A text pipeline's plan for a region model of its denoiser, probed with the pipeline's own inputs (textRegionProbes):
 * null when there is nothing to rewire, or, with `failed` (the error's first line), when the probes cannot run (a
 * DiT whose position embedding is fixed to one image size). Slimming is only an optimization: such a region is
 * used whole.
 */
export async function textSizePlan(p: Pipeline, model: ModelMsg): Promise<{ plan: SizePlan | null; failed: string | null }> {
  try {
    const probes = await textRegionProbes(p);
    return { plan: probes.length ? await planSizeReads(model, textInputsOf(p), probes) : null, failed: null };
  } catch (e) {
    return { plan: null, failed: e instanceof Error ? e.message.split('\n')[0]! : String(e) };
  }
}

/** A text pipeline's inputs that carry text (batch-first): what a text region's batch can be read from. */
function textInputsOf(p: Pipeline): string[] {
  return [p.io.encoderHiddenStates, p.io.textEmbeds, p.io.timeIds, p.io.timestepCond, p.io.txtIds, p.io.guidanceInput, p.io.textMask].filter((n): n is string => !!n);
}

/**
 * Probes for a text pipeline's regions: its denoiser's inputs at batch 1 and 2 of its own image size, at batch 1 of
 * a larger one (one size multiple taller, two wider) and, for a video, of one frame more; a zero sample at t = 500.
 * Empty without text.
 */
async function textRegionProbes(p: Pipeline): Promise<RegionProbe[]> {
  if (!p.text) return [];
  const m = sizeMultiple(p);
  const [, H, W] = p.imageShape;
  const ids = await p.text.ids(['a probe', 'another probe'], ['', ''], false);
  const probes: RegionProbe[] = [];
  // a video also samples at other frame counts (--frames): a size that follows the frames must not pass for a constant
  const cases: [Pipeline, number][] = [[p, 1], [p, 2], [withImageSize(p, H + m, W + 2 * m), 1]];
  if (p.index.frames) {
    try {
      cases.push([withFrames(p, p.index.frames + 1), 1]);
    } catch {
      /* a unet fixed at its frame count: nothing follows the frames */
    }
  }
  for (const [q, b] of cases) {
    const [C, h, w] = q.index.sampleShape;
    const feeds = await buildFeeds(q, new Float64Array(b * C * h * w), 500, ids.slice(0, b), false, b, async () => ({}));
    // a variant's denoiser may no longer read the timestep (its time-only region was cut): the region may
    feeds[q.io.timestep] ??= timestepInput(q, 500, b);
    probes.push({ feeds, rows: b });
  }
  return probes;
}
