/**
 * CLIP tokenizers of text-to-image pipelines (diffusers `tokenizer/`, `tokenizer_2/` folders), loaded from
 * vocab.json + merges.txt (+ special_tokens_map.json, tokenizer_config.json, added_tokens.json) or from tokenizer.json.
 *
 * The BPE itself runs in @huggingface/tokenizers, on a tokenizer.json object built here in memory (CLIP's: NFC,
 * whitespace collapsed, lowercase; CLIP's split regex; byte-level symbols; BPE with end-of-word suffix "</w>").
 * Truncation and padding are ours, as diffusers asks for them: BOS + at most model_max_length-2 tokens + EOS, padded to
 * model_max_length with the pad token's id (49407 "<|endoftext|>" in SD 1.x, 0 "!" in SD 2.x and SDXL's tokenizer_2).
 *
 * Which semantics. HF has three CLIP tokenizers that differ on edge cases:
 *  - slow CLIPTokenizer (transformers v4) with the optional `ftfy` package: ftfy.fix_text first (curly quotes made
 *    straight, full-width letters narrowed, ligatures split, mojibake repaired, ...);
 *  - slow CLIPTokenizer without ftfy: BERT's BasicTokenizer cleaning (NUL, U+FFFD and control/format characters
 *    dropped, CJK ideographs spaced apart so each is its own piece), then the same BPE;
 *  - fast tokenizer / tokenizer.json (transformers v5's CLIPTokenizer): normalizer only; zero-width and control
 *    characters become byte tokens, a run of CJK ideographs is one piece.
 * Diffusers and Optimum's ONNX pipelines load the slow CLIPTokenizer, and ftfy is not a dependency of either (not in
 * diffusers' setup.py install_requires nor extras), so the common case is the second one; that is what this module
 * gives, for both kinds of folder: the cleaning is applied before the library sees the text, and a tokenizer.json contributes its vocabulary, merges and added tokens (its own
 * normalizer and pre-tokenizer are not read: a CLIP tokenizer.json has exactly the ones built here). On the 207 test
 * prompts the fast semantics would differ on 13: CJK runs, emoji joined by U+200D, zero-width/BOM/soft-hyphen/control
 * characters and U+FFFD. Special and added tokens are matched in the raw text first, as in the slow tokenizer: that
 * is why every "!" of a prompt is id 0 when "!" is the pad token (diffusers#4153). The slow tokenizer also recognises
 * "<|startoftext|>"/"<|endoftext|>" spelt in upper case (its regex runs on lowercased text); they are matched after
 * normalization here, which agrees except right after a run of punctuation. `single_word` added tokens are not honoured (CLIP tokenizers have none).
 * Checked against tools/clip_tokenizer_reference.py, an independent Python implementation of the slow semantics.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { DqError } from '../errors.js';
import { readJson } from '../fsutil.js';

export const BOS_TOKEN = '<|startoftext|>';
export const EOS_TOKEN = '<|endoftext|>';
const EOW = '</w>';
/** transformers slices merges.txt to the merges CLIP's 49,408-token vocabulary was built from. */
const MAX_MERGES = 49152 - 256 - 2;
/** CLIP text encoders have 77 positions; used when tokenizer_config.json gives no (or transformers' "unbounded") length. */
export const DEFAULT_MAX_LENGTH = 77;
const CLIP_SPLIT = "'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";
const SPECIAL_KEYS = ['bos_token', 'eos_token', 'unk_token', 'pad_token'] as const;
type SpecialKey = (typeof SPECIAL_KEYS)[number];
const SPECIAL_DEFAULTS: Record<SpecialKey, string> = { bos_token: BOS_TOKEN, eos_token: EOS_TOKEN, unk_token: EOS_TOKEN, pad_token: EOS_TOKEN };

export interface TokenizedPrompt {
  /** maxLength ids: BOS, the first maxLength-2 tokens of the prompt, EOS, then the pad id. */
  ids: Int32Array;
  /** Tokens the prompt has before truncation (BOS and EOS not counted). */
  tokenCount: number;
  /** Position of EOS in `ids`. */
  eosIndex: number;
  truncated: boolean;
  /** The text of the tokens truncation cut ('' when none): name it in a warning. */
  droppedText: string;
}

