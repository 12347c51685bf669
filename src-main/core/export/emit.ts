/**
 * A small node/initializer emitter for export rewrites: ONNX protobuf messages (any domain, attributes copied from
 * existing nodes), plus the decode subgraphs of packed weights. Everything it makes is named under `prefix`.
 */
import { FORMATS, decode, decodeE8M0, type FloatName } from '../../../kernels/minifloat.js';
import { float16Bits, isFloat16, MXINT8_STEP } from '../../../kernels/quant.js';
import { numel, scaleDims, type Granularity } from '../../../kernels/layout.js';
import { GraphBuilder, int, ints, ONNX_DTYPE, type DType, type Fragment, type InitData } from '../../../kernels/onnx/graph.js';
import { LOCAL_DOMAIN, localFunction, tensorProto } from '../onnx/fragment.js';
import { ModelProto, type ModelMsg } from '../onnx/model.js';
import type { Recovered } from './recover.js';

const NodeProto = ModelProto.lookupType('onnx.NodeProto');
const TensorProtoT = ModelProto.lookupType('onnx.TensorProto');

export type AttrMsg = Record<string, unknown>;
export const aInt = (name: string, i: number): AttrMsg => ({ name, type: 2, i });
export const aInts = (name: string, ints: number[]): AttrMsg => ({ name, type: 7, ints });

export class Emit {
  readonly nodes: unknown[] = [];
  readonly inits: unknown[] = [];
  private n = 0;
  private decoder: string | undefined;
  /** `model`: where model-local functions (the block-scaled weight decoder) are added. */
  constructor(
    readonly prefix: string,
    private readonly model: ModelMsg | null = null,
  ) {}

  /** The model-local function that decodes block-scaled (MX / NVFP4) weights; its name, to call in LOCAL_DOMAIN. */
  blockDecoder(): string {
    if (!this.model) throw new Error('Emit: no model to hold the block decoder function');
    if (!this.decoder) {
      const { frag, params } = blockDecoderFragment();
      this.decoder = localFunction(this.model, frag, params);
    }
    return this.decoder;
  }

  fresh(hint: string): string {
    return `${this.prefix}/${hint}${this.n++}`;
  }

  init(hint: string, dtype: DType, dims: number[], data: InitData): string {
    const name = this.fresh(hint);
    this.inits.push(TensorProtoT.fromObject(tensorProto({ name, dtype, dims, data })));
    return name;
  }

  /**
   * A float32 scale tensor: stored as float16 (and Cast back to float32 when the session starts, by constant
   * folding) when every value is exactly a float16, i.e. the recipe stored scales in float16; else float32.
   */
  scale(hint: string, dims: number[], values: Float32Array): { name: string; bytes: number } {
    if (values.every(isFloat16)) {
      const half = this.init(`${hint}16`, 'float16', dims, Uint16Array.from(values, float16Bits));
      return { name: this.op('Cast', [half], [aInt('to', 1)]), bytes: values.length * 2 };
    }
    return { name: this.init(hint, 'float32', dims, values), bytes: values.length * 4 };
  }

  f32(v: number): string {
    return this.init('c', 'float32', [], Float32Array.of(v));
  }

  i64(v: number[]): string {
    return this.init('s', 'int64', [v.length], BigInt64Array.from(v.map(BigInt)));
  }

  op(op: string, inputs: string[], attrs: AttrMsg[] = [], domain = ''): string {
    const out = this.fresh(op.toLowerCase());
    return this.opTo(out, op, inputs, attrs, domain);
  }

  opTo(output: string, op: string, inputs: string[], attrs: AttrMsg[] = [], domain = ''): string {
    this.nodes.push(NodeProto.fromObject({ name: `${output}:n`, op_type: op, domain, input: inputs, output: [output], attribute: attrs }));
    return output;
  }
}

export const ELEM_DTYPE = ONNX_DTYPE;

/** Scale tensor view for a granularity: [C, 1, ...] per channel; blocks view x as [..., nb, size, ...]. */
function scaleView(e: Emit, x: string, dims: number[], g: Granularity, scale: Float32Array): { y: string; unview: (t: string) => string; s: string } {
  if (g.kind === 'tensor') return { y: x, unview: (t) => t, s: e.init('scale', 'float32', [], scale) };
  if (g.kind === 'channel') return { y: x, unview: (t) => t, s: e.init('scale', 'float32', [dims[g.axis]!, ...dims.slice(g.axis + 1).map(() => 1)], scale) };
  const a = g.axis;
  const nb = dims[a]! / g.size;
  const view = [...dims.slice(0, a), nb, g.size, ...dims.slice(a + 1)];
  const sd = [...dims.slice(0, a), nb, 1, ...dims.slice(a + 1)];
  return { y: e.op('Reshape', [x, e.i64(view)]), unview: (t) => e.op('Reshape', [t, e.i64(dims)]), s: e.init('scale', 'float32', sd, scale) };
}

