/**
 * `npm run bench`: per format, the TypeScript reference's throughput (values/s) and the ONNX fake-quant subgraph's
 * run time on the CPU provider relative to an identity graph on the same tensor, measured side by side in one run
 * (fastest of 15 interleaved runs each; the reference: median over >= 0.25 s).
 */
import { Session } from '../src-main/core/runtime/onnx.js';
import { fakeQuantFloat, fakeQuantInt, fakeQuantMx, fakeQuantNvfp4, maxCalibrate, nvfp4TensorScale, type QuantFormat } from '../kernels/quant.js';
import { fakeQuantFragment, type FakeQuantSpec } from '../kernels/onnx/fakequant.js';
import { GraphBuilder, type Fragment } from '../kernels/onnx/graph.js';
import type { Granularity } from '../kernels/layout.js';
import { modelBytes } from '../test/integration/kernels/onnx-model.js';
import { benchExport, benchExportDit } from './export.js';
import { benchPtq } from './ptq.js';
import { benchSimulated } from './simulated.js';
import { benchT2I } from './t2i.js';

const DIMS = [1024, 1024];
const N = DIMS[0]! * DIMS[1]!;

function data(): Float32Array {
  let s = 12345;
  const r = (): number => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296);
  return Float32Array.from({ length: N }, () => Math.fround(Math.sqrt(-2 * Math.log(r() || 1e-9)) * Math.cos(2 * Math.PI * r())));
}

interface Row {
  label: string;
  fmt: QuantFormat;
  g?: Granularity;
  impl?: 'native' | 'std';
}

const perChannel: Granularity = { kind: 'channel', axis: 0 };
const block128: Granularity = { kind: 'block', axis: 1, size: 128 };
const ROWS: Row[] = [
  { label: 'INT8 sym, per channel', fmt: { kind: 'int', bits: 8, symmetric: true }, g: perChannel },
  { label: 'INT8 sym, per channel (std ops)', fmt: { kind: 'int', bits: 8, symmetric: true }, g: perChannel, impl: 'std' },
  { label: 'INT4 asym, blocks of 128', fmt: { kind: 'int', bits: 4, symmetric: false }, g: block128 },
  { label: 'INT3 sym, per channel (std ops)', fmt: { kind: 'int', bits: 3, symmetric: true }, g: perChannel },
  { label: 'FP8 E4M3FN, per channel', fmt: { kind: 'float', element: 'e4m3fn' }, g: perChannel },
  { label: 'FP8 E4M3FN, per channel (std ops)', fmt: { kind: 'float', element: 'e4m3fn' }, g: perChannel, impl: 'std' },
  { label: 'FP8 E5M2, per channel', fmt: { kind: 'float', element: 'e5m2' }, g: perChannel },
  { label: 'FP6 E3M2, per channel', fmt: { kind: 'float', element: 'e3m2' }, g: perChannel },
  { label: 'FP6 E2M3, per channel', fmt: { kind: 'float', element: 'e2m3' }, g: perChannel },
  { label: 'FP4 E2M1, blocks of 128', fmt: { kind: 'float', element: 'e2m1' }, g: block128 },
  { label: 'MXFP8 (E4M3)', fmt: { kind: 'mx', element: 'e4m3fn' } },
  { label: 'MXFP8 (E5M2)', fmt: { kind: 'mx', element: 'e5m2' } },
  { label: 'MXFP6 (E3M2)', fmt: { kind: 'mx', element: 'e3m2' } },
  { label: 'MXFP6 (E2M3)', fmt: { kind: 'mx', element: 'e2m3' } },
  { label: 'MXFP4 (E2M1)', fmt: { kind: 'mx', element: 'e2m1' } },
  { label: 'MXINT8', fmt: { kind: 'mx', element: 'int8' } },
  { label: 'NVFP4', fmt: { kind: 'nvfp4' } },
];

