#!/usr/bin/env node
/**
 * The nginx + DNS lab on one machine: nginx in front of app nodes whose membership comes from DNS SRV records
 * (served by dnsmasq), with rosterd keeping nginx's upstream block true:
 *
 *   node examples/nginx-dns/lab.mjs up [--nodes 3]
 *   node examples/nginx-dns/lab.mjs add [NAME] [--priority 10] [--weight 0]
 *   node examples/nginx-dns/lab.mjs remove NAME [--kill]
 *   node examples/nginx-dns/lab.mjs status [--json]
 *   node examples/nginx-dns/lab.mjs down
 *
 * Each node is an app process (the HAProxy lab's app.mjs, which answers with `X-Served-By: <name>`) and one
 * SRV record `_http._tcp.app.nginx-dns.test → <name>.nginx-dns.test:<port>`. Adding or removing a node
 * rewrites dnsmasq's records and restarts it (dnsmasq reads SRV records only at start); rosterd polls the SRV
 * name, renders upstream.conf, has nginx test the whole config with the candidate, installs it and reloads
 * nginx. Every process runs detached in a process group of its own, on 127.0.0.1, on ports the kernel picks;
 * the run directory (--dir, default ./run beside this file) holds their pids, logs, dnsmasq's records and
 * nginx's prefix (config, pid file, logs, temporary files).
 */
