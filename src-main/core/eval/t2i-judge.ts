/**
 * The judge of the embedded text-to-image model (tiny-t2i): does a sample show what its prompt asks for? Every
 * attribute is checked: the digit by the embedded MNIST classifier, the foreground and background colours from
 * the pixels. The TypeScript twin of tools/t2i_data.py's judge (judge_colours + digit_mask, run by
 * tools/train_tiny_t2i.py), checked against it image by image on test/fixtures/t2i-judge
 * (tools/t2i_judge_reference.py).
 *
 * The algorithm, per image (pixels in [0, 1]):
 * - background: the per-channel median of the outer ring `border_pixels` wide (torch's median: the lower of the two
 *   middle values), snapped to the nearest palette colour;
 * - foreground: among the other palette colours, the one with the most pixels closer than `fg_radius` to it, if at
 *   least `min_fg_pixels`; its measured colour is the per-channel median of those pixels. Ties go to the first
 *   colour in the palette's order (argmax); attributes.json writes the palette with sorted keys, so that is the
 *   order here, which may differ from t2i_data.PALETTE's own only on exact count ties;
 * - the digit's grey mask: each pixel projected onto the segment from the measured background colour to the
 *   measured foreground colour (black when no foreground was found, as the Python judge does), clamped to [0, 1]
 *   and cropped to `digit_crop` (the central 28x28), then classified.
 */
import { join } from 'node:path';
import { DqError } from '../errors.js';
import { readJson } from '../fsutil.js';
import type { Provider } from '../runtime/onnx.js';

export type Rgb = [number, number, number];

/** What `attributes.json` (written by tools/train_tiny_t2i.py beside the pipeline, not a component) holds. */
export interface T2IAttributes {
  about?: string;
  /** Images are image_size x image_size RGB. */
  image_size: number;
  /** Colour name -> RGB in [0, 1], in the file's order. */
  palette: Record<string, Rgb>;
  /** The digit names, index = class ("zero".."nine"). */
  digits: string[];
  /** The caption phrasings: {f} foreground, {b} background, {d} digit name, {n} the digit as a numeral. */
  templates: string[];
  /** Width of the outer ring that is always background. */
  border_pixels: number;
  /** A pixel counts for a palette colour closer than this (Euclidean RGB, [0, 1] units). */
  fg_radius: number;
  /** The fewest such pixels for a foreground to be found at all. */
  min_fg_pixels: number;
  /** [top, left, height, width] of the digit inside the image (the classifier's 28x28). */
  digit_crop: [number, number, number, number];
  /** A video model's (tools/video_data.py): motion name -> [dx, dy] pixels per frame (y grows downwards), named by
   * the templates' {m}; the judge's slowest motion (pixels a frame) and the fewest frames a video must get right. */
  motions?: Record<string, [number, number]>;
  min_speed?: number;
  min_frames?: number;
}

/**
 * The judge's constants when attributes.json does not carry them: the values of tools/t2i_data.py (IMAGE_SIZE,
 * BORDER, FG_RADIUS, MIN_FG_PIXELS, and the crop PAD:PAD+28 with PAD = (IMAGE_SIZE - 28) / 2).
 */
export const T2I_JUDGE_DEFAULTS = { image_size: 32, border_pixels: 2, fg_radius: 0.35, min_fg_pixels: 8 } as const;

const CLASSIFIER_SIZE = 28;
const PLACEHOLDERS = ['f', 'b', 'd', 'n', 'm'] as const;

/** What a prompt asks for: the digit (class index) and the two colours (palette names). */
export interface T2IPromptAttributes {
  digit: number;
  fg: string;
  bg: string;
  /** A video prompt's motion (a name of attributes.json's motions). */
  motion?: string;
}

/** What the judge reads from one image. */
export interface T2IVerdict {
  digit: number;
  /** null when no palette colour other than the background has enough pixels near it. */
  fg: string | null;
  bg: string;
  /** The measured colours (medians, [0, 1]); fgRgb null with fg. */
  fgRgb: Rgb | null;
  bgRgb: Rgb;
  /**
   * The judge's feature space (FID-to-FP): the classifier's penultimate features of the digit mask, then the measured
   * foreground and background colours x COLOUR_WEIGHT (the background's when no foreground was found).
   */
  features: Float32Array;
}

/** Colours ([0, 1] per channel) enter the judge's feature space at this weight, near the spread of the digit features. */
export const COLOUR_WEIGHT = 10;

