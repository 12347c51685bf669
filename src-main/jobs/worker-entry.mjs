// A job's worker process: TypeScript through tsx (as bin/dq.js runs the CLI), then the worker proper.
import { register } from 'tsx/esm/api';

register();
await import('./worker.ts');
