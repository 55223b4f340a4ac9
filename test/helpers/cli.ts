import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { waitFor } from './wait.js';

/** The built CLI (test/global-setup.ts builds it before the tests). */
export const BIN = fileURLToPath(new URL('../../dist/cli/bin.js', import.meta.url));

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `rosterd ARGS` to completion. */
export function runCli(args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; timeout?: number } = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`rosterd ${args.join(' ')} did not exit within ${options.timeout ?? 30_000} ms\n${stderr}`));
    }, options.timeout ?? 30_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** A daemon started with `rosterd run --log-format json ...`, with its log lines parsed. */
export interface Daemon {
  readonly child: ChildProcess;
  readonly logs: Record<string, unknown>[];
  /** Waits for a log line whose `msg` matches, counting only lines after `since` (an index into `logs`). */
  waitForLog(pattern: RegExp, options?: { since?: number; timeout?: number }): Promise<Record<string, unknown>>;
  /** Sends a signal and waits for the exit; resolves with the exit code. */
  stop(signal?: NodeJS.Signals, timeout?: number): Promise<number | null>;
}

export function startDaemon(args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Daemon {
  return startCommand('run', args, options);
}

/** Starts `rosterd COMMAND --log-format json ...` (a command that runs until a signal, as `run` and `announce`). */
export function startCommand(command: string, args: readonly string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Daemon {
  const child = spawn(process.execPath, [BIN, command, '--log-format', 'json', ...args], {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  let partial = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    const lines = (partial + chunk.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (line.trim() === '') continue;
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        logs.push({ msg: line, raw: true });
      }
    }
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    logs,
    waitForLog(pattern, { since = 0, timeout = 15_000 } = {}) {
      return waitFor(() => logs.slice(since).find((l) => pattern.test(String(l.msg))), `a log line matching ${pattern}`, { timeout });
    },
    async stop(signal = 'SIGTERM', timeout = 15_000) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      let timer: NodeJS.Timeout | undefined;
      const limit = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(new Error(`daemon did not exit within ${timeout} ms of ${signal}`));
        }, timeout);
      });
      try {
        return await Promise.race([exited, limit]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
