import type { Etcd3, Lease } from 'etcd3';
import type { Logger } from '../logger.js';
import { backoffDelay, FailureReport, type BackoffRules } from '../retry.js';
import { createEtcdClient, describeEtcdError, type EtcdClientOptions, type EtcdFailure } from './client.js';
import { encodeMember, type AnnouncedMember } from './member.js';

/**
 * Keeps one member registered in etcd under a lease, as each web node does with `rosterd announce`: the
 * key lives as long as the lease is renewed. Stopping revokes the lease, so the key is gone at once; a
 * process that dies without stopping leaves when its lease expires (its TTL after the last renewal).
 *
 * etcd that cannot be reached is not the end: the client keeps renewing (the key stays while the lease
 * lives), and once the lease is lost (expired while etcd was away, or refused) a new lease is granted and
 * the key written again, with backoff, until it works.
 */

/** What to announce, and where. */
export interface AnnounceOptions extends EtcdClientOptions {
  /** The key prefix the `etcd` source watches (`/services/web/`); the key is the prefix and the member's name. */
  prefix: string;
  member: AnnouncedMember;
  /** The lease's time to live, in whole seconds (at least 1; etcd may raise a very short one to its minimum). */
  ttl: number;
}

/** A running announcement. */
export interface Announcement {
  /** The key it writes. */
  readonly key: string;
  /** Stops renewing and revokes the lease. Resolves to true when etcd revoked it (the key is gone), false when it could not be told. */
  stop(): Promise<boolean>;
}

/** What the announcer tells its caller besides the log. */
export interface AnnounceEvents {
  /** The key was written under a new lease. */
  onRegistered?(lease: string): void;
  /** A registration failed (it is retried). The same failure again is reported once. */
  onError?(failure: EtcdFailure): void;
}

/** Retry delays: doubling from 250 ms to 10 s, half of each random. */
const RETRY_BACKOFF: BackoffRules = { first: 250, cap: 10_000, jitter: 0.5 };
/** Refused credentials or permissions will not fix themselves soon; keep trying, slowly. */
const AUTH_RETRY_DELAY = 60_000;

/** Starts announcing. Registration runs in the background; `events` and the log tell how it goes. */
export function startAnnouncer(options: AnnounceOptions, logger: Logger, events: AnnounceEvents = {}): Announcement {
  const { key, value } = encodeMember(options.prefix, options.member);
  const log = logger.child({ key });
  let running = true;
  let client: Etcd3 | undefined;
  /** The lease being granted or in use. */
  let lease: Lease | undefined;
  /** The lease the key was written with, once it was. */
  let registered: Lease | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let failures = 0;
  const reported = new FailureReport();
  let renewalFailing = false;
  const tasks = new Set<Promise<unknown>>();

  const track = (task: Promise<unknown>): void => {
    tasks.add(task);
    void task.finally(() => tasks.delete(task)).catch(() => {});
  };

  /** Grants a lease and writes the key under it. Never rejects. */
  async function register(): Promise<void> {
    retryTimer = undefined;
    try {
      if (client === undefined) {
        const next = await createEtcdClient(options);
        if (!running) return next.close();
        client = next;
      }
      const next = client.lease(options.ttl);
      lease = next;
      next.on('lost', (err) => {
        if (registered === next) lost(next, err);
      });
      next.on('keepaliveFailed', (err) => {
        if (registered !== next || renewalFailing) return;
        renewalFailing = true;
        log.warn(`cannot renew the lease (${describeEtcdError(err, options).reason}); the key stays until the lease expires, retrying`);
      });
      next.on('keepaliveSucceeded', () => {
        if (registered !== next || !renewalFailing) return;
        renewalFailing = false;
        log.info('the lease is renewed again');
      });
      await next.put(key).value(value).exec();
      const id = await next.grant();
      if (!running || lease !== next) return;
      registered = next;
      if (failures > 0 || reported.pending) log.info('etcd answers again');
      failures = 0;
      reported.reset();
      renewalFailing = false;
      log.info({ lease: id, ttl: options.ttl }, `announced ${options.member.name} at ${key}`);
      events.onRegistered?.(id);
    } catch (err) {
      if (running) failed(err);
    }
  }

  /** A registration failed: report it and try again later with a new lease. */
  function failed(err: unknown): void {
    dropLease();
    const failure = describeEtcdError(err, options);
    const message = `cannot announce ${key}: ${failure.reason}`;
    // Paused endpoints only repeat that the failure reported last goes on.
    if (!(failure.endpointsPaused && reported.pending) && reported.isNews(message)) {
      log.error(message);
      events.onError?.(failure);
    }
    // A new client reads the password and TLS files again: they may have been fixed meanwhile.
    if (!failure.retryable) closeClient();
    const delay = failure.retryable ? backoffDelay(++failures, RETRY_BACKOFF) : AUTH_RETRY_DELAY;
    retryTimer = setTimeout(() => track(register()), delay);
  }

  /** The lease is gone (expired while etcd was away, or etcd says it is unknown): register anew. */
  function lost(old: Lease, err: Error): void {
    if (!running || lease !== old) return;
    log.warn(`the lease was lost (${describeEtcdError(err, options).reason}); announcing again with a new lease`);
    dropLease();
    track(register());
  }

  function dropLease(): void {
    const old = lease;
    lease = registered = undefined;
    // Stops renewing; a lease etcd still knows expires on its own.
    old?.release();
  }

  function closeClient(): void {
    const old = client;
    client = undefined;
    old?.close();
  }

  track(register());
  return {
    key,
    async stop() {
      if (!running) return false;
      running = false;
      clearTimeout(retryTimer);
      // The lease in use, or one being granted (its key may be written already).
      const current = lease;
      lease = registered = undefined;
      let revoked = false;
      if (current !== undefined) {
        try {
          await current.revoke();
          revoked = true;
          log.info(`revoked the lease: ${key} is gone`);
        } catch (err) {
          log.warn(`could not revoke the lease (${describeEtcdError(err, options).reason}); ${key} leaves when the lease expires, within ${options.ttl} s`);
        }
      }
      closeClient();
      while (tasks.size > 0) await Promise.allSettled(tasks);
      return revoked;
    },
  };
}
