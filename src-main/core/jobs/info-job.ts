/** `dq info`: what a pipeline is made of. */
import { statSync } from 'node:fs';
import { analyzeGraph, type LayerMap } from '../onnx/analysis.js';
import { readModel, summarize, type ModelSummary } from '../onnx/model.js';
import { type PipelineIndex, type UnetIO } from '../pipeline/pipeline.js';
import { openPipeline } from '../open.js';
import type { SchedulerConfig } from '../pipeline/schedulers.js';
import type { IoMeta } from '../runtime/onnx.js';
import { readManifest } from '../quant/variant.js';
import type { Manifest } from '../quant/quantize.js';

export interface PipelineInfo {
  dir: string;
  pipeline: PipelineIndex;
  scheduler: SchedulerConfig;
  unet: { path: string; bytes: number; inputs: IoMeta[]; outputs: IoMeta[]; io: UnetIO } & ModelSummary;
  /** The denoiser's layer map (quantizable layers, temporal region, skip concats, sensitive places); for a
   * quantized variant, the source's map is in the source pipeline and this is null. */
  layers: LayerMap | null;
  /** A quantized variant's manifest summary. */
  variant: (Manifest['summary'] & { recipe: string; simulated: boolean }) | null;
}

export async function runInfo(dir: string, opts: { timestepInput?: string } = {}): Promise<PipelineInfo> {
  const { pipeline } = await openPipeline(dir, 'cpu');
  const model = readModel(pipeline.unetPath);
  const summary = summarize(model);
  const manifest = readManifest(pipeline.dir);
  const layers = manifest ? null : analyzeGraph(model, { sampleInput: pipeline.io.sample, timestepInput: opts.timestepInput ?? pipeline.io.timestep });
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
    variant: manifest ? { recipe: manifest.recipe.name, simulated: manifest.simulated, ...manifest.summary } : null,
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
    ...(i.layers
      ? [
          `layers     ${i.layers.quantizable.length} quantizable (${countBy(i.layers.quantizable.map((l) => l.op))}), ${i.layers.attention.length} attention MatMuls`,
          `  temporal ${i.layers.temporal.length} layers in the time-only region (fed by ${[i.layers.timestepInput, ...i.layers.temporalConditioning].join(', ')}; not by ${i.layers.sampleInput}), ${i.layers.temporalFeatures.length} temporal features`,
          `  skips    ${i.layers.shortcutSplits.length} decoder skip concats${i.layers.shortcutSplits.length ? ': ' + i.layers.shortcutSplits.map((s) => `${s.concat} at channel ${s.splitAt ?? '?'}`).join(', ') : ''}`,
          `  spare    first ${i.layers.sensitive.firstLayers.join(', ')}; last ${i.layers.sensitive.lastLayers.join(', ')}; ${i.layers.sensitive.softmax.length} softmax`,
        ]
      : []),
    ...(i.variant
      ? [
          `variant    ${i.variant.recipe} (${i.variant.simulated ? 'simulated quantization: float32 storage' : 'exported'}): ${i.variant.quantized} layers quantized, ${i.variant.spared} in FP, weights ${i.variant.weightBitsPerParameter} bits/parameter, activations ${i.variant.activationFormat ?? 'FP'}`,
        ]
      : []),
  ];
  return lines.join('\n');
}

function countBy(xs: string[]): string {
  const m = new Map<string, number>();
  for (const x of xs) m.set(x, (m.get(x) ?? 0) + 1);
  return [...m].map(([k, v]) => `${k} ${v}`).join(', ');
}
