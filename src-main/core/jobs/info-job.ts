/** `dq info`: what a pipeline is made of. */
import { statSync } from 'node:fs';
import { analyzeGraph, type LayerMap } from '../onnx/analysis.js';
import { readModel, summarize, type ModelSummary } from '../onnx/model.js';
import { loadPipeline, type PipelineIndex, type UnetIO } from '../pipeline/pipeline.js';
import type { SchedulerConfig } from '../pipeline/schedulers.js';
import type { IoMeta } from '../runtime/onnx.js';

export interface PipelineInfo {
  dir: string;
  pipeline: PipelineIndex;
  scheduler: SchedulerConfig;
  unet: { path: string; bytes: number; inputs: IoMeta[]; outputs: IoMeta[]; io: UnetIO } & ModelSummary;
  /** The denoiser's layer map (quantizable layers, temporal region, skip concats, sensitive places). */
  layers: LayerMap;
}

export async function runInfo(dir: string, opts: { timestepInput?: string } = {}): Promise<PipelineInfo> {
  const { pipeline } = await loadPipeline(dir, 'cpu');
  const model = readModel(pipeline.unetPath);
  const summary = summarize(model);
  const layers = analyzeGraph(model, { sampleInput: pipeline.io.sample, timestepInput: opts.timestepInput ?? pipeline.io.timestep });
  return {
    dir: pipeline.dir,
    pipeline: pipeline.index,
    scheduler: pipeline.scheduler,
    unet: {
      path: pipeline.unetPath,
      bytes: statSync(pipeline.unetPath).size,
      inputs: pipeline.unetInputs,
      outputs: pipeline.unetOutputs,
      io: pipeline.io,
      ...summary,
    },
    layers,
  };
}

export function formatInfo(i: PipelineInfo): string {
  const shape = (m: IoMeta) => (m.shape ? `[${m.shape.join(', ')}]` : '');
  const s = i.scheduler;
  const lines = [
    `pipeline   ${i.dir}`,
    `class      ${i.pipeline.className}`,
    `components ${Object.entries(i.pipeline.components).map(([k, v]) => `${k} (${v[1]})`).join(', ')}`,
    `sample     ${i.pipeline.sampleShape.join('x')}`,
    `classes    ${i.pipeline.classes.length ? `${i.pipeline.classes.length} (${i.pipeline.classes.join(' ')}), null class ${i.pipeline.nullClass ?? 'none'}` : 'unconditional'}`,
    `scheduler  ${s.num_train_timesteps} train steps, ${s.beta_schedule} betas ${s.beta_start}..${s.beta_end}, predicts ${s.prediction_type}, spacing ${s.timestep_spacing}, clip_sample ${s.clip_sample}`,
    `unet       ${(i.unet.bytes / 1e6).toFixed(2)} MB, ${i.unet.parameters.toLocaleString('en-US')} parameters, ${i.unet.nodes} nodes, opset ${i.unet.opsets['ai.onnx'] ?? '?'}${i.unet.producer ? `, from ${i.unet.producer}` : ''}`,
    ...i.unet.inputs.map((m) => `  input    ${m.name} ${m.type} ${shape(m)}`),
    ...i.unet.outputs.map((m) => `  output   ${m.name} ${m.type} ${shape(m)}`),
    `  ops      ${Object.entries(i.unet.ops).map(([k, v]) => `${k} ${v}`).join(', ')}`,
    `layers     ${i.layers.quantizable.length} quantizable (${countBy(i.layers.quantizable.map((l) => l.op))}), ${i.layers.attention.length} attention MatMuls`,
    `  temporal ${i.layers.temporal.length} layers in the time-only region (fed by ${[i.layers.timestepInput, ...i.layers.temporalConditioning].join(', ')}; not by ${i.layers.sampleInput}), ${i.layers.temporalFeatures.length} temporal features`,
    `  skips    ${i.layers.shortcutSplits.length} decoder skip concats${i.layers.shortcutSplits.length ? ': ' + i.layers.shortcutSplits.map((s) => `${s.concat} at channel ${s.splitAt ?? '?'}`).join(', ') : ''}`,
    `  spare    first ${i.layers.sensitive.firstLayers.join(', ')}; last ${i.layers.sensitive.lastLayers.join(', ')}; ${i.layers.sensitive.softmax.length} softmax`,
  ];
  return lines.join('\n');
}

function countBy(xs: string[]): string {
  const m = new Map<string, number>();
  for (const x of xs) m.set(x, (m.get(x) ?? 0) + 1);
  return [...m].map(([k, v]) => `${k} ${v}`).join(', ');
}
