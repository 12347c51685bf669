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

export class Session {
  private constructor(
    private readonly inner: ort.InferenceSession,
    readonly info: SessionInfo,
  ) {}

  static async create(model: string | Uint8Array, requested: Provider = 'cpu', opts: { threads?: number; lowMemory?: boolean } = {}): Promise<Session> {
    const order: ConcreteProvider[] = requested === 'auto' ? ['cuda', 'cpu'] : requested === 'cpu' ? ['cpu'] : [requested, 'cpu'];
    const failures: string[] = [];
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
          ...(opts.threads ? { intraOpNumThreads: opts.threads } : {}),
          // no arena and no memory pattern: buffers go back to the system as soon as they die
          ...(opts.lowMemory ? { enableCpuMemArena: false, enableMemPattern: false } : {}),
        };
        const inner =
          typeof model === 'string' ? await ort.InferenceSession.create(model, options) : await ort.InferenceSession.create(model, options);
        const info: SessionInfo = { requested, provider: p };
        if (failures.length) info.fallback = failures.join('; ');
        return new Session(inner, info);
      } catch (e) {
        const msg = firstLine(e);
        if (p === 'cpu') throw new DqError('BAD_MODEL', `onnxruntime cannot load the model: ${msg}`);
        failures.push(`${p}: ${hint(p, msg)}`);
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
    const res = fetches ? await this.inner.run(f, fetches) : await this.inner.run(f);
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

function firstLine(e: unknown): string {
  const s = e instanceof Error ? e.message : String(e);
  return s.split('\n')[0]!.trim();
}

function hint(p: ConcreteProvider, msg: string): string {
  if (p === 'cuda') return `${msg} (CUDA needs onnxruntime-node's CUDA binaries: see README, "GPU")`;
  if (p === 'webgpu') return `${msg} (WebGPU needs a GPU driver or a Vulkan software driver: see README, "GPU")`;
  return msg;
}
