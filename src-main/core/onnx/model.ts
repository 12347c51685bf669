/**
 * ONNX models as protobufjs messages: decode, encode, and the summary `dq info` prints.
 */
import { readFileSync } from 'node:fs';
import protobuf from 'protobufjs';
import { DqError } from '../errors.js';
import { ONNX_PROTO } from './schema.js';

const root = protobuf.parse(ONNX_PROTO, { keepCase: true }).root.resolveAll(); // resolveAll applies [packed = true]
export const ModelProto = root.lookupType('onnx.ModelProto');
export const TensorProto = root.lookupType('onnx.TensorProto');

/** Loosely typed views of the decoded messages (protobufjs keeps proto field names). */
export interface TensorMsg {
  name?: string;
  dims?: (number | protobuf.Long)[];
  data_type?: number;
  data_location?: number;
  raw_data?: Uint8Array;
}
export interface NodeMsg {
  name?: string;
  op_type?: string;
  domain?: string;
  input?: string[];
  output?: string[];
}
export interface GraphMsg {
  node?: NodeMsg[];
  initializer?: TensorMsg[];
  input?: { name?: string }[];
  output?: { name?: string }[];
}
export interface ModelMsg {
  ir_version?: number | protobuf.Long;
  producer_name?: string;
  producer_version?: string;
  opset_import?: { domain?: string; version?: number | protobuf.Long }[];
  graph?: GraphMsg;
}

export function decodeModel(bytes: Uint8Array, where: string): ModelMsg {
  let msg: protobuf.Message;
  try {
    msg = ModelProto.decode(bytes);
  } catch (e) {
    const reason = (e as Error).message;
    const truncated = /index out of range|invalid wire type/.test(reason);
    throw new DqError('BAD_MODEL', `${where} is not a valid ONNX model${truncated ? ' (truncated or not a protobuf)' : ''}: ${reason}`);
  }
  const m = msg as unknown as ModelMsg;
  if (!m.graph) throw new DqError('BAD_MODEL', `${where} is not a valid ONNX model: it has no graph`);
  return m;
}

export function readModel(path: string): ModelMsg {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new DqError('NOT_FOUND', `cannot read ${path}: ${(e as Error).message}`);
  }
  return decodeModel(bytes, path);
}

const num = (v: number | protobuf.Long | undefined): number => (v === undefined ? 0 : typeof v === 'number' ? v : Number(v.toString()));

/** Element counts of every initializer. */
export function parameterCount(m: ModelMsg): number {
  let total = 0;
  for (const t of m.graph?.initializer ?? []) total += (t.dims ?? []).reduce<number>((a, d) => a * num(d), 1);
  return total;
}

export interface ModelSummary {
  irVersion: number;
  producer: string;
  opsets: Record<string, number>;
  nodes: number;
  ops: Record<string, number>;
  initializers: number;
  parameters: number;
}

export function summarize(m: ModelMsg): ModelSummary {
  const ops: Record<string, number> = {};
  for (const n of m.graph?.node ?? []) {
    const k = n.domain ? `${n.domain}.${n.op_type}` : (n.op_type ?? '?');
    ops[k] = (ops[k] ?? 0) + 1;
  }
  const opsets: Record<string, number> = {};
  for (const o of m.opset_import ?? []) opsets[o.domain || 'ai.onnx'] = num(o.version);
  return {
    irVersion: num(m.ir_version),
    producer: [m.producer_name, m.producer_version].filter(Boolean).join(' '),
    opsets,
    nodes: m.graph?.node?.length ?? 0,
    ops: Object.fromEntries(Object.entries(ops).sort((a, b) => b[1] - a[1])),
    initializers: m.graph?.initializer?.length ?? 0,
    parameters: parameterCount(m),
  };
}
