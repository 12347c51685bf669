/**
 * Test helper: serializes a kernels/ fragment (the neutral graph description) to ONNX model bytes with the
 * project's protobufjs schema, and runs it on the CPU provider through the project's Session wrapper.
 */
import { ModelProto } from '../../../src-main/core/onnx/model';
import { Session } from '../../../src-main/core/runtime/onnx';
import { ONNX_DTYPE, type Attr, type Fragment, type Initializer } from '../../../kernels/onnx/graph';

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

function tensor(t: Initializer): Record<string, unknown> {
  return { name: t.name, dims: t.dims, data_type: ONNX_DTYPE[t.dtype], raw_data: rawData(t) };
}

function valueInfo(name: string, dtype: keyof typeof ONNX_DTYPE, dims: number[] | null): Record<string, unknown> {
  const tensorType: Record<string, unknown> = { elem_type: ONNX_DTYPE[dtype] };
  if (dims) tensorType.shape = { dim: dims.map((d) => ({ dim_value: d })) };
  return { name, type: { tensor_type: tensorType } };
}

/** A model whose graph inputs and outputs are the fragment's. */
export function modelBytes(f: Fragment): Uint8Array {
  const graph = {
    name: 'kernels-fragment',
    node: f.nodes.map((n) => ({
      name: n.name,
      op_type: n.opType,
      input: n.inputs,
      output: n.outputs,
      attribute: Object.entries(n.attrs).map(([k, a]) => attribute(k, a)),
    })),
    initializer: f.initializers.map(tensor),
    input: f.inputs.map((v) => valueInfo(v.name, v.dtype, v.dims)),
    output: f.outputs.map((v) => valueInfo(v.name, v.dtype, v.dims)),
  };
  const msg = ModelProto.fromObject({
    ir_version: 10,
    producer_name: 'dq-studio-kernels-test',
    opset_import: [{ domain: '', version: f.opset }],
    graph,
  });
  return ModelProto.encode(msg).finish();
}

export async function session(f: Fragment, threads = 1): Promise<Session> {
  return Session.create(modelBytes(f), 'cpu', { threads });
}

/** Runs a fragment with one float32 input and returns the float32 output named `out` (default: the first). */
export async function runOnce(f: Fragment, x: Float32Array, dims: readonly number[], out?: string): Promise<Float32Array> {
  const s = await session(f);
  try {
    const res = await s.run({ [f.inputs[0]!.name]: { type: 'float32', data: x, dims } });
    return res[out ?? f.outputs[0]!.name]!.data as Float32Array;
  } finally {
    await s.release();
  }
}

/** Index of the first element whose float32 bits differ (NaN == NaN with any payload; -0 != +0), or -1. */
export function firstBitMismatch(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < a.length; i++) {
    if (ua[i] === ub[i]) continue;
    if (Number.isNaN(a[i]) && Number.isNaN(b[i])) continue;
    return i;
  }
  return -1;
}
