/**
 * Activation quantizers inserted at layer inputs. INT and FP formats read their scale (and zero point) from graph
 * inputs, so per-timestep parameters are fed at run time without rebuilding the session; MX and NVFP4 compute
 * their block scales in the graph (NVFP4's per-tensor scale is a calibrated constant). A split-shortcut site
 * gets one quantizer per half of its channels.
 */
import { GraphBuilder, type Fragment } from '../../../kernels/onnx/graph.js';
import { fakeQuantFragment, roundToGrid } from '../../../kernels/onnx/fakequant.js';
import { FORMATS } from '../../../kernels/minifloat.js';
import { intRange, MX_BLOCK, NVFP4_BLOCK, type QuantFormat } from '../../../kernels/quant.js';
import { embedFragment, LOCAL_DOMAIN, localFunction } from '../onnx/fragment.js';
import { indexGraph } from '../onnx/graph.js';
import type { ModelMsg } from '../onnx/model.js';
import { ModelProto } from '../onnx/model.js';
import type { Site } from './sites.js';

export interface ActInputs {
  /** Graph input names, per half, that carry this quantizer's parameters (empty for MX/NVFP4). */
  scale: string[];
  zeroPoint: string[];
}

export function paramInputNames(site: number, half: number): { scale: string; zp: string } {
  return { scale: `dq_aq/${site}/${half}/scale`, zp: `dq_aq/${site}/${half}/zp` };
}

/** Fake quantization of `x` with runtime scale `s` (and zero point `z` for INT), as float32 elementwise ops. */
function runtimeFq(b: GraphBuilder, x: string, fmt: Extract<QuantFormat, { kind: 'int' | 'float' }>, s: string, z: string | null): string {
  const y = b.op('Div', [x, s]);
  if (fmt.kind === 'float') return b.op('Mul', [roundToGrid(b, y, FORMATS[fmt.element]), s], {}, 'dequant');
  const { qmin, qmax } = intRange(fmt.bits, fmt.symmetric);
  const r = b.op('Round', [y]);
  const q = z ? b.op('Sub', [z, b.op('Neg', [r])]) : r;
  const c = b.op('Clip', [q, b.f32(qmin), b.f32(qmax)]);
  return b.op('Mul', [z ? b.op('Sub', [c, z]) : c, s], {}, 'dequant');
}

/** Block formats along the channel axis of `x` (axis 1 for convolutions, the last axis otherwise). */
/** A float32 value no real tensor scale takes: marks NVFP4's per-tensor scale in the fragment, to make it a parameter. */
const TENSOR_SCALE_PARAM = Math.fround(1234.5678);

function blockFq(model: ModelMsg, b: GraphBuilder, x: string, fmt: Extract<QuantFormat, { kind: 'mx' | 'nvfp4' }>, channels: number, channelAxis1: boolean, rank: number, tensorScale: number): string {
  let v = x;
  if (channelAxis1 && rank > 2) {
    const perm = [0, ...Array.from({ length: rank - 2 }, (_, i) => i + 2), 1];
    v = b.op('Transpose', [x], { perm: { type: 'ints', value: perm } });
  }
  const shape = b.op('Shape', [v]);
  const rows = b.op('Reshape', [v, b.i64([-1, channels])], {}, 'rows');
  // one model-local function per format and channel count (NVFP4's per-tensor scale is its parameter): the block
  // subgraph is ~100 nodes, written once instead of once per layer
  const frag = fakeQuantFragment(
    fmt.kind === 'mx' ? { format: fmt, dims: [-1, channels], axis: 1 } : { format: fmt, dims: [-1, channels], axis: 1, tensorScale: TENSOR_SCALE_PARAM },
    { input: 'x', output: 'y', prefix: 'f' },
  );
  const param = fmt.kind === 'nvfp4' ? frag.initializers.filter((t) => t.dtype === 'float32' && t.dims.length === 0 && t.data[0] === TENSOR_SCALE_PARAM).map((t) => t.name) : [];
  if (fmt.kind === 'nvfp4' && param.length !== 1) throw new Error('NVFP4 fragment: the per-tensor scale constant was not found');
  const fn = localFunction(model, { ...frag, inputs: [{ name: 'x', dtype: 'float32', dims: [-1, channels] }], outputs: [{ name: 'y', dtype: 'float32', dims: [-1, channels] }] }, param);
  const out = b.fresh('blocks_out');
  b.nodes.push({ name: `${out}:node`, opType: fn, domain: LOCAL_DOMAIN, inputs: [rows, ...(param.length ? [b.f32(tensorScale)] : [])], outputs: [out], attrs: {} });
  let y = b.op('Reshape', [out, shape], {}, 'unrows');
  if (channelAxis1 && rank > 2) {
    const inv = [0, rank - 1, ...Array.from({ length: rank - 2 }, (_, i) => i + 1)];
    y = b.op('Transpose', [y], { perm: { type: 'ints', value: inv } });
  }
  return y;
}

