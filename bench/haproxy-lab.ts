import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { openSync } from 'node:fs';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { masterCliCommand } from '../src/haproxy/master-cli.js';
import { parseShowProc } from '../src/haproxy/show-proc.js';
import { SerfClient } from '../src/serf/client.js';
import { BIN } from '../test/helpers/cli.js';
import { groupMembers, httpGet } from '../test/helpers/haproxy.js';
import { createLab, LAB_DIR } from '../test/helpers/lab.js';
import type { Served } from '../test/helpers/load.js';
import { freePort } from '../test/helpers/ports.js';
import { tempDir } from '../test/helpers/tmp.js';
import { waitFor } from '../test/helpers/wait.js';
import { cpuTicks, TICKS_PER_SECOND } from './proc.js';
import { formatSection, percentile, type BenchSection } from './types.js';

/**
 * The HAProxy + Serf lab (examples/haproxy-serf), three load balancers in one Serf cluster, measured side by
 * side in the same run, under the same changes:
 *
 * - rosterd in runtime mode (the lab's default): server changes through HAProxy's runtime API;
 * - rosterd in reload mode (the same config with `runtime: false`): a confirmed master-worker reload per change;
 * - the lab's old scripts: a Serf event handler that renders haproxy.cfg and starts a new HAProxy with `-sf`.
 *
 * 1. join → first response served by the new node, and graceful leave → last response from it, measured from
 *    the moment the node's Serf agent is started (or sent SIGINT), so Serf's own delays are included;
 * 2. processes forked and CPU used per membership event;
 * 3. HAProxy processes alive during and after 50 changes while clients keep long-lived responses open.
 */

const SAMPLES = 12;
const CHANGES = 50;
const CHANGE_EVERY_MS = 600;
/** Long-lived responses: one opened every this many ms on each load balancer, each lasting STREAM_SECONDS. */
const STREAM_EVERY_MS = 400;
const STREAM_SECONDS = 8;
const execFileAsync = promisify(execFile);
const now = (): number => performance.timeOrigin + performance.now();

interface Target {
  name: string;
  port: number;
  /** rosterd's pid and its spawn log (absent for the lab scripts). */
  rosterd?: { pid: number; spawnLog: string; log: () => Promise<string> };
  /** The master CLI (absent for the lab scripts, which run standalone HAProxies). */
  masterSocket?: string;
  /** The lab scripts: handler runs so far, processes per run, and the HAProxy processes alive. */
  scripts?: Baseline;
}

export async function run(): Promise<BenchSection[]> {
  const { path: dir, cleanup } = await tempDir('rosterd-bench-lab-');
  const lab = createLab(join(dir, 'run'));
  const preload = join(dir, 'count-spawns.mjs');
  await writeFile(preload, countSpawnsModule());
  const nodeOptions = `--import=${pathToFileURL(preload).href}`;
  const stops: (() => Promise<unknown>)[] = [];
  try {
    const runtimeSpawns = join(dir, 'spawns-runtime.jsonl');
    // BENCH_CPU_PROF=<dir>: the runtime-mode rosterd writes a V8 CPU profile there when it exits.
    // BENCH_GC_LOG=<file>: it appends one JSON line per garbage collection there (when, how long, which kind).
    const profile = {
      ...(process.env.BENCH_CPU_PROF ? { ROSTERD_CPU_PROF: process.env.BENCH_CPU_PROF } : {}),
      ...(process.env.BENCH_GC_LOG ? { ROSTERD_GC_LOG: process.env.BENCH_GC_LOG } : {}),
    };
    await lab.run(['up', '--nodes', '2'], { env: { NODE_OPTIONS: nodeOptions, ROSTERD_SPAWN_LOG: runtimeSpawns, ...profile } });
    stops.push(async () => {
      await lab.run(['down'], { allowFailure: true }).catch(() => undefined);
      lab.killAll();
    });
    const lb = (await lab.status()).lb!;
    const reloadSpawns = join(dir, 'spawns-reload.jsonl');
    const reloadLb = await startReloadModeLb(join(dir, 'reload'), lb.serfBind, { NODE_OPTIONS: nodeOptions, ROSTERD_SPAWN_LOG: reloadSpawns });
    stops.push(reloadLb.stop);
    const scripts = await startBaseline(join(dir, 'baseline'), lb.serfBind, lb.serfRpc);
    stops.push(scripts.stop);
    const targets: Target[] = [
      { name: 'rosterd, runtime mode (the lab)', port: lb.httpPort, rosterd: { pid: lb.rosterdPid!, spawnLog: runtimeSpawns, log: lab.log }, masterSocket: lb.masterSocket },
      { name: 'rosterd, reload mode', port: reloadLb.httpPort, rosterd: { pid: reloadLb.rosterdPid, spawnLog: reloadSpawns, log: reloadLb.log }, masterSocket: reloadLb.masterSocket },
      { name: 'lab scripts, new HAProxy with -sf', port: scripts.httpPort, scripts },
    ];
    const nodes = new NodeFactory(lb.serfBind);
    stops.push(() => nodes.killAll());
    const latency = await measureJoinLeave(targets, nodes, `127.0.0.1:${lb.serfRpc}`);
    const alive = await measureProcessesAlive(targets, nodes);
    return [...latency, alive];
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    await cleanup();
  }
}

