/**
 * A 3x5 bitmap font for labels drawn into image grids. Drawing text ourselves (instead of SVG text through a
 * system font) keeps PNGs byte-identical across machines. Letters are upper case; lower case maps onto them.
 */
const G: Record<string, string> = {
  '0': '###|#.#|#.#|#.#|###', '1': '.#.|##.|.#.|.#.|###', '2': '###|..#|###|#..|###', '3': '###|..#|.##|..#|###',
  '4': '#.#|#.#|###|..#|..#', '5': '###|#..|###|..#|###', '6': '###|#..|###|#.#|###', '7': '###|..#|.#.|.#.|.#.',
  '8': '###|#.#|###|#.#|###', '9': '###|#.#|###|..#|###',
  A: '.#.|#.#|###|#.#|#.#', B: '##.|#.#|##.|#.#|##.', C: '.##|#..|#..|#..|.##', D: '##.|#.#|#.#|#.#|##.',
  E: '###|#..|##.|#..|###', F: '###|#..|##.|#..|#..', G: '.##|#..|#.#|#.#|.##', H: '#.#|#.#|###|#.#|#.#',
  I: '###|.#.|.#.|.#.|###', J: '..#|..#|..#|#.#|.#.', K: '#.#|#.#|##.|#.#|#.#', L: '#..|#..|#..|#..|###',
  M: '#.#|###|###|#.#|#.#', N: '##.|#.#|#.#|#.#|#.#', O: '.#.|#.#|#.#|#.#|.#.', P: '##.|#.#|##.|#..|#..',
  Q: '.#.|#.#|#.#|##.|.##', R: '##.|#.#|##.|#.#|#.#', S: '.##|#..|.#.|..#|##.', T: '###|.#.|.#.|.#.|.#.',
  U: '#.#|#.#|#.#|#.#|###', V: '#.#|#.#|#.#|#.#|.#.', W: '#.#|#.#|###|###|#.#', X: '#.#|#.#|.#.|#.#|#.#',
  Y: '#.#|#.#|.#.|.#.|.#.', Z: '###|..#|.#.|#..|###',
  ' ': '...|...|...|...|...', '-': '...|...|###|...|...', '.': '...|...|...|...|.#.', ':': '...|.#.|...|.#.|...',
  '=': '...|###|...|###|...', '+': '...|.#.|###|.#.|...', '/': '..#|..#|.#.|#..|#..', '_': '...|...|...|...|###',
  '?': '##.|..#|.#.|...|.#.', '%': '#.#|..#|.#.|#..|#.#', '(': '.#.|#..|#..|#..|.#.', ')': '.#.|..#|..#|..#|.#.',
  ',': '...|...|...|.#.|#..', "'": '.#.|.#.|...|...|...', '"': '#.#|#.#|...|...|...', '!': '.#.|.#.|.#.|...|.#.',
  '…': '...|...|...|...|#.#',
};

export const GLYPH_W = 3;
export const GLYPH_H = 5;

/** Pixel width of `text` at `scale` (one blank column between glyphs). */
export function textWidth(text: string, scale: number): number {
  return text.length === 0 ? 0 : (text.length * (GLYPH_W + 1) - 1) * scale;
}

/** Draws `text` into a single-channel image (row-major, width w). Unknown characters draw as '?'. */
export function drawText(img: Uint8Array, w: number, h: number, text: string, x0: number, y0: number, scale: number, value: number): void {
  let x = x0;
  for (const ch of text.toUpperCase()) {
    const rows = (G[ch] ?? G['?']!).split('|');
    for (let r = 0; r < GLYPH_H; r++) {
      for (let c = 0; c < GLYPH_W; c++) {
        if (rows[r]![c] !== '#') continue;
        for (let dy = 0; dy < scale; dy++) {
          for (let dx = 0; dx < scale; dx++) {
            const px = x + c * scale + dx;
            const py = y0 + r * scale + dy;
            if (px >= 0 && px < w && py >= 0 && py < h) img[py * w + px] = value;
          }
        }
      }
    }
    x += (GLYPH_W + 1) * scale;
  }
}
