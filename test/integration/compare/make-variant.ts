/**
 * Test variants of a pipeline: a copy whose weights are fake-quantized (per tensor, symmetric, b bits, with the
 * kernels' reference `fakeQuantInt`), or whose graph is edited. Same layout as what the quantizer writes.
 */
import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fakeQuantInt } from '../../../kernels/quant';
import { PER_TENSOR } from '../../../kernels/layout';
import { loadOnnx, saveOnnx } from '../../../src-main/core/onnx/io';
import type { ModelMsg } from '../../../src-main/core/onnx/model';

function copyLayout(src: string, dst: string, manifest: Record<string, unknown> | null): void {
  mkdirSync(join(dst, 'unet'), { recursive: true });
  cpSync(join(src, 'model_index.json'), join(dst, 'model_index.json'));
  cpSync(join(src, 'scheduler'), join(dst, 'scheduler'), { recursive: true });
  if (manifest) writeFileSync(join(dst, 'manifest.json'), JSON.stringify(manifest, null, 2));
}

/** Every float weight with 2+ dims rounded to `bits`-bit integers on a per-tensor scale (amax / qmax). */
export function makeQuantVariant(src: string, dst: string, bits: number, name = `w${bits}`): string {
  copyLayout(src, dst, { name, format: `int${bits}`, granularity: 'tensor', note: 'test variant' });
  const loaded = loadOnnx(join(src, 'unet', 'model.onnx'));
  const qmax = 2 ** (bits - 1) - 1;
  let changed = 0;
  for (const t of loaded.model.graph?.initializer ?? []) {
    const dims = (t.dims ?? []).map(Number);
    if (t.data_type !== 1 || dims.length < 2 || !t.raw_data) continue;
    const x = new Float32Array(Uint8Array.from(t.raw_data).buffer);
    let amax = 0;
    for (const v of x) amax = Math.max(amax, Math.abs(v));
    if (amax === 0) continue;
    const y = fakeQuantInt(x, dims, PER_TENSOR, { bits, symmetric: true }, Float32Array.of(amax / qmax));
    t.raw_data = new Uint8Array(y.buffer);
    changed++;
  }
  if (!changed) throw new Error('no weights to quantize');
  saveOnnx(loaded.model, join(dst, 'unet', 'model.onnx'));
  return dst;
}

/** A variant whose graph computes the same function under other tensor names (so FP's temporal features are absent). */
export function makeRenamedVariant(src: string, dst: string): string {
  copyLayout(src, dst, { name: 'renamed', note: 'test variant: same weights, renamed tensors' });
  const loaded = loadOnnx(join(src, 'unet', 'model.onnx'));
  const model = loaded.model as ModelMsg;
  const graph = model.graph!;
  const outputs = new Set((graph.output ?? []).map((o) => o.name ?? ''));
  const inputs = new Set((graph.input ?? []).map((i) => i.name ?? ''));
  const inits = new Set((graph.initializer ?? []).map((i) => i.name ?? ''));
  const rename = (n: string) => (n && !outputs.has(n) && !inputs.has(n) && !inits.has(n) ? `renamed_${n}` : n);
  for (const node of graph.node ?? []) {
    node.input = (node.input ?? []).map(rename);
    node.output = (node.output ?? []).map(rename);
  }
  const vi = (graph as { value_info?: { name?: string }[] }).value_info;
  if (vi) for (const v of vi) v.name = rename(v.name ?? '');
  saveOnnx(model, join(dst, 'unet', 'model.onnx'));
  return dst;
}
