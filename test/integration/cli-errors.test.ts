/**
 * Issue 15, sections 4 and 5, through the real `dq`: broken variant files, configs and shapes that used to reach
 * onnxruntime or V8 (exit 70, raw or C++ text, [E:onnxruntime] lines), and configs that used to give garbage with
 * exit 0. Each case: exit 1, exactly one line `dq: error: ...` in our words, no internal error, no C++ text.
 */
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHost } from '../../src-main/host';
import { ModelProto } from '../../src-main/core/onnx/model';
import { dq, tmp, TINY } from '../helpers';
import { mutate } from './mutate-onnx';

const work = tmp('dq-cli-errors-');
const variant = join(work, 'variant');
afterAll(() => rmSync(work, { recursive: true, force: true }));

beforeAll(() => {
  const calib = join(work, 'calib.json');
  expect(dq(['calibrate', TINY, '--samples', '2', '--steps', '2', '--out', calib]).code).toBe(0);
  const q = dq(['quantize', TINY, '--preset', 'naive-w8a8', '--calib', calib, '--out', variant]);
  expect(q.code, q.stderr).toBe(0);
}, 120_000);

const CPP = /onnxruntime::|\.(?:cc|h|cpp):\d+|onnxruntime_src|\[ONNXRuntimeError\]|\[E:onnxruntime/;

function expectOneLineError(r: { code: number; stdout: string; stderr: string }, pattern: RegExp): void {
  // progress lines (commands that got as far as starting work) aside
  const lines = r.stderr.trim().split('\n').filter((l) => !/^[\w ()]+ \d+% \(\d+\/\d+\) .*elapsed/.test(l));
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^dq: error: /);
  expect(lines[0]).not.toMatch(/internal error/);
  expect(lines[0]).not.toMatch(CPP);
  expect(lines[0]).toMatch(pattern);
  expect(r.code).toBe(1);
}

/** A copy of `src` named `name` with `edit` applied to it. */
function copy(src: string, name: string, edit: (dir: string) => void): string {
  const dir = join(work, name);
  cpSync(src, dir, { recursive: true });
  edit(dir);
  return dir;
}

function editJson(file: string, edit: (o: Record<string, unknown>) => void): void {
  const o = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  edit(o);
  writeFileSync(file, JSON.stringify(o));
}

type Params = { activations: { scaleInput: string; table: { scale: unknown }[] }[] };
const params = (name: string, edit: (p: Params) => void) => copy(variant, name, (d) => editJson(join(d, 'quant', 'params.json'), (o) => edit(o as unknown as Params)));
const manifest = (name: string, edit: (m: Record<string, unknown>) => void) => copy(variant, name, (d) => editJson(join(d, 'manifest.json'), edit));
const index = (name: string, fields: Record<string, unknown>) => copy(TINY, name, (d) => editJson(join(d, 'model_index.json'), (o) => Object.assign(o, fields)));
const scheduler = (name: string, fields: Record<string, unknown>) =>
  copy(TINY, name, (d) => editJson(join(d, 'scheduler', 'scheduler_config.json'), (o) => Object.assign(o, fields)));

const info = (dir: string) => dq(['info', dir]);
const sample = (dir: string, ...extra: string[]) => dq(['sample', dir, '--steps', '2', '--class', '0', '--seeds', '0', '--out', join(work, 'out'), ...extra]);

