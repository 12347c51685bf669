/**
 * Serializes kernels/ fragments (the neutral graph description) into ONNX protobuf objects, and embeds them in a
 * model. The only place that turns kernels/ subgraphs into ONNX.
 */
import { createHash } from 'node:crypto';
import { ONNX_DTYPE, type Attr, type DType, type Fragment, type Initializer } from '../../../kernels/onnx/graph.js';
import { ModelProto, type ModelMsg } from './model.js';

function attribute(name: string, a: Attr): Record<string, unknown> {
  switch (a.type) {
    case 'int':
      return { name, type: 2, i: a.value };
    case 'float':
      return { name, type: 1, f: a.value };
    case 'ints':
      return { name, type: 7, ints: a.value };
    case 'string':
      return { name, type: 3, s: new TextEncoder().encode(a.value) };
  }
}

/** Raw little-endian bytes of an initializer (4-bit types packed two per byte, first element in the low nibble). */
export function rawData(t: Initializer): Uint8Array {
  const d = t.data;
  if (t.dtype === 'int4' || t.dtype === 'uint4') {
    const out = new Uint8Array(Math.ceil(d.length / 2));
    for (let i = 0; i < d.length; i++) out[i >> 1]! |= (Number(d[i]) & 0xf) << (i & 1 ? 4 : 0);
    return out;
  }
  return new Uint8Array(d.buffer.slice(d.byteOffset, d.byteOffset + d.byteLength));
}

export function tensorProto(t: Initializer): Record<string, unknown> {
  return { name: t.name, dims: t.dims, data_type: ONNX_DTYPE[t.dtype], raw_data: rawData(t) };
}

export function valueInfoProto(name: string, dtype: DType, dims: (number | string)[] | null): Record<string, unknown> {
  const tensorType: Record<string, unknown> = { elem_type: ONNX_DTYPE[dtype] };
  if (dims) tensorType.shape = { dim: dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) };
  return { name, type: { tensor_type: tensorType } };
}

export function nodeProtos(f: Fragment): Record<string, unknown>[] {
  return f.nodes.map((n) => ({
    name: n.name,
    op_type: n.opType,
    input: n.inputs,
    output: n.outputs,
    attribute: Object.entries(n.attrs).map(([k, a]) => attribute(k, a)),
    ...(n.domain ? { domain: n.domain } : {}),
  }));
}

/** Domain of the model-local functions the studio writes. */
export const LOCAL_DOMAIN = 'dq.local';

/**
 * Adds (once) a model-local ONNX function made of a fragment: its initializers become Constant nodes, `inputs` are
 * the fragment's input tensor and any of its initializers given as parameters (renamed to function inputs), its
 * single output the function's. Identical bodies are shared: a graph with one block quantizer per layer holds one
 * copy of the subgraph per distinct shape. Returns the function's name (call it in LOCAL_DOMAIN).
 */
export function localFunction(model: ModelMsg, f: Fragment, params: string[] = []): string {
  if (f.inputs.length !== 1 || f.outputs.length !== 1) throw new RangeError('a local function is made of a one-input, one-output fragment');
  // canonical names, so that bodies that differ only in naming are one function
  const names = new Map<string, string>([[f.inputs[0]!.name, 'x'], [f.outputs[0]!.name, 'y']]);
  params.forEach((p, i) => names.set(p, `p${i}`));
  const canon = (n: string) => {
    let c = names.get(n);
    if (c === undefined) {
      c = `t${names.size}`;
      names.set(n, c);
    }
    return c;
  };
  const consts = f.initializers
    .filter((t) => !params.includes(t.name))
    .map((t) => ({ op_type: 'Constant', input: [], output: [canon(t.name)], attribute: [{ name: 'value', type: 4, t: tensorProto({ ...t, name: '' }) }] }));
  const body = nodeProtos(f).map((n) => ({ ...n, name: undefined, input: (n.input as string[]).map((i) => (i ? canon(i) : i)), output: (n.output as string[]).map(canon) }));
  const nodes = [...consts, ...body];
  const FunctionProto = ModelProto.lookupType('onnx.FunctionProto');
  const key = createHash('sha256').update(JSON.stringify(nodes, (_, v) => (v instanceof Uint8Array ? Buffer.from(v).toString('base64') : v))).digest('hex').slice(0, 16);
  const name = `fq_${key}`;
  const m = model as ModelMsg & { functions?: { name?: string | null }[] };
  if (!(m.functions ?? []).some((fn) => fn.name === name)) {
    const fn = FunctionProto.fromObject({
      name, domain: LOCAL_DOMAIN, input: ['x', ...params.map((_, i) => `p${i}`)], output: ['y'], node: nodes,
      opset_import: [{ domain: '', version: f.opset }],
    });
    m.functions = [...(m.functions ?? []), fn as never];
  }
  const ops = model.opset_import ?? [];
  if (!ops.some((o) => o.domain === LOCAL_DOMAIN)) model.opset_import = [...ops, { domain: LOCAL_DOMAIN, version: 1 }];
  raiseOpset(model, f.opset);
  return name;
}

