/**
 * Activation quantizers inserted at layer inputs. INT and FP formats read their scale (and zero point) from graph
 * inputs, so per-timestep parameters are fed at run time without rebuilding the session; MX and NVFP4 compute
 * their block scales in the graph (NVFP4's per-tensor scale is a calibrated constant). A split-shortcut site
 * gets one quantizer per half of its channels. Node counts are kept low (2 for INT8; 14 for FP8, one of them on
 * the scalar scale; 30-40 for MX and NVFP4): each node is a pass over the activation, and those passes are what a
 * simulated variant pays over FP (bench/simulated.ts, docs/quantize.md).
 */
import { GraphBuilder, int, type Fragment } from '../../../kernels/onnx/graph.js';
import { mxBlocks, nvfp4Blocks, roundToGrid, roundToGridUnits } from '../../../kernels/onnx/fakequant.js';
import { FORMATS } from '../../../kernels/minifloat.js';
import { hadamard, intRange, MX_BLOCK, NVFP4_BLOCK, TOKEN_MIN_SCALE, type QuantFormat } from '../../../kernels/quant.js';
import { embedFragment, LOCAL_DOMAIN, localFunction } from '../onnx/fragment.js';
import { nodeNames } from '../onnx/graph.js';
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

/**
 * Fake quantization of `x` with runtime scale `s` (and zero point `z` for INT, a float32 input). INT8 is
 * onnxruntime's QuantizeLinear -> DequantizeLinear (2 nodes; the zero point cast to uint8 in the graph; the scale
 * stays a graph input, so no QDQ fusion takes the pair); other integer widths and the float formats are float32
 * elementwise ops (FP8's own QuantizeLinear is slower: onnxruntime converts to float8 in scalar code). All compute
 * what ../../../kernels/quant.ts does (round half to even, saturation, NaN to qmin for integers).
 */
function runtimeFq(b: GraphBuilder, x: string, fmt: Extract<QuantFormat, { kind: 'int' | 'float' }>, s: string, z: string | null): string {
  if (fmt.kind === 'int' && fmt.bits === 8) {
    const zp = z ? b.op('Cast', [z], { to: int(2) }, 'zp_u8') : b.init('zero_point', 'int8', [], new Int8Array(1));
    return b.op('DequantizeLinear', [b.op('QuantizeLinear', [x, s, zp], {}, 'q'), s, zp], {}, 'dequant');
  }
  if (fmt.kind === 'float') {
    const f = FORMATS[fmt.element];
    if (f.emax - f.emin <= 2) return b.op('Mul', [roundToGrid(b, b.op('Div', [x, s]), f), s], {}, 'dequant');
    // in units of the format's smallest quantum q (roundToGridUnits): x / (s q) and back, two Muls fewer; s q is
    // exact (q is a power of two), so the result is roundToGrid's to the bit
    const unit = b.op('Mul', [s, b.f32(2 ** (f.emin - f.mbits))], {}, 'unit');
    return b.op('Mul', [roundToGridUnits(b, b.op('Div', [x, unit]), f), unit], {}, 'dequant');
  }
  const y = b.op('Div', [x, s]);
  const { qmin, qmax } = intRange(fmt.bits, fmt.symmetric);
  const r = b.op('Round', [y]);
  const q = z ? b.op('Sub', [z, b.op('Neg', [r])]) : r;
  const clipped = b.op('Clip', [q, b.f32(qmin), b.f32(qmax)]);
  // integers have no NaN: NaN becomes qmin, as in QuantizeLinear
  const c = b.op('Where', [b.op('Equal', [clipped, clipped]), clipped, b.f32(qmin)], {}, 'code');
  return b.op('Mul', [z ? b.op('Sub', [c, z]) : c, s], {}, 'dequant');
}

/**
 * Dynamic per-token symmetric INT fake quantization (ViDiT-Q): s = max(absmax over `axis`, kept) / qmax, at least
 * TOKEN_MIN_SCALE; codes round(x / s) (half to even) clipped to [-qmax, qmax]; out codes x s. A NaN in a token makes its
 * scale NaN and the token NaN, as the float it came from. ../../../kernels/quant.ts fakeQuantTokens is the reference.
 */
function tokenFq(b: GraphBuilder, x: string, bits: number, axis: number): string {
  const qmax = 2 ** (bits - 1) - 1;
  const amax = b.op('ReduceMax', [b.op('Abs', [x]), b.i64([axis])], { keepdims: int(1) }, 'amax');
  const s = b.op('Max', [b.op('Div', [amax, b.f32(qmax)]), b.f32(TOKEN_MIN_SCALE)], {}, 'token_scale');
  const q = b.op('Clip', [b.op('Round', [b.op('Div', [x, s])]), b.f32(-qmax), b.f32(qmax)], {}, 'code');
  return b.op('Mul', [q, s], {}, 'dequant');
}

