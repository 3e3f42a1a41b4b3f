/** Counts how fuzz inputs ended, by a short label such as `101`, `401 token_invalid` or `close 1002`. */
export class OutcomeTally {
  private readonly counts = new Map<string, number>();

  /** Counts one input under `label`. */
  add(label: string): void {
    this.counts.set(label, (this.counts.get(label) ?? 0) + 1);
  }

  /** Number of inputs counted so far. */
  get total(): number {
    let sum = 0;
    this.counts.forEach((count) => { sum += count; });
    return sum;
  }

  /** Labels with their counts, the most frequent first. */
  entries(): Array<[string, number]> {
    return [...this.counts].sort((left, right) => right[1] - left[1] || left[0].localeCompare(right[0]));
  }
}
