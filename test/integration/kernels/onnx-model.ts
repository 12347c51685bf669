/**
 * Test helper: serializes a kernels/ fragment (the neutral graph description) to ONNX model bytes with the
 * project's protobufjs schema, and runs it on the CPU provider through the project's Session wrapper.
 */
import { fragmentModel } from '../../../src-main/core/onnx/fragment';
import { Session } from '../../../src-main/core/runtime/onnx';
import type { Fragment } from '../../../kernels/onnx/graph';

/** A model whose graph inputs and outputs are the fragment's (serialized by the engine's own code). */
export const modelBytes = (f: Fragment): Uint8Array => fragmentModel(f, 'dq-studio-kernels-test');

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
