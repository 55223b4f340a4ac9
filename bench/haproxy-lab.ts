import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { SerfClient } from '../src/serf/client.js';
import { BIN } from '../test/helpers/cli.js';
import { httpGet } from '../test/helpers/haproxy.js';
import { createLab, LAB_DIR, type Lab } from '../test/helpers/lab.js';
import { startLoad, type Served } from '../test/helpers/load.js';
import { freePort } from '../test/helpers/ports.js';
import { tempDir } from '../test/helpers/tmp.js';
import { waitFor } from '../test/helpers/wait.js';
import { formatSection, percentile, type BenchSection } from './types.js';

/**
 * The HAProxy + Serf lab (examples/haproxy-serf) with its defaults, measured end to end on one machine:
 *
 * 1. join → first response served by the new node, and leave → last response served by it, with Serf's own
 *    delay (until the load balancer's agent streams the event) shown apart from what follows it (rosterd's
 *    resync, render, `haproxy -c`, install, reload and HAProxy's switch to the new worker);
 * 2. what rosterd costs per membership event: processes it forks (counted by wrapping its child_process) and
 *    CPU time (from /proc/<pid>/stat);
 * 3. failed requests during 20 membership changes under the same load, at the same time: the lab with rosterd
 *    (master-worker reload) against the lab's old way, a Serf event handler that regenerates haproxy.cfg with
 *    a template CLI and restarts HAProxy with `haproxy -D -f cfg -p pidfile -sf $(cat pidfile)`.
 */

const SAMPLES = 12;
const CHANGES = 20;
const CHANGE_EVERY_MS = 1600;
const TICKS_PER_SECOND = 100;
const execFileAsync = promisify(execFile);

export async function run(): Promise<BenchSection[]> {
  const { path: dir, cleanup } = await tempDir('rosterd-bench-lab-');
  const lab = createLab(join(dir, 'run'));
  const spawnLog = join(dir, 'spawns.jsonl');
  const preload = join(dir, 'count-spawns.mjs');
  await writeFile(preload, countSpawnsModule(spawnLog));
  let baseline: Baseline | undefined;
  try {
    // Only rosterd records its children (the preload checks its own argv); every lab process gets the option.
    await lab.run(['up', '--nodes', '2'], { env: { NODE_OPTIONS: `--import=${pathToFileURL(preload).href}` } });
    const latency = await measureJoinLeave(lab, spawnLog);
    const lb = (await lab.status()).lb!;
    baseline = await startBaseline(join(dir, 'baseline'), lb.serfBind, lb.serfRpc);
    const failures = await compareFailures(lab, baseline);
    return [latency.section, latency.cost, failures];
  } finally {
    await baseline?.stop();
    await lab.run(['down'], { allowFailure: true }).catch(() => undefined);
    lab.killAll();
    await cleanup();
  }
}

// --- 1 and 2: join/leave latency, cost per event ---

