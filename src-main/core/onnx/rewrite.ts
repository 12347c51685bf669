/**
 * Graph rewrites that do not depend on a number format: exposing intermediate tensors as outputs (taps for
 * calibration and caching), cutting the time-only region so temporal features become inputs, and removing dead
 * nodes. Each works on a decoded model in place and returns what it changed.
 */
import { DqError } from '../errors.js';
import { analyzeGraph, type AnalyzeOptions } from './analysis.js';
import { indexGraph } from './graph.js';
import type { ModelMsg } from './model.js';

interface ValueInfo {
  name?: string;
  type?: { tensor_type?: { elem_type?: number; shape?: unknown } };
}
type GraphWithVI = NonNullable<ModelMsg['graph']> & { value_info?: ValueInfo[]; input?: ValueInfo[]; output?: ValueInfo[] };

function valueInfoFor(graph: GraphWithVI, name: string, elemType = 1): ValueInfo {
  const known = [...(graph.value_info ?? []), ...(graph.output ?? []), ...(graph.input ?? [])].find((v) => v.name === name);
  if (known?.type?.tensor_type?.elem_type) return { name, type: known.type };
  return { name, type: { tensor_type: { elem_type: elemType } } };
}

/** Adds `tensors` as graph outputs (no-op for those already outputs). Returns the names added. */
export function exposeTensors(model: ModelMsg, tensors: string[]): string[] {
  const graph = model.graph as GraphWithVI;
  const g = indexGraph(model);
  const have = new Set(g.outputs);
  const added: string[] = [];
  for (const t of tensors) {
    if (have.has(t)) continue;
    if (!g.producer.has(t) && !g.inputs.includes(t)) throw new DqError('BAD_ARGUMENT', `no tensor named '${t}' in the graph`);
    graph.output = [...(graph.output ?? []), valueInfoFor(graph, t)];
    have.add(t);
    added.push(t);
  }
  return added;
}

/** Removes nodes, initializers and inputs that no graph output needs. Returns counts removed. */
export function pruneDead(model: ModelMsg, keepInputs: string[] = []): { nodes: number; initializers: number; inputs: string[] } {
  const graph = model.graph as GraphWithVI;
  const g = indexGraph(model);
  const live = new Set<string>(g.outputs);
  const keep = new Set<number>();
  for (let k = g.order.length - 1; k >= 0; k--) {
    const i = g.order[k]!;
    const n = g.nodes[i]!;
    if (!(n.output ?? []).some((o) => live.has(o))) continue;
    keep.add(i);
    for (const inp of n.input ?? []) if (inp) live.add(inp);
  }
  const before = { nodes: g.nodes.length, inits: graph.initializer?.length ?? 0 };
  graph.node = g.nodes.filter((_, i) => keep.has(i));
  graph.initializer = (graph.initializer ?? []).filter((t) => live.has(t.name ?? ''));
  const removedInputs = (graph.input ?? []).filter((v) => !live.has(v.name ?? '') && !keepInputs.includes(v.name ?? '')).map((v) => v.name ?? '');
  graph.input = (graph.input ?? []).filter((v) => !removedInputs.includes(v.name ?? ''));
  if (graph.value_info) graph.value_info = graph.value_info.filter((v) => live.has(v.name ?? ''));
  return { nodes: before.nodes - graph.node.length, initializers: before.inits - graph.initializer.length, inputs: removedInputs.filter((n) => !g.initializers.has(n)) };
}

export interface TemporalCut {
  /** The temporal features, now graph inputs (float32), in the order added. */
  featureInputs: string[];
  /** Runtime inputs no longer needed (e.g. the timestep, when nothing else reads it). */
  removedInputs: string[];
  removedNodes: number;
}

/**
 * Cuts the time-only region out of the graph: every temporal feature (where that region meets the rest) becomes a
 * graph input, and the region's nodes are removed. Feed the features precomputed by the FP model per timestep
 * (TFMQ-DM's cache) and they carry no quantization error.
 */
export function cutTemporalRegion(model: ModelMsg, opts: AnalyzeOptions = {}): TemporalCut {
  const map = analyzeGraph(model, opts);
  if (!map.temporalFeatures.length) throw new DqError('BAD_MODEL', 'the graph has no time-only region to cut');
  return cutFeatures(model, map.temporalFeatures, [map.sampleInput]);
}

/**
 * Makes `features` (tensors of the graph) graph inputs and removes what only they needed. Used with a subset of the
 * temporal features (TFMQ's disturbance-aware choice): the rest of the time-only region stays and computes the others.
 */
export function cutFeatures(model: ModelMsg, features: string[], keepInputs: string[]): TemporalCut {
  const graph = model.graph as GraphWithVI;
  const g = indexGraph(model);
  for (const f of features) if (!g.producer.has(f)) throw new DqError('BAD_ARGUMENT', `no node produces '${f}'`);
  graph.input = [...(graph.input ?? []), ...features.map((f) => valueInfoFor(graph, f))];
  // The features' producers must go, or the graph would define them twice: cut their input edges by renaming.
  const cut = new Set(features);
  for (const n of graph.node ?? []) n.output = (n.output ?? []).map((o) => (cut.has(o) ? `${o}__cut` : o));
  const pruned = pruneDead(model, keepInputs);
  return { featureInputs: features, removedInputs: pruned.inputs, removedNodes: pruned.nodes };
}
