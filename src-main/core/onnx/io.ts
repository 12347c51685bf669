/**
 * Loading and saving ONNX models, with inline or external tensor data.
 *
 * - Decoding a file keeps `raw_data` as views into the file's buffer (no copies of large initializers).
 * - External data is checked (file present, range inside it) and read lazily, by range, only when asked for.
 * - Saving re-encodes the message: an unchanged model is written back byte for byte. Tensors whose data lived in
 *   external files keep pointing at them (the files are copied next to the new model when it moves), and
 *   `externalize` moves large inline tensors into one external file, so models of any size stay under
 *   protobuf's 2 GiB limit.
 * - Writes are atomic: temporary files, then rename.
 */
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, readSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { dirname, isAbsolute, join, normalize, relative, resolve, sep } from 'node:path';
import { DqError } from '../errors.js';
import { decodeModel, ModelProto, type ModelMsg, type TensorMsg } from './model.js';
import { syncFunctionOpsets } from './fragment.js';

export interface ExternalRef {
  location: string;
  offset: number;
  length: number | null;
}

export interface LoadedModel {
  path: string;
  dir: string;
  model: ModelMsg;
  /** Bytes of the .onnx file itself. */
  size: number;
}

const PROTOBUF_LIMIT = 2 ** 31 - 1;

export function externalRef(t: TensorMsg): ExternalRef | null {
  if (t.data_location !== 1) return null;
  const kv = new Map((t as { external_data?: { key?: string; value?: string }[] }).external_data?.map((e) => [e.key ?? '', e.value ?? '']) ?? []);
  const location = kv.get('location');
  if (!location) throw new DqError('BAD_MODEL', `tensor '${t.name}' is marked external but names no location`);
  return { location, offset: Number(kv.get('offset') ?? 0), length: kv.has('length') ? Number(kv.get('length')) : null };
}

function externalPath(dir: string, location: string, tensor: string): string {
  const p = normalize(join(dir, location));
  if (isAbsolute(location) || relative(dir, p).split(sep)[0] === '..') {
    throw new DqError('BAD_MODEL', `tensor '${tensor}': external data location '${location}' points outside the model's folder`);
  }
  return p;
}

/** Every tensor in the model's graphs (initializers, Constant values, subgraphs), for external-data checks. */
function allInitializers(m: ModelMsg): TensorMsg[] {
  return m.graph?.initializer ?? [];
}

export function loadOnnx(path: string): LoadedModel {
  if (!existsSync(path)) throw new DqError('NOT_FOUND', `no such file: ${path}`);
  const size = statSync(path).size;
  if (size > PROTOBUF_LIMIT) {
    throw new DqError('BAD_MODEL', `${path} is ${(size / 2 ** 30).toFixed(2)} GiB: a protobuf over 2 GiB cannot be decoded; save its weights as external data`);
  }
  const bytes = readFileSync(path);
  const model = decodeModel(bytes, path);
  const dir = dirname(resolve(path));
  const sizes = new Map<string, number>();
  for (const t of allInitializers(model)) {
    const ref = externalRef(t);
    if (!ref) continue;
    const file = externalPath(dir, ref.location, t.name ?? '?');
    if (!sizes.has(file)) {
      if (!existsSync(file)) throw new DqError('BAD_MODEL', `${path}: external data file '${ref.location}' (for tensor '${t.name}') is missing`);
      sizes.set(file, statSync(file).size);
    }
    const end = ref.offset + (ref.length ?? 0);
    if (end > sizes.get(file)!) {
      throw new DqError('BAD_MODEL', `${path}: external data for tensor '${t.name}' ends at byte ${end}, but '${ref.location}' has only ${sizes.get(file)} bytes (truncated?)`);
    }
  }
  return { path: resolve(path), dir, model, size };
}

/** The bytes of a tensor's data: its raw_data view, or a read of its external range. */
export function tensorBytes(loaded: LoadedModel, t: TensorMsg): Uint8Array {
  const ref = externalRef(t);
  if (!ref) return t.raw_data ?? new Uint8Array(0);
  const file = externalPath(loaded.dir, ref.location, t.name ?? '?');
  const length = ref.length ?? statSync(file).size - ref.offset;
  const buf = Buffer.allocUnsafe(length);
  const fd = openSync(file, 'r');
  try {
    let done = 0;
    while (done < length) done += readSync(fd, buf, done, length - done, ref.offset + done);
  } finally {
    closeSync(fd);
  }
  return buf;
}

/**
 * Moves every external tensor's data into the model (raw_data), read from `dir`: for a model encoded to bytes and
 * handed to onnxruntime (a statistics or feature model), which has no folder to resolve external files against.
 */