// --- nodes ---

interface BenchNode {
  name: string;
  /** When its Serf agent was started. */
  startedAt: number;
  /** SIGINT to the agent (a graceful leave); resolves with when it was sent. The app stops after the agent. */
  leave(): Promise<number>;
}

/** Web nodes as the lab's web-node.mjs runs them (app first, then its Serf agent), started here to time the agent. */
class NodeFactory {
  readonly #join: number;
  readonly #children = new Set<ChildProcess>();

  constructor(joinPort: number) {
    this.#join = joinPort;
  }

  async start(name: string): Promise<BenchNode> {
    const [appPort, bind, rpc] = [await freePort(), await freePort(), await freePort()];
    const app = this.#spawn(process.execPath, [join(LAB_DIR, 'app.mjs'), '--name', name, '--port', String(appPort), '--host', '127.0.0.1']);
    await waitFor(async () => (await httpGet(appPort, '/health')).status === 200, `${name}'s app`, { timeout: 10_000, interval: 10 });
    const startedAt = now();
    const agent = this.#spawn('serf', ['agent', `-node=${name}`, `-bind=127.0.0.1:${bind}`, `-rpc-addr=127.0.0.1:${rpc}`, '-tag', 'role=web', '-tag', `port=${appPort}`, `-join=127.0.0.1:${this.#join}`]);
    return {
      name,
      startedAt,
      leave: async () => {
        const at = now();
        const exited = new Promise((resolve) => agent.once('exit', resolve));
        agent.kill('SIGINT');
        // As web-node.mjs does: the app stops once the agent has left; it serves until requests stop coming.
        void exited.then(() => app.kill('SIGTERM'));
        return at;
      },
    };
  }