export interface T2IJudgeOptions {
  /** The MNIST classifier's ONNX file (default: the embedded models/mnist-classifier). */
  classifierPath?: string;
  provider?: Provider;
  batch?: number;
}

export interface T2IResult {
  prompt: string;
  /** What the prompt asks for; null when it cannot be judged (no digit, or not both colours). */
  expected: T2IPromptAttributes | null;
  judged: T2IVerdict;
  digitOk: boolean;
  fgOk: boolean;
  bgOk: boolean;
  /** All three right. */
  ok: boolean;
}

export interface T2IAgreement {
  /** Samples judged: those whose prompt could be parsed. The rates below are over these. */
  judged: number;
  /** Samples whose prompt names no digit or not both colours (not counted in the rates). */
  unjudgeable: number;
  /** Fraction with digit, foreground and background all right. */
  agreement: number;
  digit: number;
  fg: number;
  bg: number;
  results: T2IResult[];
}

// ------------------------------------------------------------------------------------------------------------------
// attributes.json

function bad(where: string, what: string): DqError {
  return new DqError('BAD_CONFIG', `${where}: ${what}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function finiteNumber(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

function optionalNumber(o: Record<string, unknown>, key: string, fallback: number, where: string, integer: boolean, min: number): number {
  const v = o[key];
  if (v === undefined) return fallback;
  if (!finiteNumber(v) || (integer && !Number.isInteger(v)) || v < min) throw bad(where, `"${key}" must be ${integer ? 'an integer' : 'a number'} >= ${min}, got ${JSON.stringify(v)}`);
  return v;
}

/** Checks an attributes.json value and fills the judge's constants it lacks (T2I_JUDGE_DEFAULTS). */
export function parseAttributes(value: unknown, where = 'attributes.json'): T2IAttributes {
  if (!isObject(value)) throw bad(where, 'expected a JSON object with "palette", "digits" and "templates"');
  const o = value;
  if (!isObject(o.palette) || Object.keys(o.palette).length < 2) throw bad(where, '"palette" must be an object of at least two colour names -> [r, g, b]');
  const palette: Record<string, Rgb> = {};
  for (const [name, rgb] of Object.entries(o.palette)) {
    if (!name.trim()) throw bad(where, 'a palette colour has an empty name');
    if (!Array.isArray(rgb) || rgb.length !== 3 || !rgb.every(finiteNumber)) throw bad(where, `palette colour "${name}" must be [r, g, b] (three numbers in [0, 1]), got ${JSON.stringify(rgb)}`);
    palette[name] = [rgb[0], rgb[1], rgb[2]];
  }
  if (!Array.isArray(o.digits) || o.digits.length !== 10 || !o.digits.every((d) => typeof d === 'string' && d.trim() !== '')) {
    throw bad(where, '"digits" must list the ten digit names, zero to nine (the classifier has ten classes)');
  }
  if (!Array.isArray(o.templates) || o.templates.length === 0 || !o.templates.every((t) => typeof t === 'string')) throw bad(where, '"templates" must be a non-empty list of caption phrasings');
  for (const t of o.templates as string[]) {
    const names = [...t.matchAll(/\{([^}]*)\}/g)].map((m) => m[1]!);
    const unknown = names.find((n) => !(PLACEHOLDERS as readonly string[]).includes(n));
    if (unknown !== undefined) throw bad(where, `template "${t}" has {${unknown}}; the placeholders are {f} (foreground), {b} (background), {d} (digit name), {n} (numeral) and {m} (motion)`);
    if (names.includes('m') && !isObject(o.motions)) throw bad(where, `template "${t}" names a motion {m} but there is no "motions" object`);
    if (!names.includes('f') || !names.includes('b') || !(names.includes('d') || names.includes('n'))) throw bad(where, `template "${t}" must name the foreground {f}, the background {b} and the digit ({d} or {n})`);
  }
  const size = optionalNumber(o, 'image_size', T2I_JUDGE_DEFAULTS.image_size, where, true, CLASSIFIER_SIZE);
  const border = optionalNumber(o, 'border_pixels', T2I_JUDGE_DEFAULTS.border_pixels, where, true, 1);
  if (2 * border >= size) throw bad(where, `"border_pixels" ${border} leaves no inside in a ${size}x${size} image`);
  const pad = Math.floor((size - CLASSIFIER_SIZE) / 2);
  let crop: [number, number, number, number] = [pad, pad, CLASSIFIER_SIZE, CLASSIFIER_SIZE];
  if (o.digit_crop !== undefined) {
    const c = o.digit_crop;
    if (!Array.isArray(c) || c.length !== 4 || !c.every((v) => Number.isInteger(v) && (v as number) >= 0)) throw bad(where, `"digit_crop" must be [top, left, height, width], got ${JSON.stringify(c)}`);
    crop = [c[0], c[1], c[2], c[3]];
    if (crop[2] !== CLASSIFIER_SIZE || crop[3] !== CLASSIFIER_SIZE) throw bad(where, `"digit_crop" must be ${CLASSIFIER_SIZE}x${CLASSIFIER_SIZE} (the MNIST classifier's input), got ${crop[2]}x${crop[3]}`);
    if (crop[0] + crop[2] > size || crop[1] + crop[3] > size) throw bad(where, `"digit_crop" ${JSON.stringify(c)} reaches outside the ${size}x${size} image`);
  }
  const out: T2IAttributes = {
    image_size: size,
    palette,
    digits: [...(o.digits as string[])],
    templates: [...(o.templates as string[])],
    border_pixels: border,
    fg_radius: optionalNumber(o, 'fg_radius', T2I_JUDGE_DEFAULTS.fg_radius, where, false, 0),
    min_fg_pixels: optionalNumber(o, 'min_fg_pixels', T2I_JUDGE_DEFAULTS.min_fg_pixels, where, true, 1),
    digit_crop: crop,
  };
  if (o.motions !== undefined) {
    if (!isObject(o.motions) || Object.keys(o.motions).length < 2) throw bad(where, '"motions" must be an object of at least two motion names -> [dx, dy] (pixels a frame)');
    const motions: Record<string, [number, number]> = {};
    for (const [name, v] of Object.entries(o.motions)) {
      if (!Array.isArray(v) || v.length !== 2 || !v.every(finiteNumber) || (v[0] === 0 && v[1] === 0)) throw bad(where, `motion "${name}" must be [dx, dy], not both 0, got ${JSON.stringify(v)}`);
      motions[name] = [v[0], v[1]];
    }
    out.motions = motions;
    out.min_speed = optionalNumber(o, 'min_speed', 0.4, where, false, 0);
    out.min_frames = optionalNumber(o, 'min_frames', 1, where, true, 1);
  }
  if (typeof o.about === 'string') out.about = o.about;
  return out;
}

/** `<pipelineDir>/attributes.json`: the palette, digits and phrasings a tiny-t2i-style pipeline is judged by. */
export function loadAttributes(pipelineDir: string): T2IAttributes {
  const path = join(pipelineDir, 'attributes.json');
  let value: unknown;
  try {
    value = readJson(path, 'attributes.json');
  } catch (e) {
    if (e instanceof DqError && e.code === 'NOT_FOUND') {
      throw new DqError('NOT_FOUND', `${pipelineDir} has no readable attributes.json (the palette, digits and phrasings a text-to-image judge needs; tools/train_tiny_t2i.py writes it)`, e.message);
    }
    throw e;
  }
  return parseAttributes(value, path);
}

// ------------------------------------------------------------------------------------------------------------------
// prompts

/** Lower case, one space between words, none before and one after , ; :, no trailing . or !. */
function normalise(s: string): string {
  return s
    .toLowerCase()
    .replace(/\s*([,;:])\s*/g, '$1 ')
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/\s*[.!]+$/, '');
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

interface CompiledTemplate {
  re: RegExp;
  /** Which placeholder each capture group is. */
  groups: (typeof PLACEHOLDERS)[number][];
}

interface Compiled {
  templates: CompiledTemplate[];
  colour: Map<string, string>;
  digit: Map<string, number>;
  motion: Map<string, string>;
}

const compiled = new WeakMap<T2IAttributes, Compiled>();

function compile(attrs: T2IAttributes): Compiled {
  const hit = compiled.get(attrs);
  if (hit) return hit;
  const colour = new Map(Object.keys(attrs.palette).map((c) => [normalise(c), c] as const));
  const digit = new Map(attrs.digits.map((d, i) => [normalise(d), i] as const));
  const alternation = (names: Iterable<string>): string =>
    `(${[...names]
      .sort((a, b) => b.length - a.length)
      .map(escapeRegex)
      .join('|')})`;
  const motion = new Map(Object.keys(attrs.motions ?? {}).map((m) => [normalise(m), m] as const));
  const colours = alternation(colour.keys());
  const digits = alternation(digit.keys());
  const motions = alternation(motion.keys());
  const templates = attrs.templates.map((t) => {
    const groups: CompiledTemplate['groups'] = [];
    const parts = normalise(t).split(/(\{[fbdnm]\})/);
    const body = parts
      .map((p) => {
        const m = /^\{([fbdnm])\}$/.exec(p);
        if (!m) return escapeRegex(p);
        const k = m[1] as CompiledTemplate['groups'][number];
        groups.push(k);
        return k === 'd' ? digits : k === 'n' ? '(\\d+)' : k === 'm' ? motions : colours;
      })
      .join('');
    return { re: new RegExp(`^${body}$`), groups };
  });
  const c = { templates, colour, digit, motion };
  compiled.set(attrs, c);
  return c;
}

/**
 * The digit and colours a caption asks for, from any of the attributes' phrasings (the digit by name or, after
 * "number", as a numeral), whatever its case and spacing. null when it names no digit or not both colours, or
 * the same colour twice (no sample can show that, and the judge never reads the background as foreground).
 */
export function parsePrompt(prompt: string, attrs: T2IAttributes): T2IPromptAttributes | null {
  const c = compile(attrs);
  const p = normalise(prompt);
  for (const t of c.templates) {
    const m = t.re.exec(p);
    if (!m) continue;
    let fg: string | undefined;
    let bg: string | undefined;
    let digit: number | undefined;
    let motion: string | undefined;
    let ok = true;
    t.groups.forEach((k, i) => {
      const v = m[i + 1]!;
      if (k === 'm') {
        const name = c.motion.get(v)!;
        ok &&= motion === undefined || motion === name;
        motion = name;
        return;
      }
      if (k === 'f' || k === 'b') {
        const name = c.colour.get(v)!;
        if (k === 'f') ok &&= fg === undefined || fg === name;
        else ok &&= bg === undefined || bg === name;
        if (k === 'f') fg = name;
        else bg = name;
        return;
      }
      const d = k === 'd' ? c.digit.get(v)! : /^\d$/.test(v) ? Number(v) : -1;
      if (d < 0 || d >= attrs.digits.length || (digit !== undefined && digit !== d)) ok = false;
      digit = d;
    });
    if (ok && fg !== undefined && bg !== undefined && digit !== undefined && fg !== bg) return motion === undefined ? { digit, fg, bg } : { digit, fg, bg, motion };
  }
  return null;
}

// ------------------------------------------------------------------------------------------------------------------
// images

/** torch.median's choice: the lower of the two middle values for an even count. */
function lowerMedian(values: Float64Array, n: number): number {
  const s = values.subarray(0, n).sort();
  return s[Math.floor((n - 1) / 2)]!;
}

export interface Colours {
  fg: number;
  bg: number;
  fgRgb: Rgb | null;
  bgRgb: Rgb;
}

/** One image in [0, 1], HWC-free: planar R, G, B of size*size each. */
export function judgeColoursOf(px: Float64Array, attrs: T2IAttributes, rgb: Rgb[]): Colours {
  const size = attrs.image_size;
  const plane = size * size;
  const b = attrs.border_pixels;
  const buf = new Float64Array(plane);
  const bgRgb = [0, 0, 0] as Rgb;
  for (let ch = 0; ch < 3; ch++) {
    let n = 0;
    for (let y = 0; y < size; y++) {
      const inner = y >= b && y < size - b;
      for (let x = 0; x < size; x++) if (!inner || x < b || x >= size - b) buf[n++] = px[ch * plane + y * size + x]!;
    }
    bgRgb[ch] = lowerMedian(buf, n);
  }
  const dist = (p: number, c: Rgb): number => Math.hypot(px[p]! - c[0], px[plane + p]! - c[1], px[2 * plane + p]! - c[2]);
  let bg = 0;
  let bestD = Infinity;
  rgb.forEach((c, k) => {
    const d = Math.hypot(bgRgb[0] - c[0], bgRgb[1] - c[1], bgRgb[2] - c[2]);
    if (d < bestD) [bg, bestD] = [k, d];
  });
  const counts = rgb.map((c) => {
    let n = 0;
    for (let p = 0; p < plane; p++) if (dist(p, c) < attrs.fg_radius) n++;
    return n;
  });
  counts[bg] = -1;
  let best = 0;
  for (let k = 1; k < counts.length; k++) if (counts[k]! > counts[best]!) best = k;
  if (counts[best]! < attrs.min_fg_pixels) return { fg: -1, bg, fgRgb: null, bgRgb };
  const fgRgb = [0, 0, 0] as Rgb;
  for (let ch = 0; ch < 3; ch++) {
    let n = 0;
    for (let p = 0; p < plane; p++) if (dist(p, rgb[best]!) < attrs.fg_radius) buf[n++] = px[ch * plane + p]!;
    fgRgb[ch] = lowerMedian(buf, n);
  }
  return { fg: best, bg, fgRgb, bgRgb };
}

/** The digit's grey mask in [0, 1] (0 = background), cropped to digit_crop, mapped to model space [-1, 1]. */
function digitMaskOf(px: Float64Array, attrs: T2IAttributes, c: Colours): Float32Array {
  const size = attrs.image_size;
  const plane = size * size;
  const f = c.fgRgb ?? [0, 0, 0];
  const d = [f[0] - c.bgRgb[0], f[1] - c.bgRgb[1], f[2] - c.bgRgb[2]];
  const den = Math.max(d[0]! * d[0]! + d[1]! * d[1]! + d[2]! * d[2]!, 1e-6);
  const [top, left, h, w] = attrs.digit_crop;
  const out = new Float32Array(h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = (top + y) * size + left + x;
      let m = 0;
      for (let ch = 0; ch < 3; ch++) m += (px[ch * plane + p]! - c.bgRgb[ch]!) * d[ch]!;
      out[y * w + x] = Math.min(1, Math.max(0, m / den)) * 2 - 1;
    }
  }
  return out;
}

