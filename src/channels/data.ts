/**
 * Maximum nesting depth of the `data` of a message. `JSON.parse` accepts any depth, but
 * `JSON.stringify` recurses and overflows the stack at a few thousand levels, which a 64 KiB frame
 * reaches easily. Real payloads stay far below this.
 */
export const maxDataDepth = 32;

/** Tells whether a parsed JSON value nests arrays or objects deeper than `maxDataDepth`, without recursing. */
export function exceedsDataDepth(value: unknown): boolean {
  const pending: { value: unknown; depth: number }[] = [{ value, depth: 0 }];
  while (pending.length > 0) {
    const { value: current, depth } = pending.pop()!;
    if (current === null || typeof current !== 'object') {
      continue;
    }
    if (depth >= maxDataDepth) {
      return true;
    }

    const children = Array.isArray(current) ? current : Object.values(current);
    for (const child of children) {
      pending.push({ value: child, depth: depth + 1 });
    }
  }
  return false;
}
