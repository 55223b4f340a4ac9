import { isHaproxyReload, type ReloadConfig } from '../config/reload.js';
import { findBindClashes } from '../haproxy/bind-guard.js';
import { reloadHaproxy } from '../haproxy/reload.js';
import { applyServerChanges, finishServerChanges, startServerChanges, undoServerChanges, verifyServers, writeServerState, type RuntimeOptions } from '../haproxy/runtime.js';
import { desiredServers, diffServers, type ServerChange } from '../haproxy/server-diff.js';
import { readCurrent } from '../output/install.js';
import { describeCommand, runCommand } from '../exec/run.js';

/** How a reload went. */
export interface ReloadOutcome {
  ok: boolean;
  /** Why it failed, in one line. */
  reason?: string;
  durationMs: number;
  exitCode?: number;
  timedOut?: boolean;
  /** The end of the command's output, for the log of a failure. */
  output?: string;
  /** The reload may still take effect (it was triggered, not confirmed): the new file must stay. */
  keepNewFile?: boolean;
  /** How the new content reached the program: a `reload` (the default) or HAProxy's `runtime` API. */
  path?: 'reload' | 'runtime';
  /** With `path: 'runtime'`: the server changes made (`add web/web-4`). */
  applied?: string[];
  /** Runtime mode, when it reloaded instead: why. */
  fallback?: string;
  /** Something went wrong on the side that did not stop the reload (a server state file not written). */
  warning?: string;
}

/** One file a batch installed or removed, before and after (`before` undefined: the file is new; `after` undefined: it was removed). */
export interface FileChange {
  path: string;
  before: Buffer | undefined;
  after: Buffer | undefined;
  /** Its server changes already reached the running program, before the file's check (`Reloader.applyEarly`). */
  early?: EarlyApply;
}

/**
 * Server changes a reloader made to the running program before the candidate file was checked and installed
 * (HAProxy runtime mode), so that a new server serves without waiting for the check's fork.
 */
export interface EarlyApply {
  /** The changes made (`add web/web-4`). */
  readonly applied: readonly string[];
  /** Set when the runtime API refused one: what was made stays until the reload that follows the install. */
  readonly failure?: string;
  /**
   * Takes the changes back, for a candidate that is not installed: the inverse changes, then `show servers state`
   * must match the previous file; when that fails, a confirmed reload of the file on disk (the previous one).
   * Never throws; `how` says what was done, for the log.
   */
  undo(): Promise<{ ok: boolean; how: string }>;
}

/**
 * One way of reloading the program that reads a rendered file: a plain command, or the built-in HAProxy
 * reloader that confirms the new worker through the master CLI.
 */
export interface Reloader {
  /** Templates whose reloaders share a key and are rendered in the same batch reload once. */
  readonly key: string;
  /** The reload as shown in logs and events. */
  readonly description: string;
  /**
   * Refuses a candidate before it is installed (returns the reason), for reloads known to fail on it.
   * `installed` lists the files of every template this reload serves, the candidate's own destination included.
   */
  precheck?(candidate: string, installed: readonly string[]): Promise<string | undefined>;
  /**
   * Makes the program take the installed files. `changes` lists what the batch installed, when every file of
   * the reload was installed by it (not for a reload tried again): the HAProxy runtime mode needs it.
   */
  run(onLine: (stream: 'stdout' | 'stderr', line: string) => void, changes?: readonly FileChange[]): Promise<ReloadOutcome>;
  /**
   * Applies a candidate's change to the running program before the candidate is checked and installed, when it
   * can be taken back (HAProxy runtime mode: server lines only). The caller holds the reload's lock from here to
   * the end of `run` (or of `undo`), and passes the result on in the change (`FileChange.early`). Returns
   * undefined when nothing was applied. A throw (the master CLI gone mid-way) is logged by the caller, and the
   * change is then applied after its check, where `run` compares the running servers with the file.
   */
  applyEarly?(change: FileChange): Promise<EarlyApply | undefined>;
  /**
   * Whether the running program matches the installed files, asked once after start when the first render finds
   * the file unchanged (rosterd may have stopped between an install and its reload). Returns how they differ;
   * undefined when they agree or it cannot tell.
   */
  inSync?(files: readonly string[]): Promise<string | undefined>;
}

