/**
 * A verdict on an export's verification: is |exported - simulated| what this kind of export is expected to give?
 *
 * The expectation depends on what runs the export's layers:
 * - integer kernels (QLinearConv, MatMulIntegerToFloat): a requantized output can land one code off where the
 *   simulation rounded the other way, and a flipped code grows through later layers. The bounds are those the export
 *   tests hold everywhere, set from measurements on three CPUs (AMD Zen 3 with AVX2 only, Intel Xeon with AVX-512 VNNI
 *   and AMX, AMD Zen 5: docs/export.md, "Verification"), where the largest correct exports reached step mean 0.039,
 *   step p99 0.21, image mean 0.030 and image p99 0.28, and a broken one (s8 weights on AVX2-only kernels) step p99
 *   0.68 and image mean 0.38. With s7 weights the weight grid is coarser than the simulation's, so images may drift
 *   further (image mean bound 0.15, no p99 bound).
 * - activation quantizers simulated in float in the export too (FP8, MX and NVFP4 activations, which have no
 *   kernels here): the same float arithmetic in another order, but a last-bit difference reaching a quantizer can
 *   flip a code, as with integer kernels: the same bounds.
 * - weights only (low-bit weights decoded to float, float fusions, no activation quantizers): the export computes
 *   the simulated variant's float arithmetic in another order, so it should agree to float rounding; the bounds
 *   leave room for trajectories that drift at a few pixels, and nothing more.
 * The image max is never judged: a few pixels of a diverging trajectory can reach it on any CPU.
 */
export interface VerificationBounds {
  stepMean: number;
  stepP99: number;
  imageMean: number;
  imageP99: number | null;
}

export interface VerificationVerdict {
  /** True when every judged measure is within its bound. */
  ok: boolean;
  /** What deviation this export is expected to show, in words. */
  expected: string;
  bounds: VerificationBounds;
  /** The measures above their bound, in words ("step p99 0.683 > 0.5"). */
  exceeded: string[];
}

const INT8: VerificationBounds = { stepMean: 0.1, stepP99: 0.5, imageMean: 0.06, imageP99: 0.6 };
const INT8_S7: VerificationBounds = { stepMean: 0.1, stepP99: 0.5, imageMean: 0.15, imageP99: null };
const FLOAT: VerificationBounds = { stepMean: 1e-3, stepP99: 1e-2, imageMean: 1e-2, imageP99: 0.1 };

/** The verdict on one verification (see the module comment). */
export function verificationVerdict(
  kind: { int8Kernels: number; int8Weights: string; simulatedActivations: boolean },
  v: { meanAbs: number; p99Abs: number; step: { meanAbs: number; p99Abs: number } },
): VerificationVerdict {
  let expected: string;
  let bounds: VerificationBounds;
  if (kind.int8Kernels > 0 && kind.int8Weights === 's7') {
    bounds = INT8_S7;
    expected = 'integer kernels with 7-bit weight codes: requantized outputs one code off, on a coarser weight grid than the simulation';
  } else if (kind.int8Kernels > 0) {
    bounds = INT8;
    expected = 'integer kernels: a requantized output can land one code off the simulation and grow through later layers';
  } else if (kind.simulatedActivations) {
    bounds = INT8;
    expected = 'activation quantizers simulated in float: a last-bit difference reaching a quantizer can flip a code';
  } else {
    bounds = FLOAT;
    expected = "no integer kernels: the simulation's float arithmetic in another order, equal up to float rounding";
  }
  const exceeded: string[] = [];
  const check = (what: string, value: number, bound: number | null) => {
    if (bound !== null && !(value <= bound)) exceeded.push(`${what} ${value} > ${bound}`);
  };
  check('step mean', v.step.meanAbs, bounds.stepMean);
  check('step p99', v.step.p99Abs, bounds.stepP99);
  check('image mean', v.meanAbs, bounds.imageMean);
  check('image p99', v.p99Abs, bounds.imageP99);
  return { ok: exceeded.length === 0, expected, bounds, exceeded };
}