/** Local functions import the model's own ONNX opset (onnxruntime rejects a function whose opset differs). */
export function syncFunctionOpsets(model: ModelMsg): void {
  const m = model as ModelMsg & { functions?: { opset_import?: { domain?: string | null; version?: unknown }[] | null }[] };
  const def = (model.opset_import ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  if (!def) return;
  for (const fn of m.functions ?? []) for (const o of fn.opset_import ?? []) if (!o.domain || o.domain === 'ai.onnx') o.version = def.version as never;
}

/** A standalone model whose graph inputs and outputs are the fragment's. */
export function fragmentModel(f: Fragment, producer = 'dq-studio'): Uint8Array {
  const msg = ModelProto.fromObject({
    ir_version: 10,
    producer_name: producer,
    opset_import: [{ domain: '', version: f.opset }],
    graph: {
      name: 'fragment',
      node: nodeProtos(f),
      initializer: f.initializers.map(tensorProto),
      input: f.inputs.map((v) => valueInfoProto(v.name, v.dtype, v.dims)),
      output: f.outputs.map((v) => valueInfoProto(v.name, v.dtype, v.dims)),
    },
  });
  return ModelProto.encode(msg).finish();
}

/**
 * Adds a fragment's nodes and initializers to `model` (which must already hold the fragment's input tensors).
 * Nodes are inserted before the first node that consumes one of the fragment's outputs, keeping the node list in
 * topological order; the default-domain opset is raised to what the fragment needs.
 */
export function embedFragment(model: ModelMsg, f: Fragment, opts: { after?: string } = {}): void {
  const graph = model.graph!;
  const outs = new Set(f.outputs.map((o) => o.name));
  const nodes = graph.node ?? [];
  let at = nodes.findIndex((n) => (n.input ?? []).some((i) => outs.has(i)));
  if (at < 0) at = nodes.length;
  if (opts.after !== undefined) {
    // right after the producer of `after` (or first, for a graph input), so its consumers run early
    const p = nodes.findIndex((n) => (n.output ?? []).includes(opts.after!));
    at = Math.min(at, p + 1);
  }
  const add = ModelProto.lookupType('onnx.NodeProto');
  const tensor = ModelProto.lookupType('onnx.TensorProto');
  graph.node = [...nodes.slice(0, at), ...nodeProtos(f).map((n) => add.fromObject(n) as never), ...nodes.slice(at)];
  graph.initializer = [...(graph.initializer ?? []), ...f.initializers.map((t) => tensor.fromObject(tensorProto(t)) as never)];
  raiseOpset(model, f.opset);
}

export function raiseOpset(model: ModelMsg, version: number): void {
  const ops = model.opset_import ?? [];
  const def = ops.find((o) => !o.domain || o.domain === 'ai.onnx');
  const from = def ? Number(def.version ?? 0) : 1;
  if (!def) model.opset_import = [...ops, { domain: '', version }];
  else if (from < version) def.version = version;
  if (from < version) upgradeAxes(model, from, version);
}

/** Ops whose `axes` attribute became an input (ReduceSum, Squeeze, Unsqueeze at opset 13; the other reductions at 18). */
const AXES_INPUT_SINCE: Record<string, number> = {
  ReduceSum: 13, Squeeze: 13, Unsqueeze: 13,
  ReduceMean: 18, ReduceMax: 18, ReduceMin: 18, ReduceProd: 18, ReduceL1: 18, ReduceL2: 18, ReduceLogSum: 18, ReduceLogSumExp: 18, ReduceSumSquare: 18,
};

/**
 * The graph's nodes rewritten for the raised opset where an attribute became an input: `axes` of the reductions,
 * Squeeze and Unsqueeze (an int64 initializer), and Split's `split` (opset 13). Graphs exported at opset 17 use
 * ReduceMean with an axes attribute (RMS norms); raising the opset for a fragment must keep them valid.
 */
function upgradeAxes(model: ModelMsg, from: number, to: number): void {
  const graph = model.graph;
  if (!graph) return;
  const added: Record<string, unknown>[] = [];
  let k = 0;
  for (const n of graph.node ?? []) {
    if (n.domain) continue;
    const op = n.op_type ?? '';
    const since = op === 'Split' ? 13 : AXES_INPUT_SINCE[op];
    if (since === undefined || !(from < since && to >= since)) continue;
    const attrName = op === 'Split' ? 'split' : 'axes';
    const node = n as { attribute?: { name?: string | null; ints?: unknown[] | null }[] };
    const attrs = node.attribute ?? [];
    const at = attrs.findIndex((a) => a.name === attrName);
    if (at < 0) continue;
    const values = (attrs[at]!.ints ?? []).map((v) => BigInt(String(v)));
    const name = `dq_opset/${attrName}_${k++}`;
    added.push(tensorProto({ name, dtype: 'int64', dims: [values.length], data: BigInt64Array.from(values) }));
    node.attribute = attrs.filter((_, i) => i !== at);
    // the attribute form has the data input only; `axes` (or Split's `split`) becomes input 1
    n.input = [n.input?.[0] ?? '', name, ...(n.input ?? []).slice(1)];
  }
  if (added.length) graph.initializer = [...(graph.initializer ?? []), ...(added as NonNullable<typeof graph.initializer>)];
}
