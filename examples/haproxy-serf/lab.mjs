#!/usr/bin/env node
/**
 * The HAProxy + Serf lab on one machine, with rosterd keeping haproxy.cfg true:
 *
 *   node examples/haproxy-serf/lab.mjs up [--nodes 3]     web nodes first, then the load balancer
 *   node examples/haproxy-serf/lab.mjs add [NAME] [--tag weight=50]
 *   node examples/haproxy-serf/lab.mjs remove NAME [--kill]
 *   node examples/haproxy-serf/lab.mjs status [--json]
 *   node examples/haproxy-serf/lab.mjs down
 *
 * Every process is a child of a supervisor (lb-node.mjs, web-node.mjs), which runs detached in a process
 * group of its own; the run directory (--dir, default ./run beside this file) holds their pids and ports,
 * their logs, haproxy.cfg and HAProxy's sockets. Everything listens on 127.0.0.1, on ports the kernel picks
 * (so two labs with two run directories never collide) unless --http-port/--stats-port fix them.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { httpGet, masterCli, serfMembers, servedBy, waitFor } from './lib.mjs';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const HOST = '127.0.0.1';
const USAGE = `usage: node lab.mjs <command> [options]

  up [--nodes N] [--http-port P] [--stats-port P] [--config FILE]
                         start N web nodes (default 3), then the load balancer (Serf, HAProxy, rosterd)
  add [NAME] [--tag K=V]... [--no-wait]
                         start a web node (default name web-<n>) and wait until HAProxy sends it traffic
  remove NAME [--kill]   graceful: the node's Serf agent leaves, then its app stops;
                         --kill: kill -9 the agent and the app, then force-leave the node from the load balancer
  status [--json]        processes, Serf members, HAProxy servers and reloads
  down                   stop everything the lab started

  --dir DIR              the run directory (default: run/ beside this script, or $LAB_RUN_DIR)`;

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    dir: { type: 'string', default: process.env.LAB_RUN_DIR ?? join(HERE, 'run') },
    nodes: { type: 'string', default: '3' },
    'http-port': { type: 'string' },
    'stats-port': { type: 'string' },
    config: { type: 'string' },
    tag: { type: 'string', multiple: true, default: [] },
    'no-wait': { type: 'boolean', default: false },
    kill: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
const dir = resolve(opts.dir);
const lbFile = join(dir, 'lb.json');
const nodesDir = join(dir, 'nodes');
const logsDir = join(dir, 'logs');

// --- commands ---

async function up() {
  await checkPrerequisites();
  const running = await readJson(lbFile);
  if (running && groupAlive(running.pid)) throw new Error(`already up in ${dir} (run "down" first, or use another --dir)`);
  await mkdir(logsDir, { recursive: true });
  const masterSocket = join(dir, 'master.sock');
  // A unix socket path longer than this cannot be bound (sun_path).
  if (Buffer.byteLength(masterSocket) > 107) throw new Error(`${masterSocket} is too long for a unix socket: choose a shorter --dir`);

  // Web nodes first, on purpose: they join each other before the load balancer exists. By the time rosterd
  // connects to the load balancer's agent, those joins are over and no event will ever mention them again;
  // rosterd reads the member list when it connects, so they are served all the same.
  const count = Number(opts.nodes);
  for (let i = 1; i <= count; i++) await add(`web-${i}`, { wait: false });

  const lb = {
    httpPort: Number(opts['http-port'] ?? (await freePort())),
    statsPort: Number(opts['stats-port'] ?? (await freePort())),
    serfBind: await freePort(),
    serfRpc: await freePort(),
    config: opts.config === undefined ? undefined : resolve(opts.config),
  };
  const nodes = await readNodes();
  const env = {
    LAB_DIR: dir,
    LAB_ADDR: HOST,
    LAB_LISTEN: HOST,
    LAB_HTTP_PORT: String(lb.httpPort),
    LAB_STATS_PORT: String(lb.statsPort),
    LAB_SERF_BIND: String(lb.serfBind),
    LAB_SERF_RPC: `${HOST}:${lb.serfRpc}`,
    LAB_SERF_JOIN: nodes.map((n) => `${HOST}:${n.serfBind}`).join(','),
    ...(lb.config === undefined ? {} : { LAB_RENDERER_CONFIG: lb.config }),
  };
  lb.pid = startDetached(join(HERE, 'lb-node.mjs'), env, join(logsDir, 'lb.log'));
  await writeJson(lbFile, lb);
  console.log(`load balancer: pid ${lb.pid}, log ${join(logsDir, 'lb.log')}`);

  // Up means: every node that is running answers through HAProxy.
  const missing = new Set(nodes.map((n) => n.name));
  await waitFor(async () => {
    if (!groupAlive(lb.pid)) throw new Error(`the load balancer exited; see ${join(logsDir, 'lb.log')}`);
    const res = await httpGet(HOST, lb.httpPort).catch(() => undefined);
    const name = res && servedBy(res.headers);
    if (name) missing.delete(name);
    return res?.status === (nodes.length === 0 ? 503 : 200) && missing.size === 0;
  }, `every node to be served through 127.0.0.1:${lb.httpPort}`, { timeout: 30_000, interval: 20 });

  const self = `node ${scriptPath()}${dir === resolve(HERE, 'run') ? '' : ` --dir ${dir}`}`;
  console.log(`
The lab is up in ${dir}:
  frontend    http://${HOST}:${lb.httpPort}/    (try: curl -si http://${HOST}:${lb.httpPort}/ | grep -i served)
  stats page  http://${HOST}:${lb.statsPort}/
  haproxy.cfg ${join(dir, 'haproxy.cfg')}
  logs        ${logsDir}/

  ${self} add              # one more web node
  ${self} remove web-1     # graceful leave (--kill: kill -9 it)
  ${self} status
  ${self} down`);
}

/** Starts a web node; `wait` (default unless --no-wait): until the load balancer sends it traffic. */
async function add(name, { wait = !opts['no-wait'] } = {}) {
  await mkdir(nodesDir, { recursive: true });
  await mkdir(logsDir, { recursive: true });
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
  const lb = await readJson(lbFile);
  const node = { name, appPort: await freePort(), serfBind: await freePort(), serfRpc: await freePort(), tags };
  const peers = [...(lb ? [lb.serfBind] : []), ...nodes.map((n) => n.serfBind)].map((port) => `${HOST}:${port}`);
  const started = Date.now();
  node.pid = startDetached(
    join(HERE, 'web-node.mjs'),
    {
      LAB_NODE_NAME: name,
      LAB_ADDR: HOST,
      LAB_APP_PORT: String(node.appPort),
      LAB_SERF_BIND: String(node.serfBind),
      LAB_SERF_RPC: `${HOST}:${node.serfRpc}`,
      LAB_SERF_JOIN: peers.join(','),
      LAB_SERF_TAGS: JSON.stringify(tags),
    },
    join(logsDir, `${fileName(name)}.log`),
  );
  await writeJson(nodeFile(name), node);
  await waitFor(async () => {
    if (!groupAlive(node.pid)) throw new Error(`node ${name} exited; see ${join(logsDir, `${fileName(name)}.log`)}`);
    return (await httpGet(HOST, node.appPort, '/health').catch(() => undefined))?.status === 200;
  }, `${name} to answer on ${HOST}:${node.appPort}`, { timeout: 15_000 });
  console.log(`${name}: app on ${HOST}:${node.appPort}, Serf on ${HOST}:${node.serfBind} (pid ${node.pid})`);
  if (!wait || !lb) return;
  await waitFor(async () => {
    const res = await httpGet(HOST, lb.httpPort).catch(() => undefined);
    return res && servedBy(res.headers) === name;
  }, `HAProxy to send traffic to ${name} (is it refused? see ${join(logsDir, 'lb.log')})`, { timeout: 20_000, interval: 10 });
  console.log(`${name}: served through the load balancer ${((Date.now() - started) / 1000).toFixed(1)} s after its start`);
}

