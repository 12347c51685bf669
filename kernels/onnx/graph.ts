/**
 * A neutral description of ONNX subgraphs: nodes, attributes and initializers as plain data. kernels/ never
 * depends on protobuf or onnxruntime; whoever embeds a fragment in a model (the engine's graph toolkit, or a test)
 * serializes it. Names are prefixed so that several fragments can live in one graph.
 */

/** ONNX TensorProto.DataType codes of the element types the fragments use. */
export const ONNX_DTYPE = {
  float32: 1,
  uint8: 2,
  int8: 3,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
  float8e4m3fn: 17,
  float8e5m2: 19,
  uint4: 21,
  int4: 22,
} as const;
export type DType = keyof typeof ONNX_DTYPE;

/**
 * An initializer's values, one array element per tensor element:
 * float32 -> Float32Array; int64 -> BigInt64Array; int32 -> Int32Array; int8/int4 -> Int8Array (int4 in -8..7);
 * uint8/uint4/bool -> Uint8Array; float8* -> Uint8Array of 8-bit codes; float16 -> Uint16Array of binary16 bits. Packing of 4-bit types into bytes is the
 * serializer's job (ONNX: element 2i in the low nibble of byte i).
 */
export type InitData = Float32Array | BigInt64Array | Int32Array | Int8Array | Uint8Array | Uint16Array;

export interface Initializer {
  name: string;
  dtype: DType;
  dims: number[];
  data: InitData;
}

export type Attr =
  | { type: 'int'; value: number }
  | { type: 'float'; value: number }
  | { type: 'ints'; value: number[] }
  | { type: 'string'; value: string };

export interface OnnxNode {
  name: string;
  opType: string;
  inputs: string[];
  outputs: string[];
  attrs: Record<string, Attr>;
  /** Operator domain (default: the ONNX domain); a model-local function's domain for calls to it. */
  domain?: string;
}

export interface ValueInfo {
  name: string;
  dtype: DType;
  /** Static dims; null for an unknown shape. */
  dims: number[] | null;
}

/** A subgraph: reads `inputs` (graph inputs or tensors already in the host graph) and produces `outputs`. */
export interface Fragment {
  nodes: OnnxNode[];
  initializers: Initializer[];
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  /** The default-domain opset the fragment's ops need (at least). */
  opset: number;
}

export const int = (value: number): Attr => ({ type: 'int', value });
export const float = (value: number): Attr => ({ type: 'float', value });
export const ints = (value: number[]): Attr => ({ type: 'ints', value });

/** Builds a fragment node by node. Every name it creates starts with `prefix`. */
export class GraphBuilder {
  readonly nodes: OnnxNode[] = [];
  readonly initializers: Initializer[] = [];
  private count = 0;
  private readonly scalars = new Map<string, string>();

  constructor(readonly prefix: string) {}

  fresh(hint: string): string {
    return `${this.prefix}/${hint}_${this.count++}`;
  }

  /** An initializer; returns its name. */
  init(hint: string, dtype: DType, dims: number[], data: InitData): string {
    const n = dims.reduce((a, d) => a * d, 1);
    if (data.length !== n) throw new RangeError(`initializer ${hint}: ${data.length} values for dims [${dims}]`);
    const name = this.fresh(hint);
    this.initializers.push({ name, dtype, dims: [...dims], data });
    return name;
  }

  /** A float32 scalar constant (rank 0), shared between uses. The value is rounded to float32. */
  f32(value: number): string {
    const v = Math.fround(value);
    const key = `f32:${Object.is(v, -0) ? '-0' : String(v)}`;
    let name = this.scalars.get(key);
    if (!name) {
      name = this.init('c', 'float32', [], Float32Array.of(v));
      this.scalars.set(key, name);
    }
    return name;
  }

  /** An int64 vector constant (shapes, axes). */
  i64(values: readonly number[]): string {
    const key = `i64:${values.join(',')}`;
    let name = this.scalars.get(key);
    if (!name) {
      name = this.init('shape', 'int64', [values.length], BigInt64Array.from(values.map((v) => BigInt(v))));
      this.scalars.set(key, name);
    }
    return name;
  }

  /** A node with one output; returns the output's name. */
  op(opType: string, inputs: string[], attrs: Record<string, Attr> = {}, hint = opType.toLowerCase()): string {
    const out = this.fresh(hint);
    this.nodes.push({ name: `${out}:node`, opType, inputs, outputs: [out], attrs });
    return out;
  }

  /** A node with `count` outputs (e.g. TopK's values and indices); returns their names. */
  opMulti(opType: string, inputs: string[], count: number, attrs: Record<string, Attr> = {}, hint = opType.toLowerCase()): string[] {
    const outs = Array.from({ length: count }, () => this.fresh(hint));
    this.nodes.push({ name: `${outs[0]}:node`, opType, inputs, outputs: outs, attrs });
    return outs;
  }

  /** A node whose single output gets a given name (e.g. the fragment's output). */
  opTo(output: string, opType: string, inputs: string[], attrs: Record<string, Attr> = {}): string {
    this.nodes.push({ name: `${this.prefix}/${output}:node`, opType, inputs, outputs: [output], attrs });
    return output;
  }

  /** Renames the tensor `from` (the last node's output) to `to` with an Identity node. */
  identity(from: string, to: string): string {
    return this.opTo(to, 'Identity', [from]);
  }

  fragment(inputs: ValueInfo[], outputs: ValueInfo[], opset: number): Fragment {
    return { nodes: [...this.nodes], initializers: [...this.initializers], inputs, outputs, opset };
  }
}
