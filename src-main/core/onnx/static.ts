/**
 * Static shapes and small values of a graph, from one forward pass: the shape arithmetic exporters leave behind
 * (Shape -> Gather -> Div -> Cast -> Pow: a head dimension, an attention scale) evaluated where it depends only on
 * dimensions the weights fix, not on the runtime sizes (batch, sequence, height, width).
 *
 * Shapes are lists of dimensions, null where a dimension is not static; values are the elements of small tensors
 * (at most MAX_VALUES), null where an element is not static (a Shape of a partly known shape gives partly known
 * values). An op this pass does not model gives its outputs no shape and no values: the pass never guesses, it only
 * knows less.
 */
import { dimsOf, nodeAttr, type GraphIndex } from './graph.js';
import type { TensorMsg } from './model.js';
import { DataType, decodeTensor } from './tensor.js';

type Dims = (number | null)[];
/** Elements of a small tensor, null where not static, and whether its element type is an integer. */
interface Values {
  v: (number | null)[];
  int: boolean;
}

const MAX_VALUES = 64;
const INT_TYPES: ReadonlySet<number> = new Set([DataType.INT64, DataType.INT32, DataType.INT16, DataType.INT8, DataType.UINT8, DataType.UINT16, DataType.UINT32, DataType.UINT64, DataType.BOOL]);
const UNARY_SAME_SHAPE = new Set(['Relu', 'Sigmoid', 'Tanh', 'Erf', 'Exp', 'Log', 'Neg', 'Abs', 'Sin', 'Cos', 'Softmax', 'LayerNormalization', 'InstanceNormalization', 'GroupNormalization', 'Identity', 'Dropout', 'Gelu', 'FastGelu', 'QuickGelu', 'Clip', 'Softplus', 'LeakyRelu', 'HardSigmoid', 'Mish', 'Floor', 'Ceil', 'Round', 'Sign', 'Reciprocal', 'Sqrt', 'Cast', 'Not', 'IsNaN', 'QuantizeLinear', 'DequantizeLinear', 'DynamicQuantizeLinear']);
const BINARY = new Set(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min', 'Equal', 'Less', 'Greater', 'And', 'Or', 'Where']);

export interface StaticInfo {
  /** The static shape of a tensor, or null when not even its rank is known. */
  shape(name: string): Dims | null;
  /** The elements of a small tensor, null where not static; null when nothing is known. */
  values(name: string): (number | null)[] | null;
  /** The single value of a scalar (or one-element) tensor when it is static, else null. */
  scalar(name: string): number | null;
}

function broadcast(a: Dims, b: Dims): Dims {
  const n = Math.max(a.length, b.length);
  const out: Dims = [];
  for (let i = 0; i < n; i++) {
    const x = i - (n - a.length) >= 0 ? a[i - (n - a.length)]! : 1;
    const y = i - (n - b.length) >= 0 ? b[i - (n - b.length)]! : 1;
    out.push(x === 1 ? y : y === 1 ? x : x !== null ? x : y);
  }
  return out;
}

function tensorValues(t: TensorMsg): Values | null {
  const n = dimsOf(t).reduce((a, b) => a * b, 1);
  if (n > MAX_VALUES || !(INT_TYPES.has(t.data_type ?? 0) || t.data_type === DataType.FLOAT || t.data_type === DataType.DOUBLE)) return null;
  try {
    return { v: Array.from(decodeTensor(t).data as ArrayLike<number | bigint>, Number), int: INT_TYPES.has(t.data_type ?? 0) };
  } catch {
    return null; // external data or an element type not decoded
  }
}

const ints = (n: Parameters<typeof nodeAttr>[0], name: string): number[] | null => {
  const a = nodeAttr(n, name)?.ints;
  return a ? a.map(Number) : null;
};

/** One forward pass over the graph in topological order (see the module comment). */
export function staticInfo(g: GraphIndex): StaticInfo {
  const shapes = new Map<string, Dims>(g.shapes);
  const vals = new Map<string, Values>();
  for (const [name, t] of g.initializers) {
    shapes.set(name, dimsOf(t));
    const v = tensorValues(t);
    if (v) vals.set(name, v);
  }
  const elementwise = (op: string, xs: (number | null)[][], int: boolean): (number | null)[] | null => {
    const n = Math.max(...xs.map((x) => x.length));
    if (xs.some((x) => x.length !== n && x.length !== 1)) return null;
    const at = (x: (number | null)[], i: number) => (x.length === 1 ? x[0]! : x[i]!);
    const out: (number | null)[] = [];
    for (let i = 0; i < n; i++) {
      const a = xs.map((x) => at(x, i));
      if (a.some((v) => v === null)) {
        out.push(null);
        continue;
      }
      const [p, q, r] = a as number[];
      let y: number;
      switch (op) {
        case 'Add': y = p! + q!; break;
        case 'Sub': y = p! - q!; break;
        case 'Mul': y = p! * q!; break;
        case 'Div': y = int ? Math.trunc(p! / q!) : p! / q!; break;
        case 'Pow': y = p! ** q!; break;
        case 'Max': y = Math.max(p!, q!); break;
        case 'Min': y = Math.min(p!, q!); break;
        case 'Sqrt': y = Math.sqrt(p!); break;
        case 'Reciprocal': y = 1 / p!; break;
        case 'Neg': y = -p!; break;
        case 'Where': y = p ? q! : r!; break;
        default: return null;
      }
      out.push(int ? y : Math.fround(y));
    }
    return out;
  };

  for (const k of g.order) {
    const n = g.nodes[k]!;
    // of other domains, the integer MatMul onnxruntime runs quantized linear layers with
    const ms = n.domain === 'com.microsoft';
    if (n.domain && !(ms && n.op_type === 'MatMulIntegerToFloat')) continue;
    const ins = n.input ?? [];
    const out = n.output?.[0];
    if (!out) continue;
    const sh = (i: number) => (ins[i] ? shapes.get(ins[i]!) ?? null : null);
    const va = (i: number) => (ins[i] ? vals.get(ins[i]!) ?? null : null);
    const op = ms ? 'MatMul' : n.op_type ?? '';
    let s: Dims | null = null;
    let v: Values | null = null;
    switch (op) {
      case 'Constant': {
        const t = (n as { attribute?: { name?: string; t?: TensorMsg }[] }).attribute?.find((a) => a.name === 'value')?.t;
        if (t) {
          s = dimsOf(t);
          v = tensorValues(t);
        }
        break;
      }
      case 'Shape': {
        const x = sh(0);
        if (x) {
          const r = x.length;
          const norm = (i: number) => Math.min(Math.max(i < 0 ? i + r : i, 0), r);
          const start = norm(Number(nodeAttr(n, 'start')?.i ?? 0));
          const end = norm(nodeAttr(n, 'end')?.i === undefined ? r : Number(nodeAttr(n, 'end')!.i));
          v = { v: x.slice(start, end), int: true };
          s = [v.v.length];
        }
        break;
      }
      case 'Gather': {
        const x = va(0);
        const idx = va(1);
        const axis = Number(nodeAttr(n, 'axis')?.i ?? 0);
        const xs = sh(0);
        const is = sh(1);
        if (xs && is && axis === 0 && xs.length === 1) {
          s = is;
          if (x && idx && idx.v.every((i) => i !== null)) v = { v: idx.v.map((i) => x.v[i! < 0 ? i! + x.v.length : i!] ?? null), int: x.int };
        }
        break;
      }
      case 'Identity':
        s = sh(0);
        v = va(0);
        break;
      case 'Unsqueeze':
      case 'Squeeze': {
        const x = sh(0);
        const axes = ins[1] ? va(1)?.v ?? null : ints(n, 'axes');
        if (!x || (ins[1] && !axes) || axes?.some((a) => a === null)) break;
        if (op === 'Unsqueeze') {
          if (!axes) break;
          const r = x.length + axes.length;
          const at = new Set(axes.map((a) => (a! < 0 ? a! + r : a!)));
          const d: Dims = [];
          let j = 0;
          for (let i = 0; i < r; i++) d.push(at.has(i) ? 1 : x[j++]!);
          s = d;
        } else {
          const at = axes ? new Set(axes.map((a) => (a! < 0 ? a! + x.length : a!))) : null;
          if (!at && x.some((e) => e === null)) break; // which axes are 1 is not known
          s = x.filter((e, i) => (at ? !at.has(i) : e !== 1));
        }
        // the shape pieces exporters concatenate: a scalar unsqueezed to [1], a [1] squeezed to a scalar
        if (s.length <= 1 && x.length <= 1) v = va(0);
        break;
      }
      case 'Cast': {
        const to = Number(nodeAttr(n, 'to')?.i ?? 0);
        s = sh(0);
        const x = va(0);
        if (x) v = { v: x.v.map((e) => (e === null ? null : INT_TYPES.has(to) ? Math.trunc(e) : to === DataType.FLOAT ? Math.fround(e) : e)), int: INT_TYPES.has(to) };
        break;
      }
      case 'Concat': {
        const parts = ins.map((_, i) => sh(i));
        if (parts.every((p) => p !== null) && parts.length) {
          const r = parts[0]!.length;
          const axis = Number(nodeAttr(n, 'axis')?.i ?? 0);
          const a = axis < 0 ? axis + r : axis;
          if (parts.every((p) => p!.length === r)) {
            s = parts[0]!.map((d, i) => (i === a ? parts.reduce<number | null>((t, p) => (t === null || p![i] === null ? null : t + p![i]!), 0) : d));
          }
          const pv = ins.map((_, i) => va(i));
          if (r === 1 && pv.every((p) => p !== null)) v = { v: pv.flatMap((p) => p!.v), int: pv[0]!.int };
        }
        break;
      }
      case 'Slice': {
        const x = sh(0);
        const st = va(1)?.v;
        const en = va(2)?.v;
        const ax = ins[3] ? va(3)?.v : st?.map((_, i) => i);
        const sp = ins[4] ? va(4)?.v : st?.map(() => 1);
        if (!x || !st || !en || !ax || !sp || [st, en, ax, sp].some((a) => a.length !== st.length || a.some((e) => e === null))) break;
        const d: Dims = [...x];
        const ranges: [number, number, number][] = [];
        st.forEach((_, i) => {
          const a = ax[i]! < 0 ? ax[i]! + x.length : ax[i]!;
          const L = x[a];
          const step = sp[i]!;
          if (L === null || L === undefined || step !== 1) {
            d[a] = null;
            return;
          }
          const clamp = (e: number) => Math.min(Math.max(e < 0 ? e + L : e, 0), L);
          const [b, e] = [clamp(st[i]!), clamp(en[i]!)];
          d[a] = Math.max(e - b, 0);
          if (a === 0) ranges.push([b, e, step]);
        });
        s = d;
        const xv = va(0);
        if (xv && x.length === 1 && ranges.length === 1) v = { v: xv.v.slice(ranges[0]![0], ranges[0]![1]), int: xv.int };
        break;
      }
      case 'Expand': {
        const x = sh(0);
        const t = va(1);
        if (x && t) s = broadcast(x, t.v.map((e) => (e === null ? null : e)));
        break;
      }
      case 'ReduceMean':
      case 'ReduceSum':
      case 'ReduceMax':
      case 'ReduceMin':
      case 'ReduceProd':
      case 'ReduceL2':
      case 'ReduceSumSquare': {
        const x = sh(0);
        const axes = ins[1] ? va(1)?.v ?? null : ints(n, 'axes');
        if (!x || (ins[1] && !axes) || axes?.some((a) => a === null)) break;
        const at = new Set((axes ?? x.map((_, i) => i)).map((a) => (a! < 0 ? a! + x.length : a!)));
        const keep = Number(nodeAttr(n, 'keepdims')?.i ?? 1) === 1;
        s = keep ? x.map((d, i) => (at.has(i) ? 1 : d)) : x.filter((_, i) => !at.has(i));
        break;
      }
      case 'MatMul': {
        const a = sh(0);
        const b = sh(1);
        if (a && b && a.length >= 2 && b.length >= 2) s = [...broadcast(a.slice(0, -2), b.slice(0, -2)), a[a.length - 2]!, b[b.length - 1]!];
        else if (a && b && a.length >= 2 && b.length === 1) s = a.slice(0, -1);
        break;
      }
      case 'Gemm': {
        const a = sh(0);
        const b = sh(1);
        // always rank 2: the output's columns are the weight's
        if (b && b.length === 2) s = [a && a.length === 2 ? a[Number(nodeAttr(n, 'transA')?.i ?? 0) ? 1 : 0]! : null, b[Number(nodeAttr(n, 'transB')?.i ?? 0) ? 0 : 1]!];
        break;
      }
      case 'QLinearConv':
      case 'ConvInteger': {
        // QLinearConv(x, x_scale, x_zp, w, ...), ConvInteger(x, w, ...)
        const x = sh(0);
        const w = sh(op === 'QLinearConv' ? 3 : 1);
        if (w && w.length >= 3) s = [x?.[0] ?? null, w[0]!, ...w.slice(2).map(() => null)];
        break;
      }
      case 'QLinearMatMul':
      case 'MatMulInteger': {
        const a = sh(0);
        const b = sh(op === 'QLinearMatMul' ? 3 : 1);
        if (a && b && a.length >= 2 && b.length >= 2) s = [...broadcast(a.slice(0, -2), b.slice(0, -2)), a[a.length - 2]!, b[b.length - 1]!];
        break;
      }
      case 'Conv': {
        const x = sh(0);
        const w = sh(1);
        // the rank and output channels are the weight's
        if (w && w.length >= 3) s = [x?.[0] ?? null, w[0]!, ...w.slice(2).map(() => null)];
        break;
      }
      case 'Transpose': {
        const x = sh(0);
        const perm = ints(n, 'perm') ?? (x ? x.map((_, i) => x.length - 1 - i) : null);
        if (x && perm && perm.length === x.length) s = perm.map((p) => x[p]!);
        break;
      }
      case 'Reshape': {
        const x = sh(0);
        const t = va(1);
        if (t) {
          const allowzero = Number(nodeAttr(n, 'allowzero')?.i ?? 0) === 1;
          const d: Dims = t.v.map((e, i) => (e === null ? null : e === 0 && !allowzero ? (x?.[i] ?? null) : e === -1 ? null : e));
          const m = t.v.indexOf(-1);
          if (m >= 0 && x && x.every((e) => e !== null) && d.every((e, i) => i === m || e !== null)) {
            const total = x.reduce<number>((p, e) => p * e!, 1);
            d[m] = total / d.reduce<number>((p, e, i) => (i === m ? p : p * e!), 1);
          }
          s = d;
        }
        break;
      }
      default:
        if (UNARY_SAME_SHAPE.has(op)) {
          s = sh(0);
          const x = va(0);
          if (x && ['Sqrt', 'Reciprocal', 'Neg', 'Identity'].includes(op)) {
            const e = elementwise(op, [x.v], x.int);
            if (e) v = { v: e, int: x.int };
          }
        } else if (BINARY.has(op)) {
          const parts = ins.map((_, i) => sh(i));
          if (parts.every((p) => p !== null) && parts.length >= 2) s = parts.slice(1).reduce<Dims>((p, q) => broadcast(p, q!), parts[0]!);
          const xs = ins.map((_, i) => va(i));
          if (xs.every((x) => x !== null) && xs.length >= 2) {
            const int = op === 'Where' ? xs[1]!.int : xs[0]!.int;
            const e = elementwise(op, xs.map((x) => x!.v), int);
            if (e) v = { v: e, int };
          }
        }
    }
    if (s && !shapes.has(out)) shapes.set(out, s);
    if (v && v.v.length <= MAX_VALUES) vals.set(out, v);
  }
  return {
    shape: (name) => shapes.get(name) ?? null,
    values: (name) => vals.get(name)?.v ?? null,
    scalar: (name) => {
      const x = vals.get(name)?.v;
      return x && x.length === 1 && x[0] !== null ? x[0]! : null;
    },
  };
}