export function toUnit(image: Float32Array, attrs: T2IAttributes, i: number): Float64Array {
  const n = 3 * attrs.image_size * attrs.image_size;
  if (image.length !== n) {
    throw new DqError('BAD_ARGUMENT', `the text-to-image judge reads 3x${attrs.image_size}x${attrs.image_size} images (${n} values); image ${i} has ${image.length}`);
  }
  const px = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    const v = image[j]!;
    if (!Number.isFinite(v)) throw new DqError('BAD_ARGUMENT', `image ${i} has NaN or infinite values; it cannot be judged (a float16 VAE decoder that overflowed?)`);
    px[j] = Math.min(1, Math.max(0, v / 2 + 0.5)); // model space -> [0, 1], clamped as the Python sampler does
  }
  return px;
}

/**
 * Reads the digit and both colours back from images in model space [-1, 1] (each [3 * size * size], planar RGB;
 * values outside are clamped, as tools/train_tiny_t2i.py's sampler clamps before judging; NaN or inf: BAD_ARGUMENT).
 * The digit comes from the embedded MNIST classifier (onnxruntime), the colours from the pixels.
 */
export async function judgeImages(images: Float32Array[], attrs: T2IAttributes, opts: T2IJudgeOptions = {}): Promise<T2IVerdict[]> {
  const names = Object.keys(attrs.palette);
  const rgb = names.map((n) => attrs.palette[n]!);
  const colours: Colours[] = [];
  const masks: Float32Array[] = [];
  images.forEach((img, i) => {
    const px = toUnit(img, attrs, i);
    const c = judgeColoursOf(px, attrs, rgb);
    colours.push(c);
    masks.push(digitMaskOf(px, attrs, c));
  });
  if (images.length === 0) return [];
  return classifyMasks(masks, colours, names, opts);
}

