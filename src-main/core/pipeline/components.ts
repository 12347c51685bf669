/**
 * What a diffusers pipeline folder is made of, read the way diffusers and Optimum lay it out: the family from
 * model_index.json's `_class_name`, the components it names (a `vae` is the `vae_decoder/` and `vae_encoder/` folders
 * in ONNX exports), each ONNX component's inputs and outputs as onnxruntime reports them, and which of the I/O
 * conventions in the wild the graphs follow (the legacy diffusers script, Optimum, the TensorRT / onnxruntime demos).
 * `dq info` shows this for every folder, including families the studio cannot sample yet.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DqError } from '../errors.js';
import { readJson } from '../fsutil.js';
import { Session, type IoMeta } from '../runtime/onnx.js';

export type Role = 'conditioner' | 'tokenizer' | 'denoiser' | 'latent codec' | 'scheduler' | 'other';
export type Convention = 'legacy diffusers script' | 'Optimum' | 'TensorRT / onnxruntime demo' | 'DQ Studio' | 'unknown';

export interface Family {
  /** A short name, e.g. 'Stable Diffusion 1.x/2.x'. */
  name: string;
  task: 'class-conditional or unconditional image' | 'text-to-image' | 'text-to-video' | 'image-to-video';
  /** Whether the studio samples this family today. */
  sampled: boolean;
}

const FAMILIES: Record<string, Family> = {
  DDPMPipeline: { name: 'DDPM', task: 'class-conditional or unconditional image', sampled: true },
  DDIMPipeline: { name: 'DDIM', task: 'class-conditional or unconditional image', sampled: true },
  DQClassConditionalPipeline: { name: 'DQ Studio class-conditional (pixel space)', task: 'class-conditional or unconditional image', sampled: true },
  DQStableDiffusionTopologyPipeline: { name: "DQ Studio fixture: SD 1.5's UNet topology with a fixed text context", task: 'class-conditional or unconditional image', sampled: true },
  StableDiffusionPipeline: { name: 'Stable Diffusion 1.x/2.x', task: 'text-to-image', sampled: true },
  OnnxStableDiffusionPipeline: { name: 'Stable Diffusion 1.x/2.x (legacy ONNX)', task: 'text-to-image', sampled: true },
  StableDiffusionXLPipeline: { name: 'Stable Diffusion XL', task: 'text-to-image', sampled: true },
  LatentConsistencyModelPipeline: { name: 'Latent Consistency Model', task: 'text-to-image', sampled: true },
  StableDiffusion3Pipeline: { name: 'Stable Diffusion 3 (DiT, flow matching)', task: 'text-to-image', sampled: true },
  FluxPipeline: { name: 'Flux (DiT, flow matching)', task: 'text-to-image', sampled: true },
  PixArtAlphaPipeline: { name: 'PixArt-α (DiT)', task: 'text-to-image', sampled: true },
  PixArtSigmaPipeline: { name: 'PixArt-Σ (DiT)', task: 'text-to-image', sampled: true },
  SanaPipeline: { name: 'Sana (DiT)', task: 'text-to-image', sampled: false },
  StableVideoDiffusionPipeline: { name: 'Stable Video Diffusion', task: 'image-to-video', sampled: false },
  TextToVideoSDPipeline: { name: 'text-to-video (UNet3D)', task: 'text-to-video', sampled: true },
  AnimateDiffPipeline: { name: 'AnimateDiff', task: 'text-to-video', sampled: false },
  CogVideoXPipeline: { name: 'CogVideoX (DiT)', task: 'text-to-video', sampled: false },
  LTXPipeline: { name: 'LTX-Video (DiT)', task: 'text-to-video', sampled: false },
  WanPipeline: { name: 'Wan (DiT)', task: 'text-to-video', sampled: false },
};

/** The family a model_index.json `_class_name` names, or null for a class this table does not know. */
export function familyOf(className: string | undefined): Family | null {
  return className ? (FAMILIES[className] ?? null) : null;
}

export interface ComponentInfo {
  /** The model_index.json key (e.g. 'text_encoder_2'), or the folder for the VAE halves. */
  name: string;
  folder: string;
  role: Role;
  /** [library, class] from model_index.json. */
  declared: [string | null, string | null] | null;
  present: boolean;
  files: string[];
  /** An ONNX component's graph, its weights file outside the graph (if any) and its I/O. */
  onnx?: { bytes: number; externalData: string | null; config: boolean; inputs: IoMeta[]; outputs: IoMeta[] };
}

export interface ComponentsInfo {
  dir: string;
  className: string;
  family: Family | null;
  components: ComponentInfo[];
  convention: Convention;
  /** Why: the facts the convention was read from. */
  conventionWhy: string;
}

function roleOf(name: string): Role {
  if (name.startsWith('tokenizer')) return 'tokenizer';
  if (name.startsWith('text_encoder') || name === 'image_encoder') return 'conditioner';
  if (name === 'unet' || name === 'transformer' || name === 'prior') return 'denoiser';
  if (name.startsWith('vae')) return 'latent codec';
  if (name === 'scheduler') return 'scheduler';
  return 'other';
}

