/**
 * A host with no engine behind it: fixed data, for component tests and UI work without Electron (the UI says so).
 * Two mock models: a class-conditional one (its jobs refuse) and a text-to-image one whose `sample` job answers
 * with made-up token counts and a small placeholder grid, so the prompt flow can be exercised without an engine.
 */
import type { ComponentRow, JobEvent, JobInfo, ModelInfo, Result, SampleResult, StudioClient } from '../../../src-main/contract/api';

const noEngine = async (): Promise<Result<never>> => ({ ok: false, error: { code: 'NO_ENGINE', message: 'no engine is connected (mock host)' } });

const T2I = 'sd15-mock';
/** A 96x96 RGB PNG in four colours (red, blue / green, yellow): the placeholder grid. */
const PLACEHOLDER_PNG =
  'iVBORw0KGgoAAAANSUhEUgAAAGAAAABgCAIAAABt+uBvAAAApklEQVR42u3QMQ0AIAwAMJRwT8TEIgcRu9GBjS1pUgVdFdFKZLWyBAkSJEiQIEGCBAkSJEiQIEGCBAkSJEiQIEGCBAkSJEiQIEGCBAkSJEiQIEGCBAkSJEiQIEGCBAkSJGhIUJxs5d3diiBBggQJEiRIkCBBggQJEiRIkCBBggQJEiRIkCBBggQJEiRIkCBBggQJEiRIkCBBggQJEiRIkCBBggQNCfqm2h7CqDjyEgAAAABJRU5ErkJggg==';

const io = (name: string, type: string, shape: (number | string)[]) => ({ name, type, shape });
const component = (folder: string, role: ComponentRow['role'], declared: [string, string], files: string[], onnx: ComponentRow['onnx'] = null): ComponentRow => ({ name: folder, folder, role, declared, present: true, files, onnx });

function classInfo(): ModelInfo {
  return {
    path: '/mock/models/tiny-mnist', className: 'mock', family: null, conditioning: 'class', sampleShape: [1, 28, 28], imageShape: [1, 28, 28], latentShape: null,
    convention: null, components: null, text: null, vae: null, defaults: { sampler: 'ddim', guidance: 2 }, quantizeUnavailable: null,
    classes: [], scheduler: { trainSteps: 1000, betaSchedule: 'linear', prediction: 'epsilon' },
    unet: { bytes: 0, parameters: 0, nodes: 0, ops: {} }, layers: [], attention: 0, temporalFeatures: [], shortcutSplits: [], variant: null,
  };
}

function t2iInfo(): ModelInfo {
  return {
    path: `/mock/models/${T2I}`, className: 'StableDiffusionPipeline', family: { name: 'Stable Diffusion 1.x/2.x', task: 'text-to-image', sampled: true }, conditioning: 'text',
    sampleShape: [4, 16, 16], imageShape: [3, 128, 128], latentShape: [4, 16, 16],
    convention: { name: 'Optimum', why: 'int64 input_ids, a config.json beside each graph, out_sample' },
    components: [
      component('tokenizer', 'tokenizer', ['transformers', 'CLIPTokenizer'], ['merges.txt', 'special_tokens_map.json', 'tokenizer_config.json', 'vocab.json']),
      component('text_encoder', 'conditioner', ['transformers', 'CLIPTextModel'], ['config.json', 'model.onnx'], {
        bytes: 200_464, externalData: null,
        inputs: [io('input_ids', 'int64', ['batch_size', 'sequence_length'])],
        outputs: [io('last_hidden_state', 'float32', ['batch_size', 'sequence_length', 32]), io('pooler_output', 'float32', ['batch_size', 32])],
      }),
      component('unet', 'denoiser', ['diffusers', 'UNet2DConditionModel'], ['config.json', 'model.onnx'], {
        bytes: 1_003_379, externalData: null,
        inputs: [io('sample', 'float32', ['batch_size', 4, 'height', 'width']), io('timestep', 'float32', []), io('encoder_hidden_states', 'float32', ['batch_size', 'sequence_length', 32])],
        outputs: [io('out_sample', 'float32', ['batch_size', 4, 'height', 'width'])],
      }),
      component('vae_decoder', 'latent codec', ['diffusers', 'AutoencoderKL'], ['config.json', 'model.onnx'], {
        bytes: 102_021, externalData: null,
        inputs: [io('latent_sample', 'float32', ['batch_size', 4, 'latent_height', 'latent_width'])],
        outputs: [io('sample', 'float32', ['batch_size', 3, 'latent_height * 8', 'latent_width * 8'])],
      }),
      component('scheduler', 'scheduler', ['diffusers', 'PNDMScheduler'], ['scheduler_config.json']),
    ],
    text: {
      kind: 'clip', encoders: [{ component: 'text_encoder', input: 'input_ids', idsType: 'int64', hidden: 'last_hidden_state', pooled: null }],
      tokenizers: [{ folder: 'tokenizer', source: 'vocab.json+merges.txt', vocab: 546, maxLength: 77, padId: 545 }], width: 32, zerosForEmptyNegative: false,
    },
    vae: { factor: 8, scalingFactor: 0.18215, shiftFactor: 0, dtype: 'float32', source: 'vae_decoder/config.json', sizeMultiple: 64 },
    defaults: { sampler: 'pndm', guidance: 7.5 },
    quantizeUnavailable: null,
    calibrationPrompts: ['a red seven on a blue background', 'the digit two in green on black', 'a yellow number 4 on a magenta background'],
    textFeatures: [],
    quantizableComponents: ['text_encoder', 'vae_decoder'],
    classes: [], scheduler: { trainSteps: 1000, betaSchedule: 'scaled_linear', prediction: 'epsilon' },
    unet: { bytes: 1_003_379, parameters: 144_800, nodes: 4264, ops: {} }, layers: [], attention: 0, temporalFeatures: [], shortcutSplits: [], variant: null,
  };
}