  async killAll(): Promise<void> {
    for (const child of this.#children) child.kill('SIGKILL');
  }

  #spawn(command: string, args: string[]): ChildProcess {
    const child = spawn(command, args, { stdio: 'ignore' });
    this.#children.add(child);
    child.once('exit', () => this.#children.delete(child));
    return child;
  }
}

// --- 1 and 2: join/leave latency, cost per event ---

interface Probe {
  served: Map<string, Served>;
  stop(): Promise<{ requests: number; failed: number }>;
}

/** GETs on fresh connections, back to back from `loops` loops, recording which node served each and when. */
function startProbe(port: number, loops: number): Probe {
  const served = new Map<string, Served>();
  let running = true;
  let requests = 0;
  let failed = 0;
  const loop = async (): Promise<void> => {
    while (running) {
      try {
        const res = await httpGet(port);
        const at = now();
        requests++;
        if (res.status !== 200) failed++;
        const name = decodeURIComponent(String(res.headers['x-served-by']));
        const entry = served.get(name);
        if (entry) {
          entry.count++;
          entry.last = at;
        } else served.set(name, { count: 1, first: at, last: at });
      } catch {
        failed++;
      }
    }
  };
  const done = Promise.all(Array.from({ length: loops }, loop));
  return {
    served,
    async stop() {
      running = false;
      await done;
      return { requests, failed };
    },
  };
}

async function measureJoinLeave(targets: Target[], nodes: NodeFactory, serfRpc: string): Promise<BenchSection[]> {
  // When the first load balancer's agent streams each event: what every pipeline used to wait for.
  const serf = await SerfClient.connect({ address: serfRpc });
  const streamed = new Map<string, number>();
  await serf.stream('member-join,member-leave,member-failed', (event) => {
    if (!('members' in event)) return;
    for (const m of event.members) if (!streamed.has(`${event.event} ${m.name}`)) streamed.set(`${event.event} ${m.name}`, now());
  });
  // When that agent's member list first shows the node alive (or no longer alive): Serf's gossip itself.
  const listed = new Map<string, number>();
  const poller = await SerfClient.connect({ address: serfRpc });
  let polling = true;
  const poll = (async () => {
    while (polling) {
      for (const m of await poller.members()) {
        const key = `${m.status === 'alive' ? 'alive' : 'gone'} ${m.name}`;
        if (!listed.has(key)) listed.set(key, now());
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  })();
  const probes = targets.map((t) => startProbe(t.port, 2));
  const joins = targets.map(() => [] as number[]);
  /** Per join and load balancer: processes rosterd forked between the node's agent start and its first response. */
  const forksBeforeServing = targets.map(() => [] as number[]);
  const leaves = targets.map(() => [] as number[]);
  const serfJoin: number[] = [];
  const serfLeave: number[] = [];
  const listedJoin: number[] = [];
  const listedLeave: number[] = [];
  try {
    await waitFor(() => probes.every((p) => p.served.size >= 2), 'every probe to reach the first nodes', { timeout: 20_000 });
    // Warm-up: the first change after start loads and compiles the check and apply code.
    await sample('warm-up');
    const before = await Promise.all(targets.map(costSnapshot));
    const started = now();
    for (let i = 1; i <= SAMPLES; i++) await sample(`j-${i}`, i - 1);
    const elapsed = (now() - started) / 1000;
    const after = await Promise.all(targets.map(costSnapshot));
    if (process.env.BENCH_GC_LOG) console.error(`cost window: ${Math.round(started)} to ${Math.round(now())} (ms since the epoch)`);
    // The idle cost of the same processes, to subtract: once the last change's late event has come and gone.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const idleFrom = await Promise.all(targets.map(costSnapshot));
    await new Promise((resolve) => setTimeout(resolve, 5000));
    const idle = await Promise.all(targets.map(costSnapshot));
    const events = SAMPLES * 2;
    const probed = await Promise.all(probes.map((p) => p.stop()));

    const p50 = (values: number[]): number => Math.round(percentile(values, 0.5));
    const p95 = (values: number[]): number => Math.round(percentile(values, 0.95));
    const latency: BenchSection = {
      title: `HAProxy lab: agent started → first response from the node, SIGINT to the agent → last response from it (ms, ${SAMPLES} of each)`,
      rows: [
        ...targets.map((t, i) => ({ load_balancer: t.name, 'join p50': p50(joins[i]!), 'join p95': p95(joins[i]!), 'leave p50': p50(leaves[i]!), 'leave p95': p95(leaves[i]!) })),
        { load_balancer: "(Serf: the agent's members list it)", 'join p50': p50(listedJoin), 'join p95': p95(listedJoin), 'leave p50': p50(listedLeave), 'leave p95': p95(listedLeave) },
        { load_balancer: "(Serf: the agent streams the event)", 'join p50': p50(serfJoin), 'join p95': p95(serfJoin), 'leave p50': p50(serfLeave), 'leave p95': p95(serfLeave) },
      ],
      notes: [
        'Each sample is one change on its own; all three load balancers are in the same Serf cluster and see the same change. Timed by probes sending GETs back to back on fresh connections (2 loops per load balancer): ' +
          targets.map((t, i) => `${t.name} ${probed[i]!.requests} requests, ${probed[i]!.failed} failed`).join('; ') +
          '. The last two lines are Serf alone, on the first load balancer\'s agent: when its member list (polled every 10 ms) shows the node alive (or no longer alive), and when it streams member-join/member-leave (what rosterd waited for before; Serf coalesces member events for about a second).',
        'Goals: join p50 ≤ 150 ms in runtime mode (lab scripts 1133 ms before), ≤ 400 ms in reload mode; leave p50 ≤ 300 ms.',
      ],
    };
    const ms = (ticks: number): number => (ticks * 1000) / TICKS_PER_SECOND;
    const cost: BenchSection = {
      title: `Cost per membership event (${events} changes in ${elapsed.toFixed(0)} s)`,
      rows: targets.map((t, i) => {
        const idlePerSecond = (idle[i]!.cpu - idleFrom[i]!.cpu) / 5;
        const cpu = ms(after[i]!.cpu - before[i]!.cpu - idlePerSecond * elapsed);
        const beforeServing = forksBeforeServing[i]!;
        return {
          load_balancer: t.name,
          'processes forked per event': (after[i]!.forks - before[i]!.forks) / events,
          'forks before serving (per join, max)': t.scripts
            ? `${t.scripts.processesPerRun} (the whole handler run)`
            : `${Number((beforeServing.reduce((a, b) => a + b, 0) / beforeServing.length).toFixed(2))} (max ${Math.max(...beforeServing)})`,
          'what': after[i]!.what,
          'CPU per event (ms)': t.rosterd ? cpu / events : '',
          'reloads / new HAProxy processes': after[i]!.reloads - before[i]!.reloads,
        };
      }),
      notes: [
        "rosterd's children are counted by wrapping ChildProcess.prototype.spawn in the daemon (NODE_OPTIONS=--import); its CPU from /proc/<pid>/stat, the idle cost over the same time subtracted. The lab scripts' processes: handler runs × the processes one run forks (counted once with strace -f).",
        "Forks before serving: rosterd's children (from the same spawn log, which also logs when each exits) started after the node's agent and over before its HAProxy listed the node as a running server (`show servers state`, polled every few ms during the join), or before the first response if that came first. In runtime mode the new server is added through the runtime API before the candidate's haproxy -c check, which then runs while the node already serves; in reload mode the check and the reload come first. The lab scripts: every process of the handler run comes before the new HAProxy that serves the node.",
        'Goals: rosterd CPU per event ≤ 20 ms; runtime mode forks nothing before a new node serves.',
      ],
    };
    return [latency, cost];
  } finally {
    polling = false;
    await poll.catch(() => undefined);
    await poller.close();
    await Promise.all(probes.map((p) => p.stop()));
    await serf.close();
  }

  async function sample(name: string, index?: number): Promise<void> {
    const node = await nodes.start(name);
    // When each rosterd's HAProxy first lists the node as a running server in the balancing: where serving starts.
    const inRotation = targets.map((t) => (t.masterSocket ? watchServer(t.masterSocket, name) : undefined));
    const firsts = await Promise.all(probes.map((p) => waitFor(() => p.served.get(name)?.first, `${name} to serve`, { timeout: 20_000, interval: 5 })));
    const rotation = await Promise.all(inRotation.map((w) => w?.stop()));
    const joinEvent = await waitFor(() => streamed.get(`member-join ${name}`), `Serf's member-join of ${name}`, { timeout: 10_000 });
    const leftAt = await node.leave();
    // The last response: none for 1.5 s on any load balancer (the app itself serves for 3 s more).
    await waitFor(() => probes.every((p) => now() - (p.served.get(name)?.last ?? 0) > 1500), `${name} to stop serving`, { timeout: 20_000, interval: 50 });
    const leaveEvent = await waitFor(() => streamed.get(`member-leave ${name}`) ?? streamed.get(`member-failed ${name}`), `Serf's member-leave of ${name}`, { timeout: 15_000 });
    if (index === undefined) return;
    const spawned = await Promise.all(targets.map(async (t) => (t.rosterd ? forkSpans(await readSpawnLog(t.rosterd.spawnLog)) : [])));
    probes.forEach((p, i) => {
      joins[i]!.push(firsts[i]! - node.startedAt);
      // On the way to serving: started after the agent and over before HAProxy put the node in rotation (a
      // process still running then, such as a check after the server was added, did not hold the node back).
      const serving = Math.min(rotation[i] ?? Infinity, firsts[i]!);
      forksBeforeServing[i]!.push(spawned[i]!.filter(({ at, exited }) => at >= node.startedAt && exited !== undefined && exited <= serving).length);
      leaves[i]!.push(p.served.get(name)!.last - leftAt);
    });
    serfJoin.push(joinEvent - node.startedAt);
    serfLeave.push(leaveEvent - leftAt);
    listedJoin.push((listed.get(`alive ${name}`) ?? Number.NaN) - node.startedAt);
    listedLeave.push((listed.get(`gone ${name}`) ?? Number.NaN) - leftAt);
  }
}

/**
 * Polls `show servers state web` on the current worker every few ms until it lists `name` running (op_state 2)
 * and in no maintenance or drain (admin state 0); `stop()` resolves with when that was first seen.
 */
function watchServer(masterSocket: string, name: string): { stop(): Promise<number | undefined> } {
  let seen: number | undefined;
  let running = true;
  const done = (async () => {
    while (running && seen === undefined) {
      const text = await masterCliCommand(masterSocket, '@1 show servers state web', { timeout: 1000 }).catch(() => '');
      const at = now();
      // Fields: be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ...
      if (text.split('\n').some((line) => {
        const fields = line.split(' ');
        return fields[3] === name && fields[5] === '2' && fields[6] === '0';
      })) seen = at;
      else await new Promise((resolve) => setTimeout(resolve, 3));
    }
  })();
  return {
    async stop() {
      running = false;
      await done;
      return seen;
    },
  };
}

/** CPU ticks, processes forked so far (and which), reloads so far. */
async function costSnapshot(target: Target): Promise<{ cpu: number; forks: number; what: string; reloads: number }> {
  if (target.scripts) {
    const runs = await target.scripts.restarts();
    return { cpu: 0, forks: runs * target.scripts.processesPerRun, what: `${target.scripts.processesPerRun} per handler run: ${target.scripts.processNames}`, reloads: runs };
  }
  const spawns = (await readSpawnLog(target.rosterd!.spawnLog)).filter((entry) => entry.file !== undefined) as { file: string; args: string[] }[];
  const reloads = parseShowProc(await masterCliCommand(target.masterSocket!, 'show proc', { retryEmpty: true })).master.reloads;
  return {
    cpu: (await cpuTicks(target.rosterd!.pid)).own,
    forks: spawns.length,
    what: [...new Set(spawns.map((s) => [s.file, ...s.args.slice(1, 3)].join(' ')))].join('; ') || 'none',
    reloads,
  };
}

// --- 3: HAProxy processes alive with long-lived responses open ---

async function measureProcessesAlive(targets: Target[], nodes: NodeFactory): Promise<BenchSection> {
  const streams = targets.map((t) => startStreams(t.port));
  const probes = targets.map((t) => startProbe(t.port, 1));
  const counts = targets.map(() => ({ max: 0, last: 0 }));
  const logOffsets = await Promise.all(targets.map(async (t) => (t.rosterd ? (await t.rosterd.log()).length : 0)));
  const reloadsBefore = await Promise.all(targets.map(costSnapshot));
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      const alive = await Promise.all(targets.map(haproxyProcesses));
      alive.forEach((n, i) => {
        counts[i]!.max = Math.max(counts[i]!.max, n);
        counts[i]!.last = n;
      });
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  })();
  try {
    // Let the streams fill up, then 25 joins and 25 graceful leaves, interleaved (+1 +2 -1 +3 -2 …), a node or
    // two up at any time besides the lab's two.
    await new Promise((resolve) => setTimeout(resolve, STREAM_SECONDS * 1000));
    const up = new Map<string, BenchNode>();
    const pending: Promise<unknown>[] = [];
    const changes = ['+1'];
    for (let i = 2; i <= CHANGES / 2; i++) changes.push(`+${i}`, `-${i - 1}`);
    changes.push(`-${CHANGES / 2}`);
    for (const change of changes) {
      const at = Date.now();
      const name = `c-${change.slice(1)}`;
      if (change.startsWith('+')) pending.push(nodes.start(name).then((node) => up.set(name, node)));
      else pending.push((async () => {
        await waitFor(() => up.get(name), `${name} to be up`, { timeout: 20_000 });
        await up.get(name)!.leave();
      })());
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, at + CHANGE_EVERY_MS - Date.now())));
    }
    await Promise.all(pending);
    const atEnd = await Promise.all(targets.map(haproxyProcesses));
    const reloadsAfter = await Promise.all(targets.map(costSnapshot));
    const streamed = await Promise.all(streams.map((s) => s.stop()));
    const probed = await Promise.all(probes.map((p) => p.stop()));
    const logs = await Promise.all(targets.map(async (t, i) => (t.rosterd ? (await t.rosterd.log()).slice(logOffsets[i]) : '')));
    const reasons = [...new Set(logs.flatMap((log) => [...log.matchAll(/not through the runtime API: (.*?)\)? \{/g)].map((m) => m[1]!.replace(/\d+/g, 'N'))))];
    return {
      title: `HAProxy processes alive during ${CHANGES} changes (25 joins, 25 graceful leaves, one every ${CHANGE_EVERY_MS} ms) with long-lived responses open`,
      rows: targets.map((t, i) => ({
        load_balancer: t.name,
        'HAProxy processes at the end': atEnd[i]!,
        'most at once': counts[i]!.max,
        'reloads / new processes': reloadsAfter[i]!.reloads - reloadsBefore[i]!.reloads,
        'runtime applies / fallbacks': t.rosterd ? `${count(logs[i]!, /applied without a reload/g)} / ${count(logs[i]!, /not through the runtime API/g)}` : '',
        'streams ok / cut': `${streamed[i]!.ok} / ${streamed[i]!.cut}`,
        'requests / failed': `${probed[i]!.requests} / ${probed[i]!.failed}`,
      })),
      notes: [
        `Processes: rosterd's load balancers count the master and its workers (current and old, from show proc); the lab scripts count every HAProxy of their config (pgrep). Long-lived responses: on each load balancer one GET /stream?seconds=${STREAM_SECONDS} every ${STREAM_EVERY_MS} ms, a line a second; "cut" ended before its last line. Streams last less than drainTimeout (10 s), so in runtime mode a removal waits for them instead of falling back to a reload. Requests: GETs back to back on fresh connections, one loop per load balancer.`,
        `Why the runtime mode reloaded: ${reasons.join('; ') || 'it never did'}.`,
      ],
    };
  } finally {
    watching = false;
    await watcher;
    await Promise.all(streams.map((s) => s.stop()));
    await Promise.all(probes.map((p) => p.stop()));
  }
}