/** The verdicts of masks (model space, digit_crop-sized) and the colours measured around them. */
export async function classifyMasks(masks: Float32Array[], colours: Colours[], names: string[], opts: T2IJudgeOptions = {}): Promise<T2IVerdict[]> {
  const copts: { path?: string; provider?: Provider; batch?: number } = {};
  if (opts.classifierPath !== undefined) copts.path = opts.classifierPath;
  if (opts.provider !== undefined) copts.provider = opts.provider;
  if (opts.batch !== undefined) copts.batch = opts.batch;
  // loaded here: reading attributes and prompts needs neither onnxruntime nor the pipeline layer
  const { classify } = await import('./classifier.js');
  const { labels, features } = await classify(masks, copts);
  return colours.map((c, i) => {
    const f = features[i]!;
    const all = new Float32Array(f.length + 6);
    all.set(f);
    const fg = c.fgRgb ?? c.bgRgb;
    for (let ch = 0; ch < 3; ch++) {
      all[f.length + ch] = COLOUR_WEIGHT * fg[ch]!;
      all[f.length + 3 + ch] = COLOUR_WEIGHT * c.bgRgb[ch]!;
    }
    return { digit: labels[i]!, fg: c.fg < 0 ? null : names[c.fg]!, bg: names[c.bg]!, fgRgb: c.fgRgb, bgRgb: c.bgRgb, features: all };
  });
}

