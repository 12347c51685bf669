/**
 * The text-to-image judge's prompts and attributes: every caption of the fixture (tools/t2i_judge_reference.py, from
 * tools/t2i_data.py's eval_prompts and corpus, with the attributes Python drew them from) parses back to those
 * attributes; prompts that cannot be judged give null; attributes.json errors are one clear line.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DqError } from '../../../../src-main/core/errors';
import { loadAttributes, parseAttributes, parsePrompt, T2I_JUDGE_DEFAULTS, type T2IAttributes } from '../../../../src-main/core/eval/t2i-judge';
import { ROOT, tmp } from '../../../helpers';

const FIX = join(ROOT, 'test', 'fixtures', 't2i-judge');
const RAW = JSON.parse(readFileSync(join(FIX, 'attributes.json'), 'utf8')) as Record<string, unknown>;
const CAPTIONS = JSON.parse(readFileSync(join(FIX, 'captions.json'), 'utf8')) as { prompt: string; digit: number; fg: string; bg: string }[];

function errorOf(f: () => unknown): DqError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(DqError);
    return e as DqError;
  }
  throw new Error('expected an error');
}

function folderWith(text: string | null): string {
  const dir = tmp('dq-t2i-attrs-');
  if (text !== null) writeFileSync(join(dir, 'attributes.json'), text);
  return dir;
}

describe('parsePrompt', () => {
  const attrs = loadAttributes(FIX);

  it('recovers the digit and both colours of every fixture caption (all five phrasings, numerals too)', () => {
    expect(CAPTIONS.length).toBeGreaterThanOrEqual(200);
    const phrasings = new Set<number>();
    for (const c of CAPTIONS) {
      expect(parsePrompt(c.prompt, attrs), c.prompt).toEqual({ digit: c.digit, fg: c.fg, bg: c.bg });
      phrasings.add(attrs.templates.findIndex((t) => new RegExp(`^${t.replace(/\{[fbdn]\}/g, '\\w+')}$`).test(c.prompt)));
    }
    expect([...phrasings].sort()).toEqual([0, 1, 2, 3, 4]);
    expect(CAPTIONS.some((c) => c.prompt.includes(`number ${c.digit}`))).toBe(true);
  });

  it('ignores case, spacing, spaces around commas and a final full stop', () => {
    for (const c of CAPTIONS.slice(0, 60)) {
      const messy = `  ${c.prompt.toUpperCase().replace(/ /g, '   ').replace(/,/g, ' ,')}.\t`;
      expect(parsePrompt(messy, attrs), messy).toEqual({ digit: c.digit, fg: c.fg, bg: c.bg });
      const tight = c.prompt.replace(/, /g, ',');
      expect(parsePrompt(tight, attrs), tight).toEqual({ digit: c.digit, fg: c.fg, bg: c.bg });
    }
  });

  it('gives null for a prompt that cannot be judged', () => {
    for (const p of [
      'a cat',
      '',
      '   ',
      'a red seven', // no background
      'the digit seven in red', // no background
      'a red seven on a background',
      'seven on blue',
      'a red number 12 on a blue background', // no such digit
      'a red number seven on a blue background', // "number" takes a numeral
      'a purple seven on a blue background', // not in the palette
      'a red seven on a red background', // the same colour twice: cannot be drawn
      'a red seven on a blue background with a cat',
    ]) {
      expect(parsePrompt(p, attrs), p).toBeNull();
    }
  });

  it('reads the phrasings, colours and digit names from the attributes, not from a built-in list', () => {
    const other: T2IAttributes = {
      ...attrs,
      palette: { ...attrs.palette, 'dark grey': [0.25, 0.25, 0.25] },
      digits: ['nought', ...attrs.digits.slice(1)],
      templates: ['{b} ground: {f} {d}', 'digit #{n} ({f} on {b})'],
    };
    expect(parsePrompt('blue ground: red nought', other)).toEqual({ digit: 0, fg: 'red', bg: 'blue' });
    expect(parsePrompt('Digit #4 (dark  grey on white)', other)).toEqual({ digit: 4, fg: 'dark grey', bg: 'white' });
    expect(parsePrompt('a red zero on a blue background', other)).toBeNull();
  });
});

describe('loadAttributes', () => {
  it('reads what train_tiny_t2i.py writes (the fixture file is written by the same code)', () => {
    const a = loadAttributes(FIX);
    expect(Object.keys(a.palette)).toHaveLength(8);
    expect(a.palette.red).toEqual([1, 0, 0]);
    expect(a.digits[7]).toBe('seven');
    expect(a.templates).toHaveLength(5);
    expect([a.image_size, a.border_pixels, a.fg_radius, a.min_fg_pixels]).toEqual([RAW.image_size, RAW.border_pixels, RAW.fg_radius, RAW.min_fg_pixels]);
    expect(a.digit_crop).toEqual(RAW.digit_crop);
  });

  it("fills the judge's constants that the file lacks with t2i_data.py's values", () => {
    const { palette, digits, templates } = RAW;
    const a = parseAttributes({ palette, digits, templates });
    // t2i_data.py: IMAGE_SIZE 32, BORDER 2, FG_RADIUS 0.35, MIN_FG_PIXELS 8, crop PAD:PAD+28 (PAD 2)
    expect([a.image_size, a.border_pixels, a.fg_radius, a.min_fg_pixels]).toEqual([32, 2, 0.35, 8]);
    expect(T2I_JUDGE_DEFAULTS).toEqual({ image_size: RAW.image_size, border_pixels: RAW.border_pixels, fg_radius: RAW.fg_radius, min_fg_pixels: RAW.min_fg_pixels });
    expect(a.digit_crop).toEqual([2, 2, 28, 28]);
  });

  it('a missing file: NOT_FOUND, one line naming the folder', () => {
    const dir = folderWith(null);
    const e = errorOf(() => loadAttributes(dir));
    expect(e.code).toBe('NOT_FOUND');
    expect(e.message).toContain(dir);
    expect(e.message).toContain('attributes.json');
    expect(e.message).not.toContain('\n');
    const missing = join(dir, 'nope');
    expect(errorOf(() => loadAttributes(missing)).code).toBe('NOT_FOUND');
  });

  it('bad JSON and malformed fields: BAD_CONFIG, one line each', () => {
    const cases: [string, string][] = [
      ['{"palette": ', 'not valid JSON'],
      ['[1, 2]', 'expected a JSON object'],
      [JSON.stringify({ ...RAW, palette: undefined }), '"palette"'],
      [JSON.stringify({ ...RAW, palette: { red: [1, 0, 0] } }), 'at least two'],
      [JSON.stringify({ ...RAW, palette: { ...(RAW.palette as object), red: [1, 0] } }), 'palette colour "red"'],
      [JSON.stringify({ ...RAW, palette: { ...(RAW.palette as object), red: '#f00' } }), 'palette colour "red"'],
      [JSON.stringify({ ...RAW, digits: (RAW.digits as string[]).slice(1) }), '"digits"'],
      [JSON.stringify({ ...RAW, templates: [] }), '"templates"'],
      [JSON.stringify({ ...RAW, templates: ['a {f} {d}'] }), 'must name the foreground {f}, the background {b}'],
      [JSON.stringify({ ...RAW, templates: ['a {f} {d} on {bg}'] }), 'has {bg}'],
      [JSON.stringify({ ...RAW, fg_radius: 'wide' }), '"fg_radius"'],
      [JSON.stringify({ ...RAW, min_fg_pixels: 2.5 }), '"min_fg_pixels"'],
      [JSON.stringify({ ...RAW, image_size: 16 }), '"image_size"'],
      [JSON.stringify({ ...RAW, border_pixels: 16 }), '"border_pixels"'],
      [JSON.stringify({ ...RAW, digit_crop: [2, 2, 32, 32] }), '28x28'],
      [JSON.stringify({ ...RAW, digit_crop: [6, 2, 28, 28] }), 'outside'],
    ];
    for (const [text, needle] of cases) {
      const dir = folderWith(text);
      const e = errorOf(() => loadAttributes(dir));
      expect(e.code, text).toBe('BAD_CONFIG');
      expect(e.message, text).toContain(needle);
      expect(e.message, text).toContain(join(dir, 'attributes.json'));
      expect(e.message).not.toContain('\n');
    }
  });

  it('a folder named attributes.json is refused, not crashed on', () => {
    const dir = folderWith(null);
    mkdirSync(join(dir, 'attributes.json'));
    expect(errorOf(() => loadAttributes(dir)).code).toBe('NOT_FOUND');
  });
});
