/**
 * The one typed contract between the renderer and its host (Electron main via preload, or browser mode).
 * Requests go in, results and errors come back as data; nothing here imports Node or the engine.
 */
import { z } from 'zod';

/** An error crossing the boundary: a code a UI can branch on and a message a person can read. */
export interface ApiError {
  code: string;
  message: string;
}

export type Result<T> = { ok: true; value: T } | { ok: false; error: ApiError };

export interface EmbeddedModel {
  /** Folder name under models/. */
  id: string;
  /** Absolute path of the pipeline folder on the host. */
  path: string;
  kind: 'diffusion-pipeline' | 'classifier';
  title: string;
  summary: string;
  /** Class names of a class-conditional pipeline. */
  classes: string[];
  sampleShape: number[] | null;
}

export interface StudioApi {
  /** The models shipped with the studio (models/). */
  listModels(): Promise<Result<EmbeddedModel[]>>;
  /** Host facts the UI shows: which shell, which providers onnxruntime offers. */
  hostInfo(): Promise<Result<HostInfo>>;
}

export interface HostInfo {
  shell: 'electron' | 'browser' | 'mock';
  version: string;
  providers: string[];
}

/** Request names, each validated on the host side with its schema before anything runs. */
export const Requests = {
  listModels: z.tuple([]),
  hostInfo: z.tuple([]),
} as const;
export type RequestName = keyof typeof Requests;

export const IPC_PREFIX = 'dq:';
