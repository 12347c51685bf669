import { expect, it } from 'vitest';
import { MAX_CLASSES, MAX_SEED, MAX_SEEDS, parseClasses, parseIntList, parseSeeds } from '../../../src-main/core/ranges';

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

it('keeps the first occurrence and drops duplicates across overlapping ranges', () => {
  expect(parseIntList('3,0-4,2-6', 'x')).toEqual([3, 0, 1, 2, 4, 5, 6]);
  // overlapping ranges count their distinct values only
  expect(parseIntList('0-1023,0-1023', '--seeds')).toHaveLength(1024);
});

it('refuses more values than the limit and names the limit', () => {
  expect(() => parseIntList('0-99999', '--seeds')).toThrow(`--seeds: more than ${MAX_SEEDS} values (the limit)`);
  expect(() => parseSeeds('0-1023,5000')).toThrow(/--seeds: more than 1024 values/);
  expect(() => parseClasses('0-2000')).toThrow(`--class: more than ${MAX_CLASSES} values`);
  expect(() => parseIntList('0-10', 'x', 5)).toThrow(/x: more than 5 values/);
  expect(parseIntList('0-4', 'x', 5)).toEqual([0, 1, 2, 3, 4]);
});

it('refuses values above the limit, reading digits exactly even beyond 2^53', () => {
  expect(() => parseIntList('7', 'x', { value: 6 })).toThrow('x: 7 is too large (at most 6)');
  expect(parseSeeds(String(MAX_SEED))).toEqual([MAX_SEED]);
  expect(() => parseSeeds(String(MAX_SEED + 1))).toThrow(`--seeds: ${MAX_SEED + 1} is too large (at most ${MAX_SEED})`);
  // 2^53 + 1 is not a float64: Number() reads it as 2^53; the message shows the digits as given
  expect(() => parseSeeds('0,9007199254740993')).toThrow('--seeds: 9007199254740993 is too large');
  expect(() => parseClasses('1-99999999999999999999999')).toThrow('--class: 99999999999999999999999 is too large');
  expect(parseIntList('0007', 'x')).toEqual([7]);
});
