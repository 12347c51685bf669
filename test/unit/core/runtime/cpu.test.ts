import { describe, expect, it } from 'vitest';
import { int8SupportFrom } from '../../../../src-main/core/runtime/cpu';

describe('int8SupportFrom', () => {
  it('reads VNNI, AVX2-only and other CPUs from the flags line', () => {
    expect(int8SupportFrom('processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n')).toBe('vnni');
    expect(int8SupportFrom('flags\t: fpu avx avx2 avx_vnni\n')).toBe('vnni');
    expect(int8SupportFrom('flags\t: fpu fma avx avx2 bmi2\nflags\t: avx512_vnni\n')).toBe('avx2');
    expect(int8SupportFrom('flags\t: fpu sse4_2 avx\n')).toBe('other');
    expect(int8SupportFrom('Features\t: fp asimd asimddp\n')).toBe('unknown');
  });
});