describe("a variant's quant/params.json and manifest.json", () => {
  it('params.json that is not JSON: info, sample and compare', () => {
    const d = copy(variant, 'params-json', (dir) => writeFileSync(join(dir, 'quant', 'params.json'), '{"version": 1,'));
    expectOneLineError(info(d), /params-json: quant\/params\.json is not valid JSON/);
    expectOneLineError(sample(d), /quant\/params\.json is not valid JSON/);
    expectOneLineError(dq(['compare', TINY, '--variants', `fp,${d}`, '--seeds', '0', '--class', '0', '--steps', '1', '--fid-samples', '0', '--no-video', '--out', join(work, 'cmp')]), /quant\/params\.json is not valid JSON/);
  });
  it('an empty table of parameter sets', () => {
    const d = params('params-empty', (p) => (p.activations[0]!.table = []));
    expectOneLineError(info(d), /quant\/params\.json: field 'activations\[0\]\.table': the table of parameter sets is empty/);
    expectOneLineError(sample(d), /quant\/params\.json: field 'activations\[0\]\.table'/);
  });
  it('activations of the wrong type', () => expectOneLineError(sample(params('params-type', (p) => ((p as unknown as Record<string, unknown>).activations = 'all'))), /quant\/params\.json: field 'activations': must be of type array/));
  it('a scale that is a string', () => expectOneLineError(info(params('params-string', (p) => (p.activations[1]!.table[0]!.scale = '0.1'))), /field 'activations\[1\]\.table\[0\]\.scale': a scale must be a number, got "0\.1"/));
  it('a scale input the graph does not have', () =>
    expectOneLineError(sample(params('params-input', (p) => (p.activations[0]!.scaleInput = 'no/such/input'))), /quant\/params\.json: input 'no\/such\/input' is not an input of unet\/model\.onnx/));
  it('a null scale is refused (it sampled garbage with exit 0)', () =>
    expectOneLineError(sample(params('params-null', (p) => (p.activations[2]!.table[0]!.scale = null))), /field 'activations\[2\]\.table\[0\]\.scale': a scale must be a number, got null/));
  it('a zero or negative scale is refused', () => expectOneLineError(sample(params('params-zero', (p) => (p.activations[0]!.table[0]!.scale = -0.5))), /a scale must be > 0/));
  it('a manifest without a recipe', () => expectOneLineError(info(manifest('no-recipe', (m) => delete m.recipe)), /no-recipe: manifest\.json: field 'recipe' is missing/));
  it('a manifest that is not JSON', () => {
    const d = copy(variant, 'manifest-json', (dir) => writeFileSync(join(dir, 'manifest.json'), '{"kind": "dq-variant",'));
    expectOneLineError(sample(d), /manifest-json: manifest\.json is not valid JSON/);
  });
  it('layers that are not a list', () => expectOneLineError(info(manifest('layers-object', (m) => (m.layers = {}))), /manifest\.json: field 'layers': must be of type array, not object/));
  it('export of a variant with broken params.json or manifest.json', () => {
    const exp = (d: string) => dq(['export', d, '--out', join(work, 'exp0')]);
    expectOneLineError(exp(copy(variant, 'export-json', (dir) => writeFileSync(join(dir, 'quant', 'params.json'), '{"version": 1,'))), /export-json: quant\/params\.json is not valid JSON/);
    expectOneLineError(exp(params('export-type', (p) => ((p as unknown as Record<string, unknown>).activations = 'all'))), /quant\/params\.json: field 'activations': must be of type array/);
    expectOneLineError(exp(manifest('export-recipe', (m) => delete m.recipe)), /export-recipe: manifest\.json: field 'recipe' is missing/);
    expectOneLineError(exp(copy(variant, 'export-manifest', (dir) => writeFileSync(join(dir, 'manifest.json'), '{"kind": "dq-variant",'))), /manifest\.json is not valid JSON/);
    expectOneLineError(exp(manifest('export-layers', (m) => (m.layers = {}))), /manifest\.json: field 'layers': must be of type array, not object/);
  });
  it('export of a variant whose params.json holds a null scale or an unknown input', () => {
    expectOneLineError(dq(['export', params('export-null', (p) => (p.activations[0]!.table[0]!.scale = null)), '--out', join(work, 'exp1')]), /quant\/params\.json: field 'activations\[0\]\.table\[0\]\.scale'/);
    expectOneLineError(dq(['export', params('export-input', (p) => (p.activations[0]!.scaleInput = 'nope')), '--out', join(work, 'exp2')]), /input 'nope' is not an input of unet\/model\.onnx/);
  });
});

describe('the studio answers a broken variant with its code and our message, not INTERNAL', () => {
  it('modelInfo', async () => {
    const host = createHost('browser', 'test');
    try {
      const r = await host.modelInfo(params('studio-null', (p) => (p.activations[0]!.table[0]!.scale = null)));
      expect(r).toMatchObject({ ok: false, error: { code: 'BAD_CONFIG', message: expect.stringMatching(/quant\/params\.json: field 'activations\[0\]\.table\[0\]\.scale'/) } });
      const m = await host.modelInfo(manifest('studio-recipe', (o) => delete o.recipe));
      expect(m).toMatchObject({ ok: false, error: { code: 'BAD_CONFIG', message: expect.stringMatching(/manifest\.json: field 'recipe' is missing/) } });
    } finally {
      await host.dispose();
    }
  });
});

