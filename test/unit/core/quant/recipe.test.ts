import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { listPresets, loadRecipe, parseRecipe, presetsDir, recipeJsonSchema } from '../../../../src-main/core/quant/recipe';

describe('presets', () => {
  it('has every preset the issue asks for, and each is valid', () => {
    expect(listPresets()).toEqual(
      expect.arrayContaining(['naive-w8a8', 'naive-w4a8', 'q-diffusion-w8a8', 'q-diffusion-w4a8', 'tfmq-w4a8', 'int8-w8a8', 'fp8-e4m3-w8a8', 'mxfp4-w4a8', 'nvfp4-w4a4', 'int4-w4a16']),
    );
    for (const p of listPresets()) expect(loadRecipe(p).name).toBe(p);
  });
  it('presets/schema.json is generated from the recipe schema (regenerate: npm run presets:schema)', () => {
    const onDisk = JSON.parse(readFileSync(join(presetsDir(), 'schema.json'), 'utf8'));
    expect(onDisk).toEqual(JSON.parse(JSON.stringify(recipeJsonSchema())));
  });
  it('a bad recipe gets a message naming the field', () => {
    const good = JSON.parse(readFileSync(join(presetsDir(), 'naive-w8a8.json'), 'utf8'));
    expect(() => parseRecipe({ ...good, weights: { ...good.weights, format: { kind: 'int', bits: 9, symmetric: true } } }, 'my.json')).toThrow(/my\.json: field 'weights\.format\.bits'/);
    expect(() => parseRecipe({ ...good, temporal: 'sometimes' }, 'my.json')).toThrow(/field 'temporal'/);
    expect(() => parseRecipe({ ...good, extra: 1 }, 'my.json')).toThrow(/my\.json: field '\(top level\)'.*extra/);
    expect(() => parseRecipe({ ...good, temporal: 'calibrate' }, 'my.json')).toThrow(/'calibrate' needs activations\.perTimestep/);
  });
  it('an unknown preset lists the known ones', () => {
    expect(() => loadRecipe('w3a3-magic')).toThrow(/no preset or recipe file 'w3a3-magic' \(presets: fp8-e4m3-w8a8, /);
  });
});
