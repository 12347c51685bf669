/**
 * Labelled image grids: a row per class (or variant), a column per seed. Layout is pure; PNG encoding uses sharp
 * with fixed settings so the same pixels always give the same bytes.
 */
import { drawText, GLYPH_H, textWidth } from './font.js';

export interface GridSpec {
  /** cells[row][col]: one image [C*H*W] in model space [-1, 1], or null for an empty cell. */
  cells: (Float32Array | null)[][];
  channels: number;
  height: number;
  width: number;
  rowLabels: string[];
  colLabels: string[];
  /** Integer upscaling of each cell (nearest neighbour). */
  zoom?: number;
  title?: string;
}

export interface RasterImage {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 1 | 3;
}

/** Model space [-1, 1] to 8-bit, rounding half up, clamped. */
export function toByte(v: number): number {
  const b = Math.floor(((v + 1) / 2) * 255 + 0.5);
  return b < 0 ? 0 : b > 255 ? 255 : b;
}

export function layoutGrid(spec: GridSpec): RasterImage {
  const zoom = spec.zoom ?? 2;
  const ch = spec.channels === 1 ? 1 : 3;
  const cw = spec.width * zoom;
  const chh = spec.height * zoom;
  const pad = 2;
  const ts = 2; // text scale
  const labelW = Math.max(0, ...spec.rowLabels.map((l) => textWidth(l, ts))) + 6;
  const titleH = spec.title ? GLYPH_H * ts + 6 : 0;
  const headH = GLYPH_H * ts + 6;
  const nRows = spec.cells.length;
  const nCols = Math.max(0, ...spec.cells.map((r) => r.length));
  const W = labelW + nCols * (cw + pad) + pad;
  const H = titleH + headH + nRows * (chh + pad) + pad;
  const gray = new Uint8Array(W * H).fill(255);
  if (spec.title) drawText(gray, W, H, spec.title, 3, 3, ts, 0);
  spec.colLabels.slice(0, nCols).forEach((l, c) => {
    const x = labelW + pad + c * (cw + pad) + Math.floor((cw - textWidth(l, ts)) / 2);
    drawText(gray, W, H, l, x, titleH + 3, ts, 0);
  });
  spec.rowLabels.slice(0, nRows).forEach((l, r) => {
    drawText(gray, W, H, l, 3, titleH + headH + pad + r * (chh + pad) + Math.floor((chh - GLYPH_H * ts) / 2), ts, 0);
  });
  const out = new Uint8Array(W * H * ch);
  for (let i = 0; i < W * H; i++) for (let k = 0; k < ch; k++) out[i * ch + k] = gray[i]!;
  const plane = spec.height * spec.width;
  spec.cells.forEach((row, r) =>
    row.forEach((img, c) => {
      if (!img) return;
      const ox = labelW + pad + c * (cw + pad);
      const oy = titleH + headH + pad + r * (chh + pad);
      for (let y = 0; y < chh; y++) {
        for (let x = 0; x < cw; x++) {
          const src = Math.floor(y / zoom) * spec.width + Math.floor(x / zoom);
          const dst = ((oy + y) * W + ox + x) * ch;
          for (let k = 0; k < ch; k++) out[dst + k] = toByte(img[(spec.channels === 1 ? 0 : k) * plane + src]!);
        }
      }
    }),
  );
  return { data: out, width: W, height: H, channels: ch };
}

/** sharp, loaded on first use (it costs ~0.15 s to load; a CLI that writes no image does not pay it). */
export async function loadSharp(): Promise<typeof import('sharp').default> {
  return (await import('sharp')).default;
}

export async function encodePng(img: RasterImage): Promise<Buffer> {
  const sharp = await loadSharp();
  const s = sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength), {
    raw: { width: img.width, height: img.height, channels: img.channels },
  });
  return (img.channels === 1 ? s.toColourspace('b-w') : s)
    .png({ compressionLevel: 9, adaptiveFiltering: false, palette: false })
    .toBuffer();
}
