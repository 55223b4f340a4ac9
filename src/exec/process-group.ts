/**
 * The process groups of running commands. Each command runs in its own session and process group
 * (`detached`), so that a timeout can kill everything it started, grandchildren included: SIGTERM to the group,
 * then SIGKILL after the command's kill grace if anything is left. A terminal's Ctrl-C does not reach those
 * groups, so {@link killAllCommands} is there for a second SIGINT.
 *
 * The registry is global to the process: if this process exits while commands run, their groups get SIGTERM
 * (SIGKILL when already terminated once), as execa's `cleanup` would do for children that are not detached.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** A started command's group, tracked from spawn until the command has settled and no SIGKILL is pending. */
export interface TrackedGroup {
  readonly pgid: number;
  readonly killGrace: number;
  settled: boolean;
  killTimer: NodeJS.Timeout | undefined;
  /** Set by {@link killAllCommands}. */
  stoppedBy: NodeJS.Signals | undefined;
}

/** A command about to be spawned (its spawner still loading): {@link idle} waits for it, {@link killAllCommands} stops it. */
export interface PendingStart {
  /** Set by {@link killAllCommands}: the command must not be spawned. */
  stoppedBy: NodeJS.Signals | undefined;
}

const running = new Set<TrackedGroup>();
const starting = new Set<PendingStart>();
let idleWaiters: Array<() => void> = [];

/**
 * Kills the process group of every command still running (used by a second SIGINT). Unless `signal` is SIGKILL,
 * each group that is still there after its `killGrace` gets SIGKILL. Their results say `stopped by killAllCommands`.
 */
export function killAllCommands(signal: NodeJS.Signals = 'SIGTERM'): void {
  for (const pending of starting) pending.stoppedBy ??= signal;
  for (const entry of running) {
    // A settled entry is a group whose SIGKILL is pending; it only gets the signal.
    if (!entry.settled) entry.stoppedBy ??= signal;
    stopGroup(entry, signal);
  }
}

/** Resolves when no command is running (including pending SIGKILLs of groups that outlived their command). */
export function idle(): Promise<void> {
  if (running.size === 0 && starting.size === 0) return Promise.resolve();
  return new Promise((resolve) => idleWaiters.push(resolve));
}

/** A command will be spawned once its spawner is loaded: from now on it counts as running for {@link idle}. */
export function beginStart(): PendingStart {
  const pending: PendingStart = { stoppedBy: undefined };
  starting.add(pending);
  return pending;
}

/** The pending start is over: spawned (and tracked by {@link trackGroup}) or given up. */
export function endStart(pending: PendingStart): void {
  starting.delete(pending);
  wakeIdleWaiters();
}

/** Starts tracking the group of a command just spawned; the first one arms the exit hook. */
export function trackGroup(pgid: number, killGrace: number): TrackedGroup {
  const entry: TrackedGroup = { pgid, killGrace, settled: false, killTimer: undefined, stoppedBy: undefined };
  if (running.size === 0) process.on('exit', killOnExit);
  running.add(entry);
  return entry;
}

/** Signals the group and, unless that was SIGKILL, arms the SIGKILL that follows after the grace. */
export function stopGroup(entry: TrackedGroup, signal: NodeJS.Signals): void {
  signalGroup(entry.pgid, signal);
  if (signal === 'SIGKILL') {
    clearTimeout(entry.killTimer);
    entry.killTimer = undefined;
    release(entry);
    return;
  }
  entry.killTimer ??= setTimeout(() => {
    entry.killTimer = undefined;
    signalGroup(entry.pgid, 'SIGKILL');
    release(entry);
  }, entry.killGrace);
}

/** The command's promise has settled. A pending SIGKILL stays armed only if something is left in its group. */
export function settleGroup(entry: TrackedGroup): void {
  entry.settled = true;
  if (entry.killTimer !== undefined && !groupAlive(entry.pgid)) {
    clearTimeout(entry.killTimer);
    entry.killTimer = undefined;
  }
  release(entry);
}

// --- internal ---

function release(entry: TrackedGroup): void {
  if (!entry.settled || entry.killTimer !== undefined) return;
  running.delete(entry);
  if (running.size > 0) return;
  process.off('exit', killOnExit);
  wakeIdleWaiters();
}

function wakeIdleWaiters(): void {
  if (running.size > 0 || starting.size > 0) return;
  const waiters = idleWaiters;
  idleWaiters = [];
  for (const resolve of waiters) resolve();
}

/** This process is exiting: do not leave commands behind (what execa's `cleanup` does for non-detached children). */
function killOnExit(): void {
  for (const entry of running) signalGroup(entry.pgid, entry.killTimer === undefined ? 'SIGTERM' : 'SIGKILL');
}

/** Sends `signal` to the process group; false when the group no longer exists (or cannot be signalled). */
function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Whether a live process is left in the group. */
function groupAlive(pgid: number): boolean {
  if (!signalGroup(pgid, 0)) return false;
  // kill() also finds zombies: dead processes not reaped yet (orphans are reparented to an init that may never
  // reap them, as in many containers). Where /proc exists, look for a member that is not a zombie.
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return true;
  }
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // "pid (comm) state ppid pgrp …"; comm may contain spaces and parentheses, hence the last ')'.
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(pgrp) === pgid && state !== 'Z') return true;
    } catch {
      // The process ended while we looked.
    }
  }
  return false;
}
