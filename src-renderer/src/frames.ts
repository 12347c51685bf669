/**
 * The frames of a frame sheet (frames of one size stacked top to bottom, as the host writes them) as images of their
 * own, so a video can be shown one frame at a time by any image view (the A/B wipe, the loupe).
 */
export async function sliceSheet(url: string, frames: number): Promise<string[]> {
  const img = new Image();
  img.src = url;
  await img.decode();
  const w = img.naturalWidth;
  const h = Math.floor(img.naturalHeight / frames);
  if (!w || !h) throw new Error('the frame sheet is empty');
  const canvas = document.createElement('canvas');
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext('2d')!;
  const out: string[] = [];
  for (let k = 0; k < frames; k++) {
    ctx.clearRect(0, 0, w, h);
    ctx.drawImage(img, 0, k * h, w, h, 0, 0, w, h);
    out.push(canvas.toDataURL('image/png'));
  }
  return out;
}
