import type { Etcd3, IKeyValue, IWatchResponse, Watcher } from 'etcd3';
import { createEtcdClient, describeEtcdError, type EtcdClientOptions } from '../etcd/client.js';
import { decodeMember } from '../etcd/member.js';
import { SourceError } from '../errors.js';
import { backoffDelay, FailureReport, type BackoffRules } from '../retry.js';
import type { Member } from '../members/model.js';
import { validateEtcdOptions, type EtcdSourceOptions } from './drivers/etcd.js';
import { checkNotStarted } from './lifecycle.js';
import type { Source, SourceFactory } from './types.js';

export type { EtcdSourceOptions } from './drivers/etcd.js';

/**
 * The `etcd` source: one member per key under a prefix. A key's value is a JSON object in the member-file
 * shape (`name`, `address`, `port`, `tags`, `status`); `name` defaults to the key's part after the prefix.
 *
 * Level-triggered, as every source: a range read of the prefix is the whole truth, then a watch from the
 * revision after it applies each change and emits the whole list again. A watch that is lost (its stream
 * broke, etcd canceled it, its start revision was compacted) is dropped, and the prefix is read afresh
 * before watching again. While etcd cannot be read (unreachable, no leader, refused credentials) the
 * source reports the error, emits nothing, and retries with backoff: the last snapshot stays.
 *
 * The etcd client is loaded when the source starts, not when rosterd starts.
 */

/** Retry delays after failed reads: doubling from 250 ms to 10 s, half of each random. */
const RETRY_BACKOFF: BackoffRules = { first: 250, cap: 10_000, jitter: 0.5 };
/** Refused credentials or permissions will not fix themselves soon; keep trying, slowly. */
const AUTH_RETRY_DELAY = 60_000;

/** A key as the source holds it: a raw member for the snapshot gate, or why its value is not one. */
type Entry = ReturnType<typeof decodeMember>;