import { execFile, spawn } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import { existsSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, open, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { httpGet, servedBy, waitFor } from '../haproxy-serf/lib.mjs';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const APP = fileURLToPath(new URL('../haproxy-serf/app.mjs', import.meta.url));
const HOST = '127.0.0.1';
const DOMAIN = 'nginx-dns.test';
const SRV_NAME = `_http._tcp.app.${DOMAIN}`;
const DNSMASQ = process.env.DNSMASQ_BIN ?? (existsSync('/usr/sbin/dnsmasq') ? '/usr/sbin/dnsmasq' : 'dnsmasq');
const USAGE = `usage: node lab.mjs <command> [options]

  up [--nodes N] [--http-port P] [--config FILE]
                         start N app nodes (default 3) and their SRV records, then nginx and rosterd
  add [NAME] [--priority N] [--weight N] [--no-wait]
                         start an app node (default name web-<n>), publish its SRV record (priority
                         default 10: a higher one is a backup server), and wait until nginx sends it traffic
  remove NAME [--kill]   graceful: withdraw the record, wait until nginx no longer lists the node, stop the app;
                         --kill: kill -9 the app first, then withdraw the record
  status [--json]        processes, SRV records, nginx's upstream servers and connections
  down                   stop everything the lab started

  --dir DIR              the run directory (default: run/ beside this script, or $LAB_RUN_DIR)`;

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    dir: { type: 'string', default: process.env.LAB_RUN_DIR ?? join(HERE, 'run') },
    nodes: { type: 'string', default: '3' },
    'http-port': { type: 'string' },
    config: { type: 'string' },
    priority: { type: 'string', default: '10' },
    weight: { type: 'string', default: '0' },
    'no-wait': { type: 'boolean', default: false },
    kill: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
const dir = resolve(opts.dir);
const labFile = join(dir, 'lab.json');
const nodesDir = join(dir, 'nodes');
const logsDir = join(dir, 'logs');
const prefix = join(dir, 'nginx');
const nginxConf = join(prefix, 'nginx.conf');
const upstreamConf = join(prefix, 'upstream.conf');
const nginxFlags = ['-p', prefix, '-c', nginxConf, '-e', join(prefix, 'logs', 'error.log')];
/** The programs `up` starts, in order; `down` stops them in reverse. */
const PROGRAMS = ['dnsmasq', 'nginx', 'rosterd'];

// --- commands ---

async function up() {
  await checkPrerequisites();
  if ((await runningPrograms()).length > 0) throw new Error(`already up in ${dir} (run "down" first, or use another --dir)`);
  await mkdir(logsDir, { recursive: true });
  const lab = {
    httpPort: Number(opts['http-port'] ?? (await freePort())),
    dnsPort: await freePort(),
    config: resolve(opts.config ?? join(HERE, 'renderer.config.ts')),
  };
  await writeJson(labFile, lab);

  // App nodes first: their records are in DNS before nginx's first config is rendered.
  const count = Number(opts.nodes);
  for (let i = 1; i <= count; i++) await add(`web-${i}`, { publish: false });
  await restartDns(lab);

  await mkdir(join(prefix, 'logs'), { recursive: true });
  await mkdir(join(prefix, 'temp'), { recursive: true });
  const main = (await readFile(join(HERE, 'nginx.conf'), 'utf8')).replaceAll('@LISTEN@', `${HOST}:${lab.httpPort}`);
  await writeFile(nginxConf, main);
  // The first upstream.conf, checked like every later one, before nginx exists to be reloaded.
  const first = await rosterd(lab, ['render', '--once', '--no-reload', '-c', lab.config]);
  if (first.code !== 0) throw new Error(`the first render failed:\n${first.output}`);
  await startProgram('nginx', 'nginx', nginxFlags);
  await waitFor(() => httpGet(HOST, lab.httpPort, '/nginx-status').then((r) => r.status === 200), `nginx to answer on ${HOST}:${lab.httpPort}`, {
    timeout: 15_000,
  });
  await startProgram('rosterd', process.execPath, [rosterdBin(), 'run', '-c', lab.config], labEnv(lab));

  const nodes = await readNodes();
  const missing = new Set(nodes.map((n) => n.name));
  await waitFor(async () => {
    const res = await httpGet(HOST, lab.httpPort).catch(() => undefined);
    const name = res && servedBy(res.headers);
    if (name) missing.delete(name);
    return missing.size === 0;
  }, `every node to be served through ${HOST}:${lab.httpPort}`, { timeout: 30_000, interval: 20 });

  const self = `node ${scriptPath()}${dir === resolve(HERE, 'run') ? '' : ` --dir ${dir}`}`;
  console.log(`
The lab is up in ${dir}:
  frontend      http://${HOST}:${lab.httpPort}/    (try: curl -si http://${HOST}:${lab.httpPort}/ | grep -i served)
  SRV records   dig @${HOST} -p ${lab.dnsPort} ${SRV_NAME} SRV
  upstream.conf ${upstreamConf}
  logs          ${logsDir}/ (nginx's own: ${join(prefix, 'logs')}/)

  ${self} add              # one more node
  ${self} remove web-1     # withdraw its record, then stop it (--kill: kill -9 it first)
  ${self} status
  ${self} down`);
}

/**
 * Starts an app node and, if the lab is up, publishes its record (`up` publishes its first nodes together)
 * and waits until nginx sends it traffic (unless --no-wait).
 */
async function add(name, { publish = true } = {}) {
  await mkdir(nodesDir, { recursive: true });
  await mkdir(logsDir, { recursive: true });
  const nodes = await readNodes();
  name ??= nextName(nodes);
  // The name becomes a DNS label: the target of the node's SRV record.
  if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(name)) throw new Error(`${JSON.stringify(name)}: a node name is a DNS label (a-z, 0-9 and "-")`);
  if (nodes.some((n) => n.name === name)) throw new Error(`a node named ${name} is already running`);
  const priority = Number(opts.priority);
  const weight = Number(opts.weight);
  for (const [flag, value] of [['priority', priority], ['weight', weight]]) {
    if (!Number.isInteger(value) || value < 0 || value > 65535) throw new Error(`--${flag} ${value}: expected an integer from 0 to 65535`);
  }
  const node = { name, port: await freePort(), priority, weight, inDns: true };
  const started = Date.now();
  node.pid = startDetached(process.execPath, [APP, '--name', name, '--port', String(node.port), '--host', HOST], join(logsDir, `${name}.log`));
  await writeJson(nodeFile(name), node);
  await waitFor(async () => {
    if (!alive(node.pid)) throw new Error(`node ${name} exited; see ${join(logsDir, `${name}.log`)}`);
    return (await httpGet(HOST, node.port, '/health').catch(() => undefined))?.status === 200;
  }, `${name} to answer on ${HOST}:${node.port}`, { timeout: 15_000 });
  console.log(`${name}: app on ${HOST}:${node.port} (pid ${node.pid}), record ${SRV_NAME} → ${target(name)}:${node.port} priority ${priority} weight ${weight}`);
  const lab = await readJson(labFile);
  if (!lab || !publish) return;
  await restartDns(lab);
  if (opts['no-wait']) return;
  if (priority > Math.min(...(await readNodes()).filter((n) => n.inDns).map((n) => n.priority))) {
    console.log(`${name}: a backup server (priority ${priority}): nginx sends it traffic only while every primary one is unavailable`);
    await waitFor(async () => (await upstreamPorts()).includes(node.port), `rosterd to add ${name} to upstream.conf (see ${join(logsDir, 'rosterd.log')})`, {
      timeout: 20_000,
      interval: 50,
    });
    return;
  }
  await waitFor(async () => {
    const res = await httpGet(HOST, lab.httpPort).catch(() => undefined);
    return res && servedBy(res.headers) === name;
  }, `nginx to send traffic to ${name} (is the candidate refused? see ${join(logsDir, 'rosterd.log')})`, { timeout: 20_000, interval: 10 });
  console.log(`${name}: served through nginx ${((Date.now() - started) / 1000).toFixed(1)} s after its start`);
}

