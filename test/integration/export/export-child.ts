// Child process for the kill test: exports argv[2] (variant) to argv[3] and prints progress lines.
import { exportPipeline } from '../../../src-main/core/export/export';

await exportPipeline({ variantDir: process.argv[2]!, out: process.argv[3]!, calibrationImages: 2, verify: { seeds: [0, 1], steps: 10 }, onLine: (s) => console.log(s) });
console.log('finished');
