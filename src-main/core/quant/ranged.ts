/**
 * Per-step parameter sets: a layer whose format changes with the timestep range (a bits budget spent per layer and
 * per range, MixDQ-style). Its weight leaves the graph's initializers and becomes a graph input, fed at each network
 * evaluation from the set whose timestep range holds (or lies nearest) the current timestep; each set is a float32
 * file under quant/. Where a set stores the higher format, the layer also reads its FP input instead of its
 * activation quantizer's output (a bool gate input and one Where), as a layer the budget keeps whole does. Nothing
 * is rebuilt per step: the sets are read once and fed as they are.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DqError } from '../errors.js';
import { indexGraph } from '../onnx/graph.js';
import type { ModelMsg } from '../onnx/model.js';
import { ModelProto } from '../onnx/model.js';
import type { FeedValue } from '../runtime/onnx.js';
import { scaleIndex, type Granularity } from '../../../kernels/layout.js';
import type { QuantFormat } from '../../../kernels/quant.js';

/** One layer's weight sets (quant/params.json `weights`). */
export interface RangedWeight {
  layer: string;
  /** The graph input carrying the weight (its former initializer's name). */
  input: string;
  dims: number[];
  /** A bool scalar input: true where the layer reads its FP input, not its activation quantizer's output; or null. */
  gate: string | null;
  sets: {
    /** Model timesteps [first, last] of the range (the sampler's order: first >= last). */
    timesteps: [number, number];
    /** float32 values, row-major, under the variant folder. */
    file: string;
    format: string;
    /** The layer reads its FP input in this range. */
    fpInput: boolean;
    /** The set's quantizer (weights' format and granularity label, quant/weights.ts), for an export to store it. */
    spec?: { format: QuantFormat; granularity: string };
    /**
     * How `file` stores the set (an export's compact form): absent, float32 values; 'int', signed codes (one a byte,
     * or two 4-bit codes a byte, low nibble first) times float32 scales in `scale`, one per group of `granularity`.
     */
    encoding?: { kind: 'int'; bits: number; scale: string; granularity: Granularity };
  }[];
}

/** Decodes a set an export stored as integer codes and scales (see RangedWeight's `encoding`). */
export function decodeIntSet(codes: Uint8Array, scale: Float32Array, dims: number[], bits: number, g: Granularity): Float32Array {
  const n = dims.reduce((a, b) => a * b, 1);
  const idx = scaleIndex(dims, g);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let c: number;
    if (bits <= 4) {
      const byte = codes[i >> 1]!;
      const nib = i & 1 ? byte >> 4 : byte & 15;
      c = nib >= 8 ? nib - 16 : nib;
    } else c = codes[i]! >= 128 ? codes[i]! - 256 : codes[i]!;
    out[i] = Math.fround(c * scale[idx[i]!]!);
  }
  return out;
}

/** Signed codes as a set file stores them: a byte each, or two 4-bit codes a byte (low nibble first). */
export function packCodes(codes: Int8Array, bits: number): Uint8Array {
  if (bits > 4) return new Uint8Array(codes.buffer, codes.byteOffset, codes.byteLength);
  const out = new Uint8Array(Math.ceil(codes.length / 2));
  for (let i = 0; i < codes.length; i++) out[i >> 1]! |= (codes[i]! & 15) << (i & 1 ? 4 : 0);
  return out;
}

/** The layer's input that an activation quantizer produced (quant/activations.ts names it dq_aq/<site>/out). */
const ACT_OUT = /^dq_aq\/\d+\/out$/;

/**
 * Turns `layer`'s weight initializer into a graph input, and gives it a gate between its quantizer's output and its
 * FP input `fpInput` (when it reads a quantizer and `fpInput` is given). -> the gate's input name, or null.
 */