/**
 * Float32 values of packed element codes: `bits` (4 or 8) per code, element i of byte i/2's low nibble first.
 * Decoded with byte-indexed lookup tables (Gather), so only standard ops are used; every input is an initializer,
 * so onnxruntime folds the subgraph into a float32 constant when the session is created.
 */
function unpackLut(e: Emit, codes: Uint8Array, bits: 4 | 8, lut: (c: number) => number): string {
  const bytes = bits === 4 ? packNibbles(codes) : codes;
  const idx = e.op('Cast', [e.init(bits === 4 ? 'packed' : 'codes', 'uint8', [bytes.length], bytes)], [aInt('to', 6)]);
  const flat = e.op('Reshape', [e.op('Gather', [e.init('lut', 'float32', [256, bits === 4 ? 2 : 1], byteLut(bits, lut)), idx], [aInt('axis', 0)]), e.i64([-1])]);
  return codes.length % 2 && bits === 4 ? e.op('Slice', [flat, e.i64([0]), e.i64([codes.length])]) : flat;
}

/** Element codes packed two to a byte, element i in byte i/2's low nibble first. */
function packNibbles(codes: Uint8Array): Uint8Array {
  const packed = new Uint8Array(Math.ceil(codes.length / 2));
  for (let i = 0; i < codes.length; i++) packed[i >> 1]! |= (codes[i]! & 0xf) << (i & 1 ? 4 : 0);
  return packed;
}

/** [256, 2] values of a byte's two 4-bit codes (low nibble first), or [256, 1] of an 8-bit code. */
function byteLut(width: 4 | 8, lut: (c: number) => number): Float32Array {
  if (width === 8) return Float32Array.from({ length: 256 }, (_, c) => lut(c));
  return Float32Array.from({ length: 512 }, (_, k) => lut(k & 1 ? (k >> 1) >> 4 : (k >> 1) & 0xf));
}

/**
 * The body of the block-scaled weight decoder (one model-local function for every MX / NVFP4 weight):
 * x = packed codes; p0 = [256, w] byte table; p1 = block scale codes [R, nb, 1]; p2 = [256] scale table;
 * p3 = tensor scale; p4..p8 = shapes [R, nb, B], [R, Kp], [K], [outer, inner, K], the weight's dims.
 * Every input is an initializer at the call, so onnxruntime folds the call into a float32 weight at load.
 */
function blockDecoderFragment(): { frag: Fragment; params: string[] } {
  const b = new GraphBuilder('dec');
  const p = ['lut', 'scodes', 'slut', 'tscale', 'blocks', 'rows', 'k', 'oik', 'dims'].map((h) => b.fresh(h));
  const idx = b.op('Cast', ['codes'], { to: int(6) });
  const vals = b.op('Reshape', [b.op('Gather', [p[0]!, idx], { axis: int(0) }), p[4]!]);
  const S = b.op('Mul', [b.op('Gather', [p[2]!, b.op('Cast', [p[1]!], { to: int(6) })], { axis: int(0) }), p[3]!]);
  const rows = b.op('Slice', [b.op('Reshape', [b.op('Mul', [vals, S]), p[5]!]), b.i64([0]), p[6]!, b.i64([1])]);
  b.opTo('w', 'Reshape', [b.op('Transpose', [b.op('Reshape', [rows, p[7]!])], { perm: ints([0, 2, 1]) }), p[8]!]);
  // parameters are function inputs: placeholder initializers only name them
  const frag = b.fragment([{ name: 'codes', dtype: 'uint8', dims: null }], [{ name: 'w', dtype: 'float32', dims: null }], 13);
  frag.initializers.push(...p.map((name) => ({ name, dtype: 'float32' as const, dims: [], data: Float32Array.of(0) })));
  return { frag, params: p };
}

/** How a recovered weight is stored and decoded in the exported graph. */
export interface Stored {
  /** The float32 weight tensor the layer reads. */
  output: string;
  storage: string;
  /** 'native' when onnxruntime has a DequantizeLinear (or fused kernel) for the storage type; else a decode subgraph. */
  decode: 'DequantizeLinear' | 'lookup subgraph';
  bytes: number;
}

