/**
 * Running a template's `check` and `reload` commands.
 *
 * - An argv array runs without a shell; a string runs with `/bin/sh -c`.
 * - `{{name}}` placeholders (spaces inside the braces allowed) whose name is in `placeholders` are replaced in
 *   every argv element, and in a shell string as one shell word: inserted as is when the value only has safe
 *   characters, else single-quoted, so a path with spaces, quotes or `$(…)` can never split or inject. Write them
 *   bare in a shell string, not inside quotes (inside quotes, use `"$ROSTERD_NAME"`). Other `{{…}}` are left
 *   as they are. Every placeholder is also exported to the command as `ROSTERD_<NAME>` (upper case, characters
 *   other than letters, digits and `_` become `_`).
 * - Each command runs in its own session and process group (`detached`), so the timeout can kill everything it
 *   started, grandchildren included: SIGTERM to the group, then SIGKILL after `killGrace` if anything is left.
 *   (A terminal's Ctrl-C does not reach the group either: see {@link killAllCommands}.)
 * - When the command itself has exited but a background process it started keeps its output open, the output is
 *   read for a short while longer and then abandoned, and the result is returned; the background process is left
 *   alone (it was started on purpose). The timeout no longer applies once the command has exited.
 * - If this process exits while commands run, their groups get SIGTERM (SIGKILL when already terminated once),
 *   as execa's `cleanup` would do for children that are not detached.
 * - Nothing throws and nothing is logged: every outcome, spawn failures included, is a {@link CommandResult}.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { execa } from 'execa';

/** A command: an argv array (run directly) or a string (run with `sh -c`). */
export type CommandSpec = string | readonly string[];

/** How a command ended. */
export interface CommandResult {
  /** Exited by itself with code 0. */
  ok: boolean;
  /** Exit code; undefined when killed by a signal or never started. */
  exitCode?: number;
  /** The signal that ended the command (`SIGTERM`, `SIGKILL`, …). */
  signal?: string;
  /** Killed because it ran longer than `timeout`. */
  timedOut: boolean;
  durationMs: number;
  /** argv or the shell string, after placeholders */
  command: string;
  /** last ~8 KiB of combined stdout+stderr */
  output: string;
  /** Why the command did not finish by itself: it could not start (e.g. ENOENT), timed out, or was stopped. */
  error?: string;
}

/** How to run a command. */
export interface RunOptions {
  /** Values for `{{name}}` placeholders, also exported as `ROSTERD_<NAME>`. */
  placeholders: Record<string, string>;
  /** Milliseconds before the command's process group is killed. 0 or Infinity: no limit. */
  timeout: number;
  /** Working directory; default: this process's. */
  cwd?: string;
  /** Extra environment variables, on top of this process's environment. */
  env?: Record<string, string>;
  /** Called with every line of output as it arrives (without its line ending); a last partial line at exit. */
  onLine?: (stream: 'stdout' | 'stderr', line: string) => void;
  /** ms between SIGTERM and SIGKILL, default 2000 */
  killGrace?: number;
}

/** How much output a result keeps (the end of it, where errors usually are). */
const OUTPUT_LIMIT = 8 * 1024;
/** A line longer than this is passed to `onLine` in pieces, so that output without newlines cannot grow memory. */
const MAX_LINE = 64 * 1024;
const DEFAULT_KILL_GRACE = 2000;
/** After the command exits, how long background processes it left may keep its output open (cf. Go's WaitDelay). */
const PIPE_DRAIN = 500;
/** setTimeout fires at once for larger delays. */
const MAX_DELAY = 2 ** 31 - 1;

const PLACEHOLDER = /\{\{\s*([A-Za-z_][A-Za-z0-9_-]*)\s*\}\}/g;
const SHELL_SAFE = /^[A-Za-z0-9_./:@%+=,-]+$/;

/** A started command, tracked from spawn until it has settled and no SIGKILL is pending for its group. */
interface Running {
  readonly pgid: number;
  readonly killGrace: number;
  settled: boolean;
  killTimer: NodeJS.Timeout | undefined;
  /** Set by {@link killAllCommands}. */
  stoppedBy: NodeJS.Signals | undefined;
}

const running = new Set<Running>();
let idleWaiters: Array<() => void> = [];

/**
 * Runs a check or reload command and reports how it ended. Never rejects: a command that fails, times out or
 * cannot start is a result with `ok: false`.
 */
