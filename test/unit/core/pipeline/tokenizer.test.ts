import { afterAll, describe, expect, it } from 'vitest';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTokenizer } from '../../../../src-main/core/pipeline/tokenizer';
import { DqError } from '../../../../src-main/core/errors';

const FIX = join(__dirname, '../../../fixtures/tokenizers');

interface RefEntry { ids: number[]; tokens: number; dropped?: string }
interface Ref {
  tokenizers: Record<string, { source: string; max_length: number; bos_id: number; eos_id: number; pad_id: number }>;
  cases: ({ prompt: string } & Record<string, RefEntry | string>)[];
}
// written by tools/clip_tokenizer_reference.py (independent Python implementation of HF's slow CLIPTokenizer)
const ref = JSON.parse(readFileSync(join(FIX, 'reference-ids.json'), 'utf8')) as Ref;
const names = Object.keys(ref.tokenizers);

const tmp = mkdtempSync(join(tmpdir(), 'dq-tok-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;
/** A copy of a fixture folder with some files replaced (content) or removed (null). */
function variant(from: string, files: Record<string, string | null>): string {
  const dir = join(tmp, `v${n++}`);
  mkdirSync(dir);
  for (const f of ['vocab.json', 'merges.txt', 'special_tokens_map.json', 'tokenizer_config.json', 'tokenizer.json']) {
    if (f in files) continue;
    try {
      copyFileSync(join(FIX, from, f), join(dir, f));
    } catch {
      /* not in that fixture */
    }
  }
  for (const [f, text] of Object.entries(files)) if (text !== null) writeFileSync(join(dir, f), text);
  return dir;
}
function dqError(fn: () => unknown): DqError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(DqError);
    return e as DqError;
  }
  throw new Error('expected a DqError');
}