/** Builds the reloader a template's `reload` setting describes. */
export function createReloader(reload: ReloadConfig, options: { destination: string; timeout: number; cwd: string }): Reloader {
  if (isHaproxyReload(reload)) {
    const { masterSocket, method, bindGuard, pidFile, runtime, drainTimeout, stateFile } = reload.haproxy;
    const how = method === 'cli' ? 'master CLI reload' : 'SIGUSR2';
    /** The confirmed reload, after saving the servers' state for it when asked. */
    const confirmedReload = async (files: readonly string[]): Promise<ReloadOutcome> => {
      const started = performance.now();
      let warning: string | undefined;
      if (stateFile !== undefined) {
        try {
          await writeServerState(stateFile, desiredServers(await readAll(files)).servers, masterSocket, options.timeout);
        } catch (err) {
          warning = `server state not saved to ${stateFile}: ${(err as Error).message}`;
        }
      }
      try {
        const result = await reloadHaproxy({ masterSocket, method, timeout: options.timeout, ...(pidFile === undefined ? {} : { pidFile }) });
        const outcome: ReloadOutcome = { ok: result.ok, reason: result.reason, durationMs: Math.round(performance.now() - started), keepNewFile: result.unconfirmed === true, path: 'reload' };
        return warning === undefined ? outcome : { ...outcome, warning };
      } catch (err) {
        // The state before could not be read: nothing was triggered.
        return { ok: false, reason: (err as Error).message, durationMs: Math.round(performance.now() - started), path: 'reload' };
      }
    };
    const runtimeOptions: RuntimeOptions = { masterSocket, timeout: options.timeout, drainTimeout };
    const reloader: Reloader = {
      key: `haproxy:${masterSocket}`,
      description: `haproxy ${runtime ? `runtime API, else ${how}` : how} via ${masterSocket}`,
      async run(_onLine, changes) {
        const files = [...new Set([options.destination, ...(changes ?? []).map((c) => c.path)])];
        if (!runtime) return confirmedReload(files);
        const started = performance.now();
        const early = changes?.length === 1 ? changes[0]!.early : undefined;
        const attempt = early === undefined ? await throughRuntime(changes, runtimeOptions) : await finishEarly(early, runtimeOptions);
        if (attempt.ok) return { ok: true, path: 'runtime', applied: attempt.applied, durationMs: Math.round(performance.now() - started) };
        const outcome = await confirmedReload(files);
        return { ...outcome, fallback: attempt.reason, durationMs: Math.round(performance.now() - started) };
      },
      async inSync(files) {
        try {
          return (await verifyServers(desiredServers(await readAll(files)), masterSocket, options.timeout)).mismatch;
        } catch {
          // Not readable or not reachable: a reload could not help either.
          return undefined;
        }
      },
    };
    if (runtime) {
      reloader.applyEarly = (change) => applyEarly(change, runtimeOptions, () => confirmedReload([change.path]));
    }
    if (bindGuard) {
      reloader.precheck = async (candidate, installed) => {
        // Every file this HAProxy reads now: a bind that moves from one of them to the candidate is no clash.
        const files = await Promise.all(installed.map((path) => readCurrent(path).catch(() => undefined)));
        const previous = files.flatMap((file) => (file ? [file.bytes.toString()] : []));
        const clashes = await findBindClashes(previous.length > 0 ? previous.join('\n') : undefined, candidate);
        return clashes.length > 0 ? `new bind address already in use: ${clashes.join(', ')}` : undefined;
      };
    }
    return reloader;
  }
  const placeholders = { destination: options.destination };
  return {
    key: `command:${describeCommand(reload, placeholders)}`,
    description: describeCommand(reload, placeholders),
    async run(onLine) {
      const result = await runCommand(reload, { placeholders, timeout: options.timeout, cwd: options.cwd, onLine });
      const outcome: ReloadOutcome = { ok: result.ok, durationMs: result.durationMs, timedOut: result.timedOut, output: result.output };
      if (result.exitCode !== undefined) outcome.exitCode = result.exitCode;
      if (!result.ok) outcome.reason = commandFailure(result);
      return outcome;
    },
  };
}

/**
 * Applies a batch through HAProxy's runtime API when it changed only server lines of existing backends of one
 * file; otherwise, or when a command fails or the result does not match the file, says why not.
 */
async function throughRuntime(changes: readonly FileChange[] | undefined, options: RuntimeOptions): Promise<RuntimeAttempt> {
  const plan = runtimePlan(changes);
  if (!plan.ok) return plan;
  const result = await applyServerChanges(plan.diff, desiredServers(plan.after), options);
  return result.ok ? { ok: true, applied: plan.diff.map(describeChange) } : { ok: false, reason: `runtime API: ${result.reason}` };
}

type RuntimeAttempt = { ok: true; applied: string[] } | { ok: false; reason: string };

/** The server changes a batch makes, when the runtime API can make them all; else why not. */
function runtimePlan(changes: readonly FileChange[] | undefined): { ok: true; diff: ServerChange[]; before: string; after: string } | { ok: false; reason: string } {
  if (changes === undefined) return { ok: false, reason: 'the file that runs is not known (a failed reload is tried again)' };
  if (changes.length !== 1) return { ok: false, reason: `${changes.length} files changed at once` };
  const [change] = changes as [FileChange];
  if (change.before === undefined) return { ok: false, reason: `${change.path} is new` };
  if (change.after === undefined) return { ok: false, reason: `${change.path} was removed` };
  const before = change.before.toString();
  const after = change.after.toString();
  const diff = diffServers(before, after);
  return diff.runtime ? { ok: true, diff: diff.changes, before, after } : { ok: false, reason: diff.reason };
}