/**
 * Prompt agreement of samples with their prompts (prompts[i] was drawn as images[i]): the fraction with the digit,
 * the foreground and the background all right, and each attribute's own rate, over the prompts that can be judged.
 * A prompt that names no digit or not both colours is counted in `unjudgeable` (the caller reports it); when no
 * prompt at all can be judged there is nothing to measure (BAD_ARGUMENT).
 */
export async function promptAgreement(prompts: string[], images: Float32Array[], attrs: T2IAttributes, opts: T2IJudgeOptions = {}): Promise<T2IAgreement> {
  if (prompts.length !== images.length) throw new Error(`promptAgreement: ${prompts.length} prompts for ${images.length} images`);
  const expected = prompts.map((p) => parsePrompt(p, attrs));
  const judgeable = expected.filter((e) => e !== null).length;
  if (judgeable === 0) {
    const first = prompts.length ? ` (e.g. ${JSON.stringify(prompts[0])})` : '';
    const example = attrs.templates[0]!.replace('{f}', Object.keys(attrs.palette)[1]!).replace('{b}', Object.keys(attrs.palette)[0]!).replace('{d}', attrs.digits[7]!).replace('{n}', '7');
    throw new DqError('BAD_ARGUMENT', `no prompt names a digit and both colours${first}, so none can be judged; write them like "${example}"`);
  }
  const judged = await judgeImages(images, attrs, opts);
  let all = 0;
  let digit = 0;
  let fg = 0;
  let bg = 0;
  const results = judged.map((j, i): T2IResult => {
    const e = expected[i]!;
    const digitOk = e !== null && j.digit === e.digit;
    const fgOk = e !== null && j.fg === e.fg;
    const bgOk = e !== null && j.bg === e.bg;
    const ok = digitOk && fgOk && bgOk;
    digit += Number(digitOk);
    fg += Number(fgOk);
    bg += Number(bgOk);
    all += Number(ok);
    return { prompt: prompts[i]!, expected: e, judged: j, digitOk, fgOk, bgOk, ok };
  });
  return { judged: judgeable, unjudgeable: prompts.length - judgeable, agreement: all / judgeable, digit: digit / judgeable, fg: fg / judgeable, bg: bg / judgeable, results };
}