describe('reference ids', () => {
  it('cover what the acceptance asks for', () => {
    expect(names.sort()).toEqual(['clip-json', 'clip-sd1', 'clip-sd2', 'clip-sdxl2']);
    const cases = ref.cases;
    expect(cases.length).toBeGreaterThanOrEqual(200);
    const entry = (c: (typeof cases)[number], name: string) => c[name] as RefEntry;
    expect(cases.filter((c) => entry(c, 'clip-sd1').tokens > 75).length).toBeGreaterThanOrEqual(10); // long, truncated
    expect(cases.filter((c) => c.prompt.includes('!')).length).toBeGreaterThanOrEqual(20);
    expect(cases.filter((c) => [...c.prompt].some((ch) => ch.codePointAt(0)! > 0x7f)).length).toBeGreaterThanOrEqual(40); // unicode
    expect(cases.filter((c) => /[0-9]/.test(c.prompt)).length).toBeGreaterThanOrEqual(20);
    expect(cases.filter((c) => /[.,;:?()[\]{}"'/\\-]/.test(c.prompt)).length).toBeGreaterThanOrEqual(40);
    expect(cases.some((c) => c.prompt === '')).toBe(true);
    // pad-0 tokenizers: some prompt has "!" as id 0 inside the text, not only as padding
    expect(cases.some((c) => c.prompt.includes('!') && entry(c, 'clip-sd2').ids.slice(1, 3).includes(0))).toBe(true);
  });

  for (const name of names) {
    it(`${name}: every prompt gives the reference ids, token count and dropped text`, () => {
      const info = ref.tokenizers[name]!;
      const tok = loadTokenizer(join(FIX, name));
      expect(tok.source).toBe(info.source);
      expect([tok.maxLength, tok.bosId, tok.eosId, tok.padId]).toEqual([info.max_length, info.bos_id, info.eos_id, info.pad_id]);
      const wrong: string[] = [];
      for (const c of ref.cases) {
        const want = c[name] as RefEntry;
        const got = tok.encode(c.prompt);
        const keep = info.max_length - 2;
        const same =
          got.ids.length === info.max_length &&
          Array.from(got.ids).every((v, i) => v === want.ids[i]) &&
          got.tokenCount === want.tokens &&
          got.truncated === want.tokens > keep &&
          got.droppedText === (want.dropped ?? '') &&
          got.eosIndex === Math.min(want.tokens, keep) + 1 &&
          got.ids[got.eosIndex] === info.eos_id;
        if (!same) wrong.push(`${JSON.stringify(c.prompt)}: got [${Array.from(got.ids).join(',')}] (${got.tokenCount}, ${JSON.stringify(got.droppedText)}), want [${want.ids.join(',')}] (${want.tokens}, ${JSON.stringify(want.dropped ?? '')})`);
      }
      expect(wrong).toEqual([]);
    });
  }
});

describe('loadTokenizer', () => {
  it('pads with the pad token of each folder', () => {
    const sd1 = loadTokenizer(join(FIX, 'clip-sd1'));
    expect(sd1.padToken).toBe('<|endoftext|>');
    expect(sd1.padId).toBe(sd1.eosId);
    for (const name of ['clip-sd2', 'clip-sdxl2', 'clip-json']) {
      const t = loadTokenizer(join(FIX, name));
      expect(t.padToken).toBe('!');
      expect(t.padId).toBe(0);
      expect(t.padId).not.toBe(t.eosId);
    }
  });

  it('truncates to a given max length and names what it dropped', () => {
    const t = loadTokenizer(join(FIX, 'clip-sd1'), { maxLength: 8 });
    const full = t.contentIds('a red seven on a blue background');
    expect(full.length).toBeGreaterThan(6);
    const e = t.encode('a red seven on a blue background');
    expect(Array.from(e.ids)).toEqual([t.bosId, ...full.slice(0, 6), t.eosId]);
    expect(e.truncated).toBe(true);
    expect(e.droppedText).toBe(t.decode(full.slice(6)));
    expect('a red seven on a blue background'.endsWith(e.droppedText)).toBe(true);
    expect(t.encode('a red').truncated).toBe(false);
    expect(t.encode('a red').droppedText).toBe('');
  });

  it('reads model_max_length, and treats transformers\' "unbounded" value as 77', () => {
    const cfg = JSON.parse(readFileSync(join(FIX, 'clip-sd1', 'tokenizer_config.json'), 'utf8'));
    const small = variant('clip-sd1', { 'tokenizer_config.json': JSON.stringify({ ...cfg, model_max_length: 20 }) });
    expect(loadTokenizer(small).encode('x').ids.length).toBe(20);
    const huge = variant('clip-sd1', { 'tokenizer_config.json': JSON.stringify(cfg).replace('"model_max_length":77', '"model_max_length":1000000000000000019884624838656') });
    expect(loadTokenizer(huge).maxLength).toBe(77);
    expect(dqError(() => loadTokenizer(join(FIX, 'clip-sd1'), { maxLength: 1 })).code).toBe('BAD_ARGUMENT');
  });

  it('honours added tokens (added_tokens.json in the legacy layout)', () => {
    const base = loadTokenizer(join(FIX, 'clip-sd1'));
    const newId = base.vocabSize;
    const dir = variant('clip-sd1', { 'added_tokens.json': JSON.stringify({ '<cat>': newId }) });
    const t = loadTokenizer(dir);
    expect(t.contentIds('a<cat>red')).toEqual([...base.contentIds('a'), newId, ...base.contentIds('red')]);
    expect(base.contentIds('a<cat>red')).not.toContain(newId);
  });

  it('takes the pad token from special_tokens_map.json only in the legacy layout', () => {
    // clip-sd2: tokenizer_config.json says <|endoftext|>, special_tokens_map.json says "!" and wins (no added_tokens_decoder)
    expect(loadTokenizer(join(FIX, 'clip-sd2')).padId).toBe(0);
    // with added_tokens_decoder, tokenizer_config.json decides
    const cfg = JSON.parse(readFileSync(join(FIX, 'clip-sdxl2', 'tokenizer_config.json'), 'utf8'));
    const dir = variant('clip-sdxl2', { 'tokenizer_config.json': JSON.stringify({ ...cfg, pad_token: '<|endoftext|>' }) });
    const t = loadTokenizer(dir);
    expect(t.padToken).toBe('<|endoftext|>');
    expect(t.padId).toBe(t.eosId);
  });

  it('says clearly what is wrong with a folder', () => {
    expect(dqError(() => loadTokenizer(join(tmp, 'nope'))).code).toBe('NOT_FOUND');
    const empty = variant('clip-sd1', { 'vocab.json': null, 'merges.txt': null });
    expect(dqError(() => loadTokenizer(empty)).message).toMatch(/no tokenizer files: expected vocab\.json \+ merges\.txt, or tokenizer\.json/);
    const noMerges = variant('clip-sd1', { 'merges.txt': null });
    const e1 = dqError(() => loadTokenizer(noMerges));
    expect(e1.code).toBe('MISSING_COMPONENT');
    expect(e1.message).toMatch(/vocab\.json but no merges\.txt/);
    const noVocab = variant('clip-sd1', { 'vocab.json': null });
    expect(dqError(() => loadTokenizer(noVocab)).message).toMatch(/merges\.txt but no vocab\.json/);

    const brokenVocab = variant('clip-sd1', { 'vocab.json': '{"a": 0, ' });
    const e2 = dqError(() => loadTokenizer(brokenVocab));
    expect(e2.code).toBe('BAD_CONFIG');
    expect(e2.message).toMatch(/vocab\.json is not valid JSON/);
    expect(dqError(() => loadTokenizer(variant('clip-sd1', { 'vocab.json': '["a"]' }))).message).toMatch(/must map tokens to ids/);
    expect(dqError(() => loadTokenizer(variant('clip-sd1', { 'vocab.json': '{"a": 0, "b": 0}' }))).message).toMatch(/share id 0/);

    const foreign = variant('clip-sd1', { 'merges.txt': '#version: 0.2\nq z</w>\n' });
    expect(dqError(() => loadTokenizer(foreign)).message).toMatch(/merge 1 "q z<\/w>" uses "qz<\/w>", not in the vocabulary/);
    const threeParts = variant('clip-sd1', { 'merges.txt': '#version: 0.2\na b c\n' });
    expect(dqError(() => loadTokenizer(threeParts)).message).toMatch(/line 2: expected two symbols/);
    expect(dqError(() => loadTokenizer(variant('clip-sd1', { 'merges.txt': '#version: 0.2\n' }))).message).toMatch(/has no merges/);

    const map = JSON.parse(readFileSync(join(FIX, 'clip-sd2', 'special_tokens_map.json'), 'utf8'));
    const badPad = variant('clip-sd2', { 'special_tokens_map.json': JSON.stringify({ ...map, pad_token: '<pad>' }) });
    const e3 = dqError(() => loadTokenizer(badPad));
    expect(e3.code).toBe('BAD_CONFIG');
    expect(e3.message).toMatch(/the pad token "<pad>" \(special_tokens_map\.json\) is not in the vocabulary/);
    expect(dqError(() => loadTokenizer(variant('clip-sd1', { 'tokenizer_config.json': '{' }))).message).toMatch(/tokenizer_config\.json is not valid JSON/);
    expect(dqError(() => loadTokenizer(variant('clip-sd1', { 'tokenizer_config.json': JSON.stringify({ model_max_length: 'long' }) }))).message).toMatch(/model_max_length/);

    const tj = JSON.parse(readFileSync(join(FIX, 'clip-json', 'tokenizer.json'), 'utf8'));
    const unigram = variant('clip-json', { 'tokenizer.json': JSON.stringify({ ...tj, model: { type: 'Unigram', vocab: [['a', 0]] } }) });
    expect(dqError(() => loadTokenizer(unigram)).message).toMatch(/not a CLIP BPE tokenizer.*Unigram/);
    expect(dqError(() => loadTokenizer(variant('clip-json', { 'tokenizer.json': '{"model": ' }))).message).toMatch(/tokenizer\.json is not valid JSON/);
  });
});