/** Long-lived responses, one opened every STREAM_EVERY_MS; each counted as ok when all its lines came. */
function startStreams(port: number): { stop(): Promise<{ ok: number; cut: number }> } {
  let ok = 0;
  let cut = 0;
  const open = new Set<Promise<void>>();
  const timer = setInterval(() => {
    const done = new Promise<void>((resolve) => {
      const req = request({ host: '127.0.0.1', port, path: `/stream?seconds=${STREAM_SECONDS}`, agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => {
          if (text.trim().split('\n').length === STREAM_SECONDS) ok++;
          else cut++;
          resolve();
        });
        res.on('error', () => {
          cut++;
          resolve();
        });
      });
      req.on('error', () => {
        cut++;
        resolve();
      });
      req.end();
    });
    open.add(done);
    void done.then(() => open.delete(done));
  }, STREAM_EVERY_MS);
  return {
    async stop() {
      clearInterval(timer);
      await Promise.all(open);
      return { ok, cut };
    },
  };
}

async function haproxyProcesses(target: Target): Promise<number> {
  if (target.scripts) return target.scripts.processes();
  const state = parseShowProc(await masterCliCommand(target.masterSocket!, 'show proc', { retryEmpty: true }).catch(() => ''));
  return 1 + state.workers.length + state.oldWorkers.length;
}

