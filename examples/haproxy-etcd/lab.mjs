#!/usr/bin/env node
/**
 * The HAProxy lab on etcd instead of Serf: web nodes announce themselves in etcd with `rosterd announce`
 * (a key under /lab/web/ with a lease), and rosterd on the load balancer follows the keys. The template,
 * the check and the HAProxy reloader are the Serf lab's.
 *
 *   node examples/haproxy-etcd/lab.mjs up [--nodes 3]     etcd, the web nodes, then the load balancer
 *   node examples/haproxy-etcd/lab.mjs add [NAME] [--tag weight=50]
 *   node examples/haproxy-etcd/lab.mjs remove NAME [--kill]
 *   node examples/haproxy-etcd/lab.mjs status [--json]
 *   node examples/haproxy-etcd/lab.mjs down
 *
 * Every process runs detached in a process group of its own; the run directory (--dir, default ./run beside
 * this file) holds their pids and ports, logs, etcd's data, haproxy.cfg and HAProxy's sockets. Everything
 * listens on 127.0.0.1, on ports the kernel picks.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { httpGet, servedBy, waitFor } from '../haproxy-serf/lib.mjs';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const HOST = '127.0.0.1';
const PREFIX = '/lab/web/';
const USAGE = `usage: node lab.mjs <command> [options]

  up [--nodes N] [--http-port P] [--stats-port P] [--ttl DUR]
                         start etcd, N web nodes (default 3), then the load balancer (HAProxy, rosterd)
  add [NAME] [--tag K=V]... [--no-wait]
                         start a web node (default name web-<n>) and wait until HAProxy sends it traffic
  remove NAME [--kill]   graceful: the node revokes its lease, then its app stops;
                         --kill: kill -9 the node; it leaves when its lease expires (--ttl of up, default 5s)
  status [--json]        processes, the keys in etcd, the servers in haproxy.cfg
  down                   stop everything the lab started

  --dir DIR              the run directory (default: run/ beside this script, or $LAB_RUN_DIR)`;

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    dir: { type: 'string', default: process.env.LAB_RUN_DIR ?? join(HERE, 'run') },
    nodes: { type: 'string', default: '3' },
    'http-port': { type: 'string' },
    'stats-port': { type: 'string' },
    ttl: { type: 'string', default: '5s' },
    tag: { type: 'string', multiple: true, default: [] },
    'no-wait': { type: 'boolean', default: false },
    kill: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
const dir = resolve(opts.dir);
const stateFile = join(dir, 'lab.json');
const nodesDir = join(dir, 'nodes');
const logsDir = join(dir, 'logs');

// --- commands ---

async function up() {
  const running = await readJson(stateFile);
  if (running && groupAlive(running.etcd.pid)) throw new Error(`already up in ${dir} (run "down" first, or use another --dir)`);
  await mkdir(logsDir, { recursive: true });
  const masterSocket = join(dir, 'master.sock');
  if (Buffer.byteLength(masterSocket) > 107) throw new Error(`${masterSocket} is too long for a unix socket: choose a shorter --dir`);

  const etcdPorts = { client: await freePort(), peer: await freePort() };
  const endpoint = `http://${HOST}:${etcdPorts.client}`;
  const etcd = {
    endpoint,
    pid: startDetached('etcd', [
      '--name=lab',
      `--data-dir=${join(dir, 'etcd')}`,
      `--listen-client-urls=${endpoint}`,
      `--advertise-client-urls=${endpoint}`,
      `--listen-peer-urls=http://${HOST}:${etcdPorts.peer}`,
      `--initial-advertise-peer-urls=http://${HOST}:${etcdPorts.peer}`,
      `--initial-cluster=lab=http://${HOST}:${etcdPorts.peer}`,
      '--logger=zap',
      '--log-level=warn',
    ], {}, join(logsDir, 'etcd.log')),
  };
  const state = { etcd, ttl: opts.ttl };
  await writeJson(stateFile, state);
  await waitFor(async () => {
    if (!groupAlive(etcd.pid)) throw new Error(`etcd exited; see ${join(logsDir, 'etcd.log')}`);
    const res = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1000) });
    return (await res.json()).health === 'true';
  }, `etcd to answer on ${endpoint}`, { timeout: 20_000, interval: 50 });
  console.log(`etcd: ${endpoint} (pid ${etcd.pid})`);

  const count = Number(opts.nodes);
  for (let i = 1; i <= count; i++) await add(`web-${i}`, { wait: false });
  // Up means: the nodes are announced, and every one answers through HAProxy.
  const nodes = await readNodes();
  await waitFor(async () => (await keys()).length === nodes.length, 'every node to be announced in etcd', { timeout: 20_000 });

  const lb = { httpPort: Number(opts['http-port'] ?? (await freePort())), statsPort: Number(opts['stats-port'] ?? (await freePort())) };
  lb.pid = startDetached(process.execPath, [join(HERE, 'lb-node.mjs')], {
    LAB_DIR: dir,
    LAB_LISTEN: HOST,
    LAB_HTTP_PORT: String(lb.httpPort),
    LAB_STATS_PORT: String(lb.statsPort),
    LAB_ETCD_ENDPOINTS: endpoint,
  }, join(logsDir, 'lb.log'));
  await writeJson(stateFile, { ...state, lb });
  const missing = new Set(nodes.map((n) => n.name));
  await waitFor(async () => {
    if (!groupAlive(lb.pid)) throw new Error(`the load balancer exited; see ${join(logsDir, 'lb.log')}`);
    const res = await httpGet(HOST, lb.httpPort).catch(() => undefined);
    const name = res && servedBy(res.headers);
    if (name) missing.delete(name);
    return res?.status === (nodes.length === 0 ? 503 : 200) && missing.size === 0;
  }, `every node to be served through ${HOST}:${lb.httpPort}`, { timeout: 30_000, interval: 20 });
  console.log(`
The lab is up in ${dir}:
  frontend    http://${HOST}:${lb.httpPort}/
  stats page  http://${HOST}:${lb.statsPort}/
  etcd        ${endpoint}    (try: etcdctl --endpoints ${endpoint} get --prefix ${PREFIX})
  haproxy.cfg ${join(dir, 'haproxy.cfg')}
  logs        ${logsDir}/`);
}

/** Starts a web node; `wait` (default unless --no-wait): until the load balancer sends it traffic. */
async function add(name, { wait = !opts['no-wait'] } = {}) {
  const state = await readJson(stateFile);
  if (!state || !groupAlive(state.etcd.pid)) throw new Error(`the lab is not up in ${dir} (run "up" first)`);
  await mkdir(nodesDir, { recursive: true });
  const nodes = await readNodes();
  name ??= nextName(nodes);
  if (nodes.some((n) => n.name === name)) throw new Error(`a node named ${JSON.stringify(name)} is already running`);
  const tags = Object.fromEntries(
    opts.tag.map((kv) => {
      const at = kv.indexOf('=');
      if (at < 1) throw new Error(`--tag ${kv}: expected KEY=VALUE`);
      return [kv.slice(0, at), kv.slice(at + 1)];
    }),
  );
  const node = { name, appPort: await freePort(), tags };
  const log = join(logsDir, `${encodeURIComponent(name)}.log`);
  const started = Date.now();
  node.pid = startDetached(process.execPath, [join(HERE, 'web-node.mjs')], {
    LAB_NODE_NAME: name,
    LAB_ADDR: HOST,
    LAB_APP_PORT: String(node.appPort),
    LAB_ETCD_ENDPOINTS: state.etcd.endpoint,
    LAB_TTL: state.ttl,
    LAB_TAGS: JSON.stringify(tags),
  }, log);
  await writeJson(nodeFile(name), node);
  await waitFor(async () => {
    if (!groupAlive(node.pid)) throw new Error(`node ${name} exited; see ${log}`);
    return (await keys()).some((k) => k.name === name);
  }, `${name} to be announced in etcd`, { timeout: 15_000 });
  console.log(`${name}: app on ${HOST}:${node.appPort}, announced at ${PREFIX}${name} (pid ${node.pid})`);
  if (!wait || !state.lb) return;
  await waitFor(async () => {
    const res = await httpGet(HOST, state.lb.httpPort).catch(() => undefined);
    return res && servedBy(res.headers) === name;
  }, `HAProxy to send traffic to ${name} (see ${join(logsDir, 'lb.log')})`, { timeout: 20_000, interval: 10 });
  console.log(`${name}: served through the load balancer ${((Date.now() - started) / 1000).toFixed(1)} s after its start`);
}

