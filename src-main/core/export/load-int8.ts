/**
 * The int8 weight storage an export runs with, chosen when it loads.
 *
 * An export stores int8 weights as 'u8' by default (codes + 128, zero point 128): onnxruntime then runs its u8u8
 * kernels, exact on every CPU. On CPUs with VNNI the u8s8 kernels are exact too, and faster. So on such a CPU the
 * loader rewrites the u8 weights back to the int8 codes (value - 128, zero point 0) in memory before the session is
 * made: the same numbers, the faster kernels, and the file on disk stays portable. On AVX2-only CPUs nothing
 * changes (the u8s8 kernels saturate there).
 *
 * DQ_INT8_WEIGHTS_AT_LOAD: 'auto' (the default: s8 where the CPU has VNNI), 'keep' (never rewrite) or 's8' (always
 * rewrite; on an AVX2-only CPU the outputs are then as wrong as an s8 export's, and the pipeline warns).
 */
import { DqError } from '../errors.js';
import { encodeModel, externalRef, loadOnnx, tensorBytes } from '../onnx/io.js';
import type { TensorMsg } from '../onnx/model.js';
import type { Int8Support } from '../runtime/cpu.js';

const UINT8 = 2;
const INT8 = 3;

/** The inputs of onnxruntime's int8 kernels that hold the weight and its zero point. */
const WEIGHT_INPUTS: Record<string, { w: number; zp: number }> = {
  QLinearConv: { w: 3, zp: 5 },
  MatMulIntegerToFloat: { w: 1, zp: 5 },
};

export type LoadPolicy = 'auto' | 'keep' | 's8';

export function loadPolicy(env: string | undefined = process.env.DQ_INT8_WEIGHTS_AT_LOAD): LoadPolicy {
  const v = (env ?? '').trim();
  if (v === '' || v === 'auto') return 'auto';
  if (v === 'keep' || v === 's8') return v;
  throw new DqError('BAD_CONFIG', `DQ_INT8_WEIGHTS_AT_LOAD must be auto, keep or s8, not '${v}'`);
}

/** Whether a pipeline exported with `exported` int8 weights is loaded with s8 weights instead (CPU provider only). */
export function signedAtLoad(exported: string | undefined, provider: string, support: Int8Support, policy: LoadPolicy): boolean {
  if (exported !== 'u8' || provider !== 'cpu' || policy === 'keep') return false;
  return policy === 's8' || support === 'vnni';
}

export interface SignedModel {
  /** The model with its u8 kernel weights as int8, encoded; null when it had none to rewrite. */
  bytes: Uint8Array | null;
  /** Kernel layers whose weights were rewritten. */
  layers: number;
  /** Why nothing was rewritten, when nothing was. */
  skipped?: string;
}

/**
 * Rewrites the uint8 weights (zero points all 128) of QLinearConv and MatMulIntegerToFloat nodes to int8 codes with
 * zero point 0. Each rewritten tensor gets a new name, so a tensor that something else also reads is left as it is.
 * Models whose tensors live in external files are not rewritten (a session from bytes cannot find those files).
 */
export function signedInt8Model(path: string): SignedModel {
  const loaded = loadOnnx(path);
  const g = loaded.model.graph!;
  const inits = g.initializer ?? [];
  if (inits.some((t) => externalRef(t))) return { bytes: null, layers: 0, skipped: 'its weights are in external data files' };
  const byName = new Map(inits.map((t) => [t.name ?? '', t]));
  const made = new Map<string, string>();
  const replaced = new Set<string>();
  const added: TensorMsg[] = [];
  const signedCopy = (t: TensorMsg, shift: boolean): string => {
    const key = `${t.name}\0${shift}`;
    let name = made.get(key);
    if (!name) {
      name = `${t.name}/s8`;
      const src = tensorBytes(loaded, t);
      const out = new Int8Array(src.length);
      if (shift) for (let i = 0; i < src.length; i++) out[i] = src[i]! - 128;
      added.push({ name, dims: t.dims, data_type: INT8, raw_data: new Uint8Array(out.buffer) });
      made.set(key, name);
      replaced.add(t.name ?? '');
    }
    return name;
  };
  let layers = 0;
  for (const n of g.node ?? []) {
    const at = WEIGHT_INPUTS[n.op_type ?? ''];
    if (!at || !n.input) continue;
    const w = byName.get(n.input[at.w] ?? '');
    const zp = byName.get(n.input[at.zp] ?? '');
    if (!w || !zp || w.data_type !== UINT8 || zp.data_type !== UINT8) continue;
    // values in raw_data only (what the exporter writes); a tensor in int32_data is left alone
    if (tensorBytes(loaded, w).length !== numel(w) || tensorBytes(loaded, zp).length !== numel(zp)) continue;
    if (!tensorBytes(loaded, zp).every((v) => v === 128)) continue;
    n.input[at.w] = signedCopy(w, true);
    n.input[at.zp] = signedCopy(zp, false);
    layers++;
  }
  if (!layers) return { bytes: null, layers: 0, skipped: 'it has no uint8 kernel weights with zero point 128' };
  // drop the originals nothing reads any more (only those: other tensors may be read from places not looked at here)
  const used = new Set((g.node ?? []).flatMap((n) => n.input ?? []));
  for (const o of g.output ?? []) used.add(o.name ?? '');
  g.initializer = [...inits.filter((t) => !replaced.has(t.name ?? '') || used.has(t.name ?? '')), ...added];
  return { bytes: encodeModel(loaded.model), layers };
}

function numel(t: TensorMsg): number {
  return (t.dims ?? []).reduce<number>((a, d) => a * Number(d), 1);
}