export async function runCommand(spec: CommandSpec, options: RunOptions): Promise<CommandResult> {
  const started = performance.now();
  const elapsed = (): number => Math.round(performance.now() - started);
  const { file, args, command } = resolveSpec(spec, options.placeholders);
  const collector = new OutputCollector(options.onLine);
  const failure = (error: string): CommandResult => ({
    ok: false,
    timedOut: false,
    durationMs: elapsed(),
    command,
    output: collector.output,
    error,
  });
  if (file === undefined) return failure('empty command');

  let subprocess;
  try {
    subprocess = execa(file, args, {
      reject: false,
      detached: true,
      // execa's own cleanup, timeout and force-kill only reach the direct child; the group is handled here.
      cleanup: false,
      forceKillAfterDelay: false,
      buffer: false,
      stdin: 'ignore',
      stdout: 'pipe',
      stderr: 'pipe',
      cwd: options.cwd,
      env: { ...options.env, ...placeholderEnv(options.placeholders) },
      windowsHide: true,
    });
  } catch (err) {
    return failure(`cannot start ${file}: ${oneLine(err instanceof Error ? err.message : String(err))}`);
  }
  subprocess.stdout?.on('data', (chunk: Buffer) => collector.push('stdout', chunk));
  subprocess.stderr?.on('data', (chunk: Buffer) => collector.push('stderr', chunk));

  const entry = subprocess.pid === undefined ? undefined : track(subprocess.pid, options.killGrace ?? DEFAULT_KILL_GRACE);
  let timedOut = false;
  let timer: NodeJS.Timeout | undefined;
  if (entry !== undefined && options.timeout > 0 && options.timeout <= MAX_DELAY) {
    timer = setTimeout(() => {
      timedOut = true;
      stop(entry, 'SIGTERM');
    }, options.timeout);
  }
  let drain: NodeJS.Timeout | undefined;
  subprocess.once('exit', () => {
    clearTimeout(timer);
    drain = setTimeout(() => {
      subprocess.stdout?.destroy();
      subprocess.stderr?.destroy();
    }, PIPE_DRAIN);
  });

  let result;
  try {
    result = await subprocess;
  } catch (err) {
    // Not expected with `reject: false`; a result is owed all the same.
    return failure(oneLine(err instanceof Error ? err.message : String(err)));
  } finally {
    clearTimeout(timer);
    clearTimeout(drain);
    collector.end();
    if (entry !== undefined) settle(entry);
  }

  const base = { timedOut, durationMs: elapsed(), command, output: collector.output };
  const status = {
    ...(result.exitCode === undefined ? {} : { exitCode: result.exitCode }),
    ...(result.signal === undefined ? {} : { signal: result.signal }),
  };
  if (entry === undefined) {
    const why = oneLine(result.originalMessage ?? result.shortMessage ?? 'unknown error');
    return { ok: false, ...base, ...status, error: `cannot start ${file}: ${why}` };
  }
  if (timedOut) return { ok: false, ...base, ...status, error: `timed out after ${options.timeout} ms` };
  if (entry.stoppedBy !== undefined) {
    return { ok: false, ...base, ...status, error: `stopped by killAllCommands (${entry.stoppedBy})` };
  }
  if (result.failed && result.exitCode === 0 && result.signal === undefined) {
    // Exit code 0 but execa saw a problem (an output stream error): do not call that a success.
    return { ok: false, ...base, ...status, error: oneLine(result.originalMessage ?? result.shortMessage ?? 'failed') };
  }
  return { ok: result.exitCode === 0 && result.signal === undefined, ...base, ...status };
}

/**
 * The command as {@link runCommand} would report it in `CommandResult.command`: the shell string after
 * placeholders, or the argv after placeholders, shell-quoted and joined. For dry runs and messages.
 */
export function describeCommand(spec: CommandSpec, placeholders: Record<string, string>): string {
  return resolveSpec(spec, placeholders).command;
}

/**
 * Kills the process group of every command still running (used by a second SIGINT). Unless `signal` is SIGKILL,
 * each group that is still there after its `killGrace` gets SIGKILL. Their results say `stopped by killAllCommands`.
 */
export function killAllCommands(signal: NodeJS.Signals = 'SIGTERM'): void {
  for (const entry of running) {
    // A settled entry is a group whose SIGKILL is pending; it only gets the signal.
    if (!entry.settled) entry.stoppedBy ??= signal;
    stop(entry, signal);
  }
}

/** Resolves when no command is running (including pending SIGKILLs of groups that outlived their command). */
export function idle(): Promise<void> {
  if (running.size === 0) return Promise.resolve();
  return new Promise((resolve) => idleWaiters.push(resolve));
}

