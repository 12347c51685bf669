import { expect, it } from 'vitest';
import { drawText, textWidth } from '../../../../src-main/core/image/font';
import { encodePng, layoutGrid, toByte } from '../../../../src-main/core/image/grid';
import sharp from 'sharp';

it('maps model space to bytes with rounding and clamping', () => {
  expect(toByte(-1)).toBe(0);
  expect(toByte(1)).toBe(255);
  expect(toByte(0)).toBe(128);
  expect(toByte(-3)).toBe(0);
  expect(toByte(9)).toBe(255);
});

it('draws glyphs where the font says', () => {
  const w = 20;
  const img = new Uint8Array(w * 7).fill(255);
  drawText(img, w, 7, '1', 0, 0, 1, 0);
  // glyph '1' = .#. / ##. / .#. / .#. / ###
  const row = (r: number) => Array.from(img.subarray(r * w, r * w + 3), (v) => (v === 0 ? '#' : '.')).join('');
  expect([0, 1, 2, 3, 4].map(row)).toEqual(['.#.', '##.', '.#.', '.#.', '###']);
  expect(textWidth('10', 2)).toBe(14);
});

it('lays out cells and encodes a PNG of the right size, deterministically', async () => {
  const cell = new Float32Array(4 * 4).fill(1);
  const spec = { cells: [[cell, null], [null, cell]], channels: 1, height: 4, width: 4, rowLabels: ['a', 'b'], colLabels: ['s0', 's1'], zoom: 2 };
  const g = layoutGrid(spec);
  const png = await encodePng(g);
  const meta = await sharp(png).metadata();
  expect([meta.width, meta.height]).toEqual([g.width, g.height]);
  expect(Buffer.compare(png, await encodePng(layoutGrid(spec)))).toBe(0);
  expect(meta.channels).toBe(1);
  const raw = await sharp(png).extractChannel(0).raw().toBuffer();
  expect(raw.length).toBe(g.width * g.height * g.channels);
  expect(Buffer.compare(raw, Buffer.from(g.data))).toBe(0); // lossless
  // a filled cell (value 1 -> 255) is white; the gap between cells is too: compare with a cell of -1
  const dark = layoutGrid({ ...spec, cells: [[new Float32Array(16).fill(-1), null], [null, null]] });
  const diff = g.data.reduce((n, v, i) => n + (v !== dark.data[i] ? 1 : 0), 0);
  expect(diff).toBe(8 * 8); // exactly the 4x4 cell at zoom 2
});
