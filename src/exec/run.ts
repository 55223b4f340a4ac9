/**
 * Running a template's `check` and `reload` commands: one file per concern, as execa has them.
 *
 * - An argv array runs without a shell; a string runs with `/bin/sh -c`. Placeholders and quoting:
 *   `placeholders.ts`.
 * - Each command runs in its own process group, which its timeout kills whole: `process-group.ts`.
 * - Output is kept (its end) and split into lines as it arrives: `output.ts`.
 * - When the command itself has exited but a background process it started keeps its output open, the output is
 *   read for a short while longer and then abandoned, and the result is returned; the background process is left
 *   alone (it was started on purpose). The timeout no longer applies once the command has exited.
 * - Nothing throws and nothing is logged: every outcome, spawn failures included, is a {@link CommandResult}.
 */
import type { execa as Execa } from 'execa';
import { OutputCollector, type LineListener } from './output.js';
import { placeholderEnv, resolveSpec, type CommandSpec } from './placeholders.js';
import { beginStart, endStart, settleGroup, stopGroup, trackGroup } from './process-group.js';

export { describeCommand, type CommandSpec } from './placeholders.js';
export { idle, killAllCommands } from './process-group.js';

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
  onLine?: LineListener;
  /** ms between SIGTERM and SIGKILL, default 2000 */
  killGrace?: number;
}

const DEFAULT_KILL_GRACE = 2000;
/** After the command exits, how long background processes it left may keep its output open (cf. Go's WaitDelay). */
const PIPE_DRAIN = 500;
/** setTimeout fires at once for larger delays. */
const MAX_DELAY = 2 ** 31 - 1;

/**
 * Runs a check or reload command and reports how it ended. Never rejects: a command that fails, times out or
 * cannot start is a result with `ok: false`.
 */
export async function runCommand(spec: CommandSpec, options: RunOptions): Promise<CommandResult> {
  let started = performance.now();
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

  // execa (a hundred modules) loads with the first command, not with every config that could run one. Until it
  // has, the command counts as running: idle() waits for it and killAllCommands() stops it before it starts.
  let execa = loadedExeca;
  const pending = execa === undefined ? beginStart() : undefined;
  // Ended once the command is tracked (or did not start), so that idle() does not resolve in between.
  const endPending = (): void => {
    if (pending !== undefined) endStart(pending);
  };
  if (execa === undefined) {
    try {
      execa = await loadExeca();
    } catch (err) {
      endPending();
      return failure(`cannot start ${file}: ${oneLine(err instanceof Error ? err.message : String(err))}`);
    }
    if (pending?.stoppedBy !== undefined) {
      endPending();
      return failure(`stopped by killAllCommands (${pending.stoppedBy})`);
    }
    // The command's duration is its own, not execa's loading.
    started = performance.now();
  }

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
    endPending();
    return failure(`cannot start ${file}: ${oneLine(err instanceof Error ? err.message : String(err))}`);
  }
  subprocess.stdout?.on('data', (chunk: Buffer) => collector.push('stdout', chunk));
  subprocess.stderr?.on('data', (chunk: Buffer) => collector.push('stderr', chunk));

  const entry = subprocess.pid === undefined ? undefined : trackGroup(subprocess.pid, options.killGrace ?? DEFAULT_KILL_GRACE);
  endPending();
  let timedOut = false;
  let timer: NodeJS.Timeout | undefined;
  if (entry !== undefined && options.timeout > 0 && options.timeout <= MAX_DELAY) {
    timer = setTimeout(() => {
      timedOut = true;
      stopGroup(entry, 'SIGTERM');
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
    if (entry !== undefined) settleGroup(entry);
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

// --- internal ---

let loadedExeca: typeof Execa | undefined;
let loadingExeca: Promise<typeof Execa> | undefined;

function loadExeca(): Promise<typeof Execa> {
  loadingExeca ??= import('execa').then((module) => (loadedExeca = module.execa));
  return loadingExeca;
}

function oneLine(text: string): string {
  return text.trim().replace(/\s*\n\s*/g, '; ');
}