export interface InsertResult {
  inputs: ActInputs;
  /** Why the site was left in float, if it was. */
  skipped?: string;
}

/**
 * Inserts the quantizer for one site and points the given layers at it. `channels` is the site's channel count
 * (needed by block formats), `rank` its rank (4 for conv inputs), `tensorScale` NVFP4's per-tensor scale per half.
 */
export function insertActivationQuantizer(
  model: ModelMsg,
  site: Site,
  layers: string[],
  fmt: QuantFormat,
  opts: { channels: number | null; rank: number; tensorScale?: number[]; useSplit: boolean },
): InsertResult {
  const prefix = `dq_aq/${site.id}`;
  const b = new GraphBuilder(prefix);
  const split = opts.useSplit ? site.split : null;
  const channelAxis1 = site.ops.includes('Conv') || site.ops.includes('ConvTranspose');
  const halves: { x: string; channels: number | null }[] = [];
  if (split === null) halves.push({ x: site.tensor, channels: opts.channels });
  else {
    halves.push({ x: b.op('Slice', [site.tensor, b.i64([0]), b.i64([split]), b.i64([1])], {}, 'a'), channels: split });
    halves.push({ x: b.op('Slice', [site.tensor, b.i64([split]), b.i64([2 ** 62]), b.i64([1])], {}, 'b'), channels: opts.channels === null ? null : opts.channels - split });
  }
  const inputs: ActInputs = { scale: [], zeroPoint: [] };
  const outs: string[] = [];
  const newInputs: Record<string, unknown>[] = [];
  for (let h = 0; h < halves.length; h++) {
    const { x, channels } = halves[h]!;
    if (fmt.kind === 'int' || fmt.kind === 'float') {
      const names = paramInputNames(site.id, h);
      const z = fmt.kind === 'int' && !fmt.symmetric ? names.zp : null;
      outs.push(runtimeFq(b, x, fmt, names.scale, z));
      inputs.scale.push(names.scale);
      newInputs.push({ name: names.scale, type: { tensor_type: { elem_type: 1, shape: { dim: [] } } } });
      if (z) {
        inputs.zeroPoint.push(z);
        newInputs.push({ name: z, type: { tensor_type: { elem_type: 1, shape: { dim: [] } } } });
      }
    } else {
      const block = fmt.kind === 'mx' ? MX_BLOCK : NVFP4_BLOCK;
      if (channels === null || channels % block !== 0) {
        return { inputs: { scale: [], zeroPoint: [] }, skipped: `${fmt.kind} blocks of ${block} do not divide ${channels ?? 'unknown'} channels` };
      }
      outs.push(blockFq(model, b, x, fmt, channels, channelAxis1, opts.rank, opts.tensorScale?.[h] ?? 1));
    }
  }
  const out = outs.length === 1 ? outs[0]! : b.op('Concat', outs, { axis: { type: 'int', value: 1 } }, 'joined');
  const final = b.identity(out, `${prefix}/out`);
  const frag: Fragment = b.fragment([], [{ name: final, dtype: 'float32', dims: null }], 21);
  // rewire the layers first, so the fragment lands before its first consumer
  const g = indexGraph(model);
  const want = new Set(layers);
  g.nodes.forEach((n, i) => {
    if (!want.has(g.names[i]!)) return;
    n.input = (n.input ?? []).map((inp) => (inp === site.tensor ? final : inp));
  });
  embedFragment(model, frag);
  const VI = ModelProto.lookupType('onnx.ValueInfoProto');
  model.graph!.input = [...(model.graph!.input ?? []), ...newInputs.map((v) => VI.fromObject(v) as never)];
  return { inputs };
}