export function mockHost(): StudioClient {
  const listeners = new Set<(e: JobEvent) => void>();
  const jobs: JobInfo[] = [];
  const emit = (e: JobEvent) => listeners.forEach((l) => l(e));
  return {
    async listModels() {
      return {
        ok: true,
        value: [
          { id: 'tiny-mnist', path: '/mock/models/tiny-mnist', kind: 'diffusion-pipeline', title: 'tiny-mnist (mock)', summary: 'Mock entry: no engine is connected.', classes: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'], sampleShape: [1, 28, 28] },
          { id: T2I, path: `/mock/models/${T2I}`, kind: 'diffusion-pipeline', title: 'Stable Diffusion 1.5 layout (mock)', summary: 'Mock text-to-image entry: no engine is connected; samples are placeholders.', classes: [], sampleShape: [3, 128, 128] },
        ],
      };
    },
    async hostInfo() {
      return { ok: true, value: { shell: 'mock', version: '0', providers: [] } };
    },
    async modelInfo(model) {
      return { ok: true, value: model === T2I || model.endsWith(`/${T2I}`) ? t2iInfo() : classInfo() };
    },
    async listPresets() {
      return { ok: true, value: [] };
    },
    async startJob(spec) {
      if (spec.kind !== 'sample' || !(spec.model === T2I || spec.model.endsWith(`/${T2I}`))) return noEngine();
      const id = `sample-mock-${jobs.length + 1}`;
      const job: JobInfo = { id, kind: 'sample', model: spec.model, output: null, label: `sample ${T2I} (mock): ${spec.prompts.length} prompts × ${spec.seeds.length} seeds`, state: 'running', progress: null, startedAt: Date.now(), endedAt: null, result: null, error: null };
      jobs.push(job);
      const info = t2iInfo();
      // whitespace-separated words stand in for tokens here: the real host counts BPE tokens
      const limit = info.text!.tokenizers[0]!.maxLength - 2;
      const prompts = spec.prompts.map((prompt) => {
        const words = prompt.split(/\s+/).filter(Boolean);
        return { prompt, negative: spec.negativePrompt ?? '', tokens: [words.length], truncated: words.length > limit, dropped: words.slice(limit).join(' ') };
      });
      const result: SampleResult = {
        kind: 'sample', files: { grid: 'grid.png', record: 'samples.json' }, prompts, tokenLimits: [limit], seeds: spec.seeds,
        settings: { steps: spec.steps, sampler: spec.sampler ?? info.defaults.sampler, guidance: spec.guidance ?? info.defaults.guidance },
        imageShape: [3, spec.height ?? 128, spec.width ?? 128],
        warnings: prompts.filter((p) => p.truncated).map((p) => `prompt truncated to ${limit} tokens (it has ${p.tokens[0]}): dropped "${p.dropped}"`),
        provider: 'mock', seconds: 0,
      };
      setTimeout(() => {
        emit({ jobId: id, kind: 'started', job: { ...job } });
        Object.assign(job, { state: 'done', result, endedAt: Date.now() });
        emit({ jobId: id, kind: 'done', result });
      }, 0);
      return { ok: true, value: { jobId: id } };
    },
    cancelJob: noEngine,
    async listJobs() {
      return { ok: true, value: [...jobs] };
    },
    getCalibration: noEngine,
    variantLayers: noEngine,
    tweakVariant: noEngine,
    revealJob: noEngine,
    pickFolder: noEngine,
    async readArtifact(jobId, file) {
      if (!jobs.some((j) => j.id === jobId) || file !== 'grid.png') return noEngine();
      return { ok: true, value: { mime: 'image/png', base64: PLACEHOLDER_PNG, bytes: 223 } };
    },
    onEvent(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
