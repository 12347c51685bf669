/**
 * Prompt files (dq sample --prompts, dq calibrate --prompts, the studio's prompt lists): one prompt a line, or a JSON
 * list of strings or {prompt, negative_prompt}.
 */
import { readFileSync } from 'node:fs';
import { DqError } from '../errors.js';

/** At most this many prompts in one run (one grid row each). */
export const MAX_PROMPTS = 1024;
export interface PromptEntry {
  prompt: string;
  negative?: string;
}

/**
 * A prompt file: one prompt a line (blank lines skipped), or JSON: a list of strings or of {prompt, negative_prompt}.
 * It must be UTF-8 and name at least one prompt.
 */
export function readPromptFile(path: string): PromptEntry[] {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new DqError(code === 'ENOENT' ? 'NOT_FOUND' : 'BAD_ARGUMENT', code === 'ENOENT' ? `prompt file not found: ${path}` : `cannot read the prompt file ${path}: ${code === 'EISDIR' ? 'it is a folder' : (code ?? 'unreadable')}`);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes).replace(/^\uFEFF/, '');
  } catch {
    throw new DqError('BAD_ARGUMENT', `${path} is not UTF-8 text: save the prompt file as UTF-8`);
  }
  let entries: PromptEntry[];
  const trimmed = text.trim();
  if (trimmed.startsWith('[')) {
    let raw: unknown;
    try {
      raw = JSON.parse(trimmed);
    } catch (e) {
      throw new DqError('BAD_ARGUMENT', `${path}: not valid JSON (${(e as Error).message}); a prompt file is one prompt a line, or a JSON list`);
    }
    if (!Array.isArray(raw)) throw new DqError('BAD_ARGUMENT', `${path}: a JSON prompt file is a list`);
    entries = raw.map((v, i) => {
      if (typeof v === 'string') return { prompt: v };
      if (v && typeof v === 'object' && typeof (v as { prompt?: unknown }).prompt === 'string') {
        const neg = (v as { negative_prompt?: unknown }).negative_prompt;
        if (neg !== undefined && neg !== null && typeof neg !== 'string') throw new DqError('BAD_ARGUMENT', `${path}: entry ${i + 1}: negative_prompt must be a string`);
        return { prompt: (v as { prompt: string }).prompt, ...(typeof neg === 'string' ? { negative: neg } : {}) };
      }
      throw new DqError('BAD_ARGUMENT', `${path}: entry ${i + 1} is neither a string nor {"prompt": "..."}`);
    });
  } else {
    entries = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '').map((prompt) => ({ prompt }));
  }
  if (!entries.length) throw new DqError('BAD_ARGUMENT', `${path} has no prompts (one prompt a line, or a JSON list)`);
  if (entries.length > MAX_PROMPTS) throw new DqError('BAD_ARGUMENT', `${path} has ${entries.length} prompts; at most ${MAX_PROMPTS} in one run`);
  return entries;
}