export interface ClipTokenizer {
  readonly dir: string;
  readonly source: 'vocab.json+merges.txt' | 'tokenizer.json';
  readonly maxLength: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly unkId: number;
  readonly padToken: string;
  /** Entries of the vocabulary (added tokens outside it included). */
  readonly vocabSize: number;
  /** Token ids of a prompt, untruncated, without BOS/EOS. */
  contentIds(prompt: string): number[];
  encode(prompt: string): TokenizedPrompt;
  /** Text of token ids (symbols joined, bytes read as UTF-8, "</w>" read as a space, trimmed). */
  decode(ids: ArrayLike<number>): string;
}

interface AddedTokenInfo {
  id: number;
  lstrip: boolean;
  rstrip: boolean;
  /** where it came from, for messages */
  from: string;
}

type Json = Record<string, unknown>;


function readJsonObject(path: string, what: string): Json {
  const v = readJson(path, what);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new DqError('BAD_CONFIG', `${what} (${path}) must be a JSON object`);
  return v as Json;
}

/** A special-token entry as the configs write it: a string, or an AddedToken object ({"content": ..., "__type": ...}). */
export function tokenText(v: unknown, where: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && !Array.isArray(v) && typeof (v as Json).content === 'string') return (v as Json).content as string;
  throw new DqError('BAD_CONFIG', `${where}: expected a token string or {"content": ...}, got ${JSON.stringify(v)}`);
}

function parseVocab(raw: unknown, where: string): Map<string, number> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new DqError('BAD_CONFIG', `${where} must map tokens to ids (a JSON object)`);
  const vocab = new Map<string, number>();
  const owner = new Map<number, string>();
  for (const [tok, id] of Object.entries(raw as Json)) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) throw new DqError('BAD_CONFIG', `${where}: token ${JSON.stringify(tok)} has id ${JSON.stringify(id)}, expected a non-negative integer`);
    const prev = owner.get(id);
    if (prev !== undefined) throw new DqError('BAD_CONFIG', `${where}: tokens ${JSON.stringify(prev)} and ${JSON.stringify(tok)} share id ${id}`);
    owner.set(id, tok);
    vocab.set(tok, id);
  }
  if (vocab.size === 0) throw new DqError('BAD_CONFIG', `${where} is empty`);
  return vocab;
}

/** merges.txt as transformers reads it: an optional "#version" header, then one "left right" pair a line. */
function parseMergesText(text: string, where: string): [string, string][] {
  const lines = text.replace(/^\uFEFF/, '').split('\n');
  const merges: [string, string][] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/\r$/, '');
    if (i === 0 && line.startsWith('#version')) continue;
    if (line.trim() === '') continue;
    const parts = line.trim().split(/\s+/);
    if (parts.length !== 2) throw new DqError('BAD_CONFIG', `${where} line ${i + 1}: expected two symbols separated by a space, got ${JSON.stringify(line)}`);
    merges.push([parts[0]!, parts[1]!]);
  }
  if (merges.length === 0) throw new DqError('BAD_CONFIG', `${where} has no merges`);
  return merges;
}

function parseMergesList(raw: unknown, where: string): [string, string][] {
  if (!Array.isArray(raw)) throw new DqError('BAD_CONFIG', `${where}: model.merges must be a list`);
  return raw.map((m, i) => {
    const parts = Array.isArray(m) ? m : typeof m === 'string' ? m.split(' ') : null;
    if (!parts || parts.length !== 2 || typeof parts[0] !== 'string' || typeof parts[1] !== 'string') {
      throw new DqError('BAD_CONFIG', `${where}: merge ${i} must be "left right" or [left, right], got ${JSON.stringify(m)}`);
    }
    return [parts[0], parts[1]] as [string, string];
  });
}

/** GPT-2/CLIP byte symbols: printable Latin-1 bytes stand for themselves, the other 68 bytes for U+0100.. in order. */
function byteSymbols(): { toSym: string[]; toByte: Map<string, number> } {
  const toSym: string[] = new Array(256);
  let shift = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    toSym[b] = String.fromCharCode(printable ? b : 0x100 + shift++);
  }
  return { toSym, toByte: new Map(toSym.map((s, b) => [s, b])) };
}
const BYTES = byteSymbols();

