/**
 * Mixed precision under a bits budget: which layers take the higher-precision format, given each layer's measured
 * gain (the error against FP it removes, quant/sensitivity.ts) and the bits it adds. A 0/1 knapsack solved by dynamic
 * programming over the allowance cut into BUDGET_UNITS units, each layer's cost rounded up to whole units: the bits
 * chosen never exceed the allowance, and the gain is the best possible for the rounded costs.
 */
export const BUDGET_UNITS = 4000;

export interface BudgetCandidate {
  name: string;
  /** Bits the layer adds in the higher format (over its bits in the recipe's format). */
  extraBits: number;
  /** Measured gain (error removed); only positive gains are worth bits. */
  gain: number;
}

export interface Allocation {
  chosen: string[];
  extraBits: number;
  gain: number;
}

export function allocateBits(cands: BudgetCandidate[], allowance: number, units = BUDGET_UNITS): Allocation {
  const items = cands.filter((c) => c.gain > 0 && c.extraBits > 0 && c.extraBits <= allowance);
  if (!items.length || allowance <= 0) return { chosen: [], extraBits: 0, gain: 0 };
  const unit = allowance / units;
  const cost = items.map((c) => Math.min(units + 1, Math.ceil(c.extraBits / unit - 1e-9)));
  // best[u]: the largest gain within u units; took[i][u]: item i taken at capacity u
  const best = new Float64Array(units + 1);
  const took = items.map(() => new Uint8Array(units + 1));
  items.forEach((c, i) => {
    const k = cost[i]!;
    for (let u = units; u >= k; u--) {
      const g = best[u - k]! + c.gain;
      if (g > best[u]!) {
        best[u] = g;
        took[i]![u] = 1;
      }
    }
  });
  const chosen: string[] = [];
  let u = units;
  let extra = 0;
  for (let i = items.length - 1; i >= 0; i--) {
    if (took[i]![u]) {
      chosen.push(items[i]!.name);
      extra += items[i]!.extraBits;
      u -= cost[i]!;
    }
  }
  return { chosen: chosen.reverse(), extraBits: extra, gain: best[units]! };
}
