import { isHaproxyReload, type ReloadConfig } from '../config/schema.js';
import { findBindClashes } from '../haproxy/bind-guard.js';
import { reloadHaproxy } from '../haproxy/reload.js';
import { readCurrent } from '../output/install.js';
import { describeCommand, runCommand } from './run.js';

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
  run(onLine: (stream: 'stdout' | 'stderr', line: string) => void): Promise<ReloadOutcome>;
}

/** Builds the reloader a template's `reload` setting describes. */
export function createReloader(reload: ReloadConfig, options: { destination: string; timeout: number; cwd: string }): Reloader {
  if (isHaproxyReload(reload)) {
    const { masterSocket, method, bindGuard, pidFile } = reload.haproxy;
    const reloader: Reloader = {
      key: `haproxy:${masterSocket}`,
      description: `haproxy ${method === 'cli' ? 'master CLI reload' : 'SIGUSR2'} via ${masterSocket}`,
      async run() {
        const started = performance.now();
        try {
          const result = await reloadHaproxy({ masterSocket, method, timeout: options.timeout, ...(pidFile === undefined ? {} : { pidFile }) });
          return { ok: result.ok, reason: result.reason, durationMs: result.durationMs, keepNewFile: result.unconfirmed === true };
        } catch (err) {
          // The state before could not be read: nothing was triggered.
          return { ok: false, reason: (err as Error).message, durationMs: Math.round(performance.now() - started) };
        }
      },
    };
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
