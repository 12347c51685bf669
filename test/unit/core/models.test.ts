/** The model cards the studio lists: the first paragraph of each README as plain text. */
import { describe, expect, it } from 'vitest';
import { firstParagraph, listEmbeddedModels } from '../../../src-main/core/models';

describe('model cards', () => {
  it('take the first paragraph without markdown marks: emphasis, code ticks and link targets go, the words stay', () => {
    const md = "# Title\n\nThe studio's **DiT**: a `transformer/` denoiser,\n[the notes](docs/x.md), *its* weights and 2*3*4 snake_case.\n\nSecond paragraph.";
    expect(firstParagraph(md)).toBe("The studio's DiT: a transformer/ denoiser, the notes, its weights and 2*3*4 snake_case.");
  });

  it('every embedded model has a plain-text summary', () => {
    const models = listEmbeddedModels();
    expect(models.length).toBeGreaterThanOrEqual(5);
    for (const m of models) {
      expect(m.summary.length, m.id).toBeGreaterThan(20);
      expect(m.summary, m.id).not.toMatch(/\*\*|`|\]\(/);
    }
  });
});
