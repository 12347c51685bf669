/**
 * Messages between the job runner (the host's main thread) and a job's worker process. Tasks carry resolved
 * paths only: the runner decides where things live; the worker runs one engine function and reports.
 */
import type { ApiError } from '../contract/api.js';

export type WorkerTask =
  | {
      kind: 'calibrate';
      pipelineDir: string;
      out: string;
      opts: {
        samples: number; steps: number; sampler?: string; guidance?: number; timesteps: string; count: number; batchSize: number; gram: boolean;
        /** Text-to-image: the prompts (already read from a prompt file by the host) and the negative prompt. */
        prompts?: string[]; negativePrompt?: string;
      };
    }
  | { kind: 'quantize'; pipelineDir: string; recipe: unknown; keepLayers: string[]; components: string[]; recordPath: string | null; out: string; budget?: { bits: number; sensitivityPath: string; perRange?: boolean } }
  | { kind: 'sensitivity'; variantDir: string; samples: number; steps: number; ranges: number; seed: number; prompts?: string[]; out: string }
  | { kind: 'pareto'; pipelineDir: string; variantDir: string; sensitivityPath: string; recordPath: string | null; budgets: number[]; out: string }
  | { kind: 'export'; variantDir: string; out: string; int8Weights: 'u8' | 's8' | 's7'; fuseAttention: boolean; verifySeeds: number[]; verifySteps: number }
  | {
      kind: 'sample';
      pipelineDir: string;
      /** The model's name, for messages. */
      modelId: string;
      prompts: string[];
      negativePrompt: string;
      height?: number;
      width?: number;
      seeds: number[];
      steps: number;
      sampler?: string;
      guidance?: number;
      out: string;
      /** Variant folders sampled with the same prompts and seeds after FP (a grid each). */
      variants: { jobId: string; name: string; dir: string }[];
    }
  | {
      kind: 'compare';
      pipelineDir: string;
      /** 'fp' or variant folders. */
      variants: string[];
      seeds: number[];
      classes: number[];
      prompts?: string[];
      negativePrompt?: string;
      height?: number;
      width?: number;
      steps: number;
      /** Default: the pipeline's (text-to-image), else ddim and guidance 2. */
      sampler?: string;
      guidance?: number;
      fidSamples: number;
      walkFrames: number;
      video: boolean;
      walk: boolean;
      out: string;
    };

/** 'ack': the runner has the job's last message; the worker may exit (it exits by itself soon after anyway). */
export type ToWorker = { type: 'start'; task: WorkerTask } | { type: 'cancel' } | { type: 'ack' };

export type FromWorker =
  | { type: 'progress'; phase: string; done: number; total: number }
  | { type: 'done'; result: unknown }
  | { type: 'error'; error: ApiError };

/**
 * A job's worker process as the runner drives it. Node's fork by default (jobs/spawn.ts); the Electron shell hands
 * in Electron's utilityProcess, which needs no RunAsNode (that fuse is off in a packaged app).
 */
export interface WorkerProcess {
  /** Sends a message (dropped once the process has gone). */
  send(m: ToWorker): void;
  onMessage(listener: (m: FromWorker) => void): void;
  onExit(listener: (code: number | null, signal: string | null) => void): void;
  onError(listener: (e: Error) => void): void;
  onStderr(listener: (text: string) => void): void;
  /** Stops the process at once (SIGKILL). */
  kill(): void;
}

/** Starts a worker process running the given entry file. */
export type SpawnWorker = (entry: string) => WorkerProcess;
