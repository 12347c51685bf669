/**
 * A cut-out FP region (a variant's text/model.onnx: the cross-attention keys and values computed once per prompt)
 * without the part of the network it reads only for sizes.
 *
 * The region is found by values: the keys and values depend on the text and not on the sample. But the graph reads
 * sizes for their head reshape from the attention's query input (diffusers' `batch_size, _, _ = hidden_states
 * .shape`, and in some exports the head width from its channels), so a region model cut by graph reachability keeps
 * every node upstream of every attention block: the whole network up to there, its weights included, run once per
 * prompt for a few numbers.
 *
 * Those numbers are found by running the region model on probes that differ in batch size and in image size: a
 * Shape node outside the text's reach whose every entry is either the same on every probe (a channel count: a
 * constant) or the batch (every text input is batch-first, as the query is) is replaced by a constant joined with
 * the batch read from a text input's shape. An entry that follows the image size (the query's token count) keeps
 * its Shape node. What only fed replaced Shape nodes is then dead and pruned.
 */
import { indexGraph, sortTopologically } from '../onnx/graph.js';
import { encodeModel } from '../onnx/io.js';
import { decodeModel, type ModelMsg, type NodeMsg, type TensorMsg } from '../onnx/model.js';
import { pruneDead } from '../onnx/rewrite.js';
import type { FeedValue } from '../runtime/onnx.js';
import { Session } from '../runtime/onnx.js';
import { aInt, Emit } from './emit.js';

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
 * Rewires size reads of a region model (in place). `textInputs`: its inputs that carry text (batch-first);
 * `probes`: at least two feeds of the region's inputs differing in batch size and at least one differing in image
 * size (otherwise an entry that follows the image size could pass for a constant).
 */
export async function slimRegion(model: ModelMsg, textInputs: string[], probes: RegionProbe[]): Promise<SlimResult> {
  const graph = model.graph!;
  const inputNames = (graph.input ?? []).map((v) => v.name ?? '');
  const anchor = textInputs.find((n) => inputNames.includes(n));
  const none = { rewired: 0, kept: 0, nodes: 0, initializers: 0, inputs: inputNames };
  if (!anchor || probes.length < 2) return none;
  const g = indexGraph(model);
  const fromText = new Set<string>([...textInputs, ...g.initializers.keys()]);
  for (const i of g.order) {
    const n = g.nodes[i]!;
    if ((n.input ?? []).filter(Boolean).every((x) => fromText.has(x))) for (const o of n.output ?? []) fromText.add(o);
  }
  const shapes = g.nodes.filter((n) => n.op_type === 'Shape' && !fromText.has(n.input?.[0] ?? ''));
  if (!shapes.length) return none;
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
  const e = new Emit('dqx/region');
  let batch: string | null = null;
  let rewired = 0;
  shapes.forEach((n, k) => {
    const len = seen[0]![k]!.length;
    if (seen.some((s) => s[k]!.length !== len)) return;
    const entries: ({ batch: true } | { value: number })[] = [];
    const varies: number[] = [];
    for (let j = 0; j < len; j++) {
      const vals = seen.map((s) => s[k]![j]!);
      if (vals.every((v) => v === vals[0])) entries.push({ value: vals[0]! });
      else if (vals.every((v, q) => v === probes[q]!.rows)) entries.push({ batch: true });
      else {
        // an entry that follows the image size (the token count): fine only where nothing reads it
        varies.push(j);
        entries.push({ value: 0 });
      }
    }
    if (varies.length) {
      const out = n.output![0]!;
      const users = consumers.get(out) ?? [];
      if (outputs.has(out) || !users.length || !users.every((u) => readEntries(u, out, len, g.initializers, constants)?.every((j) => !varies.includes(j)))) return;
    }
    // a constant run of entries, or the batch read from the anchor's shape
    const parts: string[] = [];
    let run: number[] = [];
    const flush = () => {
      if (run.length) parts.push(e.i64(run));
      run = [];
    };
    for (const x of entries) {
      if ('value' in x) run.push(x.value);
      else {
        flush();
        batch ??= e.op('Slice', [e.op('Shape', [anchor]), e.i64([0]), e.i64([1]), e.i64([0])]);
        parts.push(batch);
      }
    }
    flush();
    const out = n.output![0]!;
    // the Shape node becomes an Identity of the rebuilt vector (its output name stays)
    const vec = parts.length === 1 ? parts[0]! : e.op('Concat', parts, [aInt('axis', 0)]);
    Object.assign(n, { op_type: 'Identity', input: [vec], output: [out], attribute: [], domain: '' });
    rewired++;
  });
  if (!rewired) return { ...none, kept: shapes.length };
  graph.node = [...(e.nodes as NodeMsg[]), ...(graph.node ?? [])];
  graph.initializer = [...(graph.initializer ?? []), ...(e.inits as TensorMsg[])];
  const pruned = pruneDead(model);
  sortTopologically(model);
  return { rewired, kept: shapes.length - rewired, nodes: pruned.nodes, initializers: pruned.initializers, inputs: (graph.input ?? []).map((v) => v.name ?? '') };
}