function resolveSpec(
  spec: CommandSpec,
  placeholders: Record<string, string>,
): { file: string | undefined; args: string[]; command: string } {
  if (typeof spec === 'string') {
    const command = substitute(spec, placeholders, shellQuote);
    return { file: command.trim() === '' ? undefined : '/bin/sh', args: ['-c', command], command };
  }
  const argv = spec.map((arg) => substitute(arg, placeholders, (value) => value));
  const [file, ...args] = argv;
  return { file: file === '' ? undefined : file, args, command: argv.map(shellQuote).join(' ') };
}

function substitute(text: string, placeholders: Record<string, string>, encode: (value: string) => string): string {
  return text.replace(PLACEHOLDER, (match, name: string) => {
    const value = Object.hasOwn(placeholders, name) ? placeholders[name] : undefined;
    return value === undefined ? match : encode(value);
  });
}

/** One shell word: as is when every character is safe, else single-quoted (`'` becomes `'\''`). */
function shellQuote(value: string): string {
  if (SHELL_SAFE.test(value)) return value;
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

function placeholderEnv(placeholders: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(placeholders)) {
    env[`ROSTERD_${name.toUpperCase().replace(/[^A-Z0-9_]/g, '_')}`] = value;
  }
  return env;
}

function track(pgid: number, killGrace: number): Running {
  const entry: Running = { pgid, killGrace, settled: false, killTimer: undefined, stoppedBy: undefined };
  if (running.size === 0) process.on('exit', killOnExit);
  running.add(entry);
  return entry;
}

/** Signals the group and, unless that was SIGKILL, arms the SIGKILL that follows after the grace. */
function stop(entry: Running, signal: NodeJS.Signals): void {
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
function settle(entry: Running): void {
  entry.settled = true;
  if (entry.killTimer !== undefined && !groupAlive(entry.pgid)) {
    clearTimeout(entry.killTimer);
    entry.killTimer = undefined;
  }
  release(entry);
}

function release(entry: Running): void {
  if (!entry.settled || entry.killTimer !== undefined) return;
  running.delete(entry);
  if (running.size > 0) return;
  process.off('exit', killOnExit);
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

function oneLine(text: string): string {
  return text.trim().replace(/\s*\n\s*/g, '; ');
}

/** Keeps the end of the combined output and splits each stream into lines for `onLine`. */
class OutputCollector {
  readonly #onLine: RunOptions['onLine'];
  readonly #decoders = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };
  readonly #partial = { stdout: '', stderr: '' };
  #tail = '';

  constructor(onLine: RunOptions['onLine']) {
    this.#onLine = onLine;
  }

  get output(): string {
    let tail = this.#tail.length > OUTPUT_LIMIT ? this.#tail.slice(-OUTPUT_LIMIT) : this.#tail;
    // Do not start with half of a surrogate pair.
    if (/^[\uDC00-\uDFFF]/.test(tail)) tail = tail.slice(1);
    return tail;
  }

  push(stream: 'stdout' | 'stderr', chunk: Buffer): void {
    this.#append(stream, this.#decoders[stream].write(chunk));
  }

  /** Flushes the decoders and the last partial lines. */
  end(): void {
    for (const stream of ['stdout', 'stderr'] as const) {
      this.#append(stream, this.#decoders[stream].end());
      const rest = this.#partial[stream];
      this.#partial[stream] = '';
      if (rest !== '') this.#emit(stream, rest);
    }
  }

  #append(stream: 'stdout' | 'stderr', text: string): void {
    if (text === '') return;
    this.#tail += text;
    if (this.#tail.length > 2 * OUTPUT_LIMIT) this.#tail = this.#tail.slice(-OUTPUT_LIMIT);
    if (this.#onLine === undefined) return;
    const lines = (this.#partial[stream] + text).split('\n');
    let rest = lines.pop() ?? '';
    for (const line of lines) this.#emit(stream, line);
    while (rest.length > MAX_LINE) {
      this.#emit(stream, rest.slice(0, MAX_LINE));
      rest = rest.slice(MAX_LINE);
    }
    this.#partial[stream] = rest;
  }

  #emit(stream: 'stdout' | 'stderr', line: string): void {
    try {
      this.#onLine?.(stream, line.endsWith('\r') ? line.slice(0, -1) : line);
    } catch {
      // A failing listener must not break the run (this is inside a stream event handler).
    }
  }
}
