import { SourceError } from '../errors.js';
import { backoffDelay, FailureReport, type BackoffRules } from '../retry.js';
import { SerfClient, type SerfMember, type SerfQueryEvent } from '../serf/client.js';
import { SerfError } from '../serf/errors.js';
import type { Member } from '../members/model.js';
import { validateSerfOptions, type SerfSourceOptions } from './drivers/serf.js';
import { checkNotStarted } from './lifecycle.js';
import type { Source, SourceFactory } from './types.js';

export type { SerfSourceOptions } from './drivers/serf.js';

/**
 * The `serf` source: the members of a Serf cluster, as seen by one agent over its RPC port.
 *
 * The `members` reply is the only truth. Three things say when to read it:
 * - **hints** from the agent's own log (`monitor`): the agent logs a membership change the moment it learns
 *   of it (a join within milliseconds), long before its event stream lets the event go (about a second of
 *   coalescing). Only lines of the `serf:` component that name a membership change count, never the agent's
 *   RPC lines (it logs its own replies, which would trigger a read for ever). Log text differs between Serf
 *   versions, so a line is only ever a reason to look;
 * - the **event stream**, which every Serf version has, though late;
 * - a **poll**, for what neither shows and as the fallback when the log says nothing the source recognises;
 *   on a big cluster it runs less often, so that reading the list costs a bounded share of the time.
 * After any loss of the connection the source reconnects with backoff and starts over from a fresh
 * `members`; while it cannot look, it reports the error and emits nothing.
 */

/** The member events that can change the roster; each one triggers a refresh. */
const MEMBER_EVENTS = 'member-join,member-leave,member-failed,member-update,member-reap';
/**
 * A log line of the `serf:` component that announces a membership change: `[INFO] serf: EventMemberJoin: web-1
 * 10.0.0.5`, `[DEBUG] serf: messageLeaveType: web-1` (a graceful leave, ~0.1 s after it started). The prefix
 * before the level holds no `[`, so text inside a line (a member name, an RPC dump) cannot pass for one.
 */
