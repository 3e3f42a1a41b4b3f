// Percentiles and small helpers for the load process.

/** Returns the `fraction` quantile (0 to 1) of `samples` by the nearest-rank method, or NaN when empty. */
export function percentile(samples: ArrayLike<number>, fraction: number): number {
  if (samples.length === 0) {
    return Number.NaN;
  }
  const sorted = Float64Array.from(samples).sort();
  const rank = Math.max(1, Math.ceil(fraction * sorted.length));
  return sorted[rank - 1];
}

/** Returns the median of `samples`. */
export function median(samples: ArrayLike<number>): number {
  return percentile(samples, 0.5);
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Calls `task(index)` for every index below `count`, with at most `concurrency` calls running at once.
 * Returns how many calls succeeded. The caller counts failures inside `task`.
 */
export async function runPool(count: number, concurrency: number, task: (index: number) => Promise<boolean>): Promise<number> {
  let next = 0;
  let succeeded = 0;
  const worker = async () => {
    while (next < count) {
      const index = next;
      next += 1;
      if (await task(index)) {
        succeeded += 1;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return succeeded;
}
