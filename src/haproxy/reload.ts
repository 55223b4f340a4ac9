import { readFile } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { masterCliCommand, MasterCliError } from './master-cli.js';
import { parseShowProc, type ChildProc, type ProcState } from './show-proc.js';

/**
 * The built-in, confirmed reload of a master-worker HAProxy (`haproxy -W -S <socket> -f <cfg>`).
 *
 * HAProxy 2.6 gives no synchronous answer to a reload: `reload` on the master CLI replies with nothing
 * and SIGUSR2 with nothing at all. The master re-executes itself with the same argv, re-reads the config
 * files and either forks a new worker or, when the config cannot be loaded, goes on with the old one and
 * counts a failed reload. Both outcomes are visible in `show proc` once the master's reload counter has
 * moved, so that is what this module waits for and judges.
 */

/** The tail of the queue of reloads per master socket; it never rejects. */
const inFlight = new Map<string, Promise<void>>();

/** How the reload is triggered: `reload` on the master CLI (default) or SIGUSR2 to the master process. */
export type HaproxyReloadMethod = 'cli' | 'signal';

/** Options of {@link reloadHaproxy}. */
export interface HaproxyReloadOptions {
  /** Path of the master CLI unix socket (`-S`). Needed by both methods: it is how the reload is confirmed. */
  masterSocket: string;
  /** Default `cli`. */
  method?: HaproxyReloadMethod;
  /**
   * With `signal`: the pid file written by `-p` (it holds the master's pid). When it disagrees with the
   * master pid reported by `show proc`, no signal is sent. Without it the pid from `show proc` is used,
   * which is only right when rosterd and HAProxy share a PID namespace.
   */
  pidFile?: string;
  /** Budget for the whole operation (reading the state, triggering, confirming), in ms. */
  timeout: number;
  /** Pause between two `show proc` polls, and between connect retries, in ms. Default 10. */
  pollInterval?: number;
}

/** The outcome of a reload, as data: `ok: false` comes with a `reason` for people. */
export interface HaproxyReloadResult {
  /** True only when `show proc` showed a new worker and no new failed reload. */
  ok: boolean;
  /** Why the reload is not confirmed (absent when `ok`). */
  reason?: string;
  /**
   * True when the reload was triggered but not seen in `show proc` before the timeout: HAProxy may still be
   * loading the new file, so putting the previous one back would be wrong.
   */
  unconfirmed?: boolean;
  /** `show proc` before the reload was triggered. */
  before: ProcState;
  /** The last `show proc` read afterwards (absent when none could be read). */
  after?: ProcState;
  /** Wall time of the whole operation, in ms. */
  durationMs: number;
}

/**
 * Reloads HAProxy and confirms the outcome through `show proc`:
 *
 * 1. read `show proc` (the state before);
 * 2. trigger the reload (`reload` on the master CLI, or SIGUSR2 to the master);
 * 3. poll `show proc` (retrying while the socket is closed for the re-exec) until the master's reload counter
 *    has moved, then judge: a worker pid that was not there before and no new failed reload is a success; a
 *    higher failed count, or the old worker still being the current one, is a failure.
 *
 * Expected failures (bad config, bind error, no reload seen before the timeout, pid file mismatch) are
 * returned with `ok: false`; the error text itself is only in HAProxy's log. Calls for the same socket run
 * one after the other; the timeout of each starts when its turn comes.
 *
 * @throws MasterCliError (`E_RELOAD_FAILED`) when the state before cannot be read: the master CLI is not
 *   reachable within the timeout. Nothing has been triggered then.
 * @throws RosterdError (`E_RELOAD_FAILED`) when the socket answers something that is not `show proc`.
 * @throws RangeError when `timeout` is not above 0.
 */
export function reloadHaproxy(options: HaproxyReloadOptions): Promise<HaproxyReloadResult> {
  if (!(options.timeout > 0)) throw new RangeError(`the HAProxy reload needs a timeout above 0 ms, got ${options.timeout}`);
  // Two reloads judged at the same time would each take the other's counter move for their own.
  const run = (inFlight.get(options.masterSocket) ?? Promise.resolve()).then(() => reloadOnce(options));
  const settled = run.then(
    () => undefined,
    () => undefined,
  );
  inFlight.set(options.masterSocket, settled);
  void settled.then(() => {
    if (inFlight.get(options.masterSocket) === settled) inFlight.delete(options.masterSocket);
  });
  return run;
}

