/**
 * The text conditioner of a text-to-image pipeline: its tokenizer(s) and text encoder(s), and what the denoiser
 * reads from them, as diffusers computes it:
 *   - SD 1.x/2.x (and LCM, and the legacy ONNX pipeline): `last_hidden_state` of `text_encoder`;
 *   - SDXL: the penultimate hidden states of both encoders concatenated on the channel axis, plus the pooled
 *     projection (`text_embeds`) of `text_encoder_2`; an empty negative prompt is zeros when the pipeline says
 *     `force_zeros_for_empty_prompt` (the default).
 *   - SD3: the penultimate hidden states of its CLIP encoders (text_encoder, text_encoder_2 where present)
 *     concatenated on the channel axis and zero-padded to the transformer's joint attention width, then T5's tokens
 *     (zeros of max_sequence_length tokens when the pipeline has no text_encoder_3, as diffusers does); the pooled
 *     projections (`text_embeds`) of the CLIP encoders concatenated.
 *   - PixArt: T5's (`text_encoder`) last_hidden_state per token and its attention mask (1 up to and including </s>),
 *     which the transformer takes as encoder_attention_mask (the ONNX T5 takes input_ids only, so its states are
 *     those of the unmasked sequence).
 *   - Flux: T5's (`text_encoder_2`) last_hidden_state per token, CLIP's (`text_encoder`) pooler_output as the pooled
 *     vector (CLIP's per-token states are not read).
 * Each prompt is encoded once (per conditioner: a small cache keyed by the text); the denoiser's feeds refer to
 * encoded prompt pairs (prompt, negative prompt) by id, so a batch's rows are just ids.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DqError } from '../errors.js';
import type { IoMeta, Session } from '../runtime/onnx.js';
import { asFloat32, idsFeed, isFloatType } from './dtypes.js';
import { loadTokenizer, type ClipTokenizer } from './tokenizer.js';

export type TextKind = 'clip' | 'sdxl' | 'sd3' | 'flux' | 'pixart';

export interface TextEncoderSpec {
  /** 'text_encoder' or 'text_encoder_2'. */
  component: string;
  path: string;
  input: string;
  idsType: 'int32' | 'int64';
  /** The output the denoiser reads per token. */
  hidden: string;
  /** The pooled output (SDXL's text_embeds of encoder 2), or null when not used. */
  pooled: string | null;
  /** Width of `hidden` when the graph states it. */
  width: number | null;
  /** Only the pooled output is read (Flux's CLIP). */
  pooledOnly?: boolean;
  /** Its tokens follow the others' instead of widening them (SD3's T5). */
  sequence?: boolean;
  pooledWidth: number | null;
}

/** The per-token states and pooled vector of one text (float32, [seq * width] and [pooledWidth]). */
export interface EncodedText {
  hidden: Float32Array;
  seq: number;
  width: number;
  pooled: Float32Array | null;
  /** PixArt: 1 for the tokens up to and including </s>, 0 for the padding. */
  mask?: Uint8Array;
}

export interface TokenReport {
  /** Tokens of the prompt before truncation (BOS/EOS not counted), per tokenizer. */
  tokens: number[];
  truncated: boolean;
  /** What truncation dropped ('' when nothing). */
  dropped: string;
}

export interface PromptPair {
  prompt: string;
  negative: string;
  cond: EncodedText;
  uncond: EncodedText;
  report: TokenReport;
}

/** How big the cache of encoded texts grows before the oldest are forgotten. */
const MAX_CACHED_TEXTS = 512;

const HIDDEN_NAMES = ['last_hidden_state', 'text_embeddings'];

