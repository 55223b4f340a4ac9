import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Etcd3 } from 'etcd3';
import { silentLogger } from '../src/logger.js';
import { SerfClient } from '../src/serf/client.js';
import createEtcdSource from '../src/sources/etcd.js';
import { createSnapshotGate } from '../src/sources/snapshot.js';
import { startEtcdCluster } from '../test/helpers/etcd.js';
import { freePort } from '../test/helpers/ports.js';
import { startSerfAgent, type SerfAgent } from '../test/helpers/serf.js';
import { waitFor } from '../test/helpers/wait.js';
import { percentile, type BenchSection } from './types.js';

/**
 * The etcd source beside the Serf source, in the same run: a node joining → the daemon's output lists it,
 * counted from the start of its process (`rosterd announce`, or a Serf agent started with -join) and from
 * the moment the registry learns of it (a put of the key, or a running agent's join); the node leaving
 * (SIGTERM: lease revoked, or SIGINT: Serf's graceful leave) → the output drops it; the daemon's CPU while
 * nothing changes. Then the first snapshot of a large prefix, and what loading the etcd client costs.
 */

const BIN = fileURLToPath(new URL('../dist/cli/bin.js', import.meta.url));
const ROUNDS = 8;
const IDLE_SECONDS = 20;
const SETTLE_SECONDS = 30;
const TEMPLATE = '{% for m in members %}server {{ m.name | slug }} {{ m.address }}:{{ m.port | default: 80 }}\n{% endfor %}';
const exec = promisify(execFile);

interface Daemon {
  out: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

async function startDaemon(source: Record<string, unknown>): Promise<Daemon> {
  const dir = await mkdtemp(join(tmpdir(), 'rosterd-bench-etcd-'));
  await writeFile(join(dir, 'renderer.config.json'), JSON.stringify({ sources: { web: source }, templates: [{ contents: TEMPLATE, destination: 'out.cfg' }] }));
  const child = spawn(process.execPath, [BIN, 'run', '--log-level', 'warn'], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
  const out = join(dir, 'out.cfg');
  await waitFor(async () => (await readFile(out, 'utf8').catch(() => '')) !== '', 'the first render', { timeout: 30_000 });
  return {
    out,
    child,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Milliseconds until `test` holds for the output file, polled every 2 ms. */
async function until(file: string, test: (text: string) => boolean, start: number): Promise<number> {
  await waitFor(async () => test(await readFile(file, 'utf8').catch(() => '')), 'the output to change', { timeout: 30_000, interval: 2 });
  return performance.now() - start;
}

/** The wall-clock time (ms since the epoch) of the "announced" line in an announce's JSON log. */
function announcedAt(node: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    let text = '';
    node.stderr!.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      const line = text.split('\n').find((l) => l.includes('"announced '));
      if (line !== undefined) resolve(Date.parse((JSON.parse(line) as { time: string }).time));
    });
    node.once('exit', () => reject(new Error(`announce exited before it announced:\n${text}`)));
  });
}

/** CPU milliseconds (user + system) a process used so far. */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  // utime and stime are fields 14 and 15 of the line, in clock ticks (100 per second on Linux).
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** The daemon's CPU per second while nothing changes, and its resident memory (MiB). */
async function idle(daemon: Daemon): Promise<{ cpu: number; rss: number }> {
  // Let the last render settle first, and V8's memory reducer: it runs a few full collections in the
  // half minute after activity, which would be counted as the source's.
  await new Promise((resolve) => setTimeout(resolve, SETTLE_SECONDS * 1000));
  const before = cpuMs(daemon.child.pid!);
  await new Promise((resolve) => setTimeout(resolve, IDLE_SECONDS * 1000));
  return { cpu: (cpuMs(daemon.child.pid!) - before) / IDLE_SECONDS, rss: rssMiB(daemon.child.pid!) };
}

/** A process's resident memory, in MiB. */
function rssMiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;
}

const row = (what: string, samples: number[]): Record<string, string | number> => ({
  what,
  samples: samples.length,
  'p50 (ms)': percentile(samples, 0.5),
  'p95 (ms)': percentile(samples, 0.95),
});

