import { describe, expect, it } from 'vitest';
import { absDiff, escapeXml, heatColor, heatImage, label, padEven, svgLineChart, toRgbPlanes } from '../../../../src-main/core/compare/render';

const luminance = ([r, g, b]: number[]) => 0.2126 * r! + 0.7152 * g! + 0.0722 * b!;

describe('heat ramp', () => {
  it('runs from near black (no difference) to pale yellow (largest), clamping outside [0, 1]', () => {
    expect(heatColor(0)).toEqual([0, 0, 4]);
    expect(heatColor(1)).toEqual([252, 255, 164]);
    expect(heatColor(-3)).toEqual(heatColor(0));
    expect(heatColor(7)).toEqual(heatColor(1));
    expect(heatColor(NaN)).toEqual(heatColor(0));
  });
  it('gets brighter as the difference grows (readable in grey too)', () => {
    let prev = -1;
    for (let i = 0; i <= 100; i++) {
      const l = luminance(heatColor(i / 100));
      expect(l).toBeGreaterThan(prev);
      prev = l;
    }
  });
});

describe('difference maps', () => {
  it('absDiff is the per-pixel absolute difference averaged over channels', () => {
    const a = Float32Array.from([0, 1, 0.5, -1, /* channel 2 */ 0, 0, 0, 0]);
    const b = Float32Array.from([1, 1, -0.5, 1, /* channel 2 */ 1, 0, 0, 0]);
    expect(Array.from(absDiff(a, b, [2, 2, 2]))).toEqual([1, 0, 0.5, 1]);
    expect(() => absDiff(a, b, [1, 2, 2])).toThrow();
  });
  it('heatImage gives three planes in model space with the ramp colour of diff / scale', () => {
    const img = heatImage(Float32Array.from([0, 0.5, 1, 2]), 1);
    expect(img.length).toBe(12);
    const px = (i: number) => [0, 1, 2].map((k) => Math.round(((img[k * 4 + i]! + 1) / 2) * 255));
    expect(px(0)).toEqual(heatColor(0));
    expect(px(1)).toEqual(heatColor(0.5));
    expect(px(2)).toEqual(heatColor(1));
    expect(px(3)).toEqual(heatColor(1)); // beyond the scale: clamped
  });
  it('toRgbPlanes repeats a grey plane three times', () => {
    expect(Array.from(toRgbPlanes(Float32Array.from([0.25, -1]), 1))).toEqual([0.25, -1, 0.25, -1, 0.25, -1]);
    expect(() => toRgbPlanes(new Float32Array(4), 2)).toThrow();
  });
});

describe('padEven', () => {
  it('adds a white column and row to odd sizes and keeps the pixels', () => {
    const data = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]); // 3x2 RGB
    const p = padEven({ data, width: 3, height: 2, channels: 3 });
    expect([p.width, p.height]).toEqual([4, 2]);
    expect(Array.from(p.data.subarray(0, 9))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(Array.from(p.data.subarray(9, 12))).toEqual([255, 255, 255]);
    expect(Array.from(p.data.subarray(12, 21))).toEqual([10, 11, 12, 13, 14, 15, 16, 17, 18]);
    const even = { data: new Uint8Array(12), width: 2, height: 2, channels: 3 as const };
    expect(padEven(even)).toBe(even);
  });
});

describe('labels and charts', () => {
  it('label upper-cases, replaces what the font cannot draw and shortens', () => {
    expect(label('int8-w8a8')).toBe('INT8-W8A8');
    expect(label('a|b', 8)).toBe('A_B');
    expect(label('abcdefghij', 5)).toBe('ABCD.');
  });
  it('a chart draws one line per series, breaks it at missing values and escapes names', () => {
    const svg = svgLineChart({
      title: 'T <1>',
      xLabels: ['a', 'b', 'c', 'd'],
      xTitle: 'x',
      yTitle: 'y',
      series: [
        { name: 'int8 & co', colour: '#f00', values: [0.1, 0.2, 0.3, 0.4] },
        { name: 'int4', colour: '#00f', values: [1, null, 2, 3] },
      ],
    });
    expect(svg.startsWith('<svg')).toBe(true);
    const lines = [...svg.matchAll(/<polyline[^>]*points="([^"]*)"/g)].map((m) => m[1]!.split(' ').length);
    expect(lines).toEqual([4, 2]);
    expect(svg).toContain('<circle'); // the lone point before the gap
    expect(svg).toContain('int8 &amp; co');
    expect(svg).toContain('T &lt;1&gt;');
    expect(escapeXml(`"'`)).toBe('&quot;&#39;');
  });
  it('the y axis covers the largest value with round ticks', () => {
    const svg = svgLineChart({ title: '', xLabels: ['a', 'b'], xTitle: '', yTitle: '', series: [{ name: 's', colour: '#000', values: [0.03, 0.43] }] });
    const ticks = [...svg.matchAll(/text-anchor="end" dominant-baseline="middle">([^<]*)</g)].map((m) => Number(m[1]));
    expect(ticks).toEqual([0, 0.1, 0.2, 0.3, 0.4, 0.5]);
  });
});
