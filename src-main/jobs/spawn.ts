/** Worker processes by Node's fork (the CLI's serve mode, tests; the default of the job runner). */
import { fork } from 'node:child_process';
import type { SpawnWorker } from './protocol.js';

export const forkWorker: SpawnWorker = (entry) => {
  const child = fork(entry, [], {
    execArgv: [],
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    // were this Electron's own binary (RunAsNode on), it would run the worker as plain Node
    env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' },
  });
  return {
    send: (m) => {
      if (child.connected) child.send(m);
    },
    onMessage: (l) => void child.on('message', l as (m: unknown) => void),
    onExit: (l) => void child.on('exit', (code, sig) => l(code, sig)),
    onError: (l) => void child.on('error', l),
    onStderr: (l) => void child.stderr?.on('data', (b: Buffer) => l(b.toString('utf8'))),
    kill: () => void child.kill('SIGKILL'),
  };
};
