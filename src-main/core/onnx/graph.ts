/**
 * An index over an ONNX graph: who produces and who consumes each tensor, which tensors are constants, a
 * topological order (a cycle is an error), stable node names, and static shapes where the model records them.
 */
import { DqError } from '../errors.js';
import type { GraphMsg, ModelMsg, NodeMsg, TensorMsg } from './model.js';

export interface ValueInfoMsg {
  name?: string;
  type?: { tensor_type?: { elem_type?: number; shape?: { dim?: { dim_value?: unknown; dim_param?: string }[] } } };
}

export interface GraphIndex {
  graph: GraphMsg;
  nodes: NodeMsg[];
  /** A unique name per node (the node's own, or op_type + index when it has none). */
  names: string[];
  producer: Map<string, number>;
  consumers: Map<string, number[]>;
  initializers: Map<string, TensorMsg>;
  /** Outputs of Constant nodes and initializers. */
  constants: Set<string>;
  /** Graph inputs that are not initializers (the real runtime inputs). */
  inputs: string[];
  outputs: string[];
  /** Node indices in topological order. */
  order: number[];
  /** Static shapes known from graph inputs, outputs and value_info (null dims are symbolic). */
  shapes: Map<string, (number | null)[]>;
}

const num = (v: unknown): number | null => {
  if (v === undefined || v === null) return null;
  if (typeof v === 'number') return v;
  const s = String(v);
  return /^-?\d+$/.test(s) ? Number(s) : null;
};

function shapeOf(vi: ValueInfoMsg): (number | null)[] | null {
  const dims = vi.type?.tensor_type?.shape?.dim;
  if (!dims) return null;
  // a symbolic dimension (dim_param) or none at all is not static; protobufjs reads an unset dim_value as 0
  return dims.map((d) => (d.dim_param ? null : d.dim_value !== undefined && d.dim_value !== null && (num(d.dim_value) ?? 0) > 0 ? num(d.dim_value) : null));
}

/** A node's attribute by name (undefined when absent). */
export function nodeAttr(n: NodeMsg, name: string): { i?: unknown; f?: number | null; ints?: unknown[] | null; s?: Uint8Array | null } | undefined {
  return (n as { attribute?: { name?: string | null; i?: unknown; f?: number | null; ints?: unknown[] | null; s?: Uint8Array | null }[] | null }).attribute?.find((a) => a.name === name);
}

export function dimsOf(t: TensorMsg): number[] {
  return (t.dims ?? []).map((d) => num(d) ?? 0);
}

/** Each node's name as indexGraph gives it: its own, else `<op>_<i>`; a repeated one gets `#<i>`. */
export function nodeNames(nodes: readonly NodeMsg[]): string[] {
  const names: string[] = [];
  const seen = new Set<string>();
  nodes.forEach((n, i) => {
    let name = n.name || `${n.op_type ?? 'node'}_${i}`;
    if (seen.has(name)) name = `${name}#${i}`;
    seen.add(name);
    names.push(name);
  });
  return names;
}

