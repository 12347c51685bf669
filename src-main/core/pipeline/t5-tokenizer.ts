/**
 * T5 tokenizers (Flux's `tokenizer_2/`, SD3's `tokenizer_3/`): SentencePiece Unigram, read from the tokenizer.json
 * that T5TokenizerFast saves, and run by @huggingface/tokenizers (its normalizer, Metaspace pre-tokenizer and Unigram
 * model as the file states them). Truncation and padding are ours, as diffusers asks for them
 * (`padding="max_length", max_length=max_sequence_length, truncation=True`): the first max_length-1 tokens, then
 * </s>, padded with <pad>. T5 has no BOS.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { DqError } from '../errors.js';
import { readJson } from '../fsutil.js';
import { padTruncate, tokenText, type ClipTokenizer } from './tokenizer.js';

/** Loads `dir/tokenizer.json` as a T5 tokenizer padded and truncated to `maxLength` tokens (</s> included). */
export function loadT5Tokenizer(dir: string, maxLength: number): ClipTokenizer {
  const path = join(dir, 'tokenizer.json');
  if (!existsSync(path)) throw new DqError('MISSING_COMPONENT', `${dir}: no tokenizer.json (a T5 tokenizer is read from the file T5TokenizerFast saves)`);
  const json = readJson(path, 'tokenizer.json') as { model?: { type?: string; vocab?: [string, number][] }; added_tokens?: { id: number; content: string }[] };
  if (json.model?.type !== 'Unigram' || !Array.isArray(json.model.vocab)) {
    throw new DqError('BAD_CONFIG', `${path}: not a T5 (Unigram) tokenizer: its model is ${JSON.stringify(json.model?.type ?? null)}`);
  }
  const cfgPath = join(dir, 'tokenizer_config.json');
  const cfg = existsSync(cfgPath) ? (readJson(cfgPath, 'tokenizer_config.json') as Record<string, unknown>) : {};
  let lib: Tokenizer;
  try {
    lib = new Tokenizer(json as never, cfg as never);
  } catch (e) {
    throw new DqError('BAD_CONFIG', `${path}: cannot be read as a tokenizer: ${(e as Error).message}`);
  }
  const vocab = json.model.vocab;
  const idOf = (tok: string, fallback: number) => {
    const added = json.added_tokens?.find((t) => t.content === tok);
    if (added) return added.id;
    const k = vocab.findIndex((v) => v[0] === tok);
    return k >= 0 ? k : fallback;
  };
  const special = (key: string, d: string) => tokenText(cfg[key], `${cfgPath}: ${key}`) ?? d;
  const padToken = special('pad_token', '<pad>');
  const eosId = idOf(special('eos_token', '</s>'), 1);
  const padId = idOf(padToken, 0);
  const unkId = idOf(special('unk_token', '<unk>'), 2);
  const contentIds = (prompt: string): number[] => lib.encode(prompt, { add_special_tokens: false }).ids;
  const decode = (ids: ArrayLike<number>): string => lib.decode(Array.from(ids), { skip_special_tokens: true }).trim();
  return {
    dir,
    source: 'tokenizer.json',
    maxLength,
    bosId: -1,
    eosId,
    padId,
    unkId,
    padToken,
    vocabSize: vocab.length,
    contentIds,
    decode,
    encode: (prompt: string) => padTruncate(contentIds(prompt), maxLength, { bos: null, eos: eosId, pad: padId }, decode),
  };
}