function count(text: string, pattern: RegExp): number {
  return (text.match(pattern) ?? []).length;
}

// --- the reload-mode load balancer ---

/** lb-node.mjs with a copy of the lab's config that has `runtime: false`, joined to the lab's cluster. */
async function startReloadModeLb(dir: string, joinPort: number, env: NodeJS.ProcessEnv) {
  const conf = join(dir, 'conf');
  const run = join(dir, 'run');
  await mkdir(conf, { recursive: true });
  await mkdir(run, { recursive: true });
  for (const file of ['renderer.config.ts', 'haproxy.cfg.liquid']) await copyFile(join(LAB_DIR, file), join(conf, file));
  const config = await readFile(join(conf, 'renderer.config.ts'), 'utf8');
  const reloadMode = config.replace('runtime: true', 'runtime: false');
  if (reloadMode === config) throw new Error('the lab config has no `runtime: true` to turn off');
  await writeFile(join(conf, 'renderer.config.ts'), reloadMode);
  const [httpPort, statsPort, serfBind, serfRpc] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const logFile = join(dir, 'lb.log');
  const out = openSync(logFile, 'a');
  const child = spawn(process.execPath, [join(LAB_DIR, 'lb-node.mjs')], {
    detached: true,
    stdio: ['ignore', out, out],
    env: {
      ...process.env,
      ...env,
      LAB_DIR: run,
      LAB_NODE_NAME: 'lb-reload',
      LAB_ADDR: '127.0.0.1',
      LAB_LISTEN: '127.0.0.1',
      LAB_HTTP_PORT: String(httpPort),
      LAB_STATS_PORT: String(statsPort),
      LAB_SERF_BIND: String(serfBind),
      LAB_SERF_RPC: `127.0.0.1:${serfRpc}`,
      LAB_SERF_JOIN: `127.0.0.1:${joinPort}`,
      LAB_RENDERER_CONFIG: join(conf, 'renderer.config.ts'),
    },
  });
  const group = child.pid!;
  const rosterdPid = await waitFor(async () => Number(await readFile(join(run, 'rosterd.pid'), 'utf8').catch(() => '')), 'the reload-mode rosterd', { timeout: 30_000 });
  await waitFor(async () => (await httpGet(httpPort)).status === 200, 'the reload-mode load balancer to serve', { timeout: 30_000 });
  return {
    httpPort,
    rosterdPid,
    masterSocket: join(run, 'master.sock'),
    log: () => readFile(logFile, 'utf8').catch(() => ''),
    async stop() {
      process.kill(-group, 'SIGTERM');
      await waitFor(async () => (await groupMembers(group)).length === 0, 'the reload-mode load balancer to stop', { timeout: 30_000 }).catch(() => process.kill(-group, 'SIGKILL'));
    },
  };
}