/** Reads model_index.json and the component folders; with `io`, opens each ONNX graph for its inputs and outputs. */
export async function describeComponents(dir: string, opts: { io?: boolean } = {}): Promise<ComponentsInfo> {
  const abs = resolve(dir);
  const indexPath = join(abs, 'model_index.json');
  if (!existsSync(indexPath)) throw new DqError('NOT_A_PIPELINE', `${dir} is not a diffusion pipeline: model_index.json is missing (expected the diffusers layout)`);
  const raw = readJson(indexPath, 'model_index.json');
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new DqError('BAD_CONFIG', `${indexPath}: expected a JSON object`);
  const o = raw as Record<string, unknown>;
  const className = typeof o._class_name === 'string' ? o._class_name : 'unknown';
  const declared = new Map<string, [string | null, string | null]>();
  for (const [k, v] of Object.entries(o)) {
    if (k.startsWith('_') || !Array.isArray(v) || v.length !== 2) continue;
    if (!v.every((s) => s === null || typeof s === 'string')) continue;
    if (v[0] === null && v[1] === null) continue; // a component the pipeline does without (safety checker, ...)
    declared.set(k, v as [string | null, string | null]);
  }
  // ONNX exports split the VAE into its halves, in folders model_index.json does not name
  const folders = new Set<string>([...declared.keys()].flatMap((k) => (k === 'vae' ? ['vae_decoder', 'vae_encoder'] : [k])));
  for (const f of ['vae_decoder', 'vae_encoder']) if (existsSync(join(abs, f))) folders.add(f);
  const components: ComponentInfo[] = [];
  for (const folder of folders) {
    const path = join(abs, folder);
    const present = existsSync(path) && statSync(path).isDirectory();
    const files = present ? readdirSync(path).sort() : [];
    const c: ComponentInfo = { name: folder, folder, role: roleOf(folder), declared: declared.get(folder) ?? (folder.startsWith('vae_') ? (declared.get('vae') ?? null) : null), present, files };
    if (files.includes('model.onnx')) {
      const model = join(path, 'model.onnx');
      const external = files.find((f) => f === 'model.onnx_data' || f === 'weights.pb') ?? null;
      let inputs: IoMeta[] = [];
      let outputs: IoMeta[] = [];
      if (opts.io) {
        const s = await Session.create(model, 'cpu', { label: `${dir}: ${folder}/model.onnx` });
        inputs = s.inputs;
        outputs = s.outputs;
        await s.release();
      }
      c.onnx = { bytes: statSync(model).size + (external ? statSync(join(path, external)).size : 0), externalData: external, config: files.includes('config.json'), inputs, outputs };
    }
    components.push(c);
  }
  const order: Role[] = ['tokenizer', 'conditioner', 'denoiser', 'latent codec', 'scheduler', 'other'];
  components.sort((a, b) => order.indexOf(a.role) - order.indexOf(b.role) || a.name.localeCompare(b.name));
  const { convention, why } = conventionOf(className, components);
  return { dir: abs, className, family: familyOf(className), components, convention, conventionWhy: why };
}

/** Which I/O convention the graphs follow (real-pipelines.md 1.0): input/output names and dtypes, external data files. */
export function conventionOf(className: string, components: ComponentInfo[]): { convention: Convention; why: string } {
  const io = (name: string) => components.find((c) => c.name === name)?.onnx;
  const has = (m: IoMeta[] | undefined, name: string) => (m ?? []).find((x) => x.name === name);
  const unet = io('unet') ?? io('transformer');
  const text = io('text_encoder');
  const ids = has(text?.inputs, 'input_ids');
  const facts: string[] = [];
  if (has(unet?.outputs, 'latent') || has(text?.outputs, 'text_embeddings') || has(io('vae_decoder')?.outputs, 'images')) {
    return { convention: 'TensorRT / onnxruntime demo', why: 'latent / text_embeddings / images as names' };
  }
  if (ids?.type === 'int32') facts.push('int32 input_ids');
  if (unet?.externalData === 'weights.pb') facts.push('weights in weights.pb');
  if (className.startsWith('Onnx')) facts.push(`_class_name ${className}`);
  if (facts.length) return { convention: 'legacy diffusers script', why: facts.join(', ') };
  if (ids?.type === 'int64') facts.push('int64 input_ids');
  if (components.some((c) => c.onnx?.externalData === 'model.onnx_data')) facts.push('weights in model.onnx_data');
  if (components.some((c) => c.onnx?.config)) facts.push("a config.json beside each graph");
  if (has(unet?.outputs, 'out_sample')) facts.push('out_sample');
  if (facts.length) return { convention: 'Optimum', why: facts.join(', ') };
  if (familyOf(className)?.sampled) return { convention: 'DQ Studio', why: 'a pixel-space denoiser with sample / timestep (/ class_labels)' };
  return { convention: 'unknown', why: 'none of the known names or dtypes' };
}

export function formatComponents(i: ComponentsInfo): string {
  const shape = (m: IoMeta) => (m.shape ? `[${m.shape.join(', ')}]` : '');
  const lines = [
    `pipeline   ${i.dir}`,
    `class      ${i.className}${i.family ? ` (${i.family.name}, ${i.family.task})` : ' (a pipeline class DQ Studio does not know)'}`,
    `convention ${i.convention} (${i.conventionWhy})`,
  ];
  for (const c of i.components) {
    const decl = c.declared ? ` ${c.declared.filter(Boolean).join('.')}` : '';
    lines.push(`${c.role.padEnd(12)} ${c.name}${decl}${c.present ? '' : ' (MISSING: no folder)'}${c.onnx ? `, ${(c.onnx.bytes / 1e6).toFixed(2)} MB${c.onnx.externalData ? ` (weights in ${c.onnx.externalData})` : ''}` : c.files.length ? `: ${c.files.join(', ')}` : ''}`);
    for (const m of c.onnx?.inputs ?? []) lines.push(`  input    ${m.name} ${m.type} ${shape(m)}`);
    for (const m of c.onnx?.outputs ?? []) lines.push(`  output   ${m.name} ${m.type} ${shape(m)}`);
  }
  return lines.join('\n');
}
