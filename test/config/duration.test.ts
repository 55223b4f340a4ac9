import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from '../../src/config/duration.js';

describe('parseDuration', () => {
  it.each([
    ['200ms', 200],
    ['2s', 2000],
    ['1m', 60_000],
    ['1h', 3_600_000],
    ['1m30s', 90_000],
    ['1.5s', 1500],
    [250, 250],
  ])('%s → %d ms', (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  it.each([['30'], ['x'], ['2 s'], ['-1s'], [''], [-5], [Number.NaN], [true]])('refuses %s with a reason', (input) => {
    const parsed = parseDuration(input);
    expect(parsed).toHaveProperty('error');
    expect(typeof (parsed as { error: string }).error).toBe('string');
  });

  it('explains a number without a unit', () => {
    expect(parseDuration('30')).toEqual({ error: '"30" has no unit; write "30ms" or "30s"' });
  });

  it('formats durations for messages', () => {
    expect(formatDuration(250)).toBe('250ms');
    expect(formatDuration(1500)).toBe('1.5s');
    expect(formatDuration(120_000)).toBe('2m');
  });
});
