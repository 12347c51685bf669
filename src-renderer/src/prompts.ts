/**
 * A prompt file's text as the studio reads it in the page (a file picked on this computer): one prompt a line (blank
 * lines skipped), or a JSON list of strings or {prompt, negative_prompt}, as core/pipeline/prompt-file.ts reads files
 * on the host. One negative prompt for all (calibration takes one): different ones are refused.
 */
export function parsePromptText(text: string): { prompts: string[]; negative: string | null } | { error: string } {
  const t = text.replace(/^\uFEFF/, '').trim();
  let entries: { prompt: string; negative?: string }[];
  if (t.startsWith('[')) {
    let raw: unknown;
    try {
      raw = JSON.parse(t);
    } catch (e) {
      return { error: `not valid JSON (${(e as Error).message.split('\n')[0]}); a prompt file is one prompt a line, or a JSON list` };
    }
    if (!Array.isArray(raw)) return { error: 'a JSON prompt file is a list' };
    entries = [];
    for (const [i, v] of raw.entries()) {
      if (typeof v === 'string') entries.push({ prompt: v });
      else if (v && typeof v === 'object' && typeof (v as { prompt?: unknown }).prompt === 'string') {
        const neg = (v as { negative_prompt?: unknown }).negative_prompt;
        if (neg !== undefined && neg !== null && typeof neg !== 'string') return { error: `entry ${i + 1}: negative_prompt must be a string` };
        entries.push({ prompt: (v as { prompt: string }).prompt, ...(typeof neg === 'string' ? { negative: neg } : {}) });
      } else return { error: `entry ${i + 1} is neither a string nor {"prompt": "..."}` };
    }
  } else {
    entries = t.split(/\r?\n/).map((prompt) => ({ prompt }));
  }
  entries = entries.map((e) => ({ ...e, prompt: e.prompt.trim() })).filter((e) => e.prompt !== '');
  if (!entries.length) return { error: 'no prompts (one prompt a line, or a JSON list)' };
  const negatives = [...new Set(entries.map((e) => e.negative ?? ''))];
  if (negatives.length > 1) return { error: 'different negative prompts: calibration uses one negative prompt for every image' };
  return { prompts: entries.map((e) => e.prompt), negative: negatives[0] ? negatives[0] : null };
}
