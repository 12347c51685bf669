/**
 * How an export's denoiser is loaded: as a quantized variant's (quant/variant.ts), with its int8 weights rewritten at
 * load where that runs the faster exact kernels (load-int8.ts), and a report of the weights it runs with here.
 */
import type { Pipeline, DenoiserContext, DenoiserLoad } from '../pipeline/pipeline.js';
import { cachedSession } from '../pipeline/pipeline.js';
import type { Manifest } from '../quant/quantize.js';
import { variantDenoiser } from '../quant/variant.js';
import { int8Support, INT8_SUPPORT_LABEL } from '../runtime/cpu.js';
import { Session, type Provider } from '../runtime/onnx.js';
import { loadPolicy, signedAtLoad, signedInt8Model, type SignedModel } from './load-int8.js';

/** The part of an export's manifest that decides how it loads. */
interface ExportRecord {
  options?: { int8Weights?: string };
  summary?: { int8Kernels?: number };
}

/** The weight rewrite behind each session made from rewritten bytes (a cached session is made once). */
const rewrites = new WeakMap<Session, SignedModel>();

/** An export's int8 weights as exported and as they run here, and the warning when they run wrong on this CPU. */
function int8Report(dir: string, w8: string, provider: Provider, ranOn: string, rewrite: SignedModel | null): { int8Weights: NonNullable<Pipeline['int8Weights']>; warning: string | null } {
  const cpu = INT8_SUPPORT_LABEL[int8Support()];
  const forced = loadPolicy() === 's8' ? 'DQ_INT8_WEIGHTS_AT_LOAD=s8' : `this CPU: ${cpu}`;
  let loaded = w8;
  let why: string;
  if (rewrite?.bytes) {
    loaded = 's8';
    why = `u8 weights of ${rewrite.layers} int8-kernel layers loaded as s8 (the same values) for the u8s8 kernels (${forced})`;
  } else if (rewrite) why = `kept as ${w8}: ${rewrite.skipped}`;
  else if (w8 !== 'u8') why = `as exported (${w8})`;
  else if (provider !== 'cpu' && provider !== 'auto') why = `as exported (u8; the ${provider} provider)`;
  else if (loadPolicy() === 'keep') why = 'as exported (u8; DQ_INT8_WEIGHTS_AT_LOAD=keep)';
  else why = `as exported (u8; s8 weights would not be exact on this CPU: ${cpu})`;
  const wrong = loaded === 's8' && ranOn === 'cpu' && int8Support() === 'avx2';
  const fix = w8 === 's8' ? `was exported with int8 weights s8` : `is loaded with int8 weights s8 (DQ_INT8_WEIGHTS_AT_LOAD=s8)`;
  const warning = wrong
    ? `${dir} ${fix}: on this CPU (AVX2 without VNNI) onnxruntime's int8 kernels saturate and its outputs can be far off; ${w8 === 's8' ? 're-export it with --int8-weights u8' : 'unset it'}`
    : null;
  return { int8Weights: { exported: w8, loaded, why }, warning };
}

/** The denoiser of an exported pipeline (`manifest.export` present). */
export async function exportDenoiser(ctx: DenoiserContext, manifest: Manifest & { export?: ExportRecord }): Promise<DenoiserLoad> {
  const exp = manifest.export;
  const w8 = exp?.summary?.int8Kernels ? exp.options?.int8Weights : undefined;
  // an export with u8 int8 weights runs on the faster u8s8 kernels where they are exact (load-int8.ts)
  const signed = signedAtLoad(w8, ctx.provider === 'auto' ? 'cpu' : ctx.provider, int8Support(), loadPolicy());
  const label = `${ctx.label}: unet/model.onnx`;
  const session = signed
    ? await cachedSession(ctx.unetPath, ctx.provider, {
        label,
        form: 's8',
        make: async () => {
          const rewrite = signedInt8Model(ctx.unetPath);
          const s = await Session.create(rewrite.bytes ?? ctx.unetPath, ctx.provider, { label });
          rewrites.set(s, rewrite);
          return s;
        },
      })
    : undefined;
  const base = await variantDenoiser(ctx, manifest, session);
  return {
    ...base,
    complete: async (p) => {
      await base.complete?.(p);
      if (!w8) return;
      const r = int8Report(ctx.label, w8, ctx.provider, base.session.info.provider, (session && rewrites.get(session)) ?? null);
      p.int8Weights = r.int8Weights;
      if (r.warning) p.warnings = [...(p.warnings ?? []), r.warning];
    },
  };
}