/** Finds the encoder's ids input and the outputs the family reads; says what is missing. */
export function resolveEncoder(component: string, path: string, inputs: IoMeta[], outputs: IoMeta[], kind: TextKind, pooled: boolean): TextEncoderSpec {
  const where = `${component}/model.onnx`;
  const ids = inputs.find((m) => m.name === 'input_ids') ?? inputs.find((m) => m.type === 'int32' || m.type === 'int64');
  if (!ids || (ids.type !== 'int32' && ids.type !== 'int64')) {
    throw new DqError('BAD_MODEL', `${where}: no token-ids input (int32 or int64 input_ids); its inputs are ${inputs.map((m) => `${m.name} ${m.type}`).join(', ') || 'none'}`);
  }
  const others = inputs.filter((m) => m !== ids);
  if (others.length) throw new DqError('BAD_MODEL', `${where}: unsupported extra inputs ${others.map((m) => m.name).join(', ')} (only input_ids is fed)`);
  let hidden: IoMeta | undefined;
  if (kind === 'sdxl' || kind === 'sd3') {
    // hidden_states[-2] of transformers = output hidden_states.{N-1} of an Optimum export (hidden_states.0..N);
    // the TensorRT demo exports the penultimate layer itself as `hidden_states`
    const numbered = outputs.map((m) => /^hidden_states\.(\d+)$/.exec(m.name)).filter((m): m is RegExpExecArray => m !== null).map((m) => Number(m[1]));
    if (numbered.length >= 2) {
      const n = Math.max(...numbered);
      hidden = outputs.find((m) => m.name === `hidden_states.${n - 1}`);
    } else hidden = outputs.find((m) => m.name === 'hidden_states');
    if (!hidden) {
      throw new DqError('BAD_MODEL', `${where}: an ${kind === 'sd3' ? 'SD3' : 'SDXL'} text encoder must output its hidden states (hidden_states.0..N, as Optimum exports ${kind === 'sd3' ? 'SD3' : 'SDXL'}); its outputs are ${outputs.map((m) => m.name).join(', ')}`);
    }
  } else {
    hidden = outputs.find((m) => HIDDEN_NAMES.includes(m.name)) ?? outputs.find((m) => (m.shape?.length ?? 3) === 3);
    if (!hidden) throw new DqError('BAD_MODEL', `${where}: no per-token output (last_hidden_state); its outputs are ${outputs.map((m) => m.name).join(', ')}`);
  }
  let pooledOut: IoMeta | undefined;
  if (pooled) {
    pooledOut = outputs.find((m) => m.name === 'text_embeds') ?? outputs.find((m) => m.name === 'pooler_output');
    if (!pooledOut) throw new DqError('BAD_MODEL', `${where}: no pooled output (text_embeds) for the denoiser's pooled text input; its outputs are ${outputs.map((m) => m.name).join(', ')}`);
  }
  for (const m of [hidden, pooledOut]) {
    if (m && !isFloatType(m.type)) throw new DqError('BAD_MODEL', `${where}: output '${m.name}' has type ${m.type}; float32 or float16 expected`);
  }
  const last = (m: IoMeta | undefined) => {
    const d = m?.shape?.[m.shape.length - 1];
    return typeof d === 'number' && d > 0 ? d : null;
  };
  return { component, path, input: ids.name, idsType: ids.type, hidden: hidden.name, pooled: pooledOut?.name ?? null, width: last(hidden), pooledWidth: last(pooledOut) };
}

/** The tokenizer folder of text encoder k: `tokenizer` for `text_encoder`, `tokenizer_2` for `text_encoder_2`. */
export function tokenizerFolder(component: string): string {
  return component.replace('text_encoder', 'tokenizer');
}

/** Loads a pipeline's tokenizer for an encoder, with the reason in one line when its files are missing. */
export function loadPipelineTokenizer(dir: string, label: string, component: string): ClipTokenizer {
  const folder = tokenizerFolder(component);
  const path = join(dir, folder);
  if (!existsSync(path)) throw new DqError('MISSING_COMPONENT', `${label}: component '${folder}' is missing (no ${folder}/ folder beside ${component}/)`);
  try {
    return loadTokenizer(path);
  } catch (e) {
    if (e instanceof DqError) throw new DqError(e.code, `${label}: ${folder}: ${e.message.replace(/^tokenizer folder not found: .*$/, 'not found')}`, e.detail);
    throw e;
  }
}

