import { describe, expect, it } from 'vitest';
import { SourceError } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import { backoffDelay, FailureReport } from '../../src/retry.js';
import { createDriverSource, defineSourceDriver } from '../../src/sources/driver.js';
import { createSource } from '../../src/sources/index.js';
import type { Source } from '../../src/sources/types.js';
import { z } from 'zod';

describe('a source built through its driver', () => {
  const started: string[] = [];
  const driver = defineSourceDriver<{ type: 'probe'; value: string }>()({
    type: 'probe',
    options: z.object({ type: z.literal('probe'), value: z.string() }).strict(),
    defaults: {},
    validate: (name, options: { type: 'probe'; value: string }) => {
      if (options.value === '') throw new SourceError(name, 'invalid option `value`: empty', { retryable: false });
    },
    load: async () => {
      await new Promise((resolve) => setImmediate(resolve));
      return (name): Source => ({
        name,
        start: async () => void started.push(name),
        stop: async () => void started.splice(started.indexOf(name), 1),
      });
    },
  });

  it('refuses a bad option when it is built, before anything loads', () => {
    expect(() => createDriverSource(driver, 'p', { type: 'probe', value: '' }, { logger: silentLogger() })).toThrow(/invalid option `value`/);
    expect(() => createSource('web', { type: 'file', path: '' }, silentLogger())).toThrow(SourceError);
  });

  it('loads and starts on start(), stops on stop(); a stop during the load wins', async () => {
    const source = createDriverSource(driver, 'a', { type: 'probe', value: 'x' }, { logger: silentLogger() });
    await source.start(() => {}, () => {});
    expect(started).toEqual(['a']);
    await source.stop();
    expect(started).toEqual([]);

    const early = createDriverSource(driver, 'b', { type: 'probe', value: 'x' }, { logger: silentLogger() });
    const starting = early.start(() => {}, () => {});
    await early.stop();
    await starting;
    expect(started).toEqual([]);
  });
});

describe('retry', () => {
  it('backs off from first, doubling, up to the cap; jitter takes its share of each delay at random', () => {
    expect([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, { first: 250, cap: 4000 }))).toEqual([250, 500, 1000, 2000, 4000, 4000]);
    expect(backoffDelay(0, { first: 250, cap: 4000 })).toBe(250);
    for (let i = 0; i < 200; i++) {
      const delay = backoffDelay(3, { first: 250, cap: 10_000, jitter: 0.5 });
      expect(delay).toBeGreaterThanOrEqual(500);
      expect(delay).toBeLessThanOrEqual(1000);
    }
  });

  it('reports a repeated failure once, and again after a success', () => {
    const report = new FailureReport();
    expect(report.pending).toBe(false);
    expect([report.isNews('down'), report.isNews('down'), report.isNews('refused'), report.isNews('refused')]).toEqual([true, false, true, false]);
    expect(report.pending).toBe(true);
    report.reset();
    expect(report.isNews('refused')).toBe(true);
  });
});