export function rangeLayer(model: ModelMsg, layer: { name: string; weight: string }, fpInput: string | null, k: number): string | null {
  const g = indexGraph(model);
  const at = g.names.indexOf(layer.name);
  if (at < 0) throw new DqError('BAD_MODEL', `layer '${layer.name}' is not in the graph`);
  const node = g.nodes[at]!;
  const graph = model.graph!;
  const init = (graph.initializer ?? []).find((t) => t.name === layer.weight);
  if (!init) throw new DqError('BAD_MODEL', `layer '${layer.name}': its weight is not an initializer`);
  if ((g.consumers.get(layer.weight) ?? []).length !== 1) throw new DqError('BAD_MODEL', `layer '${layer.name}': its weight is shared with other nodes`);
  graph.initializer = (graph.initializer ?? []).filter((t) => t !== init);
  const ValueInfo = ModelProto.lookupType('onnx.ValueInfoProto');
  const dims = (init.dims ?? []).map((d) => ({ dim_value: Number(d) }));
  const inputs: unknown[] = [ValueInfo.fromObject({ name: layer.weight, type: { tensor_type: { elem_type: 1, shape: { dim: dims } } } })];
  let gate: string | null = null;
  const q = fpInput === null ? -1 : (node.input ?? []).findIndex((i) => ACT_OUT.test(i));
  if (q >= 0 && fpInput !== null) {
    gate = `dq_gate/${k}`;
    const out = `${gate}/x`;
    graph.node!.splice(at, 0, { name: `${gate}/where`, op_type: 'Where', input: [gate, fpInput, node.input![q]!], output: [out] } as never);
    node.input![q] = out;
    inputs.push(ValueInfo.fromObject({ name: gate, type: { tensor_type: { elem_type: 9, shape: { dim: [] } } } }));
  }
  graph.input = [...(graph.input ?? []), ...(inputs as never[])];
  return gate;
}

/** The set for model timestep t: the range that holds it, else the nearest range. */
export function setAt<T extends { timesteps: [number, number] }>(sets: T[], t: number): T {
  let best = sets[0]!;
  let bestD = Infinity;
  for (const s of sets) {
    const hi = Math.max(...s.timesteps);
    const lo = Math.min(...s.timesteps);
    const d = t > hi ? t - hi : t < lo ? lo - t : 0;
    if (d < bestD) {
      best = s;
      bestD = d;
    }
  }
  return best;
}

/** Feeds of every ranged layer at model timestep t; the files are read once, on the first call. */
export function rangedFeeds(dir: string, weights: RangedWeight[]): (t: number) => Record<string, FeedValue> {
  const data = new Map<string, Float32Array>();
  const read = (set: RangedWeight['sets'][number], n: number, w: RangedWeight) => {
    const file = set.file;
    let v = data.get(file);
    if (!v) {
      const b = readFileSync(join(dir, file));
      const enc = set.encoding;
      if (enc) {
        const s = readFileSync(join(dir, enc.scale));
        const need = enc.bits <= 4 ? Math.ceil(n / 2) : n;
        if (b.byteLength !== need) throw new DqError('BAD_CONFIG', `${dir}: ${file}: ${b.byteLength} bytes, the codes of '${w.layer}' need ${need}`);
        v = decodeIntSet(new Uint8Array(b.buffer, b.byteOffset, b.byteLength), new Float32Array(s.buffer.slice(s.byteOffset, s.byteOffset + s.byteLength)), w.dims, enc.bits, enc.granularity);
      } else {
        if (b.byteLength !== n * 4) throw new DqError('BAD_CONFIG', `${dir}: ${file}: ${b.byteLength} bytes, the weight of '${w.layer}' needs ${n * 4}`);
        v = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
      }
      data.set(file, v);
    }
    return v;
  };
  return (t) => {
    const feeds: Record<string, FeedValue> = {};
    for (const w of weights) {
      const s = setAt(w.sets, t);
      feeds[w.input] = { type: 'float32', data: read(s, w.dims.reduce((a, b) => a * b, 1), w), dims: w.dims };
      if (w.gate) feeds[w.gate] = { type: 'bool', data: Uint8Array.of(s.fpInput ? 1 : 0), dims: [] };
    }
    return feeds;
  };
}