/** Creates an `etcd` source. Throws a `SourceError` (not retryable) when an option is invalid. */
const createEtcdSource = ((name, options, context) => {
  const endpoints = validateEtcdOptions(name, options);
  const log = context.logger;
  const prefix = options.prefix;
  const clientOptions: EtcdClientOptions = { endpoints, auth: options.auth, tls: options.tls, requestTimeout: options.requestTimeout };
  const where = `etcd at ${endpoints.join(', ')}`;

  let running = false;
  let onSnapshot: ((members: Member[]) => void) | undefined;
  let onError: ((err: Error) => void) | undefined;
  let client: Etcd3 | undefined;
  /** The watch in use; undefined while reading or waiting to retry. */
  let watcher: Watcher | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let confirmTimer: NodeJS.Timeout | undefined;
  let emitTimer: NodeJS.Immediate | undefined;
  /** Failed reads in a row, and the last error reported (the same one again is not news). */
  let failures = 0;
  const reported = new FailureReport();
  /** Watches lost in quick succession: the first lost watch is read again at once, a flapping one backs off. */
  let quickLosses = 0;
  let lastLossAt = 0;
  /** The keys under the prefix. */
  let entries = new Map<string, Entry>();
  /** Keys whose value was refused, and why: a warning is logged when a key newly becomes (or stays, for another reason) bad. */
  let warned = new Map<string, string>();
  /** Every promise still running (reads, watch cancels): `stop()` waits for them. */
  const tasks = new Set<Promise<unknown>>();

  const track = (task: Promise<unknown>): void => {
    tasks.add(task);
    void task.finally(() => tasks.delete(task)).catch(() => {});
  };

  /** Reads the whole prefix, emits it, and watches from the revision after the read. Never rejects. */
  async function sync(): Promise<void> {
    retryTimer = undefined;
    try {
      if (client === undefined) {
        const next = await createEtcdClient(clientOptions);
        if (!running) return next.close();
        client = next;
      }
      const range = await client.getAll().prefix(prefix).exec();
      if (!running) return;
      replaceAll(range.kvs);
      if (failures > 0 || reported.pending) log.info({ keys: range.kvs.length }, `${where} answers again`);
      failures = 0;
      reported.reset();
      emitNow();
      if (running) watch(client, String(BigInt(range.header.revision) + 1n));
    } catch (err) {
      if (running) failedRead(err);
    }
  }

  function watch(from: Etcd3, revision: string): void {
    const w = from.watch().prefix(prefix).startRevision(revision).watcher();
    watcher = w;
    confirmTimer = setTimeout(() => {
      if (watcher === w) lostWatch(`${where} did not confirm the watch within ${options.requestTimeout} ms`);
    }, options.requestTimeout);
    w.on('connected', () => {
      if (watcher === w) clearTimeout(confirmTimer);
    });
    w.on('put', (kv: IKeyValue) => {
      if (watcher === w) setEntry(kv, warned);
    });
    w.on('delete', (kv: IKeyValue) => {
      if (watcher !== w) return;
      const key = kv.key.toString('utf8');
      entries.delete(key);
      warned.delete(key);
    });
    // After the put and delete events of the same response (the client emits those first).
    w.on('data', (res: IWatchResponse) => {
      if (watcher === w && res.events.length > 0) emitTimer ??= setImmediate(emitNow);
    });
    w.on('disconnected', (err: Error) => {
      if (watcher === w) lostWatch(`the watch stream broke (${describeEtcdError(err, options).reason})`);
    });
    // etcd canceled the watch; an empty reason means its start revision was compacted.
    w.on('error', (err: Error) => {
      const reason = err.message.replace(/^Watcher canceled: ?/, '');
      if (watcher === w) lostWatch(`etcd canceled the watch (${reason || 'its start revision was compacted'})`);
    });
  }

  /** Emits the members now (the gate drops an unchanged list). */
  function emitNow(): void {
    clearImmediate(emitTimer);
    emitTimer = undefined;
    const members: Record<string, unknown>[] = [];
    for (const entry of entries.values()) if ('member' in entry) members.push(entry.member);
    // Untrusted raw members: the snapshot gate validates them.
    onSnapshot?.(members as unknown as Member[]);
  }

  /** The watch is gone: drop it and read afresh (at once, unless watches keep getting lost). */
  function lostWatch(why: string): void {
    dropWatch();
    const now = Date.now();
    quickLosses = now - lastLossAt < RETRY_BACKOFF.cap ? quickLosses + 1 : 0;
    lastLossAt = now;
    const delay = quickLosses === 0 ? 0 : backoffDelay(quickLosses, RETRY_BACKOFF);
    log.info({ retryInMs: Math.round(delay) }, `${why}; reading ${prefix} afresh`);
    retryTimer = setTimeout(() => track(sync()), delay);
  }

  /** A read failed: report it, keep the last snapshot, and try again later. */
  function failedRead(err: unknown): void {
    dropWatch();
    const failure = describeEtcdError(err, options);
    const error = new SourceError(name, `${where}: ${failure.reason}`, { retryable: failure.retryable, cause: err });
    // Paused endpoints only repeat that the failure reported last goes on.
    if (!(failure.endpointsPaused && reported.pending) && reported.isNews(error.message)) onError?.(error);
    // A new client reads the password and TLS files again: they may have been fixed meanwhile.
    if (!failure.retryable) closeClient();
    const delay = failure.retryable ? backoffDelay(++failures, RETRY_BACKOFF) : AUTH_RETRY_DELAY;
    log.debug({ retryInMs: Math.round(delay) }, `reading ${prefix} again later`);
    retryTimer = setTimeout(() => track(sync()), delay);
  }

  function dropWatch(): void {
    clearTimeout(confirmTimer);
    confirmTimer = undefined;
    const old = watcher;
    watcher = undefined;
    // Detaches it from the client's watch manager (at once when its stream is gone).
    if (old !== undefined) track(old.cancel().catch(() => {}));
  }

  function closeClient(): void {
    const old = client;
    client = undefined;
    old?.close();
  }

  /** Replaces every entry with the keys of a fresh read. */
  function replaceAll(kvs: readonly IKeyValue[]): void {
    const previous = warned;
    entries = new Map();
    warned = new Map();
    for (const kv of kvs) setEntry(kv, previous);
  }

  /** Sets one key from its value, and warns when its value is newly refused (compared with `previous`). */
  function setEntry(kv: IKeyValue, previous: Map<string, string>): void {
    const key = kv.key.toString('utf8');
    const entry = decodeMember(key.slice(prefix.length), kv.value);
    entries.set(key, entry);
    if (!('problem' in entry)) {
      warned.delete(key);
      return;
    }
    // JSON.stringify escapes control characters: a hostile key cannot forge log lines.
    if (previous.get(key) !== entry.problem) log.warn({ key }, `key ${JSON.stringify(key)} dropped: ${entry.problem}`);
    warned.set(key, entry.problem);
  }

  const source: Source = {
    name,
    async start(snapshot, error) {
      checkNotStarted(name, running);
      onSnapshot = snapshot;
      onError = error;
      running = true;
      failures = quickLosses = 0;
      reported.reset();
      entries = new Map();
      warned = new Map();
      track(sync());
    },
    async stop() {
      running = false;
      clearTimeout(retryTimer);
      clearImmediate(emitTimer);
      retryTimer = emitTimer = undefined;
      dropWatch();
      closeClient();
      while (tasks.size > 0) await Promise.allSettled(tasks);
      onSnapshot = onError = undefined;
    },
  };
  return source;
}) satisfies SourceFactory<EtcdSourceOptions>;

export default createEtcdSource;

// --- internal ---
