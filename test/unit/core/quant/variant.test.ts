/** A variant's manifest.json and quant/params.json are validated when read (one line naming file and field). */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkVariantInputs, readManifest, readParams } from '../../../../src-main/core/quant/variant';
import { tmp } from '../../../helpers';

const work = tmp('dq-variant-');
afterAll(() => rmSync(work, { recursive: true, force: true }));

let n = 0;
function dirWith(files: Record<string, unknown>): string {
  const d = join(work, String(n++));
  mkdirSync(join(d, 'quant'), { recursive: true });
  for (const [f, v] of Object.entries(files)) writeFileSync(join(d, f), typeof v === 'string' ? v : JSON.stringify(v));
  return d;
}

const entry = (over: Record<string, unknown> = {}) => ({ site: 0, half: 0, scaleInput: 's0', zeroPointInput: 'z0', table: [{ t: null, scale: 0.1, zeroPoint: 3 }], ...over });
const params = (activations: unknown[], extra: Record<string, unknown> = {}) => dirWith({ 'quant/params.json': { version: 1, activations, temporal: null, ...extra } });

describe('readParams', () => {
  it('reads a valid file; null when there is none', () => {
    expect(readParams(params([entry()]))!.activations[0]!.table[0]!.scale).toBe(0.1);
    expect(readParams(dirWith({}))).toBeNull();
  });
  it.each([
    ['a null scale', [entry({ table: [{ t: null, scale: null, zeroPoint: 0 }] })], /field 'activations\[0\]\.table\[0\]\.scale': a scale must be a number, got null/],
    ['a zero scale', [entry({ table: [{ t: null, scale: 0, zeroPoint: 0 }] })], /a scale must be > 0, got 0/],
    ['a missing zero point', [entry({ table: [{ t: null, scale: 1 }] })], /field 'activations\[0\]\.table\[0\]\.zeroPoint': a zero point is missing/],
    ['an empty table', [entry({ table: [] })], /the table of parameter sets is empty/],
    ['several sets without timesteps', [entry({ table: [{ t: null, scale: 1, zeroPoint: 0 }, { t: 5, scale: 1, zeroPoint: 0 }] })], /needs a timestep 't' on each/],
    ['an input named twice', [entry(), entry({ scaleInput: 's1', zeroPointInput: 's0' })], /input 's0' is given twice/],
    ['a scale input that is not a string', [entry({ scaleInput: 3 })], /field 'activations\[0\]\.scaleInput'/],
  ])('refuses %s', (_, activations, message) => {
    const d = params(activations);
    expect(() => readParams(d)).toThrow(message);
    expect(() => readParams(d)).toThrow(new RegExp(`^${d}: quant/params\\.json`));
  });
  it('refuses an infinite scale (1e999 in JSON parses to Infinity)', () => {
    const d = dirWith({ 'quant/params.json': '{"version":1,"temporal":null,"activations":[{"site":0,"half":0,"scaleInput":"s","zeroPointInput":null,"table":[{"t":null,"scale":1e999,"zeroPoint":0}]}]}' });
    expect(() => readParams(d)).toThrow(/field 'activations\[0\]\.table\[0\]\.scale'/);
  });
  it('refuses a temporal model outside the variant folder', () => {
    expect(() => readParams(params([], { temporal: { model: '../../elsewhere.onnx', features: [], inputs: [] } }))).toThrow(/field 'temporal\.model': '\.\.\/\.\.\/elsewhere\.onnx' must be a path inside the variant folder/);
  });
  it('refuses a file that is not JSON, in one line', () => {
    const d = dirWith({ 'quant/params.json': '{"version": 1,' });
    expect(() => readParams(d)).toThrow(new RegExp(`^${d}: quant/params\\.json is not valid JSON: [^\\n]+$`));
  });
});

describe('checkVariantInputs', () => {
  const p = readParams(params([entry()]))!;
  it('passes when params and graph agree', () => expect(() => checkVariantInputs('/v', p, ['sample', 'timestep', 's0', 'z0'], ['sample', 'timestep', null])).not.toThrow());
  it('an input params.json names that the graph lacks', () =>
    expect(() => checkVariantInputs('/v', p, ['sample', 'timestep', 's0'], ['sample', 'timestep', null])).toThrow("/v: quant/params.json: input 'z0' is not an input of unet/model.onnx"));
  it('a graph input that nothing feeds', () =>
    expect(() => checkVariantInputs('/v', p, ['sample', 'timestep', 's0', 'z0', 'extra'], ['sample', 'timestep', null])).toThrow("/v: unet/model.onnx needs input 'extra', which quant/params.json does not provide"));
});

describe('readManifest', () => {
  const good = { kind: 'dq-variant', recipe: { name: 'r', weights: { format: { kind: 'int', bits: 8, symmetric: true } }, activations: null }, simulated: true, layers: [], summary: { quantized: 0, spared: 0, weightBitsPerParameter: 32, activationFormat: null } };
  it('reads a variant manifest; null for none or a manifest of another kind', () => {
    expect(readManifest(dirWith({ 'manifest.json': good }))!.recipe.name).toBe('r');
    expect(readManifest(dirWith({}))).toBeNull();
    expect(readManifest(dirWith({ 'manifest.json': { name: 'a note of the user' } }))).toBeNull();
  });
  it.each([
    ['no recipe', { ...good, recipe: undefined }, /field 'recipe' is missing/],
    ['layers that are not a list', { ...good, layers: {} }, /field 'layers': must be of type array, not object/],
    ['a recipe with an unknown weight format', { ...good, recipe: { ...good.recipe, weights: { format: { kind: 'int5' } } } }, /field 'recipe\.weights\.format\.kind'/],
    ['a layer without a name', { ...good, layers: [{ op: 'Conv', weight: null, activation: null }] }, /field 'layers\[0\]\.name'/],
  ])('refuses %s', (_, m, message) => {
    const d = dirWith({ 'manifest.json': m });
    expect(() => readManifest(d)).toThrow(message);
    expect(() => readManifest(d)).toThrow(new RegExp(`^${d}: manifest\\.json`));
  });
  it('refuses a manifest that is not JSON', () => expect(() => readManifest(dirWith({ 'manifest.json': '{"kind":' }))).toThrow(/manifest\.json is not valid JSON/));
});