async function measureJoinLeave(lab: Lab, spawnLog: string): Promise<{ section: BenchSection; cost: BenchSection }> {
  const lb = (await lab.status()).lb!;
  const rosterdPid = lb.rosterdPid!;
  const address = `127.0.0.1:${lb.serfRpc}`;
  // When the load balancer's agent hands each event to its RPC streams: what rosterd waits for.
  const serf = await SerfClient.connect({ address });
  const streamed = new Map<string, number>();
  await serf.stream('member-join,member-leave,member-failed', (event) => {
    if (!('members' in event)) return;
    for (const m of event.members) if (!streamed.has(`${event.event} ${m.name}`)) streamed.set(`${event.event} ${m.name}`, Date.now());
  });
  // When the agent's member list first shows the node alive (or no longer alive): Serf's gossip itself,
  // before the agent's event coalescing. Polled every 20 ms on a connection of its own.
  const listed = new Map<string, number>();
  const poller = await SerfClient.connect({ address });
  let polling = true;
  const poll = (async () => {
    while (polling) {
      for (const m of await poller.members()) {
        const key = `${m.status === 'alive' ? 'alive' : 'gone'} ${m.name}`;
        if (!listed.has(key)) listed.set(key, Date.now());
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  // Warm-up: rosterd loads its check and reload code, and V8 compiles it, on the first change after start
  // (measured apart, below); the samples are the steady state.
  const warmCpu = await cpuTicks(rosterdPid);
  await lab.run(['add', 'warm-up']);
  await lab.run(['remove', 'warm-up']);
  const firstChanges = (await cpuTicks(rosterdPid)).own - warmCpu.own;
  // Background load (autocannon sends its rate in bursts), and a steady probe that times the samples: GETs
  // on fresh connections, back to back, from 4 loops.
  const load = startLoad({ port: lb.httpPort, rate: 500, connections: 8, maxSeconds: 180 });
  const probe = startProbe(lb.httpPort, 4);
  const joins: Sample[] = [];
  const leaves: Sample[] = [];
  const logOffset = (await lab.log()).length;
  const spawnsBefore = await countLines(spawnLog);
  const cpuBefore = await cpuTicks(rosterdPid);
  const started = Date.now();
  try {
    await waitFor(() => probe.served.size >= 2, 'the probe to reach the first nodes', { timeout: 10_000 });
    for (let i = 1; i <= SAMPLES; i++) {
      const name = `j-${i}`;
      // One change at a time, so that each sample is one event and one render (see the notes).
      let t0 = Date.now();
      await lab.run(['add', name, '--no-wait']);
      const first = await waitFor(() => probe.served.get(name)?.first, `${name} to serve`, { timeout: 20_000 });
      // The candidate file that brought the node in (a rename keeps the mtime of the write).
      const written = (await stat(join(lab.dir, 'haproxy.cfg'))).mtimeMs;
      let event = await waitFor(() => streamed.get(`member-join ${name}`), `Serf's member-join of ${name}`, { timeout: 5000 });
      joins.push({ listed: (listed.get(`alive ${name}`) ?? Number.NaN) - t0, serf: event - t0, after: first - event, written: written - event });

      t0 = Date.now();
      const removed = lab.run(['remove', name]);
      // A leave that did not reach every agent in time ends as member-failed instead.
      event = await waitFor(() => streamed.get(`member-leave ${name}`) ?? streamed.get(`member-failed ${name}`), `Serf's member-leave of ${name}`, { timeout: 15_000 });
      // The last response: none for 500 ms after the event plus a reload (the app itself drains for 2 s more).
      await waitFor(() => Date.now() - (probe.served.get(name)?.last ?? 0) > 500, `${name} to stop serving`, { timeout: 10_000 });
      leaves.push({ listed: (listed.get(`gone ${name}`) ?? Number.NaN) - t0, serf: event - t0, after: probe.served.get(name)!.last - event });
      // Its processes end while the next node starts.
      void removed.catch(() => undefined);
    }
    await waitFor(async () => (await lab.status()).nodes.every((n) => !n.name.startsWith('j-') || !n.running), 'the last nodes to stop', { timeout: 15_000 });
    const elapsed = Date.now() - started;
    const cpuAfter = await cpuTicks(rosterdPid);
    const spawns = (await readLines(spawnLog)).slice(spawnsBefore).map((line) => JSON.parse(line) as { file: string; args: string[] });
    const reports = await load.stop();
    const probed = await probe.stop();
    const failed = reports.reduce((sum, r) => sum + r.failed, 0) + probed.failed;
    const log = (await lab.log()).slice(logOffset);
    const renders = (log.match(/INFO: wrote /g) ?? []).length;
    const reloadMs = [...log.matchAll(/INFO: reloaded: .*"durationMs":(\d+)/g)].map((m) => Number(m[1]));
    const events = joins.length + leaves.length;

    // Idle cost for reference: the same process, no membership change, for 5 s.
    const idleBefore = await cpuTicks(rosterdPid);
    await new Promise((resolve) => setTimeout(resolve, 5000));
    const idleAfter = await cpuTicks(rosterdPid);

    const ms = (ticks: number): number => (ticks * 1000) / TICKS_PER_SECOND;
    const own = ms(cpuAfter.own - cpuBefore.own);
    const children = ms(cpuAfter.children - cpuBefore.children);
    const idlePerSecond = ms(idleAfter.own - idleBefore.own) / 5;
    const commands = [...new Set(spawns.map((s) => [s.file, ...s.args.slice(1, 3)].join(' ')))];
    const joinAfter = percentile(joins.map((s) => s.after), 0.5);
    const section: BenchSection = {
      title: `HAProxy lab: join → first response served by the node, leave → last response served by it (ms, ${SAMPLES} of each)`,
      rows: [row('join', joins), row('leave (graceful)', leaves)],
      notes: [
        "Each sample is one change on its own. Listed: from `lab.mjs add`/`remove` until the load balancer's agent lists the node alive (or no longer alive) in `members`. Streamed: until that agent streams member-join/member-leave, which is what rosterd waits for (Serf holds member events back for about a second to coalesce them). After: from that event until the first (last) response from the node: rosterd's members read (100 ms after the event), render, write, `haproxy -c`, install, reload. Written: until the candidate file was written.",
        `Timed by a probe sending GETs back to back on fresh connections (${probed.requests} requests), under a background load of 500 req/s keep-alive + 500 req/s with a new connection per request; failed requests: ${failed}.`,
        `Goal: join p50 ≤ 250 ms after Serf's delay. Here: ${joinAfter.toFixed(0)} ms.`,
      ],
    };
    const cost: BenchSection = {
      title: `rosterd's cost per membership event (${events} changes, ${renders} renders, ${reloadMs.length} reloads in ${(elapsed / 1000).toFixed(0)} s)`,
      rows: [
        { measure: 'processes forked by rosterd, per event', value: spawns.length / events, detail: commands.join('; ') || 'none' },
        { measure: 'CPU of the rosterd process, per event (ms)', value: (own - idlePerSecond * (elapsed / 1000)) / events, detail: `${own.toFixed(0)} ms over the run, of which ~${(idlePerSecond * (elapsed / 1000)).toFixed(0)} ms idle cost` },
        { measure: 'CPU of its children (haproxy -c), per event (ms)', value: children / events, detail: '' },
        { measure: 'reload, trigger to confirmation in show proc (ms, p50 / p95)', value: `${percentile(reloadMs, 0.5)} / ${percentile(reloadMs, 0.95)}`, detail: '' },
        { measure: 'idle CPU of rosterd (ms per second)', value: idlePerSecond, detail: `/proc/${rosterdPid}/stat, ${TICKS_PER_SECOND} ticks per second` },
        { measure: 'CPU of rosterd for the first two changes after its start (ms, once)', value: ms(firstChanges), detail: 'loading and compiling the check and reload code' },
      ],
      notes: ['Goal: ≤ 2 processes and ≤ 40 ms of rosterd CPU per membership event. Children are counted by wrapping ChildProcess.prototype.spawn in the daemon (NODE_OPTIONS=--import).'],
    };
    return { section, cost };
  } finally {
    polling = false;
    await poll.catch(() => undefined);
    await probe.stop();
    await load.stop().catch(() => undefined);
    await poller.close();
    await serf.close();
  }
}

/** GETs on fresh connections, back to back from `loops` loops, recording which node served each and when. */
function startProbe(port: number, loops: number): { served: Map<string, Served>; stop(): Promise<{ requests: number; failed: number }> } {
  const served = new Map<string, Served>();
  let running = true;
  let requests = 0;
  let failed = 0;
  const loop = async (): Promise<void> => {
    while (running) {
      try {
        const res = await httpGet(port);
        const now = performance.timeOrigin + performance.now();
        requests++;
        if (res.status !== 200) failed++;
        const name = decodeURIComponent(String(res.headers['x-served-by']));
        const entry = served.get(name);
        if (entry) {
          entry.count++;
          entry.last = now;
        } else served.set(name, { count: 1, first: now, last: now });
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

interface Sample {
  /** From the command until the load balancer's agent lists the change in `members`. */
  listed: number;
  /** From the command to the event on the load balancer's agent. */
  serf: number;
  /** From that event to the first (join) or last (leave) response served by the node. */
  after: number;
  /** From that event until the candidate haproxy.cfg was written (joins only). */
  written?: number;
}

function row(event: string, samples: Sample[]): Record<string, string | number> {
  const p = (values: number[], q: number): number => Math.round(percentile(values, q));
  const serf = samples.map((s) => s.serf);
  const after = samples.map((s) => s.after);
  const total = samples.map((s) => s.serf + s.after);
  const written = samples.flatMap((s) => (s.written === undefined ? [] : [s.written]));
  return {
    event,
    'Serf: listed p50': p(samples.map((s) => s.listed), 0.5),
    'streamed p50': p(serf, 0.5),
    p95: p(serf, 0.95),
    'after the event p50': p(after, 0.5),
    ' p95': p(after, 0.95),
    '(written p50)': written.length > 0 ? p(written, 0.5) : '',
    'total p50': p(total, 0.5),
    '  p95': p(total, 0.95),
  };
}

/** utime+stime and cutime+cstime of a process, in clock ticks. */
async function cpuTicks(pid: number): Promise<{ own: number; children: number }> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After `pid (comm)`: state is field 3, utime 14, stime 15, cutime 16, cstime 17 (1-based, man proc).
  const at = (n: number): number => Number(fields[n - 3]);
  return { own: at(14) + at(15), children: at(16) + at(17) };
}

/** A module for `--import` that logs every child the rosterd CLI starts, one JSON line each. */
function countSpawnsModule(logFile: string): string {
  return `import { ChildProcess } from 'node:child_process';
import { appendFileSync } from 'node:fs';
if (/[\\\\/]cli[\\\\/]bin\\.js$/.test(process.argv[1] ?? '')) {
  const spawn = ChildProcess.prototype.spawn;
  ChildProcess.prototype.spawn = function (options) {
    appendFileSync(${JSON.stringify(logFile)}, JSON.stringify({ at: Date.now(), file: options.file, args: options.args }) + '\\n');
    return spawn.call(this, options);
  };
}
`;
}

async function readLines(file: string): Promise<string[]> {
  return (await readFile(file, 'utf8').catch(() => '')).split('\n').filter(Boolean);
}

async function countLines(file: string): Promise<number> {
  return (await readLines(file)).length;
}

// --- 3: failed requests, rosterd against the lab's handler + -sf restart ---

interface Baseline {
  httpPort: number;
  restarts(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * The lab's old load balancer, next to the new one in the same Serf cluster: a Serf agent whose event handler
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
  await writeFile(join(dir, 'members.json'), '[]');
  const first = async (): Promise<void> => {
    const { stdout } = await execFileAsync('serf', ['members', `-rpc-addr=127.0.0.1:${labSerfRpc}`, '-status=alive', '-tag', 'role=web', '-format=json']);
    const members = (JSON.parse(stdout) as { members: { name: string; addr: string; tags: Record<string, string> }[] }).members;
    await writeFile(join(dir, 'members.json'), JSON.stringify(members.map((m) => ({ name: m.name, address: m.addr.replace(/:\d+$/, ''), port: Number(m.tags.port), tags: m.tags }))));
    await execFileAsync(process.execPath, [BIN, 'render', '--once', '-c', join(dir, 'renderer.config.json')], { env });
    await execFileAsync('haproxy', ['-D', '-f', join(dir, 'haproxy.cfg'), '-p', join(dir, 'haproxy.pid')], { env });
  };
  await first();
  const agent: ChildProcess = spawn(
    'serf',
    ['agent', '-node=lb-old', `-bind=127.0.0.1:${serfBind}`, `-rpc-addr=${rpc}`, '-tag', 'role=lb', `-join=127.0.0.1:${labSerfBind}`, `-event-handler=member-join,member-leave,member-failed,member-update=${handler}`],
    { env, stdio: 'ignore' },
  );
  const restarts = async (): Promise<number> => (await readLines(join(dir, 'restarts'))).length;
  // The agent's own join is an event too: wait for that restart before measuring.
  await waitFor(async () => (await restarts()) >= 1, 'the handler to run once', { timeout: 20_000 });
  return {
    httpPort,
    restarts,
    async stop() {
      const exited = new Promise((resolve) => agent.once('exit', resolve));
      agent.kill('SIGKILL');
      await exited;
      // A handler that was running when the agent died goes on and still starts its HAProxy (daemonized, in a
      // session of its own): end the handlers first, then every HAProxy of this directory, matched by command
      // line, until neither is left.
      const patterns = [handler, join(dir, 'haproxy.cfg')];
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
}

interface WrkResult {
  requests: number;
  socketErrors: number;
  non2xx: number;
}

/** wrk for `seconds`, keep-alive or a new connection per request; resolves with what it counted. */
function wrk(port: number, connections: number, seconds: number, close: boolean): Promise<WrkResult> {
  const args = ['-t1', `-c${connections}`, `-d${seconds}s`, ...(close ? ['-H', 'Connection: close'] : []), `http://127.0.0.1:${port}/`];
  return execFileAsync('wrk', args, { timeout: (seconds + 30) * 1000 }).then(({ stdout }) => {
    const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
    return {
      requests: Number(/(\d+) requests in/.exec(stdout)?.[1] ?? Number.NaN),
      socketErrors: errors ? errors.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0,
      non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(stdout)?.[1] ?? 0),
    };
  });
}

async function compareFailures(lab: Lab, baseline: Baseline): Promise<BenchSection> {
  const lb = (await lab.status()).lb!;
  const reloadsBefore = lb.reloads ?? 0;
  const restartsBefore = await baseline.restarts();
  const seconds = Math.ceil((2000 + CHANGES * CHANGE_EVERY_MS + 4000) / 1000);
  const loads = [
    { method: 'rosterd, master-worker reload', client: 'keep-alive, 16 connections', run: wrk(lb.httpPort, 16, seconds, false) },
    { method: 'rosterd, master-worker reload', client: 'new connection per request, 256 connections', run: wrk(lb.httpPort, 256, seconds, true) },
    { method: 'lab handler, restart with -sf', client: 'keep-alive, 16 connections', run: wrk(baseline.httpPort, 16, seconds, false) },
    { method: 'lab handler, restart with -sf', client: 'new connection per request, 256 connections', run: wrk(baseline.httpPort, 256, seconds, true) },
  ];
  // 20 changes, one every 1.6 s (longer than Serf's coalescing, so each one is its own event): 10 joins and
  // 10 graceful leaves, interleaved (J1 J2 L1 J3 L2 … J10 L9 L10), with at least one node up throughout.
  const changes = ['+1', '+2'];
  for (let i = 3; i <= CHANGES / 2; i++) changes.push(`-${i - 2}`, `+${i}`);
  changes.push(`-${CHANGES / 2 - 1}`, `-${CHANGES / 2}`);
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const pending: Promise<unknown>[] = [];
  for (const change of changes) {
    const at = Date.now();
    const name = `c-${change.slice(1)}`;
    pending.push(change.startsWith('+') ? lab.run(['add', name, '--no-wait']) : lab.run(['remove', name]));
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, at + CHANGE_EVERY_MS - Date.now())));
  }
  await Promise.all(pending);
  const results = await Promise.all(loads.map((l) => l.run));
  const reloads = ((await lab.status()).lb?.reloads ?? 0) - reloadsBefore;
  const restarts = (await baseline.restarts()) - restartsBefore;
  return {
    title: `Failed requests during ${CHANGES} membership changes (${CHANGES / 2} joins, ${CHANGES / 2} graceful leaves), both load balancers under the same load at the same time`,
    rows: loads.map((l, i) => {
      const r = results[i]!;
      return {
        method: l.method,
        client: l.client,
        requests: r.requests,
        'socket errors': r.socketErrors,
        'non-2xx': r.non2xx,
        failed: r.socketErrors + r.non2xx,
        'reloads / restarts': l.method.startsWith('rosterd') ? reloads : restarts,
      };
    }),
    notes: [
      `wrk, one thread per client, ${seconds} s, 4 clients at once on 2 cores; one change every ${CHANGE_EVERY_MS / 1000} s. Same template (with option idle-close-on-response) on both sides: only the way the new config is applied differs.`,
    ],
  };
}

// Runnable alone: `node --import jiti/register bench/haproxy-lab.ts`.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const section of await run()) console.log(formatSection(section));
}