export function inlineExternalData(model: ModelMsg, dir: string): ModelMsg {
  const loaded = { path: '', dir, model, size: 0 } as LoadedModel;
  for (const t of model.graph?.initializer ?? []) {
    if (!externalRef(t)) continue;
    const bytes = tensorBytes(loaded, t);
    (t as { raw_data?: Uint8Array }).raw_data = bytes;
    (t as { data_location?: number }).data_location = 0;
    (t as { external_data?: unknown[] }).external_data = [];
  }
  return model;
}

export interface SaveOptions {
  /** Move inline initializers of at least `threshold` bytes into `location` (beside the model). */
  externalize?: { location: string; threshold?: number };
}

/** A float32 tensor's values (a copy, aligned). */
export function floatTensor(loaded: LoadedModel, t: TensorMsg): Float32Array {
  const b = tensorBytes(loaded, t);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

/**
 * Writes `model` to `path`. External files the model refers to are copied from `fromDir` when the model moves to
 * another folder. Everything lands atomically: on failure, the previous files (if any) are untouched.
 */
export function saveOnnx(model: ModelMsg, path: string, fromDir: string | null = null, opts: SaveOptions = {}): { bytes: number; externalBytes: number } {
  syncFunctionOpsets(model);
  const dir = dirname(resolve(path));
  mkdirSync(dir, { recursive: true });
  const stamp = `${process.pid}.${Date.now()}`;
  const pending: [string, string][] = []; // [temp, final]
  let externalBytes = 0;
  try {
    // 1. copy referenced external files when the model moves
    if (fromDir && resolve(fromDir) !== dir) {
      const seen = new Set<string>();
      for (const t of allInitializers(model)) {
        const ref = externalRef(t);
        if (!ref || seen.has(ref.location)) continue;
        seen.add(ref.location);
        const tmp = join(dir, `.${stamp}.${seen.size}.tmp`);
        copyFileSync(externalPath(fromDir, ref.location, t.name ?? '?'), tmp);
        pending.push([tmp, externalPath(dir, ref.location, t.name ?? '?')]);
        externalBytes += statSync(tmp).size;
      }
    }
    // 2. move large inline tensors out
    if (opts.externalize) {
      const { location, threshold = 1024 } = opts.externalize;
      const final = externalPath(dir, location, location);
      const tmp = join(dir, `.${stamp}.ext.tmp`);
      const fd = openSync(tmp, 'w');
      let offset = 0;
      try {
        for (const t of allInitializers(model)) {
          if (externalRef(t) || !t.raw_data || t.raw_data.length < threshold) continue;
          const pad = (4096 - (offset % 4096)) % 4096; // page-aligned, so runtimes can map it
          if (pad) writeSync(fd, Buffer.alloc(pad), 0, pad, offset);
          offset += pad;
          let w = 0;
          while (w < t.raw_data.length) w += writeSync(fd, t.raw_data, w, t.raw_data.length - w, offset + w);
          const entries = [
            { key: 'location', value: location },
            { key: 'offset', value: String(offset) },
            { key: 'length', value: String(t.raw_data.length) },
          ];
          offset += t.raw_data.length;
          Object.assign(t, { raw_data: undefined, data_location: 1, external_data: entries });
          delete (t as { raw_data?: unknown }).raw_data;
        }
      } finally {
        closeSync(fd);
      }
      pending.push([tmp, final]);
      externalBytes += offset;
    }
    // 3. the model itself
    const bytes = ModelProto.encode(model as never).finish();
    if (bytes.length > PROTOBUF_LIMIT) {
      throw new DqError('BAD_MODEL', `the model would be ${(bytes.length / 2 ** 30).toFixed(2)} GiB, over protobuf's 2 GiB limit: save it with external data`);
    }
    const tmp = join(dir, `.${stamp}.onnx.tmp`);
    writeAll(tmp, bytes);
    pending.push([tmp, resolve(path)]);
    for (const [t, f] of pending) renameSync(t, f);
    return { bytes: bytes.length, externalBytes };
  } catch (e) {
    for (const [t] of pending) rmSync(t, { force: true });
    rmSync(join(dir, `.${stamp}.ext.tmp`), { force: true });
    throw e;
  }
}

function writeAll(path: string, data: Uint8Array): void {
  const fd = openSync(path, 'w');
  try {
    let w = 0;
    while (w < data.length) w += writeSync(fd, data, w, data.length - w);
  } finally {
    closeSync(fd);
  }
}

/** Encodes a model exactly as decoded (for round-trip checks). */
export function encodeModel(model: ModelMsg): Uint8Array {
  syncFunctionOpsets(model);
  return ModelProto.encode(model as never).finish();
}