export async function run(): Promise<BenchSection[]> {
  // --- etcd: announce → installed (and when announce had written the key), a put → installed, revoke → removed, idle CPU ---
  const etcd = await startEtcdCluster(1);
  const writer = new Etcd3({ hosts: etcd.endpoints });
  await writer.put('/bench/web/seed').value(JSON.stringify({ address: '10.9.0.1', port: 80 }));
  const etcdDaemon = await startDaemon({ type: 'etcd', endpoints: etcd.endpoints, prefix: '/bench/web/' });
  const etcdJoin: number[] = [];
  const etcdAnnounced: number[] = [];
  const etcdPut: number[] = [];
  const etcdLeave: number[] = [];
  const announceRss: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const started = Date.now();
    const start = performance.now();
    const node = spawn(process.execPath, [BIN, 'announce', '--log-format', 'json', '--endpoints', etcd.endpoints[0]!, '--prefix', '/bench/web/', '--name', `node-${i}`, '--address', '10.9.1.1', '--port', '8080', '--ttl', '30s'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const announced = announcedAt(node);
    etcdJoin.push(await until(etcdDaemon.out, (t) => t.includes(`node-${i} `), start));
    etcdAnnounced.push((await announced) - started);
    announceRss.push(rssMiB(node.pid!));
    const leave = performance.now();
    node.kill('SIGTERM');
    etcdLeave.push(await until(etcdDaemon.out, (t) => !t.includes(`node-${i} `), leave));
    await new Promise((resolve) => (node.exitCode === null ? node.once('exit', resolve) : resolve(undefined)));

    // The source alone: the key written by a client that is connected already.
    const put = performance.now();
    await writer.put(`/bench/web/put-${i}`).value(JSON.stringify({ address: '10.9.2.1', port: 8080 }));
    etcdPut.push(await until(etcdDaemon.out, (t) => t.includes(`put-${i} `), put));
    await writer.delete().key(`/bench/web/put-${i}`);
    await until(etcdDaemon.out, (t) => !t.includes(`put-${i} `), put);
  }
  const etcdIdle = await idle(etcdDaemon);
  await etcdDaemon.stop();

  // --- Serf: agent started with -join → installed, a running agent's join → installed, graceful leave → removed, idle CPU ---
  const lb = await startSerfAgent({ name: 'lb' });
  const serfDaemon = await startDaemon({ type: 'serf', rpcAddr: lb.rpcAddr, resyncDelay: '20ms' });
  const serfJoin: number[] = [];
  const serfJoinRpc: number[] = [];
  const serfLeave: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const start = performance.now();
    const agent: SerfAgent = await startSerfAgent({ name: `node-${i}`, tags: { port: '8080' }, join: [lb.bindAddr], bindPort: await freePort() });
    serfJoin.push(await until(serfDaemon.out, (t) => t.includes(`node-${i} `), start));
    const leave = performance.now();
    const stopped = agent.stop('SIGINT');
    serfLeave.push(await until(serfDaemon.out, (t) => !t.includes(`node-${i} `), leave));
    await stopped;

    // The source alone: an agent that runs already joins (through its RPC, connected already).
    const running = await startSerfAgent({ name: `rpc-${i}`, tags: { port: '8080' }, bindPort: await freePort() });
    const client = await SerfClient.connect({ address: running.rpcAddr });
    const join = performance.now();
    await client.join([lb.bindAddr]);
    serfJoinRpc.push(await until(serfDaemon.out, (t) => t.includes(`rpc-${i} `), join));
    client.close();
    const left = running.stop('SIGINT');
    await until(serfDaemon.out, (t) => !t.includes(`rpc-${i} `), join);
    await left;
  }
  const serfIdle = await idle(serfDaemon);
  await serfDaemon.stop();
  await lb.kill();

  // --- first snapshot of a large prefix, in this process (the etcd client is loaded already by then) ---
  const firstSnapshot = async (prefix: string): Promise<number> => {
    const source = createEtcdSource('big', { type: 'etcd', endpoints: etcd.endpoints, prefix, requestTimeout: 30_000 }, { logger: silentLogger() });
    let members = -1;
    const start = performance.now();
    await source.start(createSnapshotGate('big', (m) => (members = m.length), () => {}), () => {});
    await waitFor(() => members >= 0, 'the first snapshot', { timeout: 60_000, interval: 1 });
    const took = performance.now() - start;
    await source.stop();
    return took;
  };
  await firstSnapshot('/bench/web/'); // loads the client
  const small = [await firstSnapshot('/bench/web/'), await firstSnapshot('/bench/web/'), await firstSnapshot('/bench/web/')];
  // 10,000 keys, written 500 at a time.
  for (let i = 0; i < 10_000; i += 500) {
    await Promise.all(
      Array.from({ length: 500 }, (_, j) => writer.put(`/bench/big/web-${i + j}`).value(JSON.stringify({ address: `10.${(i + j) >> 8}.${(i + j) & 255}.1`, port: 8080, tags: { zone: 'a' } }))),
    );
  }
  writer.close();
  const big = [await firstSnapshot('/bench/big/'), await firstSnapshot('/bench/big/'), await firstSnapshot('/bench/big/')];
  await etcd.cleanup();

  // --- loading the etcd client: a fresh Node process each time ---
  const wall = async (args: string[]): Promise<number> => {
    const start = performance.now();
    await exec(process.execPath, args, { cwd: fileURLToPath(new URL('..', import.meta.url)) });
    return performance.now() - start;
  };
  const version: number[] = [];
  const withEtcd: number[] = [];
  for (let i = 0; i < 5; i++) {
    version.push(await wall([BIN, '--version']));
    withEtcd.push(await wall(['--input-type=module', '-e', `await import(${JSON.stringify(BIN.replace(/bin\.js$/, 'main.js'))}); await import('etcd3'); await import('@grpc/grpc-js');`]));
  }

  return [
    {
      title: 'etcd beside Serf: a node joins or leaves → the daemon\'s output follows (no wait.min)',
      rows: [
        row('etcd: `rosterd announce` started → listed', etcdJoin),
        row('etcd: … of which started → key written (announce logs "announced")', etcdAnnounced),
        row('etcd: a put of the key (client connected) → listed', etcdPut),
        row('Serf: agent started with -join → listed', serfJoin),
        row('Serf: a running agent joins (RPC join) → listed', serfJoinRpc),
        row('etcd: announce SIGTERM (lease revoked) → removed', etcdLeave),
        row('Serf: agent SIGINT (graceful leave) → removed', serfLeave),
      ],
      notes: [
        'Started → listed includes starting a process (Node, rosterd\'s CLI, the etcd client and a lease for announce; the serf binary and its join for Serf); a put or a join → listed is what the source costs once the node is up.',
        `Ratios etcd/Serf of p50: process started → listed ${(percentile(etcdJoin, 0.5) / percentile(serfJoin, 0.5)).toFixed(2)}×, put/join → listed ${(percentile(etcdPut, 0.5) / percentile(serfJoinRpc, 0.5)).toFixed(2)}×, leave ${(percentile(etcdLeave, 0.5) / percentile(serfLeave, 0.5)).toFixed(2)}×.`,
        `The daemon while nothing changes (CPU over ${IDLE_SECONDS} s after ${SETTLE_SECONDS} s of calm, in 10 ms ticks; resident memory): etcd source ${etcdIdle.cpu.toFixed(2)} ms/s and ${etcdIdle.rss.toFixed(0)} MiB, Serf source ${serfIdle.cpu.toFixed(2)} ms/s and ${serfIdle.rss.toFixed(0)} MiB.`,
        `A running \`rosterd announce\` (resident memory once it announced, p50): ${percentile(announceRss, 0.5).toFixed(0)} MiB.`,
      ],
    },
    {
      title: 'etcd source: start → first snapshot (in-process, the client already loaded)',
      rows: [row('1 key', small), row('10,000 keys', big)],
    },
    {
      title: 'Loading the etcd client (fresh Node process, wall time)',
      rows: [row('`rosterd --version` (etcd3 not loaded)', version), row('rosterd\'s CLI module + etcd3 + @grpc/grpc-js', withEtcd)],
      notes: [`Cost of the etcd client at start-up, paid only when an etcd source starts or \`rosterd announce\` runs: about ${(percentile(withEtcd, 0.5) - percentile(version, 0.5)).toFixed(0)} ms.`],
    },
  ];
}
