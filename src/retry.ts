/**
 * How rosterd retries a backend: capped exponential backoff, and a failure reported once however often it
 * repeats. Used by the Serf and etcd sources reconnecting, the DNS source after failed polls and
 * `rosterd announce` after a lost lease; what differs between them is spelled out in {@link BackoffRules}.
 */

/** How a client backs off after failures in a row. */
export interface BackoffRules {
  /** The delay after the first failure, in ms. */
  first: number;
  /** The longest delay, in ms. */
  cap: number;
  /**
   * The share of each delay that is random (0 to 1): clients restarted together then do not retry in step.
   * @default 0
   */
  jitter?: number;
}

/**
 * The delay after the `failures`-th failure in a row (1 for the first): `first`, doubling up to `cap`, of
 * which the `jitter` share is random (never more than the delay itself).
 */
export function backoffDelay(failures: number, rules: BackoffRules): number {
  const delay = Math.min(rules.cap, rules.first * 2 ** Math.min(Math.max(failures - 1, 0), 30));
  const jitter = rules.jitter ?? 0;
  return delay * (1 - jitter) + Math.random() * delay * jitter;
}


/**
 * Remembers the last failure reported, so that the same failure again is not news: a source retrying a
 * dead backend every few seconds reports it once (and logs the rest at debug level).
 */
export class FailureReport {
  private last: string | undefined;

  /** True when a failure was reported since the last success. */
  get pending(): boolean {
    return this.last !== undefined;
  }

  /** True when `message` differs from the last failure reported; it becomes the last one. */
  isNews(message: string): boolean {
    if (message === this.last) return false;
    this.last = message;
    return true;
  }

  /** The backend answered: the next failure is news again. */
  reset(): void {
    this.last = undefined;
  }
}