/**
 * Block formats along the channel axis of `x` (axis 1 of a convolution's input, the last axis otherwise): x is
 * viewed (a Reshape, no copy) as [N, C / block, block, H x W] or [rows, C / block, block], the blocks reduced on
 * axis 2, and the result reshaped back. The block subgraph (30-40 nodes, rank-agnostic) is one model-local function
 * per format, called once per site (onnxruntime inlines it at load: no cost at run time; the file holds one copy).
 * NVFP4's per-tensor scale is the function's parameter, a calibrated constant per site.
 */
function blockFq(model: ModelMsg, b: GraphBuilder, x: string, fmt: Extract<QuantFormat, { kind: 'mx' | 'nvfp4' }>, channels: number, channelAxis1: boolean, rank: number, tensorScale: number): string {
  const block = fmt.kind === 'mx' ? MX_BLOCK : NVFP4_BLOCK;
  const viewDims = channelAxis1 && rank > 2 ? [0, channels / block, block, -1] : [-1, channels / block, block];
  const v = b.op('Reshape', [x, b.i64(viewDims)], {}, 'blocks');
  const fb = new GraphBuilder('f');
  const st = fmt.kind === 'nvfp4' ? fb.init('tensor_scale', 'float32', [], Float32Array.of(1)) : null;
  const y = fmt.kind === 'mx' ? mxBlocks(fb, 'x', 2, fmt.element, 'std') : nvfp4Blocks(fb, 'x', 2, st!, 'std');
  fb.identity(y, 'y');
  const fn = localFunction(model, fb.fragment([{ name: 'x', dtype: 'float32', dims: null }], [{ name: 'y', dtype: 'float32', dims: null }], 21), st ? [st] : []);
  const out = b.fresh('blocks_q');
  b.nodes.push({ name: `${out}:call`, opType: fn, domain: LOCAL_DOMAIN, inputs: [v, ...(st ? [b.f32(tensorScale)] : [])], outputs: [out], attrs: {} });
  return b.op('Reshape', [out, b.op('Shape', [x])], {}, 'unblocks');
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
  opts: { channels: number | null; rank: number; tensorScale?: number[]; useSplit: boolean; dynamic?: 'none' | 'token'; preScale?: Float32Array; rotate?: number },
): InsertResult {
  const prefix = `dq_aq/${site.id}`;
  const b = new GraphBuilder(prefix);
  const split = opts.useSplit ? site.split : null;
  const channelAxis1 = site.ops.includes('Conv') || site.ops.includes('ConvTranspose');
  const halves: { x: string; channels: number | null }[] = [];
  // channel balancing: the site's channels divided by s (its weights' rows were multiplied by s); last axis
  let source = opts.preScale && split === null ? b.op('Mul', [site.tensor, b.init('balance_inv_s', 'float32', [opts.preScale.length], opts.preScale.map((v) => Math.fround(1 / v)))], {}, 'balanced') : site.tensor;
  // and rotated by a block Hadamard matrix: viewed as [-1, C / n, n] x [n, n], viewed back
  if (opts.rotate && split === null && opts.channels) {
    const n = opts.rotate;
    if (opts.channels % n !== 0) throw new Error(`rotation blocks of ${n} do not divide the ${opts.channels} channels of ${site.tensor}`);
    const R = b.init('rotation', 'float32', [n, n], Float32Array.from(hadamard(n)));
    const blocks = b.op('Reshape', [source, b.i64([-1, opts.channels / n, n])], {}, 'rot_blocks');
    const rotated = b.op('MatMul', [blocks, R], {}, 'rotated');
    source = b.op('Reshape', [rotated, b.op('Shape', [site.tensor])], {}, 'rot_back');
  }
  if (split === null) halves.push({ x: source, channels: opts.channels });
  else {
    halves.push({ x: b.op('Slice', [site.tensor, b.i64([0]), b.i64([split]), b.i64([1])], {}, 'a'), channels: split });
    halves.push({ x: b.op('Slice', [site.tensor, b.i64([split]), b.i64([2 ** 62]), b.i64([1])], {}, 'b'), channels: opts.channels === null ? null : opts.channels - split });
  }
  const inputs: ActInputs = { scale: [], zeroPoint: [] };
  const outs: string[] = [];
  const newInputs: Record<string, unknown>[] = [];
  for (let h = 0; h < halves.length; h++) {
    const { x, channels } = halves[h]!;
    if (opts.dynamic === 'token' && fmt.kind === 'int' && fmt.symmetric) {
      outs.push(tokenFq(b, x, fmt.bits, channelAxis1 && opts.rank > 2 ? 1 : -1));
    } else if (fmt.kind === 'int' || fmt.kind === 'float') {
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
  const nodes = model.graph!.node ?? [];
  const names = nodeNames(nodes);
  const want = new Set(layers);
  nodes.forEach((n, i) => {
    if (!want.has(names[i]!)) return;
    n.input = (n.input ?? []).map((inp) => (inp === site.tensor ? final : inp));
  });
  embedFragment(model, frag);
  const VI = ModelProto.lookupType('onnx.ValueInfoProto');
  model.graph!.input = [...(model.graph!.input ?? []), ...newInputs.map((v) => VI.fromObject(v) as never)];
  return { inputs };
}