async function reloadOnce(options: HaproxyReloadOptions): Promise<HaproxyReloadResult> {
  const started = performance.now();
  const deadline = Date.now() + options.timeout;
  const remaining = (): number => Math.max(1, deadline - Date.now());
  const pollInterval = options.pollInterval ?? 10;

  const before = await readState(options.masterSocket, deadline, pollInterval);
  const done = (ok: boolean, reason: string | undefined, after: ProcState | undefined): HaproxyReloadResult => ({
    ok,
    ...(reason === undefined ? {} : { reason }),
    before,
    ...(after === undefined ? {} : { after }),
    durationMs: Math.round(performance.now() - started),
  });

  const triggerFailure =
    options.method === 'signal'
      ? await signalMaster(before, options.pidFile)
      : await sendReload(options.masterSocket, remaining());
  if (triggerFailure !== undefined) return done(false, triggerFailure, undefined);

  let after: ProcState | undefined;
  let lastError: string | undefined;
  while (Date.now() < deadline) {
    try {
      after = await readState(options.masterSocket, deadline, pollInterval);
      lastError = undefined;
      if (after.master.pid !== before.master.pid) {
        return done(
          false,
          `the master process changed (pid ${before.master.pid} → ${after.master.pid}): HAProxy was restarted, not reloaded`,
          after,
        );
      }
      // Until the counter moves, the reply may come from the master image that has not re-executed yet.
      if (after.master.reloads > before.master.reloads) {
        const reason = judge(before, after);
        return done(reason === undefined, reason, after);
      }
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
    }
    await delay(Math.min(pollInterval, remaining()));
  }
  const suffix = lastError === undefined ? '' : ` (last error: ${lastError})`;
  return {
    ...done(false, `no reload seen within ${options.timeout} ms: the master's reload counter is still ${before.master.reloads}${suffix}`, after),
    unconfirmed: true,
  };
}

/** Returns undefined when the reload is confirmed, else the reason it is not. */
function judge(before: ProcState, after: ProcState): string | undefined {
  const previous = new Set([...before.workers, ...before.oldWorkers].map((w) => w.pid));
  const fresh = after.workers.filter((w) => !previous.has(w.pid));
  const { reloads, failedReloads } = after.master;
  if (failedReloads > before.master.failedReloads) {
    return (
      `HAProxy did not load the new config (show proc: ${failedReloads} failed reload(s) in a row); ` +
      `${describeWorkers(after.workers)} keep(s) serving the previous one. HAProxy's log has the error.`
    );
  }
  if (fresh.length === 0) {
    return (
      `the master reloaded (counter ${before.master.reloads} → ${reloads}) but no new worker appeared; ` +
      `current: ${describeWorkers(after.workers)}`
    );
  }
  return undefined;
}

function describeWorkers(workers: readonly ChildProc[]): string {
  if (workers.length === 0) return 'no worker';
  return workers.map((w) => `worker ${w.pid}`).join(', ');
}

async function readState(socket: string, deadline: number, retryDelay: number): Promise<ProcState> {
  return parseShowProc(await masterCliCommand(socket, 'show proc', { timeout: Math.max(1, deadline - Date.now()), retryDelay, retryEmpty: true }));
}

/** Sends `reload` on the master CLI; returns a reason when it certainly did not reach the master. */
async function sendReload(socket: string, timeout: number): Promise<string | undefined> {
  let reply: string;
  try {
    // Never resent: a reset after the command went out may mean the master is already re-executing.
    reply = await masterCliCommand(socket, 'reload', { timeout, retryAfterSend: false });
  } catch (err) {
    if (err instanceof MasterCliError && err.sent) return undefined;
    return `could not send "reload": ${err instanceof Error ? err.message : String(err)}`;
  }
  // 2.6 answers an accepted `reload` with nothing; these replies mean it was not accepted.
  if (/permission denied|unknown command/i.test(reply)) return `the master CLI refused "reload": ${reply.trim()}`;
  return undefined;
}

/** Sends SIGUSR2 to the master; returns a reason when no signal was sent. */
async function signalMaster(before: ProcState, pidFile: string | undefined): Promise<string | undefined> {
  const pid = before.master.pid;
  if (pidFile !== undefined) {
    let text: string;
    try {
      text = await readFile(pidFile, 'utf8');
    } catch (err) {
      return `cannot read the pid file: ${err instanceof Error ? err.message : String(err)}`;
    }
    const first = text.trim().split('\n')[0]?.trim() ?? '';
    if (!/^\d+$/.test(first)) return `the pid file ${pidFile} holds no pid: ${JSON.stringify(text.slice(0, 40))}`;
    // A stale pid file could name an unrelated process by now: refuse rather than signal it.
    if (Number(first) !== pid) {
      return `the pid file ${pidFile} says ${first} but the master CLI reports master pid ${pid}; no signal sent`;
    }
  }
  try {
    process.kill(pid, 'SIGUSR2');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    return `cannot send SIGUSR2 to the master (pid ${pid}): ${code}`;
  }
  return undefined;
}
