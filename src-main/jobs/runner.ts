/**
 * Long jobs off the host's main thread: each job runs in its own Node process (worker.ts through tsx), so the
 * Electron main process or the browser-mode server keeps answering while onnxruntime works. The runner keeps the
 * jobs' state, turns worker messages into the contract's JobEvents (with elapsed time and ETA), and cancels:
 * first politely (the worker aborts its AbortSignal, the engine stops at the next step), then by force.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { makeDirs } from '../core/fsutil.js';
import { repoRoot } from '../core/models.js';
import type { ApiError, JobEvent, JobInfo, JobKind, JobResult } from '../contract/api.js';
import type { FromWorker, SpawnWorker, ToWorker, WorkerProcess, WorkerTask } from './protocol.js';
import { forkWorker } from './spawn.js';

/** The worker's entry next to this file (the Electron shell passes its own, since its main is bundled). */
export function defaultWorkerEntry(): string {
  // from the repository root, not this file's folder: the CLI may run as a bundle elsewhere (bin/dq.js)
  return join(repoRoot(), 'src-main', 'jobs', 'worker-entry.mjs');
}

const KILL_AFTER_MS = 5000;

interface Running {
  info: JobInfo;
  /** The worker while it runs; null once it has exited. */
  child: WorkerProcess | null;
  /** Resolves when the worker has exited. */
  exited: Promise<void>;
  cancelRequested: boolean;
  stderr: string;
  /** The current phase, when its first progress message came and how much was done then (the ETA's baseline). */
  phase: { name: string; at: number; done: number } | null;
}

export interface StartOptions {
  kind: JobKind;
  /** The model the job was started on, as the studio named it. */
  model?: string;
  /** Where its result will live, from the job's folder (default: the folder itself). */
  output?: (dir: string) => string;
  label: string;
  /** Builds the worker's task; gets the job's own folder. */
  task: (dir: string) => WorkerTask;
  /** Turns the worker's result into the contract's (e.g. adds what only the host knows). */
  finish?: (raw: unknown) => JobResult;
}

export class JobRunner {
  private jobs = new Map<string, Running>();
  private listeners = new Set<(e: JobEvent) => void>();
  private seq = 0;

  constructor(
    readonly workspace: string,
    private readonly workerEntry = defaultWorkerEntry(),
    private readonly spawnWorker: SpawnWorker = forkWorker,
  ) {
    makeDirs(workspace, 'workspace'); // not Node's recursive mkdir: it never returns under /proc
  }

