/** TensorProto <-> typed arrays for the element types the engine computes with. */
import { DqError } from '../errors.js';
import type { TensorMsg } from './model.js';

export const DataType = {
  FLOAT: 1, UINT8: 2, INT8: 3, UINT16: 4, INT16: 5, INT32: 6, INT64: 7, STRING: 8, BOOL: 9, FLOAT16: 10, DOUBLE: 11,
  UINT32: 12, UINT64: 13, BFLOAT16: 16, FLOAT8E4M3FN: 17, FLOAT8E5M2: 19, UINT4: 21, INT4: 22, FLOAT4E2M1: 23,
} as const;

export type NumericArray = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Int8Array | Uint16Array | Int16Array;

export interface DecodedTensor {
  name: string;
  dataType: number;
  dims: number[];
  data: NumericArray;
}

const toNum = (v: unknown) => Number(typeof v === 'object' && v !== null ? String(v) : v);

/** Decodes a tensor's data (inline only; use io.tensorBytes for external data). */
export function decodeTensor(t: TensorMsg & { float_data?: number[]; int32_data?: number[]; int64_data?: unknown[]; double_data?: number[] }, raw?: Uint8Array): DecodedTensor {
  const dims = (t.dims ?? []).map(toNum);
  const n = dims.reduce((a, b) => a * b, 1);
  const dt = t.data_type ?? 0;
  const bytes = raw ?? (t.raw_data && t.raw_data.length ? t.raw_data : null);
  const view = <T>(C: { new (b: ArrayBuffer, o: number, l: number): T; BYTES_PER_ELEMENT: number }): T => {
    const copy = new Uint8Array(bytes!); // aligned copy
    return new C(copy.buffer, 0, copy.byteLength / C.BYTES_PER_ELEMENT);
  };
  let data: NumericArray;
  switch (dt) {
    case DataType.FLOAT:
      data = bytes ? view(Float32Array) : Float32Array.from(t.float_data ?? []);
      break;
    case DataType.DOUBLE:
      data = bytes ? view(Float64Array) : Float64Array.from(t.double_data ?? []);
      break;
    case DataType.INT64:
      data = bytes ? view(BigInt64Array) : BigInt64Array.from((t.int64_data ?? []).map((v) => BigInt(String(v))));
      break;
    case DataType.INT32:
      data = bytes ? view(Int32Array) : Int32Array.from(t.int32_data ?? []);
      break;
    case DataType.UINT8:
    case DataType.BOOL:
      data = bytes ? new Uint8Array(bytes) : Uint8Array.from(t.int32_data ?? []);
      break;
    case DataType.INT8:
      data = bytes ? view(Int8Array) : Int8Array.from(t.int32_data ?? []);
      break;
    case DataType.FLOAT16:
      data = bytes ? view(Uint16Array) : Uint16Array.from(t.int32_data ?? []);
      break;
    default:
      throw new DqError('BAD_MODEL', `tensor '${t.name}': element type ${dt} is not decoded here`);
  }
  if (data.length !== n) throw new DqError('BAD_MODEL', `tensor '${t.name}': ${data.length} values for shape [${dims.join(', ')}]`);
  return { name: t.name ?? '', dataType: dt, dims, data };
}