export class TextConditioner {
  private readonly texts = new Map<string, EncodedText>();
  private readonly pairs = new Map<number, PromptPair>();
  private readonly pairIds = new Map<string, number>();
  private readonly pairKeys = new Map<number, string>();
  private nextId = 0;

  constructor(
    readonly kind: TextKind,
    readonly tokenizers: ClipTokenizer[],
    readonly encoders: TextEncoderSpec[],
    private readonly sessions: () => Promise<Session[]>,
    /** SDXL: an empty negative prompt is zeros rather than the encoded empty text. */
    readonly zerosForEmptyNegative: boolean,
    /** SD3: the transformer's text width (CLIP states zero-padded to it) and the zero tokens in T5's place. */
    readonly sd3?: { width: number; t5Tokens: number },
  ) {}

  /** Width of the CLIP states the encoders give (summed for SDXL and SD3), when the graphs state it. */
  get width(): number | null {
    const w = this.encoders.filter((e) => !e.pooledOnly && !e.sequence).map((e) => e.width);
    return w.every((x) => x !== null) ? w.reduce((a, b) => a! + b!, 0) : null;
  }

  /** Tokenizes a prompt with every tokenizer: token counts and what truncation dropped. */
  report(prompt: string): TokenReport {
    const enc = this.tokenizers.map((t) => t.encode(prompt));
    const dropped = enc.find((e) => e.truncated)?.droppedText ?? '';
    return { tokens: enc.map((e) => e.tokenCount), truncated: enc.some((e) => e.truncated), dropped };
  }

  /**
   * Ids of the (prompt, negative) pairs, encoding each text once. Without `guided` the negative branch is never run
   * (guidance <= 1, LCM): it is not encoded. Every id one call returns stays valid until the next call: the oldest
   * pairs are forgotten before a call, never during one (a run with more distinct prompts than the cache holds).
   */
  async ids(prompts: string[], negatives: string[], guided = true): Promise<number[]> {
    if (negatives.length !== prompts.length) throw new Error('one negative prompt per prompt');
    for (const oldest of [...this.pairs.keys()].slice(0, Math.max(0, this.pairs.size - MAX_CACHED_TEXTS))) {
      this.pairs.delete(oldest);
      this.pairIds.delete(this.pairKeys.get(oldest)!);
      this.pairKeys.delete(oldest);
    }
    const out: number[] = [];
    for (let i = 0; i < prompts.length; i++) {
      const negative = guided ? negatives[i]! : '';
      const key = `${prompts[i]}\0${negative}\0${guided ? 'g' : 'u'}`;
      let id = this.pairIds.get(key);
      if (id === undefined) {
        const prompt = prompts[i]!;
        const cond = await this.encode(prompt);
        const uncond = !guided ? cond : negative === '' && this.zerosForEmptyNegative ? zerosLike(cond) : await this.encode(negative);
        id = this.nextId++;
        this.pairs.set(id, { prompt, negative, cond, uncond, report: this.report(prompt) });
        this.pairIds.set(key, id);
        this.pairKeys.set(id, key);
      }
      out.push(id);
    }
    return out;
  }

  pair(id: number): PromptPair {
    const p = this.pairs.get(id);
    if (!p) throw new Error(`no encoded prompt with id ${id}`);
    return p;
  }