const CJK_RANGES: [number, number][] = [
  [0x4e00, 0x9fff], [0x3400, 0x4dbf], [0x20000, 0x2a6df], [0x2a700, 0x2b73f],
  [0x2b740, 0x2b81f], [0x2b820, 0x2ceaf], [0xf900, 0xfaff], [0x2f800, 0x2fa1f],
];
const isCjk = (cp: number): boolean => CJK_RANGES.some(([lo, hi]) => cp >= lo && cp <= hi);
const ZS = /^\p{Zs}$/u;
const OTHER = /^\p{C}$/u;

/** BERT BasicTokenizer's cleaning, as transformers' CLIPTokenizer applies it when ftfy is not installed. */
export function basicClean(text: string): string {
  let out = '';
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    if (ch === ' ' || ch === '\t' || ch === '\n' || ch === '\r' || ZS.test(ch)) out += ' ';
    else if (cp === 0 || cp === 0xfffd || OTHER.test(ch)) continue;
    else if (isCjk(cp)) out += ` ${ch} `;
    else out += ch;
  }
  return out;
}

function file(dir: string, name: string): string | null {
  const p = join(dir, name);
  return existsSync(p) ? p : null;
}

export interface LoadTokenizerOptions {
  /** Overrides tokenizer_config.json's model_max_length. */
  maxLength?: number;
}

