/**
 * Exponential backoff with jitter for sources that reconnect: `first` ms after the first failure, doubling up
 * to `last`; half of each delay is fixed and half random, so that clients restarted together do not retry in
 * step.
 */
export function jitteredBackoff(failures: number, first: number, last: number): number {
  const delay = Math.min(last, first * 2 ** Math.min(failures, 30));
  return delay / 2 + Math.random() * (delay / 2);
}
