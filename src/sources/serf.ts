import { SourceError } from '../errors.js';
import { parseRpcAddress } from '../serf/address.js';
import { SerfClient, type SerfMember } from '../serf/client.js';
import { SerfError } from '../serf/errors.js';
import { MEMBER_STATUSES, type Member, type MemberStatus, type Source, type SourceFactory } from './types.js';

/**
 * The `serf` source: the members of a Serf cluster, as seen by one agent over its RPC port.
 *
 * The agent's event stream cannot be trusted as state (it never replays, may drop records, and re-sends
 * stale `member-update`s), so events only trigger a debounced `members` call, and that reply is the whole
 * truth. After any loss of the connection the source reconnects with backoff and starts over from a fresh
 * `members`; while it cannot look, it reports the error and emits nothing.
 */

/** Resolved options of a `serf` source (defaults are filled in by the config schema). */
export interface SerfSourceOptions {
  /** The agent's RPC address, `host:port` (`[::1]:7373` for IPv6). The schema's default is `127.0.0.1:7373`. */
  rpcAddr: string;
  /** The agent's `rpc_auth` key. Sent only when set (an empty string counts as not set). Never logged. */
  authKey?: string;
  /**
   * Keep only members whose tags match: tag name → JavaScript regular expression that must match the whole
   * value (like `serf members -tag`). A member without the tag is matched as if its value were `""`.
   */
  tags?: Record<string, string>;
  /** Keep only members with one of these statuses. The schema's default is `['alive']`. */
  status: MemberStatus[];
  /** The tag that holds a member's service port. A value that is not a decimal integer gets the member dropped. Default `port`. */
  portTag: string;
  /** Milliseconds between full refreshes on top of the event-driven ones, to recover from dropped events. Off when absent. */
  refreshInterval?: number;
  /** Milliseconds to wait after a member event before refreshing, so a burst of events costs one `members` call. */
  resyncDelay: number;
  /** Milliseconds allowed for connecting, handshake and auth. */
  connectTimeout: number;
}

/** The member events that can change the roster; each one triggers a refresh. */
const MEMBER_EVENTS = 'member-join,member-leave,member-failed,member-update,member-reap';
/** Reconnect delays: doubling from the first to the last, with jitter. */
const BACKOFF_FIRST = 250;
const BACKOFF_LAST = 10_000;
/** A refused auth key will not fix itself soon; keep trying, slowly, in case the agent's config changes. */
const AUTH_RETRY_DELAY = 60_000;