/** What `run` needs to finish an early apply: the changes and the file they lead to. */
interface EarlyState {
  changes: ServerChange[];
  after: string;
  failure: string | undefined;
}

/** The part of each early apply that only this module sees. */
const earlyStates = new WeakMap<EarlyApply, EarlyState>();

/**
 * Starts a candidate's server changes at once (adds, address and weight changes, drains), before its check;
 * the installed file's `run` finishes them (`finishEarly`), a candidate that is not installed undoes them.
 */
async function applyEarly(change: FileChange, options: RuntimeOptions, reloadPrevious: () => Promise<ReloadOutcome>): Promise<EarlyApply | undefined> {
  const plan = runtimePlan([change]);
  if (!plan.ok || plan.diff.length === 0) return undefined;
  const result = await startServerChanges(plan.diff, options);
  const failure = result.ok ? undefined : `runtime API: ${result.reason}`;
  const early: EarlyApply = {
    applied: result.started.map(describeChange),
    ...(failure === undefined ? {} : { failure }),
    async undo() {
      const reverse = diffServers(plan.after, plan.before);
      const undone = reverse.runtime
        ? await undoServerChanges(result.started, reverse.changes, desiredServers(plan.before), options).catch((err: unknown) => ({ ok: false, reason: (err as Error).message }))
        : { ok: false, reason: reverse.reason };
      if (undone.ok) return { ok: true, how: `undone through the runtime API: ${early.applied.join(', ') || 'nothing to undo'}` };
      // Partly undone, or not at all: the previous file, which is still the installed one, is loaded afresh.
      const reload = await reloadPrevious();
      return reload.ok
        ? { ok: true, how: `undoing through the runtime API failed (${undone.reason}); reloaded the previous file instead` }
        : { ok: false, how: `undoing through the runtime API failed (${undone.reason}), and so did the reload of the previous file: ${reload.reason ?? 'unknown reason'}` };
    },
  };
  earlyStates.set(early, { changes: plan.diff, after: plan.after, failure });
  return early;
}

/** Finishes an early apply once its file is installed: deletions of the drained servers, the check against the file. */
async function finishEarly(early: EarlyApply, options: RuntimeOptions): Promise<RuntimeAttempt> {
  const state = earlyStates.get(early);
  if (state === undefined) return { ok: false, reason: 'an early apply this reloader did not make' };
  if (state.failure !== undefined) return { ok: false, reason: state.failure };
  const result = await finishServerChanges(state.changes, desiredServers(state.after), options);
  return result.ok ? { ok: true, applied: state.changes.map(describeChange) } : { ok: false, reason: `runtime API: ${result.reason}` };
}

/** The installed files, one after the other (a missing one reads as empty). */
async function readAll(files: readonly string[]): Promise<string> {
  const texts = await Promise.all(files.map(async (path) => (await readCurrent(path))?.bytes.toString() ?? ''));
  return texts.join('\n');
}

function describeChange(change: ServerChange): string {
  const server = `${change.backend}/${change.name}`;
  if (change.kind !== 'update') return `${change.kind} ${server}`;
  const what = [change.host === undefined ? '' : `address ${change.host}:${change.port}`, change.weight === undefined ? '' : `weight ${change.weight}`];
  return `set ${server} ${what.filter(Boolean).join(' ')}`;
}

/** Logs a failed command's output, line by line: streamed at debug level while it ran, it matters now. */
export function logFailedOutput(log: { warn: (msg: string) => void }, output: string | undefined): void {
  for (const line of (output ?? '').split('\n')) if (line.trim() !== '') log.warn(line);
}

/**
 * One line saying how a command failed: exit code, signal, timeout or spawn error, and the output line that
 * most likely says why: the first one that reads as an error (HAProxy's `[ALERT] ... [file:line]`), else the
 * last one.
 */
export function commandFailure(result: { exitCode?: number; signal?: string; timedOut: boolean; error?: string; output: string; durationMs: number }): string {
  const how = result.timedOut
    ? `timed out after ${result.durationMs} ms`
    : result.error
      ? result.error
      : result.signal
        ? `killed by ${result.signal}`
        : `exited with code ${result.exitCode}`;
  const lines = result.output
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
  const why = lines.find((line) => line.includes('[ALERT]')) ?? lines.find((line) => /\b(?:error|fatal)\b/i.test(line)) ?? lines.at(-1);
  return why ? `${how}: ${why}` : how;
}