async function remove(name) {
  if (name === undefined) throw new Error('which node? (see "status")');
  const node = await readJson(nodeFile(name));
  if (!node) throw new Error(`no node named ${JSON.stringify(name)} in ${dir}`);
  const lab = await readJson(labFile);
  if (opts.kill) {
    // A crash: nginx finds out on the next request it sends there (connection refused) and retries it on
    // another server (proxy_next_upstream); the record goes only afterwards.
    signalGroup(node.pid, 'SIGKILL');
    console.log(`${name}: killed (kill -9)`);
  }
  await writeJson(nodeFile(name), { ...node, inDns: false });
  if (lab) {
    await restartDns(lab);
    const withdrawn = Date.now();
    await waitFor(async () => !(await upstreamPorts()).includes(node.port), `rosterd to drop ${name} from upstream.conf`, { timeout: 20_000, interval: 50 });
    console.log(`${name}: record withdrawn; out of upstream.conf ${((Date.now() - withdrawn) / 1000).toFixed(1)} s later`);
  }
  if (!opts.kill) {
    // The app serves until no request has come for 3 s: old nginx workers finish the requests they have.
    signalGroup(node.pid, 'SIGTERM', false);
    console.log(`${name}: stopping...`);
  }
  await waitFor(() => !alive(node.pid), `${name} to exit`, { timeout: 30_000, interval: 50 });
  await rm(nodeFile(name), { force: true });
  console.log(`${name}: gone`);
}

