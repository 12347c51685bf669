/**
 * What the CPU offers onnxruntime's int8 kernels. x86 CPUs with VNNI (AVX-512 VNNI, AVX-VNNI) multiply uint8 x int8
 * into int32 directly; with AVX2 only, onnxruntime's u8s8 kernels add pairs of products in int16 with saturation,
 * so int8 weights (exports with int8 weights 's8') give wrong outputs there. Read from /proc/cpuinfo (Linux);
 * 'unknown' elsewhere.
 */
import { readFileSync } from 'node:fs';

export type Int8Support = 'vnni' | 'avx2' | 'other' | 'unknown';

/** From a /proc/cpuinfo text: the first `flags` line decides. */
export function int8SupportFrom(cpuinfo: string): Int8Support {
  const flags = /^flags\s*:(.*)$/m.exec(cpuinfo)?.[1];
  if (flags === undefined) return 'unknown';
  const has = new Set(flags.trim().split(/\s+/));
  if (has.has('avx512_vnni') || has.has('avx_vnni')) return 'vnni';
  return has.has('avx2') ? 'avx2' : 'other';
}

let cached: Int8Support | undefined;

export function int8Support(): Int8Support {
  if (cached === undefined) {
    try {
      cached = int8SupportFrom(readFileSync('/proc/cpuinfo', 'utf8'));
    } catch {
      cached = 'unknown';
    }
  }
  return cached;
}

export const INT8_SUPPORT_LABEL: Record<Int8Support, string> = {
  vnni: 'AVX-512 VNNI / AVX-VNNI',
  avx2: 'AVX2 without VNNI',
  other: 'no AVX2',
  unknown: 'unknown (no /proc/cpuinfo)',
};
