/** Helpers for tests that drive a host (src-main/host.ts) as the shells do; kept apart so other tests do not load it. */
import type { JobEvent, JobInfo, JobSpec } from '../src-main/contract/api';
import { dispatch, type Host } from '../src-main/host';

/** Starts a job on a host and waits for its end; the job as the host lists it then. */
export async function jobFinished(host: Host, spec: JobSpec): Promise<JobInfo> {
  const events: JobEvent[] = [];
  const off = host.subscribe((e) => events.push(e));
  try {
    const r = await dispatch(host, 'startJob', [spec]);
    if (!r.ok) throw new Error(r.error.message);
    const id = (r.value as { jobId: string }).jobId;
    while (!events.some((e) => e.jobId === id && (e.kind === 'done' || e.kind === 'error'))) await new Promise((ok) => setTimeout(ok, 20));
    const jobs = await host.listJobs();
    if (!jobs.ok) throw new Error(jobs.error.message);
    return jobs.value.find((j) => j.id === id)!;
  } finally {
    off();
  }
}
