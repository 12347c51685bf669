/** `dq info`: what a pipeline is made of. */
import { statSync } from 'node:fs';
import { analyzeGraph, type LayerMap } from '../onnx/analysis.js';
import { readModel, summarize, type ModelSummary } from '../onnx/model.js';
import { sizeMultiple, type Pipeline, type PipelineIndex, type UnetIO } from '../pipeline/pipeline.js';
import { openPipeline } from '../open.js';
import { describeComponents, formatComponents, type ComponentsInfo } from '../pipeline/components.js';
import { isFlowConfig, type SchedulerConfig } from '../pipeline/schedulers.js';
import type { IoMeta } from '../runtime/onnx.js';
import { readManifest } from '../quant/variant.js';
import type { Manifest } from '../quant/quantize.js';

export interface PipelineInfo {
  dir: string;
  pipeline: PipelineIndex;
  scheduler: SchedulerConfig;
  unet: { folder: 'unet' | 'transformer'; path: string; bytes: number; inputs: IoMeta[]; outputs: IoMeta[]; io: UnetIO } & ModelSummary;
  /** The denoiser's layer map (quantizable layers, temporal region, skip concats, sensitive places); for a
   * quantized variant, the source's map is in the source pipeline and this is null. */
  layers: LayerMap | null;
  /** A quantized variant's manifest summary. */
  variant: (Manifest['summary'] & { recipe: string; simulated: boolean }) | null;
  /** [C, H, W] of the images it makes (decoded by the VAE for a latent pipeline). */
  image: number[];
  /** Text conditioning: how the unet's text inputs are made. */
  /** summary: how the denoiser's text inputs are made, in one line (the CLI and the studio show it). */
  text: { kind: string; summary: string; sd3?: { width: number; t5Tokens: number } | null; encoders: { component: string; input: string; idsType: string; hidden: string; pooled: string | null }[]; tokenizers: { folder: string; source: string; vocab: number; maxLength: number; padId: number }[]; width: number | null; zerosForEmptyNegative: boolean } | null;
  /** The VAE decoder: factor and scaling, and where they came from. */
  codec: { factor: number; scalingFactor: number; shiftFactor: number; inputType: string; source: string; sizeMultiple: number } | null;
  defaults: { sampler: string; guidance: number };
  /** For a diffusers pipeline with more than a unet: every component and the I/O convention (components.ts). */
  components: ComponentsInfo | null;
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
      folder: pipeline.denoiser ?? 'unet',
      path: pipeline.unetPath,
      bytes: statSync(pipeline.unetPath).size,
      inputs: pipeline.unetInputs,
      outputs: pipeline.unetOutputs,
      io: pipeline.io,
      ...summary,
    },
    layers,
    variant: manifest ? { recipe: manifest.recipe.name, simulated: manifest.simulated, ...manifest.summary } : null,
    image: pipeline.imageShape,
    text: pipeline.text
      ? {
          kind: pipeline.text.kind,
          summary: textSummary(pipeline),
          sd3: pipeline.text.sd3 ?? null,
          encoders: pipeline.text.encoders.map((e) => ({ component: e.component, input: e.input, idsType: e.idsType, hidden: e.hidden, pooled: e.pooled })),
          tokenizers: pipeline.text.tokenizers.map((t, k) => ({ folder: pipeline.text!.encoders[k]!.component.replace('text_encoder', 'tokenizer'), source: t.source, vocab: t.vocabSize, maxLength: t.maxLength, padId: t.padId })),
          width: pipeline.text.width,
          zerosForEmptyNegative: pipeline.text.zerosForEmptyNegative,
        }
      : null,
    codec: pipeline.codec ? { factor: pipeline.codec.factor, scalingFactor: pipeline.codec.scalingFactor, shiftFactor: pipeline.codec.shiftFactor, inputType: pipeline.codec.inputType, source: pipeline.codec.source, sizeMultiple: sizeMultiple(pipeline) } : null,
    defaults: { sampler: pipeline.index.defaultSampler, guidance: pipeline.index.defaultGuidance },
    components: pipeline.text || pipeline.codec ? await describeComponents(dir, { io: true }) : null,
  };
}

/** How the denoiser's text inputs are made, in one line. */
function textSummary(p: Pipeline): string {
  const t = p.text!;
  const w = t.width ?? '?';
  if (t.kind === 'sdxl') return `SDXL: both encoders' penultimate hidden states + text_embeds + time_ids, width ${w}`;
  if (t.kind === 'flux') {
    const guidance = p.io.guidanceInput ? `, guidance as an input (${p.io.guidanceInput}), no CFG batch` : ', no CFG batch';
    return `Flux: T5 last_hidden_state (width ${w}, ${t.tokenizers[1]?.maxLength ?? '?'} tokens) + CLIP pooler_output; latents packed 2x2, rotary img_ids/txt_ids${guidance}; timestep = sigma`;
  }
  if (t.kind === 'pixart') {
    const sigma = p.io.learnedSigma ? '; the output is noise + a learned variance (the noise is read)' : '';
    return `PixArt: T5 last_hidden_state (width ${w}, ${t.tokenizers[0]?.maxLength ?? '?'} tokens) with its attention mask (${p.io.textMask ?? 'none'})${sigma}`;
  }
  if (t.kind === 'sd3' && t.sd3) {
    const padded = t.width !== t.sd3.width ? `, zero-padded to ${t.sd3.width}` : '';
    const t5 = t.encoders.some((e) => e.component === 'text_encoder_3')
      ? `T5's last_hidden_state (${t.tokenizers[t.tokenizers.length - 1]?.maxLength ?? '?'} tokens)`
      : `${t.sd3.t5Tokens} zero tokens in T5's place (max_sequence_length)`;
    return `SD3: the CLIP encoders' penultimate hidden states (width ${w}${padded}) + ${t5}; pooled text_embeds`;
  }
  return `CLIP last_hidden_state, width ${w}`;
}