export function indexGraph(model: ModelMsg): GraphIndex {
  const graph = model.graph;
  if (!graph) throw new DqError('BAD_MODEL', 'the model has no graph');
  const nodes = graph.node ?? [];
  const names = nodeNames(nodes);
  const producer = new Map<string, number>();
  const consumers = new Map<string, number[]>();
  nodes.forEach((n, i) => {
    for (const o of n.output ?? []) if (o) producer.set(o, i);
    for (const inp of n.input ?? []) {
      if (!inp) continue;
      const list = consumers.get(inp);
      if (list) list.push(i);
      else consumers.set(inp, [i]);
    }
  });
  const initializers = new Map<string, TensorMsg>();
  for (const t of graph.initializer ?? []) if (t.name) initializers.set(t.name, t);
  const constants = new Set<string>(initializers.keys());
  nodes.forEach((n) => {
    if (n.op_type === 'Constant' && !n.domain) for (const o of n.output ?? []) constants.add(o);
  });
  const inputs = (graph.input ?? []).map((v) => v.name ?? '').filter((n) => n && !initializers.has(n));
  const outputs = (graph.output ?? []).map((v) => v.name ?? '').filter(Boolean);

  // Kahn's algorithm; inputs of a node that nothing produces are graph inputs, initializers or outer-scope names.
  const indeg = nodes.map((n) => new Set((n.input ?? []).filter((x) => x && producer.has(x))).size);
  const ready: number[] = [];
  indeg.forEach((d, i) => d === 0 && ready.push(i));
  const order: number[] = [];
  const done = new Set<string>();
  while (ready.length) {
    const i = ready.shift()!;
    order.push(i);
    for (const o of nodes[i]!.output ?? []) {
      if (!o || done.has(o)) continue;
      done.add(o);
      for (const c of new Set(consumers.get(o) ?? [])) if (--indeg[c]! === 0) ready.push(c);
    }
  }
  if (order.length !== nodes.length) {
    const stuck = nodes.map((_, i) => i).filter((i) => indeg[i]! > 0).map((i) => names[i]);
    throw new DqError('BAD_MODEL', `the graph has a cycle (nodes that can never run: ${stuck.slice(0, 5).join(', ')}${stuck.length > 5 ? ', ...' : ''})`);
  }

  const shapes = new Map<string, (number | null)[]>();
  for (const vi of [...(graph.input ?? []), ...(graph.output ?? []), ...((graph as { value_info?: ValueInfoMsg[] }).value_info ?? [])] as ValueInfoMsg[]) {
    const s = shapeOf(vi);
    if (vi.name && s) shapes.set(vi.name, s);
  }
  for (const [name, t] of initializers) shapes.set(name, dimsOf(t));
  return { graph, nodes, names, producer, consumers, initializers, constants, inputs, outputs, order, shapes };
}

/** Puts the graph's nodes in topological order (in place). */
export function sortTopologically(model: ModelMsg): void {
  const g = indexGraph(model);
  model.graph!.node = g.order.map((i) => g.nodes[i]!);
}

const WEIGHT_OPS = new Set(['Conv', 'ConvTranspose', 'Gemm', 'MatMul']);

/**
 * Gives every layer its own weight and bias: an initializer that several Conv/ConvTranspose/Gemm/MatMul nodes read
 * (tied weights, or identical ones an exporter merged, e.g. zero-initialised layers: PyTorch's exporter keeps one
 * and feeds the others through Identity nodes) is copied for each reader after the first, and readers through
 * Identity nodes read it directly, so that quantizing or exporting one layer cannot change or drop another's.
 * Initializers stored in external files are left shared. Returns how many copies were made.
 */
export function untieWeights(model: ModelMsg): number {
  const graph = model.graph;
  if (!graph) return 0;
  const inits = new Map((graph.initializer ?? []).map((t) => [t.name ?? '', t] as const));
  const taken = new Set([...inits.keys(), ...(graph.node ?? []).flatMap((n) => n.output ?? [])]);
  const identity = new Map<string, string>();
  for (const n of graph.node ?? []) if (n.op_type === 'Identity' && n.input?.[0] && n.output?.[0]) identity.set(n.output[0], n.input[0]);
  const source = (name: string) => {
    let r = name;
    for (let k = 0; k < 64 && !inits.has(r) && identity.has(r); k++) r = identity.get(r)!;
    return r;
  };
  const readers = new Map<string, number>();
  let copies = 0;
  for (const n of graph.node ?? []) {
    if (!WEIGHT_OPS.has(n.op_type ?? '')) continue;
    // the weight (a MatMul's may be either input) and a Conv's or Gemm's bias; activations are no initializers
    for (const [at, w0] of (n.input ?? []).entries()) {
      if (!w0) continue;
      const w = source(w0);
      if (!inits.has(w)) continue;
      const t = inits.get(w)!;
      const external = (t as { data_location?: number }).data_location === 1;
      if (w !== w0 && !external) n.input![at] = w;
      const seen = readers.get(w) ?? 0;
      readers.set(w, seen + 1);
      if (seen === 0 || external) continue;
      let name = `${w}__${seen}`;
      for (let k = 2; taken.has(name); k++) name = `${w}__${seen}_${k}`;
      taken.add(name);
      const copy = { ...t, name } as TensorMsg & { raw_data?: Uint8Array | null; float_data?: number[] | null };
      const src = t as typeof copy;
      if (src.raw_data) copy.raw_data = Uint8Array.from(src.raw_data);
      if (src.float_data) copy.float_data = [...src.float_data];
      graph.initializer!.push(copy);
      n.input![at] = name;
      copies++;
    }
  }
  return copies;
}
