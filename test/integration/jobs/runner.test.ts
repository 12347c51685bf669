/**
 * The job runner kills a worker that does not stop after cancel, and removes the temporaries its atomic writes
 * left in the job folder (an export killed mid-write leaves `.export.<pid>.tmp`).
 */
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { JobEvent } from '../../../src-main/contract/api';
import { JobRunner } from '../../../src-main/jobs/runner';
import { ROOT, tmp } from '../../helpers';

const work = tmp('dq-runner-');
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('JobRunner', () => {
  it('kills a worker that ignores cancel and removes the temporaries it left', async () => {
    const runner = new JobRunner(work, join(ROOT, 'test', 'integration', 'jobs', 'stuck-worker.mjs'));
    const events: JobEvent[] = [];
    runner.subscribe((e) => events.push(e));
    let dir = '';
    const id = runner.start({
      kind: 'export',
      label: 'stuck export',
      task: (d) => {
        dir = d;
        return { kind: 'export', variantDir: d, out: join(d, 'export'), int8Weights: 'u8', fuseAttention: true, verifySeeds: [0], verifySteps: 1 };
      },
    });
    await new Promise<void>((ok) => {
      const t = setInterval(() => {
        if (events.some((e) => e.kind === 'progress')) {
          clearInterval(t);
          ok();
        }
      }, 20);
    });
    expect(readdirSync(dir).some((f) => f.endsWith('.tmp'))).toBe(true);
    expect(runner.cancel(id)).toBe(true);
    await new Promise<void>((ok) => {
      const t = setInterval(() => {
        if (runner.get(id)?.state !== 'running') {
          clearInterval(t);
          ok();
        }
      }, 50);
    });
    expect(runner.get(id)?.state).toBe('cancelled');
    expect(existsSync(dir)).toBe(true);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  }, 20_000);
});