describe('shapes and configs that reached onnxruntime or V8', () => {
  it('a sample_shape that disagrees with the graph', () =>
    expectOneLineError(sample(index('shape', { sample_shape: [1, 32, 32] })), /model_index\.json: sample_shape \[1, 32, 32\] disagrees with the unet's sample input 'sample' \[batch, 1, 28, 28\]/));
  it('a null class outside the class embedding', () =>
    expectOneLineError(sample(index('null-20', { null_class: 20 })), /model_index\.json: null_class 20 is outside the unet's class embedding \(labels 0-10\)/));
  it('a huge sample shape', () => expectOneLineError(info(index('huge', { sample_shape: [1, 100000, 100000] })), /field 'sample_shape' \[1, 100000, 100000\] is too large \(at most 16384 per dimension/));
  it('a huge num_train_timesteps', () => expectOneLineError(info(scheduler('huge-t', { num_train_timesteps: 1e9 })), /field 'num_train_timesteps': must be at most 100000/));
  it('a model whose IR version onnxruntime does not support: no C++ signature', () => {
    const d = copy(TINY, 'ir99', (dir) => {
      const f = join(dir, 'unet', 'model.onnx');
      const m = ModelProto.decode(readFileSync(f)) as unknown as { ir_version: number };
      m.ir_version = 99;
      writeFileSync(f, ModelProto.encode(m as never).finish());
    });
    const r = info(d);
    expectOneLineError(r, /ir99: unet\/model\.onnx: onnxruntime cannot load the model: its ONNX version is not supported \(Unsupported model IR version: 99/);
    // the runtime's own text is there with --verbose, on a line of its own
    const v = dq(['info', d, '--verbose']);
    expect(v.code).toBe(1);
    expect(v.stderr).toMatch(/^dq: detail: .*model\.cc/m);
  });
  it('a mutated model that passes dq info and fails at the first sampling step', () => {
    // seeded mutation 57 of the fuzz test: an attribute edit that breaks a broadcast only when the graph runs
    const d = copy(TINY, 'mutated', (dir) => writeFileSync(join(dir, 'unet', 'model.onnx'), mutate(readFileSync(join(TINY, 'unet', 'model.onnx')), 57).bytes));
    expect(info(d).code).toBe(0);
    expectOneLineError(sample(d), /mutated: unet\/model\.onnx: onnxruntime failed running the model: its \w+ node '[^']+' failed/);
  });
  it('a model with a fixed batch size', () => {
    const d = copy(TINY, 'fixed-batch', (dir) => {
      const f = join(dir, 'unet', 'model.onnx');
      const m = ModelProto.decode(readFileSync(f)) as unknown as { graph: { input: { name: string; type: { tensor_type: { shape: { dim: { dim_param?: string; dim_value?: number }[] } } } }[] } };
      for (const i of m.graph.input) {
        const dim = i.type.tensor_type.shape.dim[0]!;
        delete dim.dim_param;
        dim.dim_value = 1;
      }
      writeFileSync(f, ModelProto.encode(m as never).finish());
    });
    expectOneLineError(sample(d), /fixed-batch: unet\/model\.onnx: its input '\w+' has a fixed batch size of 1/);
  });
});

describe('garbage with exit 0 is refused', () => {
  it('beta_end 2', () => expectOneLineError(info(scheduler('beta-end', { beta_end: 2 })), /field 'beta_end': must be > 0 and < 1/));
  it('beta_start above beta_end', () => expectOneLineError(info(scheduler('beta-order', { beta_start: 0.03 })), /beta_start \(0\.03\) must be below beta_end \(0\.02\)/));
  it('steps_offset 5000', () => expectOneLineError(info(scheduler('offset', { steps_offset: 5000 })), /field 'steps_offset': 5000 is not below num_train_timesteps \(1000\)/));
  it('trained betas of 1', () =>
    expectOneLineError(info(scheduler('trained', { trained_betas: Array.from({ length: 1000 }, (_, i) => (i === 999 ? 1 : 0.01)) })), /field 'trained_betas\.999': must be > 0 and < 1/));
  it('--guidance 1e308', () => expectOneLineError(sample(TINY, '--guidance', '1e308'), /guidance must be a number from 0 to 100/));
  it('--steps that reach past the trained timesteps (steps_offset 1, leading spacing)', () =>
    expectOneLineError(dq(['sample', TINY, '--steps', '1000', '--class', '0', '--seeds', '0', '--out', join(work, 'out')]), /1000 steps reach timestep 1000, outside the trained 0-999/));
  it('classes: 7', () => expectOneLineError(info(index('classes-7', { classes: 7 })), /model_index\.json: field 'classes' must be a list of class names, got 7/));
  it('null_class: "ten"', () => expectOneLineError(info(index('null-ten', { null_class: 'ten' })), /field 'null_class' must be a label \(an integer >= 0\) or null, got "ten"/));
  it('a non-integer or negative null_class', () => {
    expectOneLineError(info(index('null-frac', { null_class: 2.5 })), /field 'null_class' must be a label/);
    expectOneLineError(info(index('null-neg', { null_class: -1 })), /field 'null_class' must be a label/);
  });
  it('a null_class that is one of the classes', () => expectOneLineError(info(index('null-3', { null_class: 3 })), /field 'null_class' must be a label of its own, not one of the classes 0-9/));
  it('default_guidance: "two"', () => expectOneLineError(info(index('guidance-two', { default_guidance: 'two' })), /field 'default_guidance' must be a number from 0 to 100, got "two"/));
});