/** Seconds per call: repeats until at least `minS` seconds have passed (at least `minRuns` runs), takes the median. */
async function time(fn: () => unknown, minS = 0.25, minRuns = 3): Promise<number> {
  const t: number[] = [];
  const start = performance.now();
  while (t.length < minRuns || performance.now() - start < minS * 1000) {
    const t0 = performance.now();
    await fn();
    t.push((performance.now() - t0) / 1000);
  }
  t.sort((a, b) => a - b);
  return t[t.length >> 1]!;
}

async function sessionFor(f: Fragment): Promise<Session> {
  return Session.create(modelBytes(f), 'cpu');
}

function identity(): Fragment {
  const b = new GraphBuilder('id');
  b.identity('x', 'y');
  return b.fragment([{ name: 'x', dtype: 'float32', dims: DIMS }], [{ name: 'y', dtype: 'float32', dims: DIMS }], 21);
}

async function main(): Promise<void> {
  const x = data();
  const feeds = { x: { type: 'float32' as const, data: x, dims: DIMS } };
  const id = await sessionFor(identity());
  await id.run(feeds);
  const amax = x.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
  console.log(`DQ Studio kernels bench: ${N.toLocaleString('en')} float32 values (${DIMS.join('x')}), onnxruntime CPU provider\n`);
  const head = ['format', 'reference Mvalues/s', 'ONNX ms', 'identity ms', 'ONNX / identity', 'nodes'];
  const rows: string[][] = [];
  for (const row of ROWS) {
    const fmt = row.fmt;
    const g = row.g ?? { kind: 'tensor' };
    let ref: () => unknown;
    const spec: FakeQuantSpec = { format: fmt, dims: DIMS, granularity: g, axis: 1 };
    if (row.impl) spec.impl = row.impl;
    if (fmt.kind === 'int' || fmt.kind === 'float') {
      const p = maxCalibrate(x, DIMS, g, fmt);
      spec.scale = p.scale;
      if (p.zeroPoint) spec.zeroPoint = p.zeroPoint;
      ref = fmt.kind === 'int' ? () => fakeQuantInt(x, DIMS, g, fmt, p.scale, p.zeroPoint) : () => fakeQuantFloat(x, DIMS, g, fmt.element, p.scale);
    } else if (fmt.kind === 'mx') ref = () => fakeQuantMx(x, DIMS, 1, fmt.element);
    else {
      spec.tensorScale = nvfp4TensorScale(amax);
      ref = () => fakeQuantNvfp4(x, DIMS, 1, spec.tensorScale!);
    }
    const tRef = await time(ref);
    const f = fakeQuantFragment(spec);
    const s = await sessionFor(f);
    await s.run(feeds);
    // interleave the two graphs so that both see the same machine state
    const ts: number[] = [];
    const ti: number[] = [];
    for (let i = 0; i < 15; i++) {
      ts.push(await time(() => s.run(feeds), 0, 1));
      ti.push(await time(() => id.run(feeds), 0, 1));
    }
    await s.release();
    // the fastest of 15 interleaved runs: the least disturbed by other work on the machine
    const tOnnx = Math.min(...ts);
    const tId = Math.min(...ti);
    rows.push([row.label, (N / tRef / 1e6).toFixed(1), (tOnnx * 1e3).toFixed(2), (tId * 1e3).toFixed(2), `${(tOnnx / tId).toFixed(1)}x`, String(f.nodes.length)]);
    process.stdout.write('.');
  }
  await id.release();
  process.stdout.write('\n\n');
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ');
  console.log(line(head));
  console.log(w.map((n) => '-'.repeat(n)).join('  '));
  for (const r of rows) console.log(line(r));
}

await main();
if (process.env.DQ_BENCH_SIM !== '0') await benchSimulated();
if (process.env.DQ_BENCH_PTQ !== '0') benchPtq(process.env.DQ_BENCH_PTQ_MODELS ? process.env.DQ_BENCH_PTQ_MODELS.split(',') : undefined);
if (process.env.DQ_BENCH_EXPORT !== '0') await benchExport();
if (process.env.DQ_BENCH_EXPORT !== '0') await benchExportDit();
if (process.env.DQ_BENCH_T2I !== '0') await benchT2I();