export function formatInfo(i: PipelineInfo): string {
  const shape = (m: IoMeta) => (m.shape ? `[${m.shape.join(', ')}]` : '');
  const s = i.scheduler;
  const text = i.text;
  const lines = [
    ...(i.components
      ? [formatComponents(i.components)]
      : [`pipeline   ${i.dir}`, `class      ${i.pipeline.className}`, `components ${Object.entries(i.pipeline.components).map(([k, v]) => `${k} (${v[1]})`).join(', ')}`]),
    i.pipeline.frames
      ? `sample     ${i.pipeline.frames} frames of ${[i.pipeline.sampleShape[0], i.pipeline.sampleShape[1] / i.pipeline.frames, i.pipeline.sampleShape[2]].join('x')}${i.codec ? ` latents (${i.pipeline.shapeSource}) -> videos of ${i.pipeline.frames} frames ${[i.image[0], i.image[1]! / i.pipeline.frames, i.image[2]].join('x')}, decoded frame by frame` : ''}`
      : `sample     ${i.pipeline.sampleShape.join('x')}${i.codec ? ` latents (${i.pipeline.shapeSource}) -> images ${i.image.join('x')}` : ''}`,
    ...(i.codec ? [`vae        factor ${i.codec.factor}, scaling ${i.codec.scalingFactor}${i.codec.shiftFactor ? `, shift ${i.codec.shiftFactor}` : ''}, ${i.codec.inputType} (from ${i.codec.source}); sizes in multiples of ${i.codec.sizeMultiple} pixels`] : []),
    text
      ? `text       ${text.summary}; ` +
        text.tokenizers.map((t) => `${t.folder} ${t.source} ${t.vocab} tokens, ${t.maxLength} max, pad ${t.padId}`).join('; ') +
        (text.zerosForEmptyNegative ? '; empty negative prompt = zeros' : '') +
        (i.unet.io.timestepCond ? `; guidance as an embedding (${i.unet.io.timestepCond}, width ${i.unet.io.widths?.timestepCond ?? '?'}), no CFG doubling` : '')
      : `classes    ${i.pipeline.classes.length ? `${i.pipeline.classes.length} (${i.pipeline.classes.join(' ')}), null class ${i.pipeline.nullClass ?? 'none'}` : 'unconditional'}`,
    `defaults   sampler ${i.defaults.sampler}, guidance ${i.defaults.guidance}`,
    isFlowConfig(s)
      ? `scheduler  ${s.num_train_timesteps} train steps, flow matching (predicts the velocity noise - x0; timestep = sigma x ${s.num_train_timesteps}), ${s.use_dynamic_shifting ? `dynamic shift (mu ${s.base_shift}..${s.max_shift} over ${s.base_image_seq_len}..${s.max_image_seq_len} image tokens)` : `shift ${s.shift}`}`
      : `scheduler  ${s.num_train_timesteps} train steps, ${s.beta_schedule} betas ${s.beta_start}..${s.beta_end}, predicts ${s.prediction_type}, spacing ${s.timestep_spacing}, clip_sample ${s.clip_sample}`,
    `${i.unet.folder.padEnd(10)} ${(i.unet.bytes / 1e6).toFixed(2)} MB, ${i.unet.parameters.toLocaleString('en-US')} parameters, ${i.unet.nodes} nodes, opset ${i.unet.opsets['ai.onnx'] ?? '?'}${i.unet.producer ? `, from ${i.unet.producer}` : ''}`,
    // a folder described component by component has listed the unet's I/O already
    ...(i.components ? [] : i.unet.inputs.map((m) => `  input    ${m.name} ${m.type} ${shape(m)}`)),
    ...(i.components ? [] : i.unet.outputs.map((m) => `  output   ${m.name} ${m.type} ${shape(m)}`)),
    `  ops      ${Object.entries(i.unet.ops).map(([k, v]) => `${k} ${v}`).join(', ')}`,
    ...(i.layers
      ? [
          `layers     ${i.layers.quantizable.length} quantizable (${countBy(i.layers.quantizable.map((l) => l.op))}), ${i.layers.attention.length} attention MatMuls`,
          `  temporal ${i.layers.temporal.length} layers in the time-only region (fed by ${[i.layers.timestepInput, ...i.layers.temporalConditioning].join(', ')}; not by ${i.layers.sampleInput}), ${i.layers.temporalFeatures.length} temporal features`,
          ...(i.layers.textInputs?.length
            ? [
                `  text     ${i.layers.textOnly.length} layers in the text-only region (fed by ${i.layers.textInputs.join(', ')}; not by ${i.layers.sampleInput} or ${i.layers.timestepInput}): ${i.layers.crossAttention.length} cross-attention key/value projections${i.layers.addedEmbedding.length ? `, ${i.layers.addedEmbedding.length} in the added embedding` : ''}; ${i.layers.textFeatures.length} text features (cached once per prompt by recipes with text: cache/auto)`,
              ]
            : []),
          ...(i.layers.frames && (i.layers.frames.convs.length || i.layers.frames.attention.length)
            ? [`  frames   ${i.layers.frames.convs.length + i.layers.frames.attention.length} layers mix the frames: ${i.layers.frames.convs.length} temporal convolutions (a kernel over the frame axis), ${i.layers.frames.attention.length} linear layers in ${i.layers.frames.softmax.length} attentions over the frames`]
            : []),
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