const MEMBERSHIP_LINE = /^[^[]*\[[A-Z]+\] serf: ((?:EventMember(?:Join|Leave|Failed|Update|Reap)|message(?:Join|Leave)Type)\b.*)$/;
/**
 * What a line must hold to match MEMBERSHIP_LINE, tested on its bytes before it is decoded: its first `[` opens
 * an upper-case level followed by `] serf: `. Most lines at DEBUG are the agent's RPC lines (`agent.ipc`, with
 * dumps of whole `members` replies), which this drops unread. UTF-8 keeps ASCII bytes for ASCII only, so a byte
 * test is exact.
 */
function mayBeMembershipLine(line: Buffer): boolean {
  const open = line.indexOf(0x5b); // '['
  if (open < 0) return false;
  let at = open + 1;
  while (at < line.length && line[at]! >= 0x41 && line[at]! <= 0x5a) at++; // A-Z
  const end = at + SERF_COMPONENT.length;
  return at > open + 1 && end <= line.length && line.compare(SERF_COMPONENT, 0, SERF_COMPONENT.length, at, end) === 0;
}
const SERF_COMPONENT = Buffer.from('] serf: ');
/** Gossip re-sends join and leave intents a few times: the same intent within this many ms is one change. */
const INTENT_REPEAT_MS = 1000;
/** Hint-triggered reads take at most this share of the time (a storm of changes on a big cluster). */
const HINT_SHARE = 0.25;
/** Polls take at most this share of the time. */
const POLL_SHARE = 0.02;
/** A change the log did not announce within this many ms means the source does not recognise its lines. */
const HINT_WINDOW_MS = 2000;
/** Reconnect delays: doubling from 250 ms to 10 s, half of each random so that restarted agents are not hit in step. */
const RECONNECT_BACKOFF: BackoffRules = { first: 250, cap: 10_000, jitter: 0.5 };
/** A refused auth key will not fix itself soon; keep trying, slowly, in case the agent's config changes. */
const AUTH_RETRY_DELAY = 60_000;

/** Creates a `serf` source. Throws a `SourceError` (not retryable) when an option is invalid. */
const createSerfSource = ((name, options, context) => {
  const filters = validateSerfOptions(name, options);
  const log = context.logger;
  const address = options.rpcAddr;
  const authKey = options.authKey || undefined;
  const useMonitor = options.monitor ?? true;
  const pollInterval = options.refreshInterval || undefined;
  // Queries this rosterd answers (the fleet view) come on the member event stream, on this connection.
  const queries = context.queries ?? {};
  const streamTypes = [MEMBER_EVENTS, ...Object.keys(queries).map((query) => `query:${query}`)].join(',');

  let onSnapshot: ((members: Member[]) => void) | undefined;
  let onError: ((err: Error) => void) | undefined;
  let running = false;
  /** The connection in use; undefined while connecting or waiting to reconnect. */
  let client: SerfClient | undefined;
  let connecting: AbortController | undefined;
  let failures = 0;
  const reported = new FailureReport();
  let reconnectTimer: NodeJS.Timeout | undefined;
  let resyncTimer: NodeJS.Timeout | undefined;
  let pollTimer: NodeJS.Timeout | undefined;
  let missTimer: NodeJS.Timeout | undefined;
  let refreshing = false;
  let refreshAgain = false;
  /** When the last read ended and how long it took (performance.now() ms): what the next one may cost. */
  let lastRead = { end: 0, duration: 0 };
  /** Names and statuses of the last reply on this connection: tells whether a read found a change. */
  let lastFingerprint: string | undefined;
  /** When the last membership line came, and when each recent join/leave intent did. */
  let lastHintAt = Number.NEGATIVE_INFINITY;
  const recentIntents = new Map<string, number>();
  /** Said once per source: whether the log's lines are recognised. */
  let hintsSeen = false;
  let hintsMissed = false;
  /** Every promise still running (connects, refreshes, closes): `stop()` waits for them. */
  const tasks = new Set<Promise<unknown>>();

  const track = (task: Promise<unknown>) => {
    tasks.add(task);
    void task.finally(() => tasks.delete(task)).catch(() => {});
  };

  /** Connects, opens the event stream and the log monitor, then takes the first snapshot. */
  async function connect(): Promise<void> {
    const abort = new AbortController();
    connecting = abort;
    let next: SerfClient;
    try {
      next = await SerfClient.connect({ address, authKey, connectTimeout: options.connectTimeout, signal: abort.signal });
    } catch (err) {
      if (running) lose(err);
      return;
    } finally {
      connecting = undefined;
    }
    if (!running) {
      await next.close();
      return;
    }
    client = next;
    lastFingerprint = undefined;
    log.debug({ rpcAddr: address }, 'connected to the Serf agent');
    next.on('close', (err) => {
      if (client === next) lose(err ?? new SerfError('closed', `the connection to the Serf agent at ${address} was closed`));
    });
    try {
      // Triggers first: changes between these requests and the first read then lead to another read.
      await next.stream(streamTypes, (event) => (event.event === 'query' ? answer(next, event) : scheduleResync()));
      if (useMonitor) await openMonitor(next);
    } catch (err) {
      if (client === next) lose(err);
      return;
    }
    // This read covers every hint so far, the replayed lines included.
    clearTimeout(resyncTimer);
    resyncTimer = undefined;
    await runResync();
  }

  /**
   * Opens the log monitor. The agent replays its recent lines first: they are hints like any other, so they
   * cost at most one more read (they arrive together, while the first read runs).
   */
  async function openMonitor(from: SerfClient): Promise<void> {
    try {
      await from.monitor('DEBUG', onLogLine, { accept: mayBeMembershipLine });
    } catch (err) {
      // An agent that refuses the monitor still has the stream and the poll; the connection is fine.
      if (!(err instanceof SerfError) || err.reason !== 'agent') throw err;
      if (!hintsMissed) log.warn({ rpcAddr: address }, `the Serf agent refused to stream its log (${err.agentError}); changes are seen through its event stream and the poll only`);
      hintsMissed = true;
    }
  }

  function onLogLine(line: string): void {
    const match = MEMBERSHIP_LINE.exec(line);
    if (!match) return;
    const now = performance.now();
    const what = match[1]!;
    if (what.startsWith('message')) {
      const seen = recentIntents.get(what);
      recentIntents.set(what, now);
      if (recentIntents.size > 1000) for (const [key, at] of recentIntents) if (now - at > INTENT_REPEAT_MS) recentIntents.delete(key);
      if (seen !== undefined && now - seen < INTENT_REPEAT_MS) return;
    }
    lastHintAt = now;
    if (!hintsSeen) {
      hintsSeen = true;
      log.debug({ rpcAddr: address }, "the Serf agent's log announces membership changes: the member list is read on each");
    }
    scheduleResync();
  }

  /** Answers a query on the connection it came on (the agent knows its ID only there). */
  function answer(from: SerfClient, query: SerfQueryEvent): void {
    const failed = (err: unknown): void => {
      if (client === from) log.warn({ query: query.name }, `could not answer the Serf query ${query.name}: ${(err as Error).message}`);
    };
    try {
      const reply = Object.hasOwn(queries, query.name) ? queries[query.name]!(query.payload) : undefined;
      if (reply !== undefined) from.respond(query.id, reply).catch(failed);
    } catch (err) {
      failed(err);
    }
  }

  /** Takes a `members` snapshot and emits it, filtered. */
  async function refresh(from: SerfClient): Promise<void> {
    const started = performance.now();
    const members = await from.members();
    if (client !== from) return;
    noteChange(members, started);
    const kept = members.filter((m) => filters.keep(m)).map((m) => toMember(m, name, options.portTag));
    if (failures > 0 || reported.pending) log.info({ rpcAddr: address, members: kept.length }, 'Serf agent reachable again');
    failures = 0;
    reported.reset();
    // Untrusted raw members (a port may still be a string): the snapshot gate validates them.
    onSnapshot?.(kept as unknown as Member[]);
    // The cost of a read: the reply, its decoding, and what the gate did with it (the render comes later).
    const end = performance.now();
    lastRead = { end, duration: end - started };
    schedulePoll();
  }

  /**
   * A read that found a change the log did not announce (no membership line shortly before or after) means
   * this agent's lines are not the ones this source knows: say so once. Nothing else changes: the stream and
   * the poll go on as always.
   */
  function noteChange(members: readonly SerfMember[], readAt: number): void {
    // Sorted: the agent lists members in the order of a Go map, which changes from one reply to the next.
    const fingerprint = members
      .map((m) => `${m.name}\0${m.status}`)
      .sort()
      .join('\n');
    const changed = lastFingerprint !== undefined && fingerprint !== lastFingerprint;
    lastFingerprint = fingerprint;
    if (!changed || !useMonitor || hintsMissed || missTimer !== undefined) return;
    if (readAt - lastHintAt < HINT_WINDOW_MS) return;
    missTimer = setTimeout(() => {
      missTimer = undefined;
      if (lastHintAt > readAt - HINT_WINDOW_MS || hintsMissed) return;
      hintsMissed = true;
      log.warn(
        { rpcAddr: address },
        `the Serf agent's log did not announce a membership change (its log lines differ from the ones this source knows); changes are seen through the event stream and ${pollInterval === undefined ? 'on reconnects' : `a poll every ${pollInterval} ms or more`}`,
      );
    }, HINT_WINDOW_MS);
  }

  /** A read soon, after `resyncDelay`, and never so soon after the last one that reads take more than HINT_SHARE. */
  function scheduleResync(): void {
    if (resyncTimer !== undefined || client === undefined) return;
    if (refreshing) {
      // A change during a read may not be in its reply: read once more afterwards.
      refreshAgain = true;
      return;
    }
    const earliest = lastRead.end + lastRead.duration * (1 / HINT_SHARE - 1) - performance.now();
    resyncTimer = setTimeout(() => {
      resyncTimer = undefined;
      runResync();
    }, Math.max(options.resyncDelay, earliest));
  }

  /** The next poll, counted from the last read of any kind, and longer when reads are costly. */
  function schedulePoll(): void {
    clearTimeout(pollTimer);
    pollTimer = undefined;
    if (pollInterval === undefined) return;
    pollTimer = setTimeout(() => {
      pollTimer = undefined;
      runResync();
    }, Math.max(pollInterval, lastRead.duration / POLL_SHARE));
  }

  /** Refreshes now, or once more after the refresh under way. Never rejects: a failed read loses the connection. */
  function runResync(): Promise<void> | undefined {
    const from = client;
    if (from === undefined) return undefined;
    if (refreshing) {
      refreshAgain = true;
      return undefined;
    }
    refreshing = true;
    const task = refresh(from)
      .catch((err: unknown) => {
        if (client === from) lose(err);
      })
      .finally(() => {
        refreshing = false;
        if (refreshAgain) {
          refreshAgain = false;
          scheduleResync();
        }
      });
    track(task);
    return task;
  }

  /** The connection is gone or unusable: report, drop it, and reconnect later. Keeps the last snapshot. */
  function lose(err: unknown): void {
    if (!running) return;
    const old = client;
    client = undefined;
    clearTimers();
    refreshAgain = false;
    if (old !== undefined) track(old.close());
    const error = toSourceError(name, address, authKey, err);
    if (reported.isNews(error.message)) onError?.(error);
    const delay = error.retryable ? backoffDelay(++failures, RECONNECT_BACKOFF) : AUTH_RETRY_DELAY;
    log.debug({ rpcAddr: address, delay }, 'reconnecting to the Serf agent');
    reconnectTimer = setTimeout(() => {
      reconnectTimer = undefined;
      track(connect());
    }, delay);
  }

  function clearTimers(): void {
    clearTimeout(reconnectTimer);
    clearTimeout(resyncTimer);
    clearTimeout(pollTimer);
    clearTimeout(missTimer);
    reconnectTimer = resyncTimer = pollTimer = missTimer = undefined;
  }

  const source: Source = {
    name,
    async start(snapshot, error) {
      checkNotStarted(name, running);
      onSnapshot = snapshot;
      onError = error;
      running = true;
      track(connect());
    },
    async stop() {
      running = false;
      clearTimers();
      connecting?.abort();
      const old = client;
      client = undefined;
      if (old !== undefined) track(old.close());
      while (tasks.size > 0) await Promise.allSettled(tasks);
      onSnapshot = onError = undefined;
    },
  };
  return source;
}) satisfies SourceFactory<SerfSourceOptions>;

export default createSerfSource;

// --- internal ---

/** A Serf member as a roster member. The port tag is passed raw when it is not a decimal integer, for the gate to reject. */
function toMember(member: SerfMember, source: string, portTag: string): Record<string, unknown> {
  const rawPort = Object.hasOwn(member.tags, portTag) ? member.tags[portTag] : undefined;
  const port = rawPort !== undefined && /^\d+$/.test(rawPort) ? Number(rawPort) : rawPort;
  return { name: member.name, address: member.addr, port, tags: member.tags, status: member.status, source };
}

function toSourceError(name: string, address: string, authKey: string | undefined, err: unknown): SourceError {
  if (err instanceof SerfError && err.authFailed) {
    const message =
      authKey === undefined
        ? `the Serf agent at ${address} requires an auth key: set \`authKey\``
        : `the Serf agent at ${address} refused the auth key: check \`authKey\``;
    return new SourceError(name, message, { retryable: false, cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new SourceError(name, message, { cause: err });
}