  /** One text through every encoder: the hidden states concatenated on the channel axis, the pooled vector. */
  async encode(text: string): Promise<EncodedText> {
    const hit = this.texts.get(text);
    if (hit) return hit;
    const sessions = await this.sessions();
    let tail: { data: Float32Array; seq: number; width: number } | null = null;
    let mask: Uint8Array | undefined;
    const parts: { data: Float32Array; seq: number; width: number }[] = [];
    // the pooled outputs the denoiser reads, concatenated (SDXL: encoder 2's; SD3: every CLIP's; Flux: CLIP's)
    const pooledParts: Float32Array[] = [];
    for (let k = 0; k < this.encoders.length; k++) {
      const spec = this.encoders[k]!;
      const tok = this.tokenizers[k]!.encode(text);
      const ids = tok.ids;
      if (this.kind === 'pixart') mask = Uint8Array.from(ids, (_, i) => (i <= tok.eosIndex ? 1 : 0));
      const fetch = [...(spec.pooledOnly ? [] : [spec.hidden]), ...(spec.pooled ? [spec.pooled] : [])];
      const res = await sessions[k]!.run({ [spec.input]: idsFeed(spec.idsType, ids, [1, ids.length]) }, fetch);
      if (spec.pooled) pooledParts.push(asFloat32(res[spec.pooled]!, `${spec.component}/model.onnx: output '${spec.pooled}'`));
      if (spec.pooledOnly) continue;
      const h = res[spec.hidden]!;
      if (h.dims.length !== 3 || h.dims[0] !== 1) throw new DqError('BAD_MODEL', `${spec.component}/model.onnx: output '${spec.hidden}' has shape [${h.dims.join(', ')}]; [1, tokens, width] expected`);
      const part = { data: asFloat32(h, `${spec.component}/model.onnx: output '${spec.hidden}'`), seq: h.dims[1]!, width: h.dims[2]! };
      if (spec.sequence) {
        if (this.sd3 && part.width !== this.sd3.width) throw new DqError('BAD_MODEL', `${spec.component}/model.onnx: its ${part.width} channels are not the transformer's text width ${this.sd3.width}`);
        tail = part;
      } else parts.push(part);
    }
    let pooled: Float32Array | null = null;
    if (pooledParts.length) {
      pooled = new Float32Array(pooledParts.reduce((a, v) => a + v.length, 0));
      let at = 0;
      for (const v of pooledParts) {
        pooled.set(v, at);
        at += v.length;
      }
    }
    const clipSeq = parts[0]!.seq;
    if (parts.some((p) => p.seq !== clipSeq)) throw new DqError('BAD_MODEL', `the text encoders give different token counts (${parts.map((p) => p.seq).join(' vs ')})`);
    const sum = parts.reduce((s, p) => s + p.width, 0);
    if (this.sd3 && sum > this.sd3.width) throw new DqError('BAD_MODEL', `the text encoders' ${sum} channels do not fit the transformer's text width ${this.sd3.width}`);
    const width = this.sd3?.width ?? sum;
    // SD3: T5's tokens follow the CLIP tokens; without a T5 encoder they are zeros
    const seq = clipSeq + (tail ? tail.seq : (this.sd3?.t5Tokens ?? 0));
    const hidden = new Float32Array(seq * width);
    let off = 0;
    for (const p of parts) {
      for (let s = 0; s < clipSeq; s++) hidden.set(p.data.subarray(s * p.width, (s + 1) * p.width), s * width + off);
      off += p.width;
    }
    if (tail) hidden.set(tail.data, clipSeq * width);
    const enc: EncodedText = { hidden, seq, width, pooled, ...(mask ? { mask } : {}) };
    this.texts.set(text, enc);
    if (this.texts.size > MAX_CACHED_TEXTS) this.texts.delete(this.texts.keys().next().value!);
    return enc;
  }
}

function zerosLike(e: EncodedText): EncodedText {
  return { hidden: new Float32Array(e.hidden.length), seq: e.seq, width: e.width, pooled: e.pooled ? new Float32Array(e.pooled.length) : null, ...(e.mask ? { mask: e.mask } : {}) };
}

/**
 * LCM's guidance embedding (diffusers' get_guidance_scale_embedding): w' = 1000 (w - 1); half the channels
 * sin(w' f_k), half cos(w' f_k), f_k = exp(-k ln(10000) / (half - 1)); an odd width gets a trailing zero.
 */
export function guidanceEmbedding(guidance: number, dim: number): Float32Array {
  const w = (guidance - 1) * 1000;
  const half = Math.floor(dim / 2);
  const out = new Float32Array(dim);
  const step = Math.log(10000) / Math.max(1, half - 1);
  for (let k = 0; k < half; k++) {
    const a = w * Math.exp(-k * step);
    out[k] = Math.sin(a);
    out[half + k] = Math.cos(a);
  }
  return out;
}