/** Emits the storage of a recovered weight plus what turns it back into float32 (in the weight's own layout). */
export function emitStored(e: Emit, r: Recovered, output: string): Stored {
  const dims = r.dims;
  if (r.kind === 'int' && (r.bits === 8 || r.bits === 4)) {
    const dtype = r.bits === 8 ? 'int8' : 'int4';
    const q = e.init('w', dtype, dims, r.codes);
    const attrs = r.g.kind === 'tensor' ? [] : r.g.kind === 'channel' ? [aInt('axis', r.g.axis)] : [aInt('axis', r.g.axis), aInt('block_size', r.g.size)];
    const s = e.scale('w_scale', scaleDims(dims, r.g), r.scale);
    e.opTo(output, 'DequantizeLinear', [q, s.name], attrs);
    return { output, storage: `${dtype}${r.g.kind === 'block' ? ` blocks of ${r.g.size}` : r.g.kind === 'channel' ? ' per channel' : ' per tensor'}${s.bytes === r.scale.length * 2 ? ', float16 scales' : ''}`, decode: 'DequantizeLinear', bytes: (numel(dims) * r.bits) / 8 + s.bytes };
  }
  if (r.kind === 'float' && (r.element === 'e4m3fn' || r.element === 'e5m2')) {
    const q = e.init('w', r.element === 'e4m3fn' ? 'float8e4m3fn' : 'float8e5m2', dims, r.codes);
    const attrs = r.g.kind === 'tensor' ? [] : r.g.kind === 'channel' ? [aInt('axis', r.g.axis)] : [aInt('axis', r.g.axis), aInt('block_size', r.g.size)];
    const s = e.scale('w_scale', scaleDims(dims, r.g), r.scale);
    e.opTo(output, 'DequantizeLinear', [q, s.name], attrs);
    return { output, storage: `fp8 ${r.element}${s.bytes === r.scale.length * 2 ? ', float16 scales' : ''}`, decode: 'DequantizeLinear', bytes: numel(dims) + s.bytes };
  }
  if (r.kind === 'int' || r.kind === 'float') {
    // other widths: packed codes (4 bits for <= 4-bit codes, else a byte) + lookup + scale
    const bits = r.kind === 'int' ? r.bits : FORMATS[r.element].bits;
    const width: 4 | 8 = bits <= 4 ? 4 : 8;
    const lut = r.kind === 'int' ? (c: number) => (c & (1 << (bits - 1)) ? c - (1 << bits) : c) : (c: number) => decode(FORMATS[(r as { element: FloatName }).element], c);
    const codes = r.kind === 'int' ? Uint8Array.from(r.codes, (c) => c & ((1 << bits) - 1)) : r.codes;
    const vals = e.op('Reshape', [unpackLut(e, codes, width, lut), e.i64(dims)]);
    const sv = scaleView(e, vals, dims, r.g, r.scale);
    e.opTo(output, 'Identity', [sv.unview(e.op('Mul', [sv.y, sv.s]))]);
    const name = r.kind === 'int' ? `int${bits}` : `fp${bits} ${r.element}`;
    return { output, storage: `${name} packed in ${width}-bit codes`, decode: 'lookup subgraph', bytes: Math.ceil((numel(dims) * width) / 8) + r.scale.length * 4 };
  }
  // MX / NVFP4: rows [R, Kp] of codes, one scale code per block; decoded back to the weight layout by one call of
  // a model-local function shared by every block-scaled weight (its shapes and tables are inputs)
  const B = r.kind === 'mx' ? 32 : 16;
  const nb = r.Kp / B;
  const el = r.element;
  const width: 4 | 8 = el === 'int8' || FORMATS[el as FloatName].bits > 4 ? 8 : 4;
  const lut = el === 'int8' ? (c: number) => (c & 0x80 ? c - 256 : c) * MXINT8_STEP : (c: number) => decode(FORMATS[el as FloatName], c);
  const scaleLut = r.kind === 'mx' ? (c: number) => decodeE8M0(c) : (c: number) => decode(FORMATS.e4m3fn, c);
  const outer = numel(dims.slice(0, r.inAxis));
  const inner = numel(dims.slice(r.inAxis + 1));
  const inputs = [
    e.init('packed', 'uint8', [width === 4 ? r.codes.length / 2 : r.codes.length], width === 4 ? packNibbles(r.codes) : r.codes),
    e.init('lut', 'float32', [256, width === 4 ? 2 : 1], byteLut(width, lut)),
    e.init('block_scale', 'uint8', [r.R, nb, 1], r.scaleCodes),
    e.init('scale_lut', 'float32', [256], Float32Array.from({ length: 256 }, (_, c) => scaleLut(c))),
    e.f32(r.kind === 'nvfp4' ? r.tensorScale : 1),
    e.i64([r.R, nb, B]),
    e.i64([r.R, r.Kp]),
    e.i64([r.K]),
    e.i64([outer, inner, r.K]),
    e.i64(dims),
  ];
  e.opTo(output, e.blockDecoder(), inputs, [], LOCAL_DOMAIN);
  const name = r.kind === 'mx' ? `mx${el === 'int8' ? 'int8' : ` ${el}`}` : 'nvfp4';
  return {
    output,
    storage: `${name} packed (${width}-bit elements, ${r.kind === 'mx' ? 'E8M0' : 'E4M3'} block scales)`,
    decode: 'lookup subgraph',
    bytes: Math.ceil((r.R * r.Kp * width) / 8) + r.scaleCodes.length + (r.kind === 'nvfp4' ? 4 : 0),
  };
}
