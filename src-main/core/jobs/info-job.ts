/** `dq info`: what a pipeline is made of. */
import { statSync } from 'node:fs';
import { readModel, summarize, type ModelSummary } from '../onnx/model.js';
import { loadPipeline, type PipelineIndex, type UnetIO } from '../pipeline/pipeline.js';
import type { SchedulerConfig } from '../pipeline/schedulers.js';
import type { IoMeta } from '../runtime/onnx.js';

export interface PipelineInfo {
  dir: string;
  pipeline: PipelineIndex;
  scheduler: SchedulerConfig;
  unet: { path: string; bytes: number; inputs: IoMeta[]; outputs: IoMeta[]; io: UnetIO } & ModelSummary;
}

export async function runInfo(dir: string): Promise<PipelineInfo> {
  const { pipeline } = await loadPipeline(dir, 'cpu');
  const summary = summarize(readModel(pipeline.unetPath));
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
  ];
  return lines.join('\n');
}
