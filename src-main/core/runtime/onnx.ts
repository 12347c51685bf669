/**
 * The one place that decides which onnxruntime backend runs, and the only module that imports
 * onnxruntime-node. Everything else in the engine goes through `Session`.
 *
 * Providers: 'cpu' (always there), 'webgpu' (bundled with onnxruntime-node; needs a WebGPU adapter, e.g. a GPU
 * driver or Mesa's lavapipe), 'cuda' (needs onnxruntime-node's CUDA binaries, installed on request: see the
 * README), and 'auto' = cuda if it starts, else cpu. WebGPU is never chosen by 'auto': on machines without a GPU
 * its only adapter is a software rasteriser, slower than the CPU provider.
 */
import * as ort from 'onnxruntime-node';
import { DqError } from '../errors.js';

export const PROVIDERS = ['cpu', 'webgpu', 'cuda', 'auto'] as const;
export type Provider = (typeof PROVIDERS)[number];
export type ConcreteProvider = Exclude<Provider, 'auto'>;

/** The execution providers this onnxruntime-node build ships with (whether each can start is another matter). */
export function bundledProviders(): string[] {
  return ort.listSupportedBackends().filter((b) => b.bundled).map((b) => b.name);
}

export interface SessionInfo {
  requested: Provider;
  /** The execution provider the session was created with (onnxruntime still runs ops it lacks on the CPU). */
  provider: ConcreteProvider;
  /** Why a requested provider was not used, if it was not. */
  fallback?: string;
}

export type FeedValue =
  | { type: 'float32'; data: Float32Array; dims: readonly number[] }
  | { type: 'int64'; data: BigInt64Array; dims: readonly number[] }
  | { type: 'float64'; data: Float64Array; dims: readonly number[] }
  /** IEEE binary16 bit patterns (kernels/half.ts converts). */
  | { type: 'float16'; data: Uint16Array; dims: readonly number[] }
  | { type: 'int32'; data: Int32Array; dims: readonly number[] }
  | { type: 'int8'; data: Int8Array; dims: readonly number[] }
  | { type: 'uint8' | 'bool'; data: Uint8Array; dims: readonly number[] };

export interface TensorOut {
  type: string;
  data: Float32Array | BigInt64Array | Int32Array | Uint8Array | Int8Array | Float64Array | Uint16Array;
  dims: readonly number[];
}

export interface IoMeta {
  name: string;
  type: string;
  /** Dimension sizes, or symbolic names for dynamic dimensions. */
  shape: (number | string)[] | null;
}

/** onnxruntime's own log lines ([E:onnxruntime:...]) only with DQ_VERBOSE=1: our errors say what went wrong. */
function verbose(): boolean {
  return process.env.DQ_VERBOSE === '1';
}

/** 0 verbose .. 4 fatal: by default only fatal errors reach the console. */
function logSeverity(): 0 | 1 | 2 | 3 | 4 {
  return verbose() ? 2 : 4;
}

export interface SessionOptions {
  threads?: number;
  lowMemory?: boolean;
  /** What the model is, for error messages (e.g. `models/x: unet/model.onnx`); default: its path. */
  label?: string;
}

/** onnxruntime's MatMulNBits accuracy level for the sessions we create: 1, float32 arithmetic (see Session.create). */
export const MATMULNBITS_ACCURACY_LEVEL = process.env.DQ_MATMULNBITS_ACCURACY_LEVEL ?? '1';

export class Session {
  private constructor(
    private readonly inner: ort.InferenceSession,
    readonly info: SessionInfo,
    private readonly label: string | undefined,
  ) {}

  static async create(model: string | Uint8Array, requested: Provider = 'cpu', opts: SessionOptions = {}): Promise<Session> {
    const label = opts.label ?? (typeof model === 'string' ? model : undefined);
    const order: ConcreteProvider[] = requested === 'auto' ? ['cuda', 'cpu'] : requested === 'cpu' ? ['cpu'] : [requested, 'cpu'];
    const failures: string[] = [];
    ort.env.logLevel = verbose() ? 'warning' : 'fatal';
    for (const p of order) {
      const available = ort.listSupportedBackends().find((b) => b.name === p);
      if (!available) {
        failures.push(`${p}: not in this onnxruntime-node build`);
        continue;
      }
      try {
        const options: ort.InferenceSession.SessionOptions = {
          executionProviders: [p],
          graphOptimizationLevel: 'all',
          logSeverityLevel: logSeverity(),
          ...(opts.threads ? { intraOpNumThreads: opts.threads } : {}),
          // no arena and no memory pattern: buffers go back to the system as soon as they die
          ...(opts.lowMemory ? { enableCpuMemArena: false, enableMemPattern: false } : {}),
          // onnxruntime fuses a 4-bit block DequantizeLinear feeding a MatMul into MatMulNBits, whose default accuracy
          // level (4) quantizes the activations to int8 inside the kernel: an export of W4A16 (or W4A8 with other
          // activation quantizers) would no longer compute what its simulation measured. Level 1 keeps the 4-bit
          // kernel with float32 arithmetic (docs/export.md).
          extra: { session: { qdq_matmulnbits_accuracy_level: MATMULNBITS_ACCURACY_LEVEL } },
        };
        const inner =
          typeof model === 'string' ? await ort.InferenceSession.create(model, options) : await ort.InferenceSession.create(model, options);
        const info: SessionInfo = { requested, provider: p };
        if (failures.length) info.fallback = failures.join('; ');
        return new Session(inner, info, label);
      } catch (e) {
        const raw = rawText(e);
        if (p === 'cpu') throw new DqError('BAD_MODEL', `${label ? `${label}: ` : ''}onnxruntime cannot load the model: ${loadReason(raw)}`, raw);
        failures.push(`${p}: ${hint(p, cleanOrtText(raw) || 'failed to start')}`);
      }
    }
    throw new DqError('PROVIDER_UNAVAILABLE', `no execution provider could run the model (${failures.join('; ')})`);
  }

