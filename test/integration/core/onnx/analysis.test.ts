/**
 * The layer map is found from the graph alone, on the tiny model and on generated graphs with the topologies of
 * diffusers' UNet2DModel, UNet2DConditionModel and a DiT (tools/make_test_graphs.py, random weights).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { analyzeGraph } from '../../../../src-main/core/onnx/analysis';
import { readModel } from '../../../../src-main/core/onnx/model';
import { ROOT, TINY } from '../../../helpers';

const fixture = (f: string) => readModel(join(ROOT, 'test', 'fixtures', 'graphs', f));

describe('tiny-mnist', () => {
  const m = analyzeGraph(readModel(join(TINY, 'unet', 'model.onnx')));
  const blocks = ['down0', 'down1', 'mid1', 'mid2', 'up1', 'up0'];

  it('finds the inputs', () => {
    expect([m.sampleInput, m.timestepInput, m.conditioningInputs]).toEqual(['sample', 'timestep', ['class_labels']]);
  });
  it('finds every conv, linear and the attention matmuls', () => {
    const ops = m.quantizable.map((l) => l.op);
    expect(ops.filter((o) => o === 'Conv')).toHaveLength(21);
    expect(ops.filter((o) => o === 'Gemm')).toHaveLength(8); // 2 time MLP + 6 time projections
    expect(ops.filter((o) => o === 'MatMul')).toHaveLength(4); // q, k, v, out
    expect(m.attention.map((a) => a.name)).toEqual(['/attn/MatMul', '/attn/MatMul_1']);
    for (const l of m.quantizable) expect(l.weightShape.length).toBeGreaterThanOrEqual(2);
  });
  it('finds the time MLP and every block time projection as temporal, nothing else', () => {
    expect(m.temporal.sort()).toEqual(['/time_mlp/time_mlp.0/Gemm', '/time_mlp/time_mlp.2/Gemm', ...blocks.map((b) => `/${b}/time_proj/Gemm`)].sort());
    expect(m.temporalConditioning).toEqual(['class_labels']); // the class embedding is added to the time embedding
    // scale and shift of every block's scale-shift modulation
    expect(m.temporalFeatures).toHaveLength(12);
    for (const b of blocks) expect(m.temporalFeatures.filter((f) => f.startsWith(`/${b}/`))).toHaveLength(2);
  });
  it('finds both skip concats, their split channel and the convs they feed', () => {
    expect(m.shortcutSplits.map((s) => [s.concat, s.skipIndex, s.splitAt, s.consumers.sort()])).toEqual([
      ['/Concat_1', 1, 64, ['/up1/conv1/Conv', '/up1/shortcut/Conv']],
      ['/Concat_2', 1, 64, ['/up0/conv1/Conv', '/up0/shortcut/Conv']],
    ]);
  });
  it('names the sensitive places', () => {
    expect(m.sensitive.firstLayers).toEqual(['/conv_in/Conv']);
    expect(m.sensitive.lastLayers).toEqual(['/conv_out/Conv']);
    expect(m.sensitive.softmax).toEqual(['/attn/Softmax']);
    expect(m.sensitive.normalizationInputs).toHaveLength(14); // 13 GroupNorms in blocks + norm_out
  });
});

describe('UNet2DModel-like (time embedding added)', () => {
  const m = analyzeGraph(fixture('unet2d.onnx'));
  const blocks = ['down0', 'down1', 'mid1', 'mid2', 'up1a', 'up1b', 'up0a', 'up0b'];
  it('temporal region: time MLP and every time_emb_proj', () => {
    expect(m.temporal.sort()).toEqual(['/linear_1/Gemm', '/linear_2/Gemm', ...blocks.map((b) => `/${b}/time_emb_proj/Gemm`)].sort());
    expect(m.temporalFeatures).toHaveLength(8);
    expect(m.temporalConditioning).toEqual([]);
  });
  it('skip concats with their split channels', () => {
    expect(m.shortcutSplits.map((s) => [s.splitAt, s.consumers.sort()])).toEqual([
      [32, ['/up1a/conv1/Conv', '/up1a/conv_shortcut/Conv']],
      [32, ['/up1b/conv1/Conv', '/up1b/conv_shortcut/Conv']],
      [32, ['/up0a/conv1/Conv', '/up0a/conv_shortcut/Conv']],
      [16, ['/up0b/conv1/Conv', '/up0b/conv_shortcut/Conv']],
    ]);
  });
});

describe('UNet2DConditionModel-like (cross-attention, int64 timestep)', () => {
  const m = analyzeGraph(fixture('unet2d_condition.onnx'));
  it('separates self- and cross-attention matmuls from linear layers', () => {
    expect(m.conditioningInputs).toEqual(['encoder_hidden_states']);
    expect(m.attention).toHaveLength(8);
    expect(m.quantizable.filter((l) => /attn2\/to_k/.test(l.name)).map((l) => l.input)).toEqual(['encoder_hidden_states', 'encoder_hidden_states']);
  });
  it('the text input does not enter the temporal region', () => {
    expect(m.temporal).toHaveLength(10);
    expect(m.temporalConditioning).toEqual([]);
    expect(m.shortcutSplits).toHaveLength(4);
  });
});

describe('DiT-like (adaLN modulation, timestep named t)', () => {
  const m = analyzeGraph(fixture('dit.onnx'));
  it('finds t by name, and the adaLN modulations as temporal', () => {
    expect([m.sampleInput, m.timestepInput]).toEqual(['x', 't']);
    expect(m.temporal.sort()).toEqual([
      '/blocks.0/adaLN_modulation/adaLN_modulation.1/Gemm',
      '/blocks.1/adaLN_modulation/adaLN_modulation.1/Gemm',
      '/final_adaLN/final_adaLN.1/Gemm',
      '/t_mlp1/Gemm',
      '/t_mlp2/Gemm',
    ]);
    expect(m.temporalConditioning).toEqual(['y']);
  });
  it('has no skip concats; first layer is the patch embedding, last the final linear', () => {
    expect(m.shortcutSplits).toEqual([]);
    expect(m.sensitive.firstLayers).toEqual(['/x_embedder/Conv']);
    expect(m.sensitive.lastLayers).toEqual(['/final_linear/MatMul']);
    expect(m.attention).toHaveLength(4);
  });
  it('honours an explicit timestep input and rejects a wrong one', () => {
    expect(analyzeGraph(fixture('dit.onnx'), { timestepInput: 't' }).timestepInput).toBe('t');
    expect(() => analyzeGraph(fixture('dit.onnx'), { timestepInput: 'tt' })).toThrow(/timestep input 'tt' is not an input of the graph \(inputs: x, t, y\)/);
  });
});