async function remove(name) {
  if (name === undefined) throw new Error('which node? (see "status")');
  const node = await readJson(nodeFile(name));
  if (!node) throw new Error(`no node named ${JSON.stringify(name)} in ${dir}`);
  const since = Date.now();
  if (opts.kill) {
    // A crash: nobody revokes the lease; etcd deletes the key when the lease expires.
    signalGroup(node.pid, 'SIGKILL');
    console.log(`${name}: killed (kill -9 of the app and of rosterd announce)`);
  } else {
    // The supervisor stops `rosterd announce` first (it revokes the lease), then the app.
    signalGroup(node.pid, 'SIGTERM', false);
    console.log(`${name}: leaving...`);
  }
  await waitFor(async () => !(await keys()).some((k) => k.name === name), `${PREFIX}${name} to go`, { timeout: 60_000, interval: 50 });
  console.log(`${name}: its key is gone from etcd after ${((Date.now() - since) / 1000).toFixed(1)} s${opts.kill ? ' (the lease expired)' : ' (the lease was revoked)'}`);
  await waitFor(() => !groupAlive(node.pid), `${name}'s processes to exit`, { timeout: 30_000, interval: 50 });
  await rm(nodeFile(name), { force: true });
  console.log(`${name}: gone`);
}

async function status() {
  const state = await readJson(stateFile);
  const nodes = await readNodes();
  const registered = state ? await keys().catch(() => []) : [];
  const cfg = await readFile(join(dir, 'haproxy.cfg'), 'utf8').catch(() => '');
  const servers = [...cfg.matchAll(/^\s+server (\S+) (\S+)/gm)].map((m) => ({ name: m[1], addr: m[2] }));
  const report = {
    dir,
    etcd: state && { ...state.etcd, running: groupAlive(state.etcd.pid) },
    lb: state?.lb && { ...state.lb, running: groupAlive(state.lb.pid) },
    nodes: nodes.map((n) => ({
      name: n.name,
      pid: n.pid,
      running: groupAlive(n.pid),
      appPort: n.appPort,
      key: registered.find((k) => k.name === n.name)?.key,
      server: servers.find((s) => s.addr === `${HOST}:${n.appPort}`)?.name,
    })),
    keys: registered,
    servers,
  };
  if (opts.json) {
    console.log(JSON.stringify(report, null, 2));
    return;
  }
  if (!state) return console.log(`nothing running in ${dir}`);
  console.log(`lab in ${dir}
  etcd           ${report.etcd.endpoint} ${report.etcd.running ? 'running' : 'NOT RUNNING'}
  frontend       ${report.lb ? `http://${HOST}:${report.lb.httpPort}/ (load balancer ${report.lb.running ? 'running' : 'NOT RUNNING'})` : '-'}`);
  for (const n of report.nodes) console.log(`  ${n.name.padEnd(12)} pid ${n.pid} ${n.running ? 'up' : 'gone'}, app ${HOST}:${n.appPort}, key ${n.key ?? '-'}, server ${n.server ?? '-'}`);
}

async function down() {
  const state = await readJson(stateFile);
  const nodes = await readNodes();
  // The load balancer first, then the nodes (each revokes its lease), etcd last.
  const steps = [...(state?.lb ? [[{ name: 'load balancer', pid: state.lb.pid }]] : []), nodes.map((n) => ({ name: n.name, pid: n.pid })), ...(state ? [[{ name: 'etcd', pid: state.etcd.pid }]] : [])];
  for (const groups of steps) {
    for (const g of groups) signalGroup(g.pid, 'SIGTERM', false);
    await Promise.all(
      groups.map(async (g) => {
        try {
          await waitFor(() => !groupAlive(g.pid), `${g.name} to stop`, { timeout: 30_000, interval: 50 });
        } catch {
          signalGroup(g.pid, 'SIGKILL');
          console.log(`${g.name}: killed (did not stop within 30 s)`);
        }
      }),
    );
  }
  await rm(stateFile, { force: true });
  await rm(nodesDir, { recursive: true, force: true });
  await rm(join(dir, 'etcd'), { recursive: true, force: true });
  console.log(state ? `stopped; logs kept in ${logsDir}/` : `nothing running in ${dir}`);
}

// --- helpers ---

/** The members announced in etcd: `{ name, key, value }`. */
async function keys() {
  const state = await readJson(stateFile);
  const { stdout } = await promisify(execFile)('etcdctl', [`--endpoints=${state.etcd.endpoint}`, 'get', '--prefix', PREFIX], { timeout: 5000, env: { ...process.env, ETCDCTL_API: '3' } });
  const lines = stdout.split('\n').filter(Boolean);
  const found = [];
  for (let i = 0; i + 1 < lines.length; i += 2) found.push({ name: lines[i].slice(PREFIX.length), key: lines[i], value: lines[i + 1] });
  return found;
}

/** Starts a program detached (a process group of its own), output to a log file; returns its pid. */
function startDetached(command, args, env, logFile) {
  const log = openSync(logFile, 'a');
  const child = spawn(command, args, { detached: true, stdio: ['ignore', log, log], env: { ...process.env, ...env } });
  child.unref();
  return child.pid;
}

/** Sends a signal to a whole process group (or only to its leader with `group: false`). */
function signalGroup(pid, signal, group = true) {
  try {
    process.kill(group ? -pid : pid, signal);
  } catch {
    // Already gone.
  }
}

/** True while any process of the group is alive (zombies waiting to be reaped do not count). */
function groupAlive(pgid) {
  if (pgid === undefined) return false;
  try {
    process.kill(-pgid, 0);
  } catch {
    return false;
  }
  if (!existsSync('/proc/self/stat')) return true;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(pgrp) === pgid && state !== 'Z') return true;
    } catch {
      // Exited meanwhile.
    }
  }
  return false;
}

function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

async function readNodes() {
  const files = await readdir(nodesDir).catch(() => []);
  const nodes = await Promise.all(files.filter((f) => f.endsWith('.json')).map((f) => readJson(join(nodesDir, f))));
  return nodes.filter((n) => n && groupAlive(n.pid));
}

function nextName(nodes) {
  const taken = new Set(nodes.map((n) => n.name));
  let i = 1;
  while (taken.has(`web-${i}`)) i++;
  return `web-${i}`;
}

const nodeFile = (name) => join(nodesDir, `${encodeURIComponent(name)}.json`);

async function readJson(file) {
  try {
    return JSON.parse(await readFile(file, 'utf8'));
  } catch {
    return undefined;
  }
}

async function writeJson(file, value) {
  await writeFile(file, `${JSON.stringify(value, null, 2)}\n`);
}

// --- main ---

const commands = { up, add, remove, status, down };
const [command = 'help', ...args] = positionals;
if (opts.help || !Object.hasOwn(commands, command)) {
  console.log(USAGE);
  process.exit(opts.help || command === 'help' ? 0 : 2);
}
try {
  await commands[command](...args);
} catch (err) {
  console.error(`lab ${command}: ${err.message}`);
  process.exit(1);
}