  get inputNames(): readonly string[] {
    return this.inner.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.inner.outputNames;
  }

  get inputs(): IoMeta[] {
    return this.inner.inputMetadata.map(meta);
  }

  get outputs(): IoMeta[] {
    return this.inner.outputMetadata.map(meta);
  }

  async run(feeds: Record<string, FeedValue>, fetches?: string[]): Promise<Record<string, TensorOut>> {
    const f: Record<string, ort.Tensor> = {};
    for (const [k, v] of Object.entries(feeds)) f[k] = new ort.Tensor(v.type, v.data as never, v.dims);
    let res: ort.InferenceSession.ReturnType;
    try {
      const runOpts: ort.InferenceSession.RunOptions = { logSeverityLevel: logSeverity() };
      res = fetches ? await this.inner.run(f, fetches, runOpts) : await this.inner.run(f, runOpts);
    } catch (e) {
      const raw = rawText(e);
      throw new DqError('BAD_MODEL', `${this.label ? `${this.label}: ` : ''}onnxruntime failed running the model: ${runReason(raw)}`, raw);
    }
    const out: Record<string, TensorOut> = {};
    for (const [k, t] of Object.entries(res)) {
      out[k] = { type: t.type, data: t.data as TensorOut['data'], dims: t.dims };
      t.dispose?.();
    }
    return out;
  }

  async release(): Promise<void> {
    await this.inner.release();
  }
}

function meta(m: ort.InferenceSession.ValueMetadata): IoMeta {
  if (m.isTensor) return { name: m.name, type: m.type, shape: [...m.shape] };
  return { name: m.name, type: 'non-tensor', shape: null };
}

function rawText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * onnxruntime's message without what only its developers can use: error-code prefixes, the model's path, C++
 * source locations and signatures (`model.cc:187 onnxruntime::Model::Model(...)`), assertion expressions
 * (`x == y was false.`); one line, at most 240 characters. Empty when nothing readable is left.
 */
export function cleanOrtText(raw: string): string {
  let s = raw.replace(/\s+/g, ' ');
  s = s.replace(/\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*/g, '');
  s = s.replace(/Load model from .*? failed:\s*/g, '');
  s = s.replace(/Exception during initialization:\s*/g, '');
  // a source location, then a function signature (namespaced, with an optional return type) or a bare name
  s = s.replace(/(?:[\w.~-]*\/)*[\w-]+\.(?:cc|cpp|cxx|h|hpp|inl):\d+\s+(?:(?:[\w:<>*&]+\s+)?[\w<>~]*::[\w:<>~]+\([^()]*\)(?:\s*const)?\s*|[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+\s+)?/g, ' ');
  s = s.replace(/(?:^|(?<=[.:]\s))[^.:]*? was false\.\s*/g, '');
  s = s.replace(/\s*Please fix either the inputs\/outputs or the model\.?/g, '');
  s = s.replace(/\s+/g, ' ').trim();
  // whatever still looks like C++ goes (tensor names in quotes, e.g. 'onnx::Add_12', are not C++)
  const cpp = (x: string) => /::|\.(?:cc|h|cpp):\d/.test(x.replace(/'[^']*'|"[^"]*"/g, ''));
  if (cpp(s)) s = s.split(/(?<=\.)\s/).filter((x) => !cpp(x)).join(' ').trim();
  if (s.length > 240) s = s.slice(0, 237).replace(/\s+\S*$/, '') + '...';
  return s;
}

/** Why a model did not load, in our words (onnxruntime's cleaned text as the specifics). */
export function loadReason(raw: string): string {
  const text = cleanOrtText(raw);
  if (/Protobuf parsing failed|No graph was found|ModelProto does not have a graph|failed to parse/i.test(raw)) {
    return 'the file is not a valid ONNX model (truncated or corrupted)';
  }
  if (/raw_data size|data size .* does not match|ValidateEmbeddedTensorProtoDataSizeAndShape|Deserialize tensor/i.test(raw)) {
    return `a weight's stored data does not match its shape${text ? ` (${text})` : ''}`;
  }
  if (/opset|ir_version|IR version|Unsupported model IR/i.test(raw)) return `its ONNX version is not supported${text ? ` (${text})` : ''}`;
  return `the graph is not valid${text ? `: ${text}` : ''}`;
}

/** Why a network evaluation failed, in our words. */
export function runReason(raw: string): string {
  const node = /running (\S+) node\. Name:'([^']*)' Status Message:\s*([\s\S]*)/.exec(raw);
  if (node) {
    const why = cleanOrtText(node[3]!);
    return `its ${node[1]} node '${node[2]}' failed${why ? `: ${why}` : ''}`;
  }
  const text = cleanOrtText(raw);
  return text || 'an evaluation failed';
}

function hint(p: ConcreteProvider, msg: string): string {
  if (p === 'cuda') return `${msg} (CUDA needs onnxruntime-node's CUDA binaries: see README, "GPU")`;
  if (p === 'webgpu') return `${msg} (WebGPU needs a GPU driver or a Vulkan software driver: see README, "GPU")`;
  return msg;
}
