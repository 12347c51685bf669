/**
 * The studio page's reading of a prompt file picked on this computer (src-renderer/src/prompts.ts) agrees with the
 * host's (core readPromptFile) on the same text; the Ranges view's regions split the sites without overlap.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readPromptFile } from '../../src-main/core/pipeline/prompt-file';
import { parsePromptText } from '../../src-renderer/src/prompts';
import { inRegion, REGIONS, siteTags } from '../../src-renderer/src/ranges';
import { tmp } from '../helpers';

describe('parsePromptText', () => {
  const dir = tmp('dq-studio-prompts-');
  const host = (text: string) => {
    const f = join(dir, 'p.txt');
    writeFileSync(f, text);
    return readPromptFile(f);
  };

  it.each([
    ['lines, blank lines and spaces', '\uFEFF a red seven \r\n\r\nthe digit two\n  \n'],
    ['a JSON list of strings', '["a red seven", "the digit two"]'],
    ['a JSON list of objects with one negative prompt', '[{"prompt": "a red seven", "negative_prompt": "blurry"}, {"prompt": "two", "negative_prompt": "blurry"}]'],
  ])('%s: the same prompts as the host reads', (_what, text) => {
    const page = parsePromptText(text);
    if ('error' in page) throw new Error(page.error);
    const file = host(text);
    expect(page.prompts).toEqual(file.map((e) => e.prompt.trim()));
    expect(page.negative).toBe(file[0]!.negative ?? null);
  });

  it('refuses what the host refuses: no prompts, bad JSON, entries that are not prompts', () => {
    for (const text of ['\n \n', '[1, 2]', '[{"prompt": 3}]', '["a", ']) {
      expect(parsePromptText(text)).toHaveProperty('error');
      expect(() => host(text)).toThrow();
    }
  });

  it('refuses different negative prompts (calibration takes one)', () => {
    expect(parsePromptText('[{"prompt": "a", "negative_prompt": "x"}, {"prompt": "b"}]')).toEqual({ error: expect.stringMatching(/different negative prompts/) });
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('Ranges regions', () => {
  const site = (temporal: boolean, text: boolean, split: number | null = null, frames = false) => ({ id: 0, tensor: 't', layers: ['l'], split, temporal, text, frames });
  it('time-only, text-only and the rest split every site exactly once; all shows every site', () => {
    const sites = [site(true, false), site(false, true), site(false, false), site(false, false, 4), site(false, false, null, true)];
    for (const s of sites) {
      expect(inRegion(s, 'all')).toBe(true);
      expect((['time', 'text', 'rest'] as const).filter((r) => inRegion(s, r))).toHaveLength(1);
      // a video denoiser's rest is the layers that mix frames and the spatial ones
      expect((['time', 'text', 'frames', 'spatial'] as const).filter((r) => inRegion(s, r))).toHaveLength(1);
    }
    expect(REGIONS.map((r) => r.id)).toEqual(['all', 'time', 'text', 'frames', 'spatial', 'rest']);
    expect(sites.map(siteTags)).toEqual([' [time]', ' [text]', '', ' [split]', ' [frames]']);
    expect(sites.filter((s) => inRegion(s, 'frames'))).toEqual([sites[4]]);
  });
});