/** Loads the CLIP tokenizer in a diffusers tokenizer folder. Throws DqError with a one-line reason when it cannot. */
export function loadTokenizer(dir: string, opts: LoadTokenizerOptions = {}): ClipTokenizer {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new DqError('NOT_FOUND', `tokenizer folder not found: ${dir}`);
  const vocabPath = file(dir, 'vocab.json');
  const mergesPath = file(dir, 'merges.txt');
  const jsonPath = file(dir, 'tokenizer.json');

  let vocab: Map<string, number>;
  let merges: [string, string][];
  let source: ClipTokenizer['source'];
  let mergesWhere: string;
  const added = new Map<string, AddedTokenInfo>();
  const fastAdded: { content: string; info: AddedTokenInfo }[] = [];
  if (vocabPath && mergesPath) {
    vocab = parseVocab(readJson(vocabPath, 'vocab.json'), vocabPath);
    let text: string;
    try {
      text = readFileSync(mergesPath, 'utf8');
    } catch (e) {
      throw new DqError('NOT_FOUND', `cannot read merges.txt (${mergesPath}): ${(e as Error).message}`);
    }
    merges = parseMergesText(text, mergesPath);
    source = 'vocab.json+merges.txt';
    mergesWhere = mergesPath;
  } else if (jsonPath) {
    const tj = readJsonObject(jsonPath, 'tokenizer.json');
    const model = tj.model as Json | undefined;
    if (typeof model !== 'object' || model === null) throw new DqError('BAD_CONFIG', `${jsonPath} has no "model"`);
    if (model.type !== 'BPE' || model.end_of_word_suffix !== EOW) {
      throw new DqError('BAD_CONFIG', `${jsonPath} is not a CLIP BPE tokenizer (model type ${JSON.stringify(model.type)}, end_of_word_suffix ${JSON.stringify(model.end_of_word_suffix)}); only CLIP tokenizers are supported (T5/SentencePiece tokenizers of SD3 and Flux are not yet)`);
    }
    vocab = parseVocab(model.vocab, `${jsonPath} model.vocab`);
    merges = parseMergesList(model.merges, jsonPath);
    source = 'tokenizer.json';
    mergesWhere = `${jsonPath} model.merges`;
    const list = tj.added_tokens ?? [];
    if (!Array.isArray(list)) throw new DqError('BAD_CONFIG', `${jsonPath}: "added_tokens" must be a list`);
    for (const t of list as Json[]) {
      if (typeof t?.content !== 'string' || typeof t.id !== 'number') throw new DqError('BAD_CONFIG', `${jsonPath}: added token ${JSON.stringify(t)} needs "content" and "id"`);
      fastAdded.push({ content: t.content, info: { id: t.id, lstrip: t.lstrip === true, rstrip: t.rstrip === true, from: 'tokenizer.json' } });
    }
  } else if (vocabPath || mergesPath) {
    throw new DqError('MISSING_COMPONENT', `${dir} has ${vocabPath ? 'vocab.json but no merges.txt' : 'merges.txt but no vocab.json'} (and no tokenizer.json): a CLIP tokenizer needs both`);
  } else {
    throw new DqError('MISSING_COMPONENT', `${dir} has no tokenizer files: expected vocab.json + merges.txt, or tokenizer.json`);
  }

  merges = merges.slice(0, MAX_MERGES);
  for (let i = 0; i < merges.length; i++) {
    const [a, b] = merges[i]!;
    const missing = [a, b, a + b].filter((t) => !vocab.has(t));
    if (missing.length) throw new DqError('BAD_CONFIG', `${mergesWhere}: merge ${i + 1} "${a} ${b}" uses ${missing.map((t) => JSON.stringify(t)).join(', ')}, not in the vocabulary (vocab.json and merges.txt do not belong together)`);
  }

  // Special tokens, resolved the way transformers v4 does: tokenizer_config.json; when it has no
  // "added_tokens_decoder" (the legacy layout) special_tokens_map.json overrides it and added_tokens.json adds tokens.
  const configPath = file(dir, 'tokenizer_config.json');
  const config = configPath ? readJsonObject(configPath, 'tokenizer_config.json') : {};
  const specials: Partial<Record<SpecialKey, { token: string; from: string }>> = {};
  for (const k of SPECIAL_KEYS) {
    const t = tokenText(config[k], `${configPath} "${k}"`);
    if (t) specials[k] = { token: t, from: 'tokenizer_config.json' };
  }
  if (config.added_tokens_decoder !== undefined) {
    const dec = config.added_tokens_decoder;
    if (typeof dec !== 'object' || dec === null || Array.isArray(dec)) throw new DqError('BAD_CONFIG', `${configPath}: "added_tokens_decoder" must be an object`);
    for (const [idx, t] of Object.entries(dec as Json)) {
      const id = Number(idx);
      const content = tokenText(t, `${configPath} added_tokens_decoder["${idx}"]`);
      if (!Number.isInteger(id) || id < 0 || content === undefined) throw new DqError('BAD_CONFIG', `${configPath}: bad added_tokens_decoder entry "${idx}"`);
      const o = (typeof t === 'object' && t !== null ? t : {}) as Json;
      added.set(content, { id, lstrip: o.lstrip === true, rstrip: o.rstrip === true, from: 'tokenizer_config.json' });
    }
  } else {
    const mapPath = file(dir, 'special_tokens_map.json');
    if (mapPath) {
      const map = readJsonObject(mapPath, 'special_tokens_map.json');
      for (const k of SPECIAL_KEYS) {
        const t = tokenText(map[k], `${mapPath} "${k}"`);
        if (t) specials[k] = { token: t, from: 'special_tokens_map.json' };
      }
    }
    const addedPath = file(dir, 'added_tokens.json');
    if (addedPath) {
      const a = readJsonObject(addedPath, 'added_tokens.json');
      for (const [content, id] of Object.entries(a)) {
        if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) throw new DqError('BAD_CONFIG', `${addedPath}: token ${JSON.stringify(content)} has id ${JSON.stringify(id)}, expected a non-negative integer`);
        added.set(content, { id, lstrip: false, rstrip: false, from: 'added_tokens.json' });
      }
    }
  }
  for (const { content, info } of fastAdded) if (!added.has(content)) added.set(content, info);

  const ids = {} as Record<SpecialKey, number>;
  const tokens = {} as Record<SpecialKey, string>;
  for (const k of SPECIAL_KEYS) {
    const s = specials[k] ?? { token: SPECIAL_DEFAULTS[k], from: 'the CLIPTokenizer default' };
    let info = added.get(s.token);
    if (!info) {
      const id = vocab.get(s.token);
      if (id === undefined) {
        const what = k.replace('_token', ' token');
        throw new DqError('BAD_CONFIG', `${dir}: the ${what} ${JSON.stringify(s.token)} (${s.from}) is not in the vocabulary`);
      }
      info = { id, lstrip: false, rstrip: false, from: s.from };
      added.set(s.token, info);
    }
    ids[k] = info.id;
    tokens[k] = s.token;
  }

  const maxLength = resolveMaxLength(opts.maxLength, config.model_max_length, configPath);

  // The fast-tokenizer pipeline of a CLIP tokenizer (what transformers' CLIPConverter builds), in memory.
  const vocabObj: Record<string, number> = Object.fromEntries(vocab);
  const addedList = [...added].map(([content, info]) => ({
    id: info.id,
    content,
    single_word: false,
    lstrip: info.lstrip,
    rstrip: info.rstrip,
    // BOS/EOS are also recognised in lowercased text, as the slow tokenizer's regex does; other added tokens ("!") only as typed.
    normalized: content === BOS_TOKEN || content === EOS_TOKEN,
    special: true,
  }));
  const tokenizerJson = {
    added_tokens: addedList,
    normalizer: {
      type: 'Sequence',
      normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Lowercase' }],
    },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: CLIP_SPLIT }, behavior: 'Removed', invert: true },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: null,
    decoder: null,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: tokens.unk_token,
      continuing_subword_prefix: '',
      end_of_word_suffix: EOW,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: vocabObj,
      merges,
    },
  };
  let lib: Tokenizer;
  try {
    lib = new Tokenizer(tokenizerJson, { tokenizer_class: 'CLIPTokenizer' });
  } catch (e) {
    throw new DqError('BAD_CONFIG', `${dir}: the tokenizer could not be built: ${(e as Error).message}`);
  }

  const idToToken = new Map<number, string>();
  for (const [t, id] of vocab) idToToken.set(id, t);
  for (const [t, info] of added) if (!idToToken.has(info.id)) idToToken.set(info.id, t);

  const contentIds = (prompt: string): number[] => lib.encode(basicClean(prompt), { add_special_tokens: false }).ids;
  const decode = (list: ArrayLike<number>): string => {
    const bytes: number[] = [];
    for (let i = 0; i < list.length; i++) {
      const t = idToToken.get(list[i]!);
      if (t === undefined) continue;
      for (const ch of t) {
        const b = BYTES.toByte.get(ch);
        if (b === undefined) bytes.push(...new TextEncoder().encode(ch));
        else bytes.push(b);
      }
    }
    return new TextDecoder('utf-8').decode(new Uint8Array(bytes)).replaceAll(EOW, ' ').trim();
  };

  return {
    dir,
    source,
    maxLength,
    bosId: ids.bos_token,
    eosId: ids.eos_token,
    padId: ids.pad_token,
    unkId: ids.unk_token,
    padToken: tokens.pad_token,
    vocabSize: idToToken.size,
    contentIds,
    decode,
    encode: (prompt: string) => padTruncate(contentIds(prompt), maxLength, { bos: ids.bos_token, eos: ids.eos_token, pad: ids.pad_token }, decode),
  };
}