  subscribe(listener: (e: JobEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(e: JobEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch {
        /* a listener's failure is its own */
      }
    }
  }

  dir(id: string): string {
    return join(this.workspace, id);
  }

  get(id: string): JobInfo | undefined {
    return this.jobs.get(id)?.info;
  }

  list(): JobInfo[] {
    return [...this.jobs.values()].map((j) => j.info);
  }

  start(opts: StartOptions): string {
    const id = `${opts.kind}-${++this.seq}-${randomBytes(3).toString('hex')}`;
    const dir = this.dir(id);
    makeDirs(dir, 'workspace');
    const task = opts.task(dir);
    const info: JobInfo = { id, kind: opts.kind, model: opts.model ?? null, output: opts.output?.(dir) ?? dir, label: opts.label, state: 'running', progress: null, startedAt: Date.now(), endedAt: null, result: null, error: null };
    const child = this.spawnWorker(this.workerEntry);
    let exit: () => void = () => {};
    const job: Running = { info, child, exited: new Promise<void>((ok) => (exit = ok)), cancelRequested: false, stderr: '', phase: null };
    this.jobs.set(id, job);
    child.onStderr((t) => (job.stderr = (job.stderr + t).slice(-4000)));
    child.onMessage((m) => this.onMessage(job, m, opts));
    child.onExit((code, sig) => {
      job.child = null;
      exit();
      // a worker killed mid-write (cancel after the grace period) leaves its temporary files and folders
      removeTemporaries(dir);
      if (job.info.state !== 'running') return;
      if (job.cancelRequested) this.end(job, 'cancelled', null, { code: 'CANCELLED', message: `${opts.kind} was cancelled` });
      else {
        const tail = job.stderr.trim().split('\n').slice(-3).join(' | ');
        this.end(job, 'error', null, { code: 'WORKER_EXITED', message: `the ${opts.kind} worker stopped (${sig ?? `exit code ${code}`})${tail ? `: ${tail}` : ''}` });
      }
    });
    child.onError((e) => {
      if (job.info.state === 'running') this.end(job, 'error', null, { code: 'WORKER_FAILED', message: `the ${opts.kind} worker could not run: ${e.message}` });
    });
    this.emit({ jobId: id, kind: 'started', job: { ...info } });
    child.send({ type: 'start', task } satisfies ToWorker);
    return id;
  }

  private onMessage(job: Running, m: FromWorker, opts: StartOptions): void {
    if (job.info.state !== 'running') return;
    if (m.type === 'progress') {
      const now = Date.now();
      const elapsed = (now - job.info.startedAt) / 1000;
      // the ETA is the current phase's: its rate from the phase's first message on, so start-up (loading models,
      // building sessions) and earlier phases at another rate do not count
      if (!job.phase || job.phase.name !== m.phase || m.done < job.phase.done) job.phase = { name: m.phase, at: now, done: m.done };
      const ph = job.phase;
      const rate = now > ph.at && m.done > ph.done ? (m.done - ph.done) / ((now - ph.at) / 1000) : 0;
      const progress = {
        phase: m.phase,
        done: m.done,
        total: m.total,
        elapsedSeconds: Math.round(elapsed * 10) / 10,
        etaSeconds: m.total > 0 && m.done >= m.total ? 0 : rate > 0 ? Math.round((m.total - m.done) / rate) : null,
      };
      job.info.progress = progress;
      this.emit({ jobId: job.info.id, kind: 'progress', progress });
    } else if (m.type === 'done') {
      job.child?.send({ type: 'ack' } satisfies ToWorker);
      let result: JobResult;
      try {
        result = opts.finish ? opts.finish(m.result) : (m.result as JobResult);
      } catch (e) {
        this.end(job, 'error', null, { code: 'INTERNAL', message: (e as Error).message });
        return;
      }
      this.end(job, 'done', result, null);
    } else if (m.type === 'error') {
      job.child?.send({ type: 'ack' } satisfies ToWorker);
      this.end(job, m.error.code === 'CANCELLED' ? 'cancelled' : 'error', null, m.error);
    }
  }

  private end(job: Running, state: JobInfo['state'], result: JobResult | null, error: ApiError | null): void {
    job.info.state = state;
    job.info.endedAt = Date.now();
    job.info.result = result;
    job.info.error = error;
    if (result) this.emit({ jobId: job.info.id, kind: 'done', result });
    else this.emit({ jobId: job.info.id, kind: 'error', error: error ?? { code: 'INTERNAL', message: 'the job ended without a result' } });
  }

  /** Asks a running job to stop; false if it is not running. */
  cancel(id: string): boolean {
    const job = this.jobs.get(id);
    if (!job || job.info.state !== 'running') return false;
    job.cancelRequested = true;
    const child = job.child;
    child?.send({ type: 'cancel' } satisfies ToWorker);
    const timer = setTimeout(() => child?.kill(), KILL_AFTER_MS);
    timer.unref();
    void job.exited.then(() => clearTimeout(timer));
    return true;
  }

  /** Stops every running job (the shell is closing). */
  async dispose(): Promise<void> {
    const waits: Promise<void>[] = [];
    for (const j of this.jobs.values()) {
      const child = j.child;
      if (!child) continue;
      waits.push(j.exited);
      j.cancelRequested = true;
      child.kill();
    }
    await Promise.all(waits);
  }
}

/** Removes the hidden temporaries (`.<name>.<pid>[.<time>].tmp`) that atomic writes leave when their process dies. */
function removeTemporaries(dir: string): void {
  try {
    for (const f of readdirSync(dir)) if (/^\..+\.\d+(\.\d+)?\.tmp$/.test(f)) rmSync(join(dir, f), { recursive: true, force: true });
  } catch {
    // the job folder is gone: nothing to clean
  }
}
