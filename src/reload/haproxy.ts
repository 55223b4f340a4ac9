import type { HaproxyReload } from '../config/reload.js';
import { findBindClashes } from '../haproxy/bind-guard.js';
import { reloadHaproxy } from '../haproxy/reload.js';
import { applyServerChanges, finishServerChanges, startServerChanges, undoServerChanges, verifyServers, writeServerState, type RuntimeOptions } from '../haproxy/runtime.js';
import { desiredServers, diffServers, type ServerChange } from '../haproxy/server-diff.js';
import { readCurrent } from '../output/install.js';
import type { EarlyApply, FileChange, ReloaderSteps, ReloadOutcome } from './reloader.js';

/**
 * The steps of the built-in HAProxy reloader: a reload confirmed through the master CLI, or server changes
 * through the runtime API with a confirmed reload as the fallback. `createReloader` (reloader.ts) gives them
 * their key and description and loads this module when the reloader is built: a config without an HAProxy
 * reload never loads it, nor the haproxy/ modules it uses.
 */
export function createHaproxyReloader(reload: HaproxyReload, options: { destination: string; timeout: number }): ReloaderSteps {
  const { masterSocket, method, bindGuard, pidFile, runtime, drainTimeout, stateFile } = reload.haproxy;
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
  const reloader: ReloaderSteps = {
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
