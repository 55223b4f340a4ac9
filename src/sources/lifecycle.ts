import { SourceError } from '../errors.js';

/**
 * The checks every source factory and every `start()` makes, with the same words. Backoff and report-once
 * are in `src/retry.ts`; the loops themselves differ (a watch, a poll, a connection) and stay in their
 * sources.
 */

/** The error a factory throws for a bad option: not retryable, naming the option. */
export function invalidOption(source: string, option: string, message: string): SourceError {
  return new SourceError(source, `invalid option \`${option}\`: ${message}`, { retryable: false });
}

/** Throws unless `name` is a non-empty string: every factory checks it first. */
export function checkSourceName(name: unknown): void {
  if (typeof name !== 'string' || name === '') throw new SourceError(String(name), 'a source needs a non-empty name', { retryable: false });
}

/** Throws when a source is started twice without a stop in between. */
export function checkNotStarted(name: string, running: boolean): void {
  if (running) throw new SourceError(name, 'already started', { retryable: false });
}