/**
 * n evaluation prompts: digit i % 10 (every digit equally often), and for the k-th round of ten a colour pair and a
 * phrasing spread over all of them (pair (17k + 5d) mod P, phrasing (k + d) mod T: for a digit, no pair repeats
 * within P rounds). Deterministic, so every run and every variant is judged on the same prompts.
 */
export function evalPrompts(attrs: T2IAttributes, n: number): { prompt: string; expected: T2IPromptAttributes }[] {
  const colours = Object.keys(attrs.palette);
  const pairs: [string, string][] = [];
  for (const f of colours) for (const b of colours) if (f !== b) pairs.push([f, b]);
  const out: { prompt: string; expected: T2IPromptAttributes }[] = [];
  for (let i = 0; i < n; i++) {
    const d = i % attrs.digits.length;
    const k = Math.floor(i / attrs.digits.length);
    const [f, b] = pairs[(17 * k + 5 * d) % pairs.length]!;
    const t = attrs.templates[(k + d) % attrs.templates.length]!;
    // a video model's motions: every motion equally often for each digit (round k of ten takes motion k mod M)
    const motions = Object.keys(attrs.motions ?? {});
    const m = motions.length ? motions[k % motions.length]! : undefined;
    const prompt = t.replaceAll('{f}', f).replaceAll('{b}', b).replaceAll('{d}', attrs.digits[d]!).replaceAll('{n}', String(d)).replaceAll('{m}', m ?? '');
    out.push({ prompt, expected: m === undefined ? { digit: d, fg: f, bg: b } : { digit: d, fg: f, bg: b, motion: m } });
  }
  return out;
}