async function remove(name) {
  if (name === undefined) throw new Error('which node? (see "status")');
  const node = await readJson(nodeFile(name));
  if (!node) throw new Error(`no node named ${JSON.stringify(name)} in ${dir}`);
  if (opts.kill) {
    // A crash: the agent gets no chance to leave. HAProxy's health checks take the server out within ~2 s;
    // Serf declares the node failed after a few seconds of probes (about 6 s with a few live peers to confirm,
    // longer with fewer), which is when rosterd removes it from haproxy.cfg. A failed node stays in the list and
    // is retried for a day; force-leave from the load balancer's agent then makes it "left" at once.
    const killed = Date.now();
    signalGroup(node.pid, 'SIGKILL');
    console.log(`${name}: killed (kill -9 of the agent and the app)`);
    const lb = await readJson(lbFile);
    const witness = lb ? lb.serfRpc : (await readNodes()).find((n) => n.name !== name)?.serfRpc;
    if (witness !== undefined) {
      const rpc = `${HOST}:${witness}`;
      await waitFor(async () => (await serfMembers(rpc)).find((m) => m.name === name)?.status !== 'alive', `Serf to notice that ${name} is gone`, {
        timeout: 60_000,
        interval: 100,
      });
      console.log(`${name}: Serf declared it failed after ${((Date.now() - killed) / 1000).toFixed(1)} s`);
      await promisify(execFile)('serf', ['force-leave', `-rpc-addr=${rpc}`, name]);
      console.log(`${name}: forced out of the cluster (force-leave)`);
    }
  } else {
    // The supervisor makes the agent leave (SIGINT), waits for it, then stops the app.
    signalGroup(node.pid, 'SIGTERM', false);
    console.log(`${name}: leaving...`);
  }
  await waitFor(() => !groupAlive(node.pid), `${name}'s processes to exit`, { timeout: 30_000, interval: 50 });
  await rm(nodeFile(name), { force: true });
  console.log(`${name}: gone`);
}

