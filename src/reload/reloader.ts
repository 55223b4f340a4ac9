import { isHaproxyReload, type HaproxyReload, type ReloadConfig } from '../config/reload.js';
import { describeCommand } from '../exec/placeholders.js';

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

/** What a reloader does, without what names it. */
export type ReloaderSteps = Omit<Reloader, 'key' | 'description'>;

/** Builds the reloader a template's `reload` setting describes. */
export function createReloader(reload: ReloadConfig, options: { destination: string; timeout: number; cwd: string }): Reloader {
  if (isHaproxyReload(reload)) return deferredHaproxyReloader(reload, options);
  const placeholders = { destination: options.destination };
  return {
    key: `command:${describeCommand(reload, placeholders)}`,
    description: describeCommand(reload, placeholders),
    async run(onLine) {
      const { runCommand } = await import('../exec/run.js');
      const result = await runCommand(reload, { placeholders, timeout: options.timeout, cwd: options.cwd, onLine });
      const outcome: ReloadOutcome = { ok: result.ok, durationMs: result.durationMs, timedOut: result.timedOut, output: result.output };
      if (result.exitCode !== undefined) outcome.exitCode = result.exitCode;
      if (!result.ok) outcome.reason = commandFailure(result);
      return outcome;
    },
  };
}

/**
 * The HAProxy reloader (haproxy.ts), whose module starts loading when the reloader is built, in the background:
 * a config without one never loads it, and the first change does not wait for it. What it is keyed and
 * described by, and which of the optional steps it has, follow from the config alone.
 */
function deferredHaproxyReloader(reload: HaproxyReload, options: { destination: string; timeout: number }): Reloader {
  let loaded: Promise<ReloaderSteps> | undefined;
  const real = (): Promise<ReloaderSteps> => (loaded ??= import('./haproxy.js').then(({ createHaproxyReloader }) => createHaproxyReloader(reload, options)));
  const { masterSocket, method, runtime, bindGuard } = reload.haproxy;
  const how = method === 'cli' ? 'master CLI reload' : 'SIGUSR2';
  const reloader: Reloader = {
    key: `haproxy:${masterSocket}`,
    description: `haproxy ${runtime ? `runtime API, else ${how}` : how} via ${masterSocket}`,
    run: async (onLine, changes) => (await real()).run(onLine, changes),
    inSync: async (files) => (await real()).inSync!(files),
  };
  if (runtime) reloader.applyEarly = async (change) => (await real()).applyEarly!(change);
  if (bindGuard) reloader.precheck = async (candidate, installed) => (await real()).precheck!(candidate, installed);
  // A failed load is reported by the first step that needs it.
  real().catch(() => {});
  return reloader;
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
