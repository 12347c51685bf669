/**
 * The comparison report: one HTML file that opens from the output folder without a server. Images (grid, heatmaps,
 * animated WebP) are embedded as data URIs; MP4 videos, when written, are referenced beside it; the charts are
 * inline SVG; metrics.json is embedded too. No scripts run and nothing is fetched from elsewhere.
 */
import { escapeXml as esc, SERIES_COLOURS, svgLineChart } from './render.js';
import type { CompareMetrics, VariantMetrics } from './schema.js';
import { psnrOverFrames } from './video-compare.js';

export interface ReportAssets {
  gridPng: Uint8Array;
  diffs: { name: string; file: string; png: Uint8Array }[];
  trajectoryWebp: Uint8Array | null;
  walkWebp: Uint8Array | null;
  /** A video pipeline: every variant's videos side by side, and each variant's |variant - FP| heatmaps (animated WebP). */
  videoFrames?: { side: Uint8Array; diffs: Record<string, Uint8Array> } | null;
}

function dataUri(mime: string, bytes: Uint8Array): string {
  return `data:${mime};base64,${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')}`;
}

function num(v: number | null | undefined, digits = 3): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  return v.toFixed(digits);
}

function bytes(n: number): string {
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(2)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  return `${n} B`;
}

function pct(v: number | null): string {
  return v === null ? '–' : `${(v * 100).toFixed(1)}%`;
}

function meanOf(rows: { relative: number | null }[]): number | null {
  const v = rows.map((r) => r.relative).filter((x): x is number => x !== null);
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
}

function temporalCell(m: VariantMetrics): string {
  const t = m.temporalFeatureError;
  if (!t.available) return `<span title="${esc(t.reason ?? '')}">n/a</span>`;
  const fed = t.source === 'fed' ? '<br><span class="sub" title="the variant\'s denoiser reads these features from its feature model (TFMQ cache)">fed</span>' : '';
  return num(meanOf(t.perStep), 4) + fed;
}

function judgeCells(m: VariantMetrics, withJudge: boolean): string[] {
  if (!withJudge) return [];
  const ref = '<td class="ref" title="the reference">reference</td>';
  if (m.isFp) return [ref, ref];
  const j = m.judge;
  return [`<td>${num(j?.fidToFp)}</td>`, `<td>${j ? `${num(j.cosine.mean, 4)} / ${num(j.cosine.min, 4)}` : '–'}</td>`];
}

function row(m: VariantMetrics, withJudge: boolean): string {
  const ref = '<td class="ref" title="the reference">reference</td>';
  const cells = [
    `<th scope="row">${esc(m.name)}</th>`,
    `<td>${bytes(m.modelBytes)}${m.estimatedDeployedBytes !== null && m.estimatedDeployedBytes !== m.modelBytes ? `<br><span class="sub" title="if the quantized weights were stored at their bit width">≈ ${bytes(m.estimatedDeployedBytes)} deployed</span>` : ''}</td>`,
    `<td>${m.weightBitsPerParameter === null ? '–' : num(m.weightBitsPerParameter, 2)}</td>`,
    m.isFp ? ref : `<td>${m.psnrDb.mean === null ? '∞ (identical)' : `${num(m.psnrDb.mean, 2)} / ${num(m.psnrDb.min, 2)}`}</td>`,
    m.isFp ? ref : `<td>${num(m.ssim.mean, 4)} / ${num(m.ssim.min, 4)}</td>`,
    m.isFp ? ref : `<td>${num(m.fid.toFp)}</td>`,
    `<td>${num(m.fid.toData)}</td>`,
    `<td>${pct(m.classAgreement.requested)}</td>`,
    m.isFp ? ref : `<td>${pct(m.classAgreement.withFp)}</td>`,
    ...judgeCells(m, withJudge),
    m.isFp ? ref : `<td>${num(meanOf(m.epsError), 4)}</td>`,
    m.isFp ? ref : `<td>${temporalCell(m)}</td>`,
    `<td>${num(m.timing.secondsPerStep, 4)}</td>`,
  ];
  return `<tr data-variant="${esc(m.name)}">${cells.join('')}</tr>`;
}

