/**
 * What the lab's scripts share: a small process supervisor (the Docker images run it as their entry point, the
 * native lab runs the very same one), HAProxy's master CLI through rosterd's client, and a few probes.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/**
 * @typedef {object} Program
 * @property {string} name            used in log prefixes and as `<pidDir>/<name>.pid`
 * @property {string} command
 * @property {string[]} args
 * @property {NodeJS.ProcessEnv} [env]  added to the supervisor's environment
 * @property {() => Promise<void>} [prepare]  runs once, before the first start (e.g. render the first haproxy.cfg)
 * @property {() => Promise<boolean>} [ready]  polled after each start; the next program starts once it is true
 * @property {NodeJS.Signals} [stopSignal]  how to ask it to stop (default SIGTERM)
 * @property {number} [stopTimeout]  ms to wait after stopSignal before SIGKILL (default 10 s)
 * @property {boolean} [forwardHup]  pass the supervisor's SIGHUP on (rosterd re-reads its config on SIGHUP)
 */

/**
 * Runs programs as one unit, the job a process supervisor (s6, supervisord) does in a container:
 *
 * - starts them **in order**, each once the previous one is ready (the web app before its Serf agent, so the
 *   node is never advertised before it can serve; Serf before HAProxy before rosterd on the load balancer);
 * - restarts one that exits on its own, with backoff (1 s doubling to 30 s, reset after 30 s of uptime);
 * - on SIGTERM or SIGINT stops them in **reverse** order, each with its own signal (Serf gets SIGINT: a graceful
 *   leave), waits for each, and exits 0; SIGHUP is passed to the programs that want it;
 * - prefixes every output line with the program's name, and keeps `<pidDir>/<name>.pid` up to date.
 *
 * Every child stays in the supervisor's process group, so `kill -9 -<pgid>` takes the whole node down at once,
 * which is how the lab simulates a crashed machine.
 *
 * @param {string} label  names the unit in its own log lines
 * @param {Program[]} programs
 * @param {{ pidDir?: string, readyTimeout?: number }} [options]
 */
