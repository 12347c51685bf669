/** The contract names the samplers itself (it imports no core): the same list as the engine's, in the same order. */
import { expect, it } from 'vitest';
import { SAMPLER_NAMES } from '../../src-main/contract/api';
import { SAMPLERS } from '../../src-main/core/pipeline/schedulers';

it("the contract's sampler names are the engine's samplers", () => {
  expect([...SAMPLER_NAMES]).toEqual([...SAMPLERS]);
});
