import { expect, it } from 'vitest';
import { parseIntList } from '../../../src-main/core/ranges';

it('parses lists and ranges', () => {
  expect(parseIntList('0-3', 'x')).toEqual([0, 1, 2, 3]);
  expect(parseIntList('5', 'x')).toEqual([5]);
  expect(parseIntList('0-2,7,1', 'x')).toEqual([0, 1, 2, 7]);
});

it('refuses bad input with the option name', () => {
  expect(() => parseIntList('a-b', '--seeds')).toThrow(/--seeds: 'a-b'/);
  expect(() => parseIntList('5-2', '--class')).toThrow(/backwards/);
  expect(() => parseIntList('-1', '--seeds')).toThrow(/--seeds/);
});
