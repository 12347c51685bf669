/**
 * Quantization sites: the activation tensors that feed quantizable layers (one site per tensor, shared by all
 * the layers that read it), with the split channel where a site is a decoder skip concat feeding convs.
 */
import type { LayerMap, QuantizableLayer } from '../onnx/analysis.js';

export interface Site {
  id: number;
  tensor: string;
  /** Layers (quantizable, weight-bearing) that read this tensor. */
  layers: string[];
  /** Channel index where the second half starts, for split-shortcut sites (channel axis 1). */
  split: number | null;
  /** The layers' op kinds, to place channels (Conv: axis 1; Gemm/MatMul: last axis). */
  ops: string[];
  /** True if the tensor depends on the timestep only (the time-only region). */
  temporal: boolean;
  /** True if the tensor depends on the text inputs only (cross-attention keys and values, SDXL's added embedding). */
  text?: boolean;
  /** True if one of its layers mixes a video's frames (a temporal convolution, a linear layer of an attention over frames). */
  frames?: boolean;
}

/** Sites for the given layers; `splitAt(tensor)` says where a split-shortcut site splits (or null). */
export function buildSites(map: LayerMap, layers: QuantizableLayer[], splitShortcut: boolean): Site[] {
  const temporal = new Set(map.temporal);
  const text = new Set(map.textOnly ?? []);
  const frames = new Set([...(map.frames?.convs ?? []), ...(map.frames?.attention ?? [])]);
  // A split-shortcut layer reads the concat through normalization/activation; its own input is what gets split.
  const splitByLayer = new Map<string, number>();
  if (splitShortcut) {
    for (const s of map.shortcutSplits) if (s.splitAt !== null && s.axis === 1) for (const l of s.consumers) splitByLayer.set(l, s.splitAt);
  }
  const byTensor = new Map<string, Site>();
  for (const l of layers) {
    let site = byTensor.get(l.input);
    if (!site) {
      site = { id: byTensor.size, tensor: l.input, layers: [], split: null, ops: [], temporal: temporal.has(l.name), ...(text.has(l.name) ? { text: true } : {}) };
      byTensor.set(l.input, site);
    }
    site.layers.push(l.name);
    if (frames.has(l.name)) site.frames = true;
    if (!site.ops.includes(l.op)) site.ops.push(l.op);
    const sp = splitByLayer.get(l.name);
    if (sp !== undefined && l.op === 'Conv') site.split = sp;
  }
  return [...byTensor.values()];
}
