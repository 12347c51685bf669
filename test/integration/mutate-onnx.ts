/** Seeded mutations of an ONNX model (byte flips, truncations, protobuf field edits), for the fuzz and CLI error tests. */
import { ModelProto } from '../../src-main/core/onnx/model';

/** mulberry32: a deterministic PRNG in [0, 1) (shared with the kernel tests' data). */
export { rng as prng } from './kernels/data';
import { rng as prng } from './kernels/data';

/* eslint-disable @typescript-eslint/no-explicit-any -- decoded protobuf messages are edited field by field */
type Msg = Record<string, any>;
export const KINDS = ['flip', 'flip-graph', 'truncate', 'op', 'input', 'output', 'attr', 'dims', 'dtype', 'raw', 'io', 'opset', 'drop-node', 'ir', 'swap', 'init-name', 'graph-out'] as const;

/** Mutation `seed` of the model bytes; the kind cycles with the seed, the details come from the PRNG. */
export function mutate(orig: Uint8Array, seed: number): { kind: string; bytes: Uint8Array } {
  const r = prng(seed);
  const int = (n: number) => Math.floor(r() * n);
  const kind = KINDS[seed % KINDS.length]!;
  if (kind === 'flip' || kind === 'flip-graph') {
    const b = Uint8Array.from(orig);
    // 'flip-graph': in the first 40 kB, where the nodes are (the weights come after them)
    const span = kind === 'flip-graph' ? Math.min(b.length, 40_000) : b.length;
    for (let n = 1 + int(4); n > 0; n--) b[int(span)] = int(256);
    return { kind, bytes: b };
  }
  if (kind === 'truncate') return { kind, bytes: orig.subarray(0, int(orig.length)) };
  const m = ModelProto.decode(orig) as unknown as Msg;
  const g = m.graph as Msg;
  const nodes = g.node as Msg[];
  const node = nodes[int(nodes.length)]!;
  const inits = g.initializer as Msg[];
  const init = inits[int(inits.length)]!;
  const anyOutput = () => nodes[int(nodes.length)]!.output[0] as string;
  switch (kind) {
    case 'op':
      node.op_type = r() < 0.5 ? nodes[int(nodes.length)]!.op_type : ['NoSuchOp', 'Conv', 'Gather', 'Relu', ''][int(5)];
      break;
    case 'input':
      if (node.input.length) {
        const i = int(node.input.length);
        if (r() < 0.4) node.input.splice(i, 1);
        else node.input[i] = r() < 0.3 ? 'nowhere' : anyOutput();
      }
      break;
    case 'output':
      node.output[0] = r() < 0.5 ? 'renamed' : anyOutput();
      break;
    case 'attr': {
      const a = node.attribute[int(node.attribute.length || 1)];
      if (!a) node.attribute = [{ name: 'bogus', type: 2, i: 3 }];
      else if (r() < 0.3) node.attribute.splice(node.attribute.indexOf(a), 1);
      else if (a.ints?.length) a.ints[int(a.ints.length)] = int(12) - 3;
      else if (a.type === 2) a.i = int(12) - 3;
      else if (a.type === 1) a.f = r() < 0.5 ? -1 : 1e30;
      else a.type = int(14);
      break;
    }
    case 'dims': {
      const d = init.dims as number[];
      if (d.length && r() < 0.6) d[int(d.length)] = Number(d[int(d.length)]) * (r() < 0.5 ? 2 : 0) + int(3);
      else if (d.length) d.pop();
      else d.push(2);
      break;
    }
    case 'dtype':
      init.data_type = [2, 3, 6, 7, 10, 11, 0, 99][int(8)];
      break;
    case 'raw':
      if (init.raw_data) init.raw_data = init.raw_data.subarray(0, int(init.raw_data.length));
      break;
    case 'io': {
      const all = [...g.input, ...g.output];
      const tt = all[int(all.length)].type?.tensor_type;
      if (tt && r() < 0.5) tt.elem_type = [6, 7, 10, 11, 16, 0][int(6)];
      else if (tt?.shape?.dim?.length) {
        const dim = tt.shape.dim[int(tt.shape.dim.length)];
        delete dim.dim_param;
        dim.dim_value = int(40);
      }
      break;
    }
    case 'opset':
      m.opset_import[0].version = [1, 6, 9, 13, 99, 30][int(6)];
      break;
    case 'drop-node':
      nodes.splice(nodes.indexOf(node), 1);
      break;
    case 'ir':
      m.ir_version = [0, 1, 3, 99][int(4)];
      break;
    case 'swap': {
      const i = nodes.indexOf(node);
      const j = int(nodes.length);
      [nodes[i], nodes[j]] = [nodes[j], nodes[i]];
      break;
    }
    case 'init-name':
      init.name = r() < 0.5 ? 'gone' : inits[int(inits.length)]!.name;
      break;
    case 'graph-out':
      g.output[0].name = r() < 0.5 ? 'nothing' : node.output[0];
      break;
  }
  return { kind, bytes: ModelProto.encode(m as never).finish() };
}
/* eslint-enable @typescript-eslint/no-explicit-any */
