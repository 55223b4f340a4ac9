import { spawn, type ChildProcess } from 'node:child_process';
import { readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { masterCliCommand } from '../../src/haproxy/master-cli.js';
import { parseShowProc } from '../../src/haproxy/show-proc.js';
import { waitFor } from './wait.js';

/**
 * Real master-worker HAProxy processes for tests: `haproxy -W -S <dir>/master.sock -f <dir>/haproxy.cfg
 * -p <dir>/haproxy.pid`, on 127.0.0.1 ports the test picks (with `freePort()`). Readiness is "`show proc`
 * lists a worker". Each instance runs in its own process group, so that `stop()` can wait for every process
 * it started (master, workers, draining old workers) to be gone.
 */

/** How to start HAProxy. */
export interface StartHaproxyOptions {
  /** Directory for the config, the master socket and the pid file (a `tempDir()`). */
  dir: string;
  /** Config text, written to `<dir>/haproxy.cfg` before the start. */
  config: string;
  /** Milliseconds to wait for the first worker. @default 10000 */
  readyTimeout?: number;
  /** More arguments after the config, e.g. `['-f', dir]` for a directory of `.cfg` files. */
  extraArgs?: readonly string[];
}

/** A running master-worker HAProxy. */
export interface HaproxyProcess {
  /** The master CLI socket (`-S`). */
  masterSocket: string;
  /** The master's pid. */
  pid: number;
  /** The config path HAProxy was started with: it re-reads this path on every reload. */
  configPath: string;
  /** The pid file (`-p`); it holds the master's pid. */
  pidFile: string;
  /** Replaces the config file atomically (write a temp file, rename it over), as the renderer installs. */
  writeConfig(text: string): Promise<void>;
  /** HAProxy's output so far (stdout and stderr), for assertions and diagnostics. */
  output(): string;
  /** SIGTERM to the master, then waits until no process of its group is left (SIGKILL after 5 s). */
  stop(): Promise<void>;
}

/** The HAProxy binary: `$HAPROXY_BIN`, else `haproxy` from the PATH. */
export const HAPROXY_BIN = process.env.HAPROXY_BIN ?? 'haproxy';

const running = new Set<ChildProcess>();

// A test run that dies before its afterEach must not leave HAProxy behind.
process.once('exit', () => {
  for (const child of running) {
    if (child.pid === undefined) continue;
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
});

/** Starts HAProxy in master-worker mode and resolves once `show proc` lists a worker. */
export async function startHaproxy(options: StartHaproxyOptions): Promise<HaproxyProcess> {
  const masterSocket = join(options.dir, 'master.sock');
  const configPath = join(options.dir, 'haproxy.cfg');
  const pidFile = join(options.dir, 'haproxy.pid');
  await writeFile(configPath, options.config);

  // `detached`: a process group of its own, so that stop() can account for the workers too.
  const child = spawn(HAPROXY_BIN, ['-W', '-S', masterSocket, '-f', configPath, '-p', pidFile, ...(options.extraArgs ?? [])], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  running.add(child);
  let output = '';
  const collect = (chunk: Buffer): void => {
    if (output.length < 1_000_000) output += chunk.toString();
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  let exited = child.exitCode !== null;
  child.once('exit', () => (exited = true));
  const spawned = await new Promise<number>((resolve, reject) => {
    child.once('spawn', () => resolve(child.pid!));
    child.once('error', reject);
  });
  const group = spawned;

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (!exited) child.kill('SIGTERM');
      try {
        await waitFor(async () => (await groupMembers(group)).length === 0, `haproxy group ${group} to exit`, {
          timeout: 5_000,
          interval: 20,
        });
      } catch {
        signalGroup(group, 'SIGKILL');
        await waitFor(async () => (await groupMembers(group)).length === 0, `haproxy group ${group} to die`, {
          timeout: 5_000,
          interval: 20,
        });
      }
      running.delete(child);
    })();
    return stopping;
  };

  const haproxy: HaproxyProcess = {
    masterSocket,
    pid: spawned,
    configPath,
    pidFile,
    writeConfig: async (text) => {
      const temp = `${configPath}.tmp`;
      await writeFile(temp, text);
      await rename(temp, configPath);
    },
    output: () => output,
    stop,
  };

  try {
    await waitFor(
      async () => {
        if (exited) throw new Error('haproxy exited');
        const state = parseShowProc(await masterCliCommand(masterSocket, 'show proc', { timeout: 500 }));
        return state.workers.length > 0;
      },
      `haproxy (pid ${spawned}) to list a worker in "show proc"`,
      { timeout: options.readyTimeout ?? 10_000, interval: 20 },
    );
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\n--- haproxy output ---\n${output}`, { cause: err });
  }
  return haproxy;
}

/**
 * A small HTTP config: frontend `fe` on 127.0.0.1:`port` answers every request itself with 200, header
 * `X-Gen: <gen>` and body `gen <gen>`, so that a test can tell which config served it. `extra` is appended.
 */
export function haproxyConfig({ port, gen, extra = '' }: { port: number; gen: number | string; extra?: string }): string {
  return `global
  hard-stop-after 5s

defaults
  mode http
  timeout connect 2s
  timeout client 5s
  timeout server 5s
  option idle-close-on-response

frontend fe
  bind 127.0.0.1:${port}
  http-request return status 200 content-type text/plain hdr X-Gen ${gen} string "gen ${gen}"
${extra}`;
}

/** One GET on a fresh connection (`Connection: close`, no agent), so the answer comes from the current worker. */
export function httpGet(port: number, path = '/'): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, headers: { connection: 'close' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.setTimeout(5_000, () => req.destroy(new Error(`GET 127.0.0.1:${port}${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** Live (non-zombie) processes of a process group, from /proc. */
export async function groupMembers(pgid: number): Promise<number[]> {
  const members: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = await readFile(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // Exited meanwhile.
    }
    // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses, so split after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] !== 'Z' && Number(fields[2]) === pgid) members.push(Number(entry));
  }
  return members;
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // Already gone.
  }
}