export async function supervise(label, programs, { pidDir, readyTimeout = 30_000 } = {}) {
  const log = (line) => console.log(`[${label}] ${line}`);
  /** @type {Map<string, import('node:child_process').ChildProcess>} */
  const children = new Map();
  let stopping = false;
  if (pidDir) mkdirSync(pidDir, { recursive: true });

  const start = (program) => {
    const child = spawn(program.command, program.args, { env: { ...process.env, ...program.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.set(program.name, child);
    const started = Date.now();
    prefixLines(child.stdout, program.name, process.stdout);
    prefixLines(child.stderr, program.name, process.stderr);
    if (pidDir && child.pid) writeFileSync(join(pidDir, `${program.name}.pid`), `${child.pid}\n`);
    child.once('error', (err) => log(`${program.name}: ${err.message}`));
    child.once('close', (code, signal) => {
      if (pidDir) rmSync(join(pidDir, `${program.name}.pid`), { force: true });
      if (stopping || children.get(program.name) !== child) return;
      children.delete(program.name);
      const uptime = Date.now() - started;
      program.failures = uptime > 30_000 ? 0 : (program.failures ?? 0) + 1;
      const wait = Math.min(30_000, 1000 * 2 ** (program.failures - 1));
      log(`${program.name} exited (${signal ?? `code ${code}`}) after ${Math.round(uptime / 1000)} s; restarting in ${wait / 1000} s`);
      setTimeout(() => {
        if (!stopping) start(program);
      }, wait);
    });
    return child;
  };

  const stopOne = async (program) => {
    const child = children.get(program.name);
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const closed = new Promise((resolve) => child.once('close', resolve));
    child.kill(program.stopSignal ?? 'SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), program.stopTimeout ?? 10_000);
    await closed;
    clearTimeout(timer);
  };

  const stopAll = async (why) => {
    if (stopping) return;
    stopping = true;
    log(`${why}: stopping ${programs.map((p) => p.name).reverse().join(', ')}`);
    for (const program of [...programs].reverse()) await stopOne(program);
    log('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stopAll('SIGTERM'));
  process.on('SIGINT', () => void stopAll('SIGINT'));
  process.on('SIGHUP', () => {
    for (const program of programs) if (program.forwardHup) children.get(program.name)?.kill('SIGHUP');
  });

  for (const program of programs) {
    if (stopping) return;
    try {
      await program.prepare?.();
      const child = start(program);
      if (program.ready) {
        await waitFor(async () => {
          if (children.get(program.name) !== child) throw new Error(`${program.name} exited during start-up`);
          return program.ready();
        }, `${program.name} to be ready`, { timeout: readyTimeout, interval: 50 });
      }
      log(`${program.name} is up (pid ${child.pid})`);
    } catch (err) {
      log(`cannot start ${program.name}: ${err.message}`);
      await stopAll('start-up failed');
    }
  }
}

/** Copies a child's output to `out`, one `[name] line` at a time. */
function prefixLines(stream, name, out) {
  let partial = '';
  stream.setEncoding('utf8');
  stream.on('data', (text) => {
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) out.write(`[${name}] ${line}\n`);
  });
  stream.on('end', () => partial && out.write(`[${name}] ${partial}\n`));
}

/** Polls `probe` until it returns something truthy (returned), or throws after `timeout` ms. */
export async function waitFor(probe, what, { timeout = 10_000, interval = 25 } = {}) {
  const deadline = Date.now() + timeout;
  let lastError;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (err) {
      lastError = err;
      if (/exited during start-up/.test(err.message)) throw err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}${lastError ? ` (${lastError.message})` : ''}`);
    await delay(interval);
  }
}

/**
 * One command on HAProxy's master CLI (`-S <socket>`), with rosterd's own client: it half-closes the write side
 * as `socat` does (an `@1 …` command forwarded to the worker can hang otherwise) and retries while the socket
 * is briefly gone during a reload.
 */
export async function masterCli(socket, command, timeout = 2000) {
  // Imported on first use, so that `lab.mjs` can still explain how to build rosterd when it is not built.
  const { masterCliCommand } = await import('rosterd/haproxy');
  return masterCliCommand(socket, command, { timeout });
}

/** True when something accepts TCP connections on host:port. */
export function tcpAnswers(host, port) {
  return new Promise((resolve) => {
    const conn = connect({ host, port });
    conn.setTimeout(1000, () => conn.destroy());
    conn.once('connect', () => {
      conn.destroy();
      resolve(true);
    });
    conn.once('error', () => resolve(false));
    conn.once('close', () => resolve(false));
  });
}

/** One GET on a fresh connection; resolves with status, headers and body (rejects on a network error). */
export function httpGet(host, port, path = '/', timeout = 2000) {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, agent: false, headers: { connection: 'close' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (text) => (body += text));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.setTimeout(timeout, () => req.destroy(new Error(`GET ${host}:${port}${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** The node a response came from: the app's `X-Served-By` header, decoded. */
export function servedBy(headers) {
  const value = headers['x-served-by'];
  return typeof value === 'string' ? decodeURIComponent(value) : undefined;
}

/** `host:port` → [host, port]; a bare port means 127.0.0.1. */
export function splitHostPort(text, defaultHost = '127.0.0.1') {
  const at = String(text).lastIndexOf(':');
  if (at < 0) return [defaultHost, Number(text)];
  return [text.slice(0, at) || defaultHost, Number(text.slice(at + 1))];
}

/** The members a Serf agent knows (`serf members -format=json`), every status included. */
export async function serfMembers(rpc) {
  const { stdout } = await execFileAsync('serf', ['members', `-rpc-addr=${rpc}`, '-format=json'], { timeout: 5000 });
  return JSON.parse(stdout).members ?? [];
}
