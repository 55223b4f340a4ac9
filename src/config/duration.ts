const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/y;

/**
 * Parses a duration: milliseconds as a number, or text such as `'200ms'`, `'2s'`, `'1m'`, `'1h30m'`.
 * Returns milliseconds, or an error message naming the bad value.
 */
export function parseDuration(value: unknown): number | { error: string } {
  if (typeof value === 'number') {
    return Number.isFinite(value) && value >= 0 ? Math.round(value) : { error: `${value} is not a duration` };
  }
  if (typeof value !== 'string') return { error: `expected a duration such as "200ms" or "2s", got ${typeof value}` };
  const text = value.trim();
  if (/^\d+$/.test(text)) return { error: `"${value}" has no unit; write "${text}ms" or "${text}s"` };
  let total = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < text.length) {
    const start = PART.lastIndex;
    const match = PART.exec(text);
    if (!match || match.index !== start) return { error: `"${value}" is not a duration (use ms, s, m or h, e.g. "200ms", "2s", "1m30s")` };
    total += Number(match[1]) * UNITS[match[2]!]!;
  }
  if (text === '') return { error: 'empty duration' };
  return Math.round(total);
}

/** Formats milliseconds for messages: `250ms`, `2s`, `1.5s`, `2m`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  if (ms < 60_000) return `${Number((ms / 1000).toFixed(3))}s`;
  return `${Number((ms / 60_000).toFixed(3))}m`;
}