function video(key: 'trajectory' | 'walk', m: CompareMetrics, webp: Uint8Array | null, caption: string): string {
  const f = m.files[key];
  if (!webp || !f.webp) return `<p class="note">${esc(caption)}: not written (videos were turned off).</p>`;
  const mp4 = f.mp4
    ? `<figure><video data-testid="${key}-mp4" src="${esc(f.mp4)}" controls muted loop autoplay playsinline preload="auto"></video><figcaption>MP4 (H.264): <a href="${esc(f.mp4)}">${esc(f.mp4)}</a></figcaption></figure>`
    : `<p class="note" data-testid="${key}-mp4-missing">MP4 not written (see the notes above); the animated WebP shows the same frames.</p>`;
  return `<div class="videos"><figure><img data-testid="${key}-webp" class="pixel" src="${dataUri('image/webp', webp)}" alt="${esc(caption)} (animated WebP)"><figcaption>Animated WebP: <a href="${esc(f.webp)}">${esc(f.webp)}</a>, ${f.frames} frames</figcaption></figure>${mp4}</div>`;
}

/** A video pipeline's section: the grid's videos of every variant in step, the heatmaps, PSNR and flicker per frame. */
function videoFramesSection(m: CompareMetrics, a: ReportAssets, colours: string[]): string {
  const v = m.videoFrames;
  const assets = a.videoFrames;
  if (!v || !assets) return '';
  const colourOf = new Map(m.variants.map((x, i) => [x.name, colours[i]!]));
  const frames = Array.from({ length: v.frames }, (_, k) => String(k + 1));
  const chart = svgLineChart({
    title: 'PSNR against FP, frame by frame (mean over the grid\'s videos)',
    xLabels: frames,
    xTitle: 'frame',
    yTitle: 'PSNR dB',
    series: v.perFrame.map((p) => ({ name: p.name, colour: colourOf.get(p.name) ?? '#333', values: p.psnrDb })),
  });
  const rows = v.perFrame
    .map((p) => {
      const { mean, worst, worstFrame } = psnrOverFrames(p.psnrDb);
      const at = worst === null ? '' : ` (frame ${worstFrame})`;
      return `<tr data-video-variant="${esc(p.name)}"><th scope="row">${esc(p.name)}</th><td>${mean === null ? '∞ (identical)' : num(mean, 2)}</td><td>${worst === null ? '–' : num(worst, 2) + at}</td><td>${num(Math.min(...p.ssim), 4)}</td><td>${num(Math.max(...p.meanAbs), 4)}</td><td>${p.flickerRatio === null ? '–' : `${num(p.flickerRatio, 3)}×`}</td></tr>`;
    })
    .join('');
  const diffs = Object.entries(v.diffs)
    .map(([name, file]) => `<figure><img class="pixel" data-testid="video-diff" src="${dataUri('image/webp', assets.diffs[name]!)}" alt="|${esc(name)} − FP| frame by frame (animated WebP)"><figcaption>${esc(name)}: <a href="${esc(file)}">${esc(file)}</a></figcaption></figure>`)
    .join('');
  return `<h2>Videos, frame by frame</h2>
<p>The grid's videos (a row per prompt, a column per seed) of every variant side by side, FP first, in one animation at ${v.fps} fps, so their frames change together.</p>
<div class="scroll"><figure><img class="pixel" data-testid="video-side" src="${dataUri('image/webp', assets.side)}" alt="every variant's videos side by side (animated WebP)"><figcaption><a href="${esc(v.side)}">${esc(v.side)}</a>, ${v.frames} frames</figcaption></figure></div>
<table data-testid="video-table">
<thead><tr><th>variant</th><th>PSNR dB<br>mean of frames</th><th>PSNR dB<br>worst frame</th><th>SSIM<br>worst frame</th><th>mean |Δ|<br>worst frame</th><th>flicker<br>/ FP's</th></tr></thead>
<tbody>${rows}</tbody>
</table>
${chart}
<p>|variant − FP| per pixel, frame by frame, every frame of every variant on one scale (0 – ${num(v.diffScale, 3)}, model space; dark = equal).</p>
<div class="scroll">${diffs}</div>`;
}