// --- the lab's scripts ---

interface Baseline {
  httpPort: number;
  /** Handler runs so far (each one regenerates haproxy.cfg and starts a new HAProxy). */
  restarts(): Promise<number>;
  /** Processes one handler run forks, the agent's own fork of its shell included (counted with strace -f). */
  processesPerRun: number;
  processNames: string;
  /** HAProxy processes of this config alive now. */
  processes(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * The lab's old load balancer, next to the new ones in the same Serf cluster: a Serf agent whose event handler
 * reads the member list, renders haproxy.cfg with a template CLI (rosterd's `render --once` on a member file,
 * same template), and starts a new standalone HAProxy that takes over from the old one (`-sf`).
 */
async function startBaseline(dir: string, labSerfBind: number, labSerfRpc: number): Promise<Baseline> {
  await mkdir(dir, { recursive: true });
  const [httpPort, statsPort, serfBind, serfRpc] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const rpc = `127.0.0.1:${serfRpc}`;
  const env = { ...process.env, LAB_DIR: dir, LAB_LISTEN: '127.0.0.1', LAB_HTTP_PORT: String(httpPort), LAB_STATS_PORT: String(statsPort), RPC: rpc, DIR: dir, ROSTERD: BIN };
  await writeFile(
    join(dir, 'renderer.config.json'),
    JSON.stringify({
      sources: { web: { type: 'file', path: 'members.json' } },
      templates: [{ source: join(LAB_DIR, 'haproxy.cfg.liquid'), destination: 'haproxy.cfg', env: ['LAB_DIR', 'LAB_LISTEN', 'LAB_HTTP_PORT', 'LAB_STATS_PORT'] }],
    }),
  );
  // The template names a server state file; the scripts never fill it.
  await writeFile(join(dir, 'server-state'), '1\n');
  // `serf members -format=json` → a rosterd member file (address without the gossip port, port from the tag).
  await writeFile(
    join(dir, 'to-members.mjs'),
    `let text = '';
process.stdin.on('data', (c) => (text += c)).on('end', () => {
  const members = JSON.parse(text).members.map((m) => ({ name: m.name, address: m.addr.replace(/:\\d+$/, ''), port: Number(m.tags.port), tags: m.tags }));
  process.stdout.write(JSON.stringify(members));
});
`,
  );
  const handler = join(dir, 'handler.sh');
  await writeFile(
    handler,
    `#!/bin/sh
# The lab's handler: on every member event, regenerate haproxy.cfg, then start a new HAProxy that takes over
# from the old one (-sf: the old one stops listening and finishes its connections).
cat > /dev/null
serf members -rpc-addr="$RPC" -status=alive -tag role=web -format=json | node "$DIR/to-members.mjs" > "$DIR/members.json"
node "$ROSTERD" render --once -c "$DIR/renderer.config.json" 2>> "$DIR/handler.log"
haproxy -D -f "$DIR/haproxy.cfg" -p "$DIR/haproxy.pid" -sf $(cat "$DIR/haproxy.pid")
echo restart >> "$DIR/restarts"
`,
    { mode: 0o755 },
  );
  // First render and start, from the members the lab's agent knows.
  const { stdout } = await execFileAsync('serf', ['members', `-rpc-addr=127.0.0.1:${labSerfRpc}`, '-status=alive', '-tag', 'role=web', '-format=json']);
  const members = (JSON.parse(stdout) as { members: { name: string; addr: string; tags: Record<string, string> }[] }).members;
  await writeFile(join(dir, 'members.json'), JSON.stringify(members.map((m) => ({ name: m.name, address: m.addr.replace(/:\d+$/, ''), port: Number(m.tags.port), tags: m.tags }))));
  await execFileAsync(process.execPath, [BIN, 'render', '--once', '-c', join(dir, 'renderer.config.json')], { env });
  await execFileAsync('haproxy', ['-D', '-f', join(dir, 'haproxy.cfg'), '-p', join(dir, 'haproxy.pid')], { env });
  const agent: ChildProcess = spawn(
    'serf',
    ['agent', '-node=lb-old', `-bind=127.0.0.1:${serfBind}`, `-rpc-addr=${rpc}`, '-tag', 'role=lb', `-join=127.0.0.1:${labSerfBind}`, `-event-handler=member-join,member-leave,member-failed,member-update=${handler}`],
    { env, stdio: 'ignore' },
  );
  const config = join(dir, 'haproxy.cfg');
  const restarts = async (): Promise<number> => (await readLines(join(dir, 'restarts'))).length;
  const baseline: Baseline = {
    httpPort,
    restarts,
    processesPerRun: 0,
    processNames: '',
    processes: async () => (await execFileAsync('pgrep', ['-c', '-f', `haproxy -D -f ${config}`]).then((r) => Number(r.stdout.trim()), () => 0)),
    async stop() {
      const exited = new Promise((resolve) => agent.once('exit', resolve));
      agent.kill('SIGKILL');
      await exited;
      // A handler that was running when the agent died goes on and still starts its HAProxy (daemonized, in a
      // session of its own): end the handlers first, then every HAProxy of this directory, matched by command
      // line, until neither is left.
      const patterns = [handler, config];
      await waitFor(
        async () => {
          for (const pattern of patterns) await execFileAsync('pkill', ['-KILL', '-f', pattern]).catch(() => undefined);
          const left = await Promise.all(patterns.map((pattern) => execFileAsync('pgrep', ['-f', pattern]).then(() => true, () => false)));
          return !left.includes(true);
        },
        'every baseline HAProxy to be gone',
        { timeout: 10_000, interval: 200 },
      );
    },
  };
  try {
    // The agent's own join is an event too: wait for that restart before measuring.
    await waitFor(async () => (await restarts()) >= 1, 'the handler to run once', { timeout: 20_000 });
    // One more handler run, under strace, as the agent runs it (`/bin/sh -c <handler>`, input on stdin). strace
    // follows the HAProxy the run starts into the background: it is stopped (which detaches it) once the run
    // is over.
    const trace = join(dir, 'handler.strace');
    const tracer = spawn('strace', ['-f', '-qq', '-e', 'trace=clone,clone3,fork,vfork,execve', '-o', trace, '/bin/sh', '-c', `${handler} < /dev/null`], { env, stdio: 'ignore' });
    const traceEnded = new Promise((resolve) => tracer.once('exit', resolve));
    await waitFor(async () => (await restarts()) >= 2, 'the traced handler run', { timeout: 30_000 });
    tracer.kill('SIGKILL');
    await traceEnded;
    await waitFor(async () => (await httpGet(httpPort)).status === 200, 'the lab scripts\' HAProxy to serve after the traced run', { timeout: 10_000 });
    const traced = (await readFile(trace, 'utf8')).split('\n');
    // Processes, not threads (node starts a few of those).
    baseline.processesPerRun = 1 + traced.filter((l) => /\b(?:clone3?|v?fork)\(/.test(l) && !l.includes('CLONE_THREAD') && !/= -1 /.test(l)).length;
    baseline.processNames = [...new Set(traced.flatMap((l) => /execve\("([^"]+)"/.exec(l)?.[1]?.split('/').pop() ?? []))].join(', ');
    return baseline;
  } catch (err) {
    await baseline.stop();
    throw err;
  }
}

/** A module for `--import` that logs every child the rosterd CLI starts to $ROSTERD_SPAWN_LOG, one JSON line each. */
function countSpawnsModule(): string {
  return `import { ChildProcess } from 'node:child_process';
import { appendFileSync } from 'node:fs';
const log = process.env.ROSTERD_SPAWN_LOG;
if (log && /[\\\\/]cli[\\\\/]bin\\.js$/.test(process.argv[1] ?? '')) {
  const spawn = ChildProcess.prototype.spawn;
  ChildProcess.prototype.spawn = function (options) {
    const at = Date.now();
    const result = spawn.call(this, options);
    const pid = this.pid;
    appendFileSync(log, JSON.stringify({ at, pid, file: options.file, args: options.args }) + '\\n');
    this.once('exit', () => appendFileSync(log, JSON.stringify({ exited: Date.now(), pid }) + '\\n'));
    return result;
  };
}
// Garbage collections, one JSON line each, to tell their share of the CPU without a profiler's own cost.
const gcLog = process.env.ROSTERD_GC_LOG;
if (gcLog && /[\\/]cli[\\/]bin\\.js$/.test(process.argv[1] ?? '')) {
  const { PerformanceObserver } = await import('node:perf_hooks');
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) appendFileSync(gcLog, JSON.stringify({ pid: process.pid, at: Math.round(performance.timeOrigin + e.startTime), ms: e.duration, kind: e.detail?.kind }) + '\\n');
  }).observe({ entryTypes: ['gc'] });
}
// A CPU profile of the whole run, written at exit (NODE_OPTIONS may not carry --cpu-prof).
const profileDir = process.env.ROSTERD_CPU_PROF;
if (profileDir && /[\\\\/]cli[\\\\/]bin\\.js$/.test(process.argv[1] ?? '')) {
  const { Session } = await import('node:inspector');
  const { writeFileSync } = await import('node:fs');
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 500 });
  session.post('Profiler.start');
  process.on('exit', () => {
    // The in-process session answers synchronously.
    session.post('Profiler.stop', (err, result) => {
      if (!err) writeFileSync(profileDir + '/rosterd-' + process.pid + '.cpuprofile', JSON.stringify(result.profile));
    });
  });
}
`;
}

type SpawnLogEntry = { at: number; pid: number; file: string; args: string[] } | { exited: number; pid: number; file?: undefined };

async function readSpawnLog(file: string): Promise<SpawnLogEntry[]> {
  return (await readLines(file)).map((line) => JSON.parse(line) as SpawnLogEntry);
}

/** Each child: when it was started and when it exited (undefined while it runs). */
function forkSpans(entries: readonly SpawnLogEntry[]): { at: number; exited: number | undefined }[] {
  const exits = new Map<number, number>();
  for (const entry of entries) if (entry.file === undefined) exits.set(entry.pid, entry.exited);
  return entries.flatMap((entry) => (entry.file === undefined ? [] : [{ at: entry.at, exited: exits.get(entry.pid) }]));
}

async function readLines(file: string): Promise<string[]> {
  return (await readFile(file, 'utf8').catch(() => '')).split('\n').filter(Boolean);
}

// Runnable alone: `node --import jiti/register bench/haproxy-lab.ts`.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const section of await run()) console.log(formatSection(section));
}