async function status() {
  const lab = await readJson(labFile);
  const nodes = await readNodes();
  const report = { dir, lab: lab ?? null, programs: {}, records: [], upstream: [], nginx: undefined, nodes: [] };
  for (const program of PROGRAMS) {
    const pid = (await readJson(programFile(program)))?.pid;
    report.programs[program] = { pid, running: alive(pid) };
  }
  if (lab) {
    report.records = await srvRecords(lab).catch((err) => [{ error: err.message }]);
    report.upstream = await upstreamPorts();
    const stub = await httpGet(HOST, lab.httpPort, '/nginx-status').catch(() => undefined);
    const active = stub && /Active connections:\s*(\d+)/.exec(stub.body);
    report.nginx = active ? { activeConnections: Number(active[1]), workers: nginxWorkers(report.programs.nginx.pid) } : undefined;
  }
  for (const node of nodes) {
    report.nodes.push({ ...node, running: alive(node.pid), inUpstream: report.upstream.includes(node.port) });
  }
  if (opts.json) {
    console.log(JSON.stringify(report, null, 2));
    return;
  }
  if (!lab) {
    console.log(`no lab in ${dir}`);
    return;
  }
  console.log(`lab in ${dir}
  frontend   http://${HOST}:${lab.httpPort}/
  DNS        ${HOST}:${lab.dnsPort} (${SRV_NAME}: ${report.records.length} record(s))
  programs   ${PROGRAMS.map((p) => `${p} ${report.programs[p].pid ?? '-'} ${report.programs[p].running ? 'up' : 'DOWN'}`).join(', ')}
  nginx      ${report.nginx ? `${report.nginx.workers} worker(s), ${report.nginx.activeConnections} active connection(s)` : 'not answering'}
`);
  const rows = [['NODE', 'PROCESS', 'APP', 'SRV RECORD', 'UPSTREAM']];
  for (const n of report.nodes) {
    rows.push([n.name, `pid ${n.pid} ${n.running ? 'up' : 'gone'}`, `${HOST}:${n.port}`, n.inDns ? `priority ${n.priority} weight ${n.weight}` : 'withdrawn', n.inUpstream ? 'listed' : '-']);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  for (const row of rows) console.log(`  ${row.map((c, i) => String(c).padEnd(widths[i])).join('  ')}`);
}

async function down() {
  const stopped = [];
  // rosterd first (no reload during the stop), nginx with SIGQUIT (it finishes its requests), dnsmasq, the apps.
  for (const program of [...PROGRAMS].reverse()) {
    const pid = (await readJson(programFile(program)))?.pid;
    if (await stop(program, pid, program === 'nginx' ? 'SIGQUIT' : 'SIGTERM')) stopped.push(program);
    await rm(programFile(program), { force: true });
  }
  const nodes = await readNodes();
  await Promise.all(nodes.map((n) => stop(n.name, n.pid, 'SIGTERM')));
  stopped.push(...nodes.map((n) => n.name));
  await rm(nodesDir, { recursive: true, force: true });
  await rm(join(dir, 'dns', 'lock'), { force: true });
  await rm(labFile, { force: true });
  console.log(stopped.length === 0 ? `nothing running in ${dir}` : `stopped ${stopped.join(', ')}; logs kept in ${logsDir}/`);
}

// --- DNS ---

/**
 * Writes dnsmasq's records from the nodes that are in DNS, and (re)starts it on the lab's port. Two commands
 * run at once (two `add`s) take turns: each writes the records of every node, so the last one is complete.
 */
async function restartDns(lab) {
  await mkdir(join(dir, 'dns'), { recursive: true });
  const lock = join(dir, 'dns', 'lock');
  await waitFor(() => open(lock, 'wx').then((handle) => handle.close().then(() => true), () => false), `the DNS lock ${lock} (left by a command that died? remove it)`, {
    timeout: 30_000,
    interval: 20,
  });
  try {
    await writeRecordsAndStart(lab);
  } finally {
    await rm(lock, { force: true });
  }
}

async function writeRecordsAndStart(lab) {
  const nodes = (await readNodes()).filter((n) => n.inDns);
  const config = [
    `# ${SRV_NAME}: written by lab.mjs from ${nodesDir}/`,
    `port=${lab.dnsPort}`,
    `listen-address=${HOST}`,
    'bind-interfaces',
    'no-resolv',
    'no-hosts',
    // Answers for the lab's domain only: an unknown name under it is NXDOMAIN at once.
    `local=/${DOMAIN}/`,
    // No pid file, logs on stderr, no change of user: nothing outside the run directory.
    'pid-file=',
    'log-facility=-',
    ...(process.getuid?.() === 0 ? ['user=root'] : []),
    ...nodes.flatMap((n) => [`srv-host=${SRV_NAME},${target(n.name)},${n.port},${n.priority},${n.weight}`, `host-record=${target(n.name)},${HOST}`]),
    '',
  ].join('\n');
  const file = join(dir, 'dns', 'dnsmasq.conf');
  await writeFile(file, config);
  const pid = (await readJson(programFile('dnsmasq')))?.pid;
  await stop('dnsmasq', pid, 'SIGTERM');
  await startProgram('dnsmasq', DNSMASQ, ['--keep-in-foreground', `--conf-file=${file}`]);
  await waitFor(async () => (await srvRecords(lab)).length === nodes.length, `dnsmasq to answer with ${nodes.length} record(s)`, { timeout: 10_000, interval: 20 });
}

/** The SRV records dnsmasq serves now (none: NXDOMAIN). */
async function srvRecords(lab) {
  const resolver = new Resolver({ timeout: 500, tries: 1 });
  resolver.setServers([`${HOST}:${lab.dnsPort}`]);
  try {
    return await resolver.resolveSrv(SRV_NAME);
  } catch (err) {
    if (err.code === 'ENOTFOUND' || err.code === 'ENODATA') return [];
    throw err;
  }
}

const target = (name) => `${name}.${DOMAIN}`;

// --- nginx and rosterd ---

/** The ports of the servers in the installed upstream.conf. */
async function upstreamPorts() {
  const text = await readFile(upstreamConf, 'utf8').catch(() => '');
  return [...text.matchAll(/^\s*server \S+:(\d+)[ ;]/gm)].filter((m) => !/ down;/.test(m[0])).map((m) => Number(m[1]));
}

/** nginx's worker processes: the children of its master. */
function nginxWorkers(master) {
  try {
    return readFileSync(`/proc/${master}/task/${master}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).length;
  } catch {
    return undefined;
  }
}

/** The environment renderer.config.ts reads. */
const labEnv = (lab) => ({ LAB_DIR: dir, LAB_DNS_SERVER: `${HOST}:${lab.dnsPort}`, LAB_DNS_NAME: SRV_NAME });

/** The installed package's CLI: dist/cli/bin.js next to the library entry point. */
const rosterdBin = () => fileURLToPath(new URL('cli/bin.js', import.meta.resolve('rosterd')));

/** Runs the rosterd CLI to the end: its exit code and output. */
function rosterd(lab, args) {
  return new Promise((resolveRun) => {
    execFile(process.execPath, [rosterdBin(), ...args], { env: { ...process.env, ...labEnv(lab) }, timeout: 60_000 }, (err, stdout, stderr) => {
      resolveRun({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, output: `${stdout}${stderr}` });
    });
  });
}

// --- processes ---

async function checkPrerequisites() {
  const missing = [];
  if (!(await promisify(execFile)('nginx', ['-v']).then(() => true, () => false))) missing.push('nginx');
  if (!(await promisify(execFile)(DNSMASQ, ['--version']).then(() => true, () => false))) missing.push('dnsmasq');
  let built = false;
  try {
    built = existsSync(rosterdBin());
  } catch {
    // Not resolvable: not built, not installed.
  }
  if (missing.length > 0 || !built) {
    const lines = [];
    if (missing.length > 0) lines.push(`missing: ${missing.join(', ')}`, '  Debian, Ubuntu:  sudo apt-get install nginx dnsmasq-base');
    if (!built) lines.push('rosterd is not built: run "npm ci" (or "npm run build") at the top of the repository');
    throw new Error(lines.join('\n'));
  }
}

async function startProgram(program, command, args, env = {}) {
  const pid = startDetached(command, args, join(logsDir, `${program}.log`), env);
  await writeJson(programFile(program), { pid, command: [command, ...args] });
  return pid;
}

/** Starts a program detached (a process group of its own), output to a log file; returns its pid. */
function startDetached(command, args, logFile, env = {}) {
  const log = openSync(logFile, 'a');
  const child = spawn(command, args, { detached: true, stdio: ['ignore', log, log], env: { ...process.env, ...env } });
  child.unref();
  return child.pid;
}

/** Asks a program to stop, waits for its whole group, kills what is left after 30 s. True if it was running. */
async function stop(what, pid, signal) {
  if (!alive(pid)) return false;
  signalGroup(pid, signal, false);
  try {
    await waitFor(() => !groupAlive(pid), `${what} to stop`, { timeout: 30_000, interval: 20 });
  } catch {
    signalGroup(pid, 'SIGKILL');
    console.log(`${what}: killed (did not stop within 30 s)`);
  }
  return true;
}

/** Sends a signal to a whole process group (or only to its leader with `group: false`). */
function signalGroup(pid, signal, group = true) {
  try {
    process.kill(group ? -pid : pid, signal);
  } catch {
    // Already gone.
  }
}

/** True while the process runs (a zombie waiting to be reaped does not count). */
function alive(pid) {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  return processState(pid) !== 'Z';
}

/** True while any process of the group runs (nginx's workers outlive its master for a moment). */
function groupAlive(pgid) {
  try {
    process.kill(-pgid, 0);
  } catch {
    return false;
  }
  if (!existsSync('/proc/self/stat')) return true;
  return readdirSyncSafe('/proc').some((entry) => /^\d+$/.test(entry) && processGroup(entry) === pgid && processState(entry) !== 'Z');
}

/** From /proc/<pid>/stat: `pid (comm) state ppid pgrp ...`, where comm may hold spaces and parentheses. */
function statFields(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return [];
  }
}
const processState = (pid) => statFields(pid)[0];
const processGroup = (pid) => Number(statFields(pid)[2]);

function readdirSyncSafe(path) {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
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

// --- state ---

async function readNodes() {
  const files = await readdir(nodesDir).catch(() => []);
  const nodes = await Promise.all(files.filter((f) => f.endsWith('.json')).map((f) => readJson(join(nodesDir, f))));
  return nodes.filter((n) => n && alive(n.pid)).sort((a, b) => a.name.localeCompare(b.name));
}

async function runningPrograms() {
  const pids = await Promise.all(PROGRAMS.map(async (p) => (await readJson(programFile(p)))?.pid));
  return pids.filter((pid) => alive(pid));
}

function nextName(nodes) {
  const taken = new Set(nodes.map((n) => n.name));
  let i = 1;
  while (taken.has(`web-${i}`)) i++;
  return `web-${i}`;
}

const nodeFile = (name) => join(nodesDir, `${name}.json`);
const programFile = (program) => join(dir, `${program}.json`);
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
