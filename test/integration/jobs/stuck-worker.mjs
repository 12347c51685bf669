// A worker that starts an atomic write (a hidden temporary folder in its job folder), then ignores cancel:
// the runner has to kill it.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

process.on('message', (m) => {
  if (m.type !== 'start') return;
  const tmp = join(m.task.out, '..', `.export.${process.pid}.tmp`);
  mkdirSync(tmp, { recursive: true });
  writeFileSync(join(tmp, 'half-written.onnx'), 'x');
  process.send({ type: 'progress', phase: 'converting layers', done: 1, total: 2 });
  setInterval(() => {}, 1000);
});
