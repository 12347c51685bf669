/**
 * Where results live and how to get at them (issue 21, point 2), at the host: every job reports the model it was
 * started on and its result's folder; a desktop host (Electron hands in its native UI) opens that folder and a
 * folder picker; browser mode refuses both in one line that names the path, as data.
 */
import { existsSync, rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import type { JobSpec } from '../../src-main/contract/api';
import { createHost, dispatch, type Host } from '../../src-main/host';
import { jobFinished } from '../host-helpers';

const hosts: Host[] = [];
afterAll(async () => {
  for (const h of hosts) {
    await h.dispose();
    rmSync(h.workspace, { recursive: true, force: true });
  }
});


const calibrate: JobSpec = { kind: 'calibrate', model: 'tiny-mnist', samples: 2, steps: 1 };

describe('where results live', () => {
  it('browser mode: jobs name their model and folder; opening a folder or a picker is refused with the path', async () => {
    const host = createHost('browser', 'test');
    hosts.push(host);
    const job = await jobFinished(host, calibrate);
    expect(job.state).toBe('done');
    expect(job.model).toBe('tiny-mnist');
    expect(job.output).toMatch(new RegExp(`${job.id}$`));
    expect(existsSync(job.output!)).toBe(true);
    const info = await host.hostInfo();
    expect(info.ok && info.value.desktop).toBe(false);
    const r = await dispatch(host, 'revealJob', [job.id]);
    expect(r).toEqual({ ok: false, error: { code: 'UNSUPPORTED', message: `this host cannot open folders (browser mode); the files are in ${job.output}` } });
    const p = await dispatch(host, 'pickFolder', []);
    expect(p.ok ? null : p.error.code).toBe('UNSUPPORTED');
    expect(await dispatch(host, 'revealJob', ['no-such-job'])).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
  }, 60_000);

  it('a desktop host opens the result folder and its folder picker', async () => {
    const revealed: string[] = [];
    const host = createHost('electron', 'test', { desktop: { reveal: async (p) => void revealed.push(p), pickFolder: async () => '/picked/pipeline' } });
    hosts.push(host);
    const info = await host.hostInfo();
    expect(info.ok && info.value.desktop).toBe(true);
    const job = await jobFinished(host, calibrate);
    await expect(dispatch(host, 'revealJob', [job.id])).resolves.toEqual({ ok: true, value: { path: job.output } });
    expect(revealed).toEqual([job.output]);
    await expect(dispatch(host, 'pickFolder', [])).resolves.toEqual({ ok: true, value: { path: '/picked/pipeline' } });
  }, 60_000);
});