export function renderReport(m: CompareMetrics, a: ReportAssets): string {
  const s = m.settings;
  const withJudge = Boolean(m.reference.judge);
  const colours = m.variants.map((_, i) => SERIES_COLOURS[i % SERIES_COLOURS.length]!);
  const others = m.variants.map((v, i) => ({ v, colour: colours[i]! })).filter(({ v }) => !v.isFp);
  const steps = m.variants[0]!.epsError.map((r) => String(r.timestep));
  const epsChart = svgLineChart({
    title: 'Noise-prediction error per step: ‖ε_variant − ε_FP‖ / ‖ε_FP‖',
    xLabels: steps,
    xTitle: 'timestep (sampling order →)',
    yTitle: 'relative error',
    series: others.map(({ v, colour }) => ({ name: v.name, colour, values: v.epsError.map((r) => r.relative) })),
  });
  const withTemporal = others.filter(({ v }) => v.temporalFeatureError.available);
  const temporalChart = withTemporal.length
    ? svgLineChart({
        title: 'Temporal-feature error per step: ‖f_variant − f_FP‖ / ‖f_FP‖',
        xLabels: steps,
        xTitle: 'timestep (sampling order →)',
        yTitle: 'relative error',
        series: withTemporal.map(({ v, colour }) => ({ name: v.name, colour, values: v.temporalFeatureError.perStep.map((r) => r.relative) })),
      })
    : '';
  const temporalMissing = others
    .filter(({ v }) => !v.temporalFeatureError.available)
    .map(({ v }) => `<li><b>${esc(v.name)}</b>: null — ${esc(v.temporalFeatureError.reason ?? '')}</li>`)
    .join('');
  const settings = [
    ['pipeline', m.pipeline],
    ['variants', m.variants.map((v) => (v.isFp ? 'fp' : `${v.name} (${v.dir})`)).join(', ')],
    ['seeds', s.seeds.join(', ')],
    ...(s.prompts
      ? s.prompts.map((p, i): [string, string] => [`prompt ${i + 1}`, p.negative ? `${p.prompt} (negative: ${p.negative})` : p.prompt])
      : [['classes', s.classes.length ? s.classes.join(', ') : 'unconditional'] as [string, string]]),
    ...(s.imageShape ? [['images', `${s.imageShape.join('x')}${s.sampleShape && s.sampleShape.join('x') !== s.imageShape.join('x') ? ` (decoded from ${s.sampleShape.join('x')} latents)` : ''}`] as [string, string]] : []),
    ...(m.reference.judge ? [['judge', `${m.reference.judge.path}, output ${m.reference.judge.output} (${m.reference.judge.width} values); ${m.reference.judge.preprocessing}`] as [string, string]] : []),
    ['sampler', `${s.sampler}, ${s.steps} steps, guidance ${s.guidance}, eta ${s.eta}`],
    ['FID samples', `${s.fidSamples} per variant (seeds ${s.fidSeedStart}…)`],
    ['provider', `${m.provider.used}${m.provider.fallback ? ` (fell back: ${m.provider.fallback})` : ''}`],
  ]
    .map(([k, v]) => `<tr><th scope="row">${esc(k!)}</th><td>${esc(v!)}</td></tr>`)
    .join('');
  const json = JSON.stringify(m).replace(/</g, '\\u003c');
  const diffs = a.diffs
    .map((d) => `<figure><img class="pixel" data-testid="diff" src="${dataUri('image/png', d.png)}" alt="difference heatmap of ${esc(d.name)} against FP"><figcaption>${esc(d.name)}: <a href="${esc(d.file)}">${esc(d.file)}</a></figcaption></figure>`)
    .join('');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data: 'self'; media-src 'self' file:; style-src 'unsafe-inline'">
<title>DQ compare — ${esc(m.variants.map((v) => v.name).join(' vs '))}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #1b1b1b; max-width: 1400px; }
h1 { font-size: 22px; margin: 0 0 8px; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
table { border-collapse: collapse; margin: 8px 0; } th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; vertical-align: top; }
table.settings th, table.settings td { text-align: left; } thead th { background: #f4f4f4; text-align: center; }
tbody th { text-align: left; } .sub { font-size: 11px; color: #666; } td.ref { color: #888; font-style: italic; text-align: center; }
.scroll { overflow-x: auto; border: 1px solid #eee; padding: 4px; }
img.pixel { image-rendering: pixelated; } figure { margin: 8px 16px 8px 0; display: inline-block; vertical-align: top; }
figcaption { font-size: 12px; color: #555; } .note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 6px 10px; }
.videos { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-start; } video { max-width: 100%; image-rendering: pixelated; }
dl dt { font-weight: 600; margin-top: 6px; } dl dd { margin-left: 16px; }
</style>
</head>
<body>
<h1>Same-seed comparison</h1>
<p>Every variant denoised the same seeds and classes with the same sampler. FP (the base pipeline) is the reference. Written by <code>${esc(m.tool)}</code>; the numbers are in <a href="${esc(m.files.metrics)}">${esc(m.files.metrics)}</a>.</p>
<table class="settings">${settings}</table>
<h2>Metrics</h2>
<table data-testid="metrics-table">
<thead><tr><th>variant</th><th>model bytes</th><th>weight<br>bits</th><th>PSNR dB<br>mean / min</th><th>SSIM<br>mean / min</th><th>FID to FP</th><th>FID to data</th><th>class<br>agreement</th><th>label<br>= FP</th>${withJudge ? '<th>judge FID<br>to FP</th><th>judge cosine<br>mean / min</th>' : ''}<th>eps error<br>(mean rel.)</th><th>temporal error<br>(mean rel.)</th><th>s / step</th></tr></thead>
<tbody>${m.variants.map((v) => row(v, withJudge)).join('')}</tbody>
</table>
${m.notes.map((n) => `<p class="note">${esc(n)}</p>`).join('\n')}
<h2>Samples</h2>
<p>${s.prompts ? 'A row per prompt; per seed, a column per variant (label: S, seed, variant). The difference maps below label images P, prompt number, S, seed.' : 'A row per variant, a column per class and seed (label: class, S, seed).'}</p>
<div class="scroll"><img class="pixel" data-testid="grid" src="${dataUri('image/png', a.gridPng)}" alt="grid of samples, a row per variant"></div>
<h2>Difference to FP</h2>
<p>Per variant: FP, the variant, and |variant − FP| per pixel on one colour scale shared by all variants (dark = equal; the scale is in each title).</p>
${diffs ? `<div class="scroll">${diffs}</div>` : '<p>No variants besides FP.</p>'}
${videoFramesSection(m, a, colours)}
<h2>Errors along the FP trajectory</h2>
<p>At each step the variant sees exactly the FP sampler's input, so these curves show where in the denoising process the variant deviates, without compounding.</p>
${others.length ? epsChart : '<p>No variants besides FP.</p>'}
${temporalChart}
${temporalMissing ? `<ul>${temporalMissing}</ul>` : ''}
<h2>Videos</h2>
<h3>Denoising trajectory (predicted x0 at each step)</h3>
${video('trajectory', m, a.trajectoryWebp, 'denoising trajectory')}
<h3>Seed walk (spherical interpolation between initial noises of seeds ${esc(s.walkSeeds.join(' → '))} → ${esc(String(s.walkSeeds[0] ?? ''))})</h3>
${video('walk', m, a.walkWebp, 'seed-interpolation walk')}
<h2>How to read the metrics</h2>
<dl>
<dt>PSNR, SSIM</dt><dd>Each grid image against the FP image of the same seed and class or prompt (data range 2 in model space; a latent pipeline's images as its VAE decodes them). Higher is closer; identical images have infinite PSNR.</dd>
${withJudge ? `<dt>judge FID to FP, judge cosine</dt><dd>In the feature space of the judge (${esc(m.reference.judge!.path)}, output ${esc(m.reference.judge!.output)}): the Frechet distance between the variant's images and FP's (grid and FID sets, same seeds and conditions), and the cosine similarity of each image's features with FP's image of the same seed and condition (mean and worst). Lower FID and higher cosine are closer.</dd>` : ''}
<dt>FID to FP, FID to data</dt><dd>Frechet distance between Gaussians fitted to the MNIST classifier's penultimate features of ${s.fidSamples} generated images per variant, against FP's images of the same seeds (to FP) or against held-out MNIST digits of the same classes (to data). Lower is closer. Biased upwards with few samples: compare variants only with each other at equal counts.</dd>
<dt>class agreement, label = FP</dt><dd>Fraction of generated images (grid and FID sets) the classifier labels with the requested class; fraction labelled like the FP image of the same seed.</dd>
<dt>eps error</dt><dd>||eps_variant − eps_FP|| / ||eps_FP|| of the guided noise prediction on the FP trajectory, per step (chart) and averaged over steps (table).</dd>
<dt>temporal error</dt><dd>The same for the temporal features (the tensors where the network's time-only part meets the rest); "fed" when a cut variant (TFMQ cache) reads them from its feature model, n/a when the variant does not have them.</dd>
<dt>model bytes, weight bits</dt><dd>Bytes of the denoiser on disk; for simulated quantization (weights held in float32) the estimate below it is the size if the quantized weights were stored at the manifest's bits per parameter.</dd>
${m.videoFrames ? '<dt>flicker / FP\'s</dt><dd>The mean squared change between consecutive frames of the variant\'s videos over FP\'s: above 1, the variant changes more from frame to frame than FP does (flicker); below 1, less (frames frozen or smoothed).</dd>' : ''}
<dt>s / step</dt><dd>Wall seconds per sampling step for all grid images on this machine; not deterministic.</dd>
</dl>
<script type="application/json" id="metrics-json">${json}</script>
</body>
</html>
`;
}
