/**
 * PTQ cost, measured side by side in one run on the embedded model: calibration (the default set: 64 images x 25
 * DDIM steps, guidance 2, statistics at every step) plus quantization with tfmq-w4a8, against one FP sampling pass
 * over the same calibration set. Each measurement runs in its own process (peak RSS is per process); the two are
 * interleaved twice and the faster of each pair is kept.
 * Targets: time ratio <= 2 on tiny-mnist (issue 5), <= 1.5 on tiny-t2i (issue 17); peak memory ratio <= 1.3.
 * DQ_BENCH_PTQ_MODELS=tiny-t2i runs one model only.
 */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

type Run = { seconds: number; maxRssMB: number; parts: Record<string, number> };

function measure(mode: 'fp' | 'calib', model: string): Run {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'bench', 'ptq-child.ts'), mode, join(root, 'models', model), 'tfmq-w4a8'], { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`bench child (${mode}, ${model}) failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

/** The PTQ cost on each embedded model (tiny-mnist: class labels; tiny-t2i: its 64 calibration prompts). */
export function benchPtq(models = ['tiny-mnist', 'tiny-t2i']): void {
  for (const model of models) {
    const fp: Run[] = [];
    const cal: Run[] = [];
    for (let i = 0; i < 2; i++) {
      fp.push(measure('fp', model));
      cal.push(measure('calib', model));
    }
    const best = (xs: Run[]) => ({ seconds: Math.min(...xs.map((x) => x.seconds)), maxRssMB: Math.min(...xs.map((x) => x.maxRssMB)), parts: xs.reduce((a, x) => (x.seconds < a.seconds ? x : a)).parts });
    const f = best(fp);
    const c = best(cal);
    const how = model === 'tiny-t2i' ? '64 images x 25 steps on its calibration prompts, its sampler and guidance' : '64 images x 25 DDIM steps, guidance 2';
    console.log(`\nPTQ cost on models/${model} (${how}; fastest of 2 interleaved runs)`);
    console.log(`  FP sampling pass over the calibration set   ${f.seconds.toFixed(2).padStart(8)} s   peak RSS ${f.maxRssMB.toFixed(0).padStart(5)} MB`);
    console.log(`  calibration + quantization (tfmq-w4a8)      ${c.seconds.toFixed(2).padStart(8)} s   peak RSS ${c.maxRssMB.toFixed(0).padStart(5)} MB   (calibration ${c.parts.calibrate?.toFixed(2)} s, quantization ${c.parts.quantize?.toFixed(2)} s)`);
    const target = model === 'tiny-t2i' ? 'target <= 1.5 (issue 17)' : 'target <= 2';
    console.log(`  ratio: time ${(c.seconds / f.seconds).toFixed(2)} (${target}), peak memory ${(c.maxRssMB / f.maxRssMB).toFixed(2)} (target <= 1.3)`);
  }
}
