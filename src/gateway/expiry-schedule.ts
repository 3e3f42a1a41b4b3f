/**
 * Deadlines of many items bucketed by whole second, so scheduling and cancelling are O(1) and one
 * ticking timer serves every connection. Token `exp` values are whole seconds, so nothing is lost.
 */
export class ExpirySchedule<Item> {
  private readonly buckets = new Map<number, Set<Item>>();
  private readonly deadlines = new Map<Item, number>();
  private nextSecond: number;

  constructor(nowSeconds: number) {
    this.nextSecond = nowSeconds;
  }

  /** Number of scheduled items. */
  get size(): number {
    return this.deadlines.size;
  }

  /** Schedules `item` at `deadlineSeconds` (epoch seconds), replacing any earlier deadline of it. */
  schedule(item: Item, deadlineSeconds: number): void {
    this.cancel(item);
    // A deadline already in the past fires on the next tick.
    const second = Math.max(Math.floor(deadlineSeconds), this.nextSecond);
    let bucket = this.buckets.get(second);
    if (!bucket) {
      bucket = new Set();
      this.buckets.set(second, bucket);
    }
    bucket.add(item);
    this.deadlines.set(item, second);
  }

  /** Removes `item`; does nothing when it is not scheduled. */
  cancel(item: Item): void {
    const second = this.deadlines.get(item);
    if (second === undefined) {
      return;
    }
    this.deadlines.delete(item);
    const bucket = this.buckets.get(second);
    bucket?.delete(item);
    if (bucket?.size === 0) {
      this.buckets.delete(second);
    }
  }

  /** Removes and returns every item whose deadline is at or before `nowSeconds`. */
  takeDue(nowSeconds: number): Item[] {
    const due: Item[] = [];
    const lastSecond = Math.floor(nowSeconds);
    if (this.deadlines.size === 0) {
      this.nextSecond = Math.max(this.nextSecond, lastSecond + 1);
      return due;
    }

    for (let second = this.nextSecond; second <= lastSecond; second += 1) {
      const bucket = this.buckets.get(second);
      if (!bucket) {
        continue;
      }
      this.buckets.delete(second);
      for (const item of bucket) {
        this.deadlines.delete(item);
        due.push(item);
      }
    }
    this.nextSecond = Math.max(this.nextSecond, lastSecond + 1);
    return due;
  }
}