async function status() {
  const lb = await readJson(lbFile);
  const nodes = await readNodes();
  const report = { dir, lb: undefined, nodes: [] };
  let members = [];
  let servers = [];
  if (lb) {
    const masterSocket = join(dir, 'master.sock');
    report.lb = { ...lb, running: groupAlive(lb.pid), masterSocket, rosterdPid: readPid('rosterd'), haproxyPid: readPid('haproxy') };
    members = await serfMembers(`${HOST}:${lb.serfRpc}`).catch(() => []);
    const proc = await masterCli(masterSocket, 'show proc').catch(() => '');
    const master = /^\d+\s+master\s+(\d+)\s+\[failed:\s*(\d+)\]/m.exec(proc);
    if (master) {
      report.lb.reloads = Number(master[1]);
      report.lb.failedReloads = Number(master[2]);
      report.lb.workers = (proc.split('# old workers')[0]?.match(/^\d+\s+worker\b/gm) ?? []).length;
      report.lb.oldWorkers = (proc.split('# old workers')[1]?.split('# programs')[0]?.match(/^\d+\s+worker\b/gm) ?? []).length;
    }
    servers = parseCsv(await masterCli(masterSocket, '@1 show stat web 4 -1').catch(() => ''));
  }
  const names = new Set([...nodes.map((n) => n.name), ...members.filter((m) => m.tags?.role === 'web').map((m) => m.name)]);
  for (const name of [...names].sort()) {
    const node = nodes.find((n) => n.name === name);
    const member = members.find((m) => m.name === name);
    const server = node && servers.find((s) => s.addr === `${HOST}:${node.appPort}`);
    report.nodes.push({
      name,
      pid: node?.pid,
      running: node ? groupAlive(node.pid) : false,
      appPort: node?.appPort,
      tags: member?.tags ?? node?.tags,
      serf: member?.status,
      haproxy: server?.status,
      server: server?.svname,
    });
  }
  if (opts.json) {
    console.log(JSON.stringify(report, null, 2));
    return;
  }
  if (!lb) console.log(`no load balancer in ${dir}`);
  else {
    const l = report.lb;
    console.log(`lab in ${dir}
  frontend       http://${HOST}:${l.httpPort}/
  stats page     http://${HOST}:${l.statsPort}/
  load balancer  pid ${l.pid} ${l.running ? 'running' : 'NOT RUNNING'}; rosterd pid ${l.rosterdPid ?? '-'}, HAProxy master pid ${l.haproxyPid ?? '-'}
  HAProxy        ${l.reloads === undefined ? 'not answering on its master socket' : `${l.reloads} reload(s), ${l.failedReloads} failed in a row; ${l.workers} worker(s), ${l.oldWorkers} old worker(s) still draining`}
`);
  }
  const rows = [['NODE', 'PROCESSES', 'APP', 'SERF (from the LB)', 'HAPROXY SERVER']];
  for (const n of report.nodes) {
    rows.push([n.name, n.pid === undefined ? '-' : `pid ${n.pid} ${n.running ? 'up' : 'gone'}`, n.appPort ? `${HOST}:${n.appPort}` : '-', n.serf ?? '-', n.server ? `${n.server} ${n.haproxy}` : '-']);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  for (const row of rows) console.log(`  ${row.map((c, i) => String(c).padEnd(widths[i])).join('  ')}`);
}

async function down() {
  const lb = await readJson(lbFile);
  const nodes = await readNodes();
  const groups = [...(lb ? [{ name: 'load balancer', pid: lb.pid }] : []), ...nodes.map((n) => ({ name: n.name, pid: n.pid }))];
  // Every supervisor stops its programs in order (HAProxy finishes its requests, Serf agents leave).
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
  await rm(lbFile, { force: true });
  await rm(nodesDir, { recursive: true, force: true });
  console.log(groups.length === 0 ? `nothing running in ${dir}` : `stopped ${groups.map((g) => g.name).join(', ')}; logs kept in ${logsDir}/`);
}

// --- helpers ---

async function checkPrerequisites() {
  const missing = [];
  const version = await promisify(execFile)('haproxy', ['-v']).then((r) => r.stdout, () => undefined);
  if (version === undefined) missing.push('haproxy (2.6 or later)');
  else {
    const [major, minor] = (/version (\d+)\.(\d+)/.exec(version) ?? []).slice(1).map(Number);
    if (!(major > 2 || (major === 2 && minor >= 6))) missing.push(`haproxy 2.6 or later (found ${version.split('\n')[0]})`);
  }
  if (!(await promisify(execFile)('serf', ['version']).then(() => true, () => false))) missing.push('serf');
  let rosterd = false;
  try {
    rosterd = existsSync(fileURLToPath(import.meta.resolve('rosterd')));
  } catch {
    // Not resolvable: not built, not installed.
  }
  if (missing.length > 0 || !rosterd) {
    const lines = [];
    if (missing.length > 0) {
      lines.push(`missing: ${missing.join(', ')}`);
      lines.push('  Debian, Ubuntu:  sudo apt-get install haproxy serf');
      lines.push('  elsewhere:       HAProxy from your distribution or haproxy.org; Serf is a single binary from its releases');
    }
    if (!rosterd) lines.push('rosterd is not built: run "npm ci" (or "npm run build") at the top of the repository');
    throw new Error(lines.join('\n'));
  }
}

/** Starts a supervisor script detached (a process group of its own), output to a log file; returns its pid. */
function startDetached(script, env, logFile) {
  const log = openSync(logFile, 'a');
  const child = spawn(process.execPath, [script], { detached: true, stdio: ['ignore', log, log], env: { ...process.env, ...env } });
  child.unref();
  return child.pid;
}

/** Sends a signal to a whole process group (or only to its leader, the supervisor, with `group: false`). */
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

/** A TCP port on 127.0.0.1 that was free a moment ago (the kernel picked it). */
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

function readPid(program) {
  try {
    return Number(readFileSync(join(dir, `${program}.pid`), 'utf8'));
  } catch {
    return undefined;
  }
}

/** `show stat` CSV → one object per line, keyed by the header's column names. */
function parseCsv(text) {
  const [header, ...lines] = text.split('\n').filter((l) => l.trim() !== '');
  if (!header?.startsWith('# ')) return [];
  const columns = header.slice(2).split(',');
  return lines.map((line) => Object.fromEntries(line.split(',').map((v, i) => [columns[i], v])));
}

const fileName = (name) => encodeURIComponent(name);
const nodeFile = (name) => join(nodesDir, `${fileName(name)}.json`);
const scriptPath = () => {
  const rel = fileURLToPath(import.meta.url).replace(`${process.cwd()}/`, '');
  return rel.includes(' ') ? JSON.stringify(rel) : rel;
};

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