/** Creates a `serf` source. Throws a `SourceError` (not retryable) when an option is invalid. */
const createSerfSource = ((name, options, context) => {
  const filters = validateOptions(name, options);
  const log = context.logger;
  const address = options.rpcAddr;
  const authKey = options.authKey || undefined;

  let onSnapshot: ((members: Member[]) => void) | undefined;
  let onError: ((err: Error) => void) | undefined;
  let running = false;
  /** The connection in use; undefined while connecting or waiting to reconnect. */
  let client: SerfClient | undefined;
  let connecting: AbortController | undefined;
  let failures = 0;
  let lastReported: string | undefined;
  let reconnectTimer: NodeJS.Timeout | undefined;
  let resyncTimer: NodeJS.Timeout | undefined;
  let intervalTimer: NodeJS.Timeout | undefined;
  let refreshing = false;
  let refreshAgain = false;
  /** Every promise still running (connects, refreshes, closes): `stop()` waits for them. */
  const tasks = new Set<Promise<unknown>>();

  const track = (task: Promise<unknown>) => {
    tasks.add(task);
    void task.finally(() => tasks.delete(task)).catch(() => {});
  };

  /** Connects, opens the event stream, then takes the first snapshot. */
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
    log.debug({ rpcAddr: address }, 'connected to the Serf agent');
    next.on('close', (err) => {
      if (client === next) lose(err ?? new SerfError('closed', `the connection to the Serf agent at ${address} was closed`));
    });
    try {
      // The stream first: events between the two requests then trigger a refresh instead of being missed.
      await next.stream(MEMBER_EVENTS, scheduleResync);
      await refresh(next);
    } catch (err) {
      if (client === next) lose(err);
    }
  }

  /** Takes a `members` snapshot and emits it, filtered. */
  async function refresh(from: SerfClient): Promise<void> {
    const members = await from.members();
    if (client !== from) return;
    const kept = members.filter((m) => filters.keep(m)).map((m) => toMember(m, name, options.portTag));
    if (failures > 0 || lastReported !== undefined) log.info({ rpcAddr: address, members: kept.length }, 'Serf agent reachable again');
    failures = 0;
    lastReported = undefined;
    if (options.refreshInterval !== undefined && intervalTimer === undefined) {
      intervalTimer = setInterval(runResync, options.refreshInterval);
    }
    // Untrusted raw members (a port may still be a string): the snapshot gate validates them.
    onSnapshot?.(kept as unknown as Member[]);
  }

  function scheduleResync(): void {
    if (resyncTimer !== undefined || client === undefined) return;
    resyncTimer = setTimeout(() => {
      resyncTimer = undefined;
      runResync();
    }, options.resyncDelay);
  }

  /** Refreshes now, or once more after the refresh under way. */
  function runResync(): void {
    const from = client;
    if (from === undefined) return;
    if (refreshing) {
      // An event during a refresh may not be in its reply: refresh once more afterwards.
      refreshAgain = true;
      return;
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
    if (error.message !== lastReported) {
      lastReported = error.message;
      onError?.(error);
    }
    const delay = error.retryable ? backoff(failures++) : AUTH_RETRY_DELAY;
    log.debug({ rpcAddr: address, delay }, 'reconnecting to the Serf agent');
    reconnectTimer = setTimeout(() => {
      reconnectTimer = undefined;
      track(connect());
    }, delay);
  }

  function clearTimers(): void {
    clearTimeout(reconnectTimer);
    clearTimeout(resyncTimer);
    clearInterval(intervalTimer);
    reconnectTimer = resyncTimer = intervalTimer = undefined;
  }

  const source: Source = {
    name,
    async start(snapshot, error) {
      if (running) throw new SourceError(name, 'already started', { retryable: false });
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

/** Checks the options and compiles the member filter. */
function validateOptions(name: string, options: SerfSourceOptions): { keep: (member: SerfMember) => boolean } {
  const invalid = (option: string, message: string) =>
    new SourceError(name, `invalid option \`${option}\`: ${message}`, { retryable: false });
  if (typeof name !== 'string' || name === '') throw new SourceError(String(name), 'a source needs a non-empty name', { retryable: false });
  try {
    parseRpcAddress(options.rpcAddr);
  } catch (err) {
    throw invalid('rpcAddr', (err as Error).message);
  }
  if (options.authKey !== undefined && typeof options.authKey !== 'string') throw invalid('authKey', 'expected a string');
  if (!Array.isArray(options.status) || options.status.length === 0 || !options.status.every((s) => MEMBER_STATUSES.includes(s))) {
    throw invalid('status', `expected a non-empty list of ${MEMBER_STATUSES.join(', ')}, got ${JSON.stringify(options.status)}`);
  }
  if (typeof options.portTag !== 'string' || options.portTag === '') throw invalid('portTag', 'expected a non-empty string');
  if (options.refreshInterval !== undefined && !(options.refreshInterval > 0 && Number.isFinite(options.refreshInterval))) {
    throw invalid('refreshInterval', `expected a positive number of milliseconds, got ${options.refreshInterval}`);
  }
  if (!(options.resyncDelay >= 0 && Number.isFinite(options.resyncDelay))) {
    throw invalid('resyncDelay', `expected a number of milliseconds, got ${options.resyncDelay}`);
  }
  if (!(options.connectTimeout > 0 && Number.isFinite(options.connectTimeout))) {
    throw invalid('connectTimeout', `expected a positive number of milliseconds, got ${options.connectTimeout}`);
  }
  const tagPatterns: [string, RegExp][] = [];
  for (const [tag, pattern] of Object.entries(options.tags ?? {})) {
    if (typeof pattern !== 'string') throw invalid(`tags.${tag}`, 'expected a regular expression as a string');
    try {
      tagPatterns.push([tag, new RegExp(`^(?:${pattern})$`)]);
    } catch (err) {
      throw invalid(`tags.${tag}`, (err as Error).message);
    }
  }
  const statuses = new Set<string>(options.status);
  return {
    keep: (member) =>
      statuses.has(member.status) &&
      tagPatterns.every(([tag, pattern]) => pattern.test(Object.hasOwn(member.tags, tag) ? member.tags[tag]! : '')),
  };
}

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

/** Exponential backoff with jitter: half the delay fixed, half random, so restarted agents are not hit in step. */
function backoff(failures: number): number {
  const delay = Math.min(BACKOFF_LAST, BACKOFF_FIRST * 2 ** failures);
  return delay / 2 + Math.random() * (delay / 2);
}