/**
 * Truncation and padding as diffusers asks for them (`padding="max_length", truncation=True`): BOS (when the
 * tokenizer has one), the first tokens that fit, EOS, then the pad id up to maxLength.
 */
export function padTruncate(content: number[], maxLength: number, ids: { bos: number | null; eos: number; pad: number }, decode: (ids: number[]) => string): TokenizedPrompt {
  const lead = ids.bos === null ? 0 : 1;
  const keep = maxLength - lead - 1;
  const kept = content.slice(0, keep);
  const out = new Int32Array(maxLength).fill(ids.pad);
  if (ids.bos !== null) out[0] = ids.bos;
  out.set(kept, lead);
  out[kept.length + lead] = ids.eos;
  const truncated = content.length > keep;
  return { ids: out, tokenCount: content.length, eosIndex: kept.length + lead, truncated, droppedText: truncated ? decode(content.slice(keep)) : '' };
}

function resolveMaxLength(override: number | undefined, configured: unknown, configPath: string | null): number {
  if (override !== undefined) {
    if (!Number.isInteger(override) || override < 2) throw new DqError('BAD_ARGUMENT', `tokenizer max length must be an integer >= 2, got ${override}`);
    return override;
  }
  if (configured === undefined || configured === null) return DEFAULT_MAX_LENGTH;
  if (typeof configured !== 'number' || !Number.isInteger(configured) || configured < 2) {
    throw new DqError('BAD_CONFIG', `${configPath}: "model_max_length" must be an integer >= 2, got ${JSON.stringify(configured)}`);
  }
  // transformers writes a huge number (int(1e30)) for "unbounded"; CLIP text encoders have 77 positions.
  return configured > 1_000_000 ? DEFAULT_MAX_LENGTH : configured;
}
