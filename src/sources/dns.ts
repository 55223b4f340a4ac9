import type { Member } from '../members/model.js';
import { backoffDelay, FailureReport } from '../retry.js';
import { createDnsLookup, toSourceError, type LookupResult } from './dns-lookup.js';
import { validateDnsOptions, type DnsSourceOptions } from './drivers/dns.js';
import { checkNotStarted } from './lifecycle.js';
import type { Source, SourceFactory } from './types.js';

export type { DnsSourceOptions } from './drivers/dns.js';

/**
 * The `dns` source: members from SRV, A or AAAA records, polled with `dns.promises.Resolver` (which, unlike
 * `dns.lookup`, asks the configured servers and tells the answers apart).
 *
 * "No such name" (NXDOMAIN) and "no records of this type" (NODATA) are real answers: an empty snapshot, for the
 * template's `minMembers` to judge. Anything that means "could not ask" (timeout, SERVFAIL, REFUSED, no
 * server reachable) is an error: the last good snapshot stays, nothing is emitted, and the lookup is retried
 * with backoff. One lookup cycle runs at a time.
 */

/** A positive TTL shorter than `interval` brings the next poll forward, but never closer than this. */
export const TTL_FLOOR_MS = 1000;
/** Retries after failures double from `interval` up to this (or `interval`, if that is longer). */
export const BACKOFF_CAP_MS = 30_000;

/**
 * Creates a `dns` source. Throws a `SourceError` (not retryable) when an option is invalid.
 *
 * Members, for SRV: one per distinct target and port, named `target:port` (so one target serving several
 * ports stays several members), `port` from the record, tags `target`, `priority` and `weight` (as strings),
 * and `ipv4`/`ipv6` with the target's address of each family when it has one. The address is IPv4 when the
 * target has an A record, else IPv6 (the numerically lowest when there are several). A target with no
 * address at all is left out, with a warning. For A and AAAA: one member per address, named by the address,
 * with the `port` option and the tag `target` (the name looked up).
 *
 * Servers are asked one at a time, each with its own `timeout`: a cycle goes to the next server when one
 * cannot answer, and starts with the one that answered last.
 */
export const createDnsSource: SourceFactory<DnsSourceOptions> = (name, options, context) => {
  const lookups = createDnsLookup(name, options, validateDnsOptions(name, options));
  const log = context.logger;
  const record = options.record;
  const query = options.name;

  let running = false;
  let onSnapshot: ((members: Member[]) => void) | undefined;
  let onError: ((err: Error) => void) | undefined;
  let timer: NodeJS.Timeout | undefined;
  /** The lookup cycle under way, if any: `stop()` waits for it. */
  let cycle: Promise<void> | undefined;
  /** Failed cycles in a row. */
  let failures = 0;
  const reported = new FailureReport();
  /** SRV targets that were warned about for having no address; warned again only after they had one. */
  let warnedTargets = new Set<string>();

  /** Looks up once, reports, and schedules the next poll. Never rejects. */
  async function poll(): Promise<void> {
    let delay = options.interval;
    try {
      let result: LookupResult;
      try {
        result = await lookups.lookup(() => running);
      } catch (err) {
        if (!running) return;
        failures++;
        delay = backoff(options.interval, failures);
        const error = toSourceError(name, record, query, err, options.timeout);
        // The same failure again is not news: it is reported once, and logged at debug level after that.
        if (reported.isNews(error.message)) onError?.(error);
        log.debug({ record, name: query, failures, retryInMs: delay }, `${error.message}; retrying in ${delay} ms`);
        return;
      }
      if (!running) return;
      if (failures > 0) log.info({ record, name: query, members: result.members.length, failures }, `DNS answers again for ${record} ${query}`);
      failures = 0;
      reported.reset();
      for (const target of result.unresolved) {
        if (!warnedTargets.has(target)) log.warn({ record, name: query, target }, `SRV target ${target} of ${query} has no A or AAAA record; left out`);
      }
      warnedTargets = new Set(result.unresolved);
      delay = nextPollDelay(options.interval, result.ttl);
      log.debug({ record, name: query, members: result.members.length, ttl: result.ttl, nextPollMs: delay }, 'DNS poll');
      onSnapshot?.(result.members);
    } catch (err) {
      // Only a throwing callback lands here; polling goes on regardless.
      log.error({ err }, `unexpected error in the dns source: ${(err as Error).message}`);
    } finally {
      if (running) timer = setTimeout(startPoll, delay);
    }
  }

  function startPoll(): void {
    timer = undefined;
    const current = poll().finally(() => {
      if (cycle === current) cycle = undefined;
    });
    cycle = current;
  }

  const source: Source = {
    name,
    async start(snapshot, error) {
      checkNotStarted(name, running);
      running = true;
      onSnapshot = snapshot;
      onError = error;
      failures = 0;
      reported.reset();
      warnedTargets = new Set();
      startPoll();
    },
    async stop() {
      running = false;
      clearTimeout(timer);
      timer = undefined;
      lookups.cancel();
      await cycle;
      onSnapshot = onError = undefined;
    },
  };
  return source;
};

/** The delay after a good poll: `interval`, or a shorter positive TTL (in seconds), never below the floor. */
export function nextPollDelay(interval: number, ttlSeconds: number | undefined): number {
  if (ttlSeconds === undefined || ttlSeconds <= 0) return interval;
  return Math.min(interval, Math.max(TTL_FLOOR_MS, ttlSeconds * 1000));
}

/** The delay after the `failures`-th failure in a row: `interval`, doubling, up to `max(interval, BACKOFF_CAP_MS)`. */
export function backoff(interval: number, failures: number): number {
  // No jitter: a poll on an interval is not a crowd of clients reconnecting at once.
  return backoffDelay(failures, { first: interval, cap: Math.max(interval, BACKOFF_CAP_MS) });
}

