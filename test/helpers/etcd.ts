import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readdir, readFile, readlink } from 'node:fs/promises';
import { get as httpsGet } from 'node:https';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './ports.js';
import type { TestPki } from './tls.js';
import { tempDir } from './tmp.js';
import { waitFor } from './wait.js';

/**
 * Real `etcd` servers (Debian's etcd-server) for tests, on 127.0.0.1 with free ports and a temporary data
 * directory each: one node, or a cluster of several. A node can be killed and started again on the same
 * ports and data. Readiness is etcd's own `/health` (true once the member has a leader). `etcdctl` runs
 * against them for setup and for changes made behind the code under test. With `tls`, clients reach the
 * members over https with the test CA's server certificate (peers still talk plain http), and with
 * `clientCertAuth` a client must present a certificate signed by that CA.
 */

const run = promisify(execFile);

/** One etcd member. */
export interface EtcdNode {
  name: string;
  /** `http://127.0.0.1:P` (`https://` with TLS), for clients. */
  endpoint: string;
  clientPort: number;
  peerPort: number;
  /** The process id while it runs. */
  readonly pid: number | undefined;
  /** The member's output since it last started, for diagnostics. */
  output(): string;
  /** SIGKILL (a crash) and waits for the exit. Harmless when it does not run. */
  kill(): Promise<void>;
  /** Starts the member again on the same ports and data directory, and waits until it is healthy. */
  restart(): Promise<void>;
}

/** A running cluster (of one node or more). */
export interface EtcdCluster {
  nodes: EtcdNode[];
  /** Every member's client endpoint, as the `endpoints` option takes them. */
  endpoints: string[];
  /** Runs `etcdctl` against the members that run (as root once auth is on, or as `user`: `name:password`); resolves with its stdout. */
  etcdctl(args: readonly string[], options?: { user?: string }): Promise<string>;
  /** The member that is the leader now (asks each running member). */
  leader(): Promise<EtcdNode>;
  /** Makes `node` the leader (`etcdctl move-leader`), and waits until it is. */
  moveLeader(node: EtcdNode): Promise<void>;
  /** The cluster's current revision. */
  revision(): Promise<number>;
  /** Creates `root` and `username` (read-write on everything), and enables auth. */
  enableAuth(username: string, password: string): Promise<void>;
  /** Kills every member and removes their data. */
  cleanup(): Promise<void>;
}

const running = new Set<ChildProcess>();
let clusters = 0;

// A test run that dies before its afterAll must not leave etcd behind.
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/**
 * The member this process holds a client connection to (the code under test picked one of the endpoints):
 * its sockets (`/proc/self/fd`) matched with the TCP table by inode.
 */
export async function connectedMember(cluster: EtcdCluster): Promise<EtcdNode | undefined> {
  const inodes = new Set<string>();
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    if (inode) inodes.add(inode);
  }
  const table = await readFile('/proc/net/tcp', 'utf8');
  for (const line of table.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    // local_address rem_address st ... inode (field 9); state 01 is ESTABLISHED.
    if (fields.length < 10 || fields[3] !== '01' || !inodes.has(fields[9]!)) continue;
    const port = Number.parseInt(fields[2]!.split(':')[1]!, 16);
    const node = cluster.nodes.find((n) => n.clientPort === port);
    if (node) return node;
  }
  return undefined;
}

/** The password the root user gets when a test enables auth. */
export const ROOT_PASSWORD = 'root-secret';

/** How a test cluster serves its clients. */
export interface EtcdClusterOptions {
  readyTimeout?: number;
  /** Serve clients over TLS with `pki.server`; `clientCertAuth`: only clients with a certificate from `pki.ca`. */
  tls?: { pki: TestPki; clientCertAuth?: boolean };
}

/** Starts a cluster of `size` members and resolves once every member is healthy. */
export async function startEtcdCluster(size = 1, options: EtcdClusterOptions = {}): Promise<EtcdCluster> {
  const dir = await tempDir('rosterd-etcd-');
  const token = `rosterd-test-${process.pid}-${++clusters}`;
  const specs = [];
  for (let i = 1; i <= size; i++) specs.push({ name: `etcd${i}`, clientPort: await freePort(), peerPort: await freePort() });
  const initialCluster = specs.map((s) => `${s.name}=http://127.0.0.1:${s.peerPort}`).join(',');
  const readyTimeout = options.readyTimeout ?? 20_000;
  const tls = options.tls;
  const scheme = tls === undefined ? 'http' : 'https';
  // What etcd is started with, and what its clients here (etcdctl, the health check) present.
  const serverTls = tls === undefined ? [] : [`--cert-file=${tls.pki.server.cert}`, `--key-file=${tls.pki.server.key}`, ...(tls.clientCertAuth ? ['--client-cert-auth', `--trusted-ca-file=${tls.pki.ca}`] : [])];
  const clientTls = tls === undefined ? [] : [`--cacert=${tls.pki.ca}`, `--cert=${tls.pki.client.cert}`, `--key=${tls.pki.client.key}`];
  let rootPassword: string | undefined;

  const nodes = specs.map((spec): EtcdNode & { start(): void; healthy(): Promise<void> } => {
    let child: ChildProcess | undefined;
    let exited: Promise<void> = Promise.resolve();
    let output = '';
    const args = [
      `--name=${spec.name}`,
      `--data-dir=${join(dir.path, spec.name)}`,
      `--listen-client-urls=${scheme}://127.0.0.1:${spec.clientPort}`,
      `--advertise-client-urls=${scheme}://127.0.0.1:${spec.clientPort}`,
      ...serverTls,
      `--listen-peer-urls=http://127.0.0.1:${spec.peerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${spec.peerPort}`,
      `--initial-cluster=${initialCluster}`,
      `--initial-cluster-token=${token}`,
      '--initial-cluster-state=new',
      '--logger=zap',
      '--log-level=warn',
    ];
    const node = {
      ...spec,
      endpoint: `${scheme}://127.0.0.1:${spec.clientPort}`,
      get pid() {
        return child?.exitCode === null && child.signalCode === null ? child.pid : undefined;
      },
      output: () => output,
      start() {
        output = '';
        const started = spawn('etcd', args, { stdio: ['ignore', 'pipe', 'pipe'] });
        child = started;
        running.add(started);
        started.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
        started.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
        exited = new Promise((resolve) => started.once('exit', () => (running.delete(started), resolve())));
      },
      async healthy() {
        try {
          await waitFor(
            async () => {
              if (node.pid === undefined) throw new Error(`etcd ${spec.name} exited:\n${output}`);
              return (JSON.parse(await health(node.endpoint)) as { health?: string }).health === 'true';
            },
            `etcd ${spec.name} to be healthy on ${node.endpoint}`,
            { timeout: readyTimeout, interval: 50 },
          );
        } catch (err) {
          throw new Error(`${(err as Error).message}\n--- etcd output ---\n${output}`, { cause: err });
        }
      },
      async kill() {
        if (node.pid !== undefined) child!.kill('SIGKILL');
        await exited;
      },
      async restart() {
        await node.kill();
        node.start();
        await node.healthy();
      },
    };
    return node;
  });

  const etcdctl: EtcdCluster['etcdctl'] = async (args, { user } = {}) => {
    const endpoints = nodes.filter((n) => n.pid !== undefined).map((n) => n.endpoint);
    const credentials = user ?? (rootPassword === undefined ? undefined : `root:${rootPassword}`);
    const auth = credentials === undefined ? [] : [`--user=${credentials}`];
    const { stdout } = await run('etcdctl', [`--endpoints=${endpoints.join(',')}`, '--command-timeout=5s', ...clientTls, ...auth, ...args], {
      env: { ...process.env, ETCDCTL_API: '3' },
    });
    return stdout;
  };

  const cluster: EtcdCluster = {
    nodes,
    endpoints: nodes.map((n) => n.endpoint),
    etcdctl,
    async leader() {
      return waitFor(
        async () => {
          for (const node of nodes) {
            if (node.pid === undefined) continue;
            const { stdout } = await run('etcdctl', [`--endpoints=${node.endpoint}`, ...clientTls, 'endpoint', 'status', '-w', 'json'], { env: { ...process.env, ETCDCTL_API: '3' } });
            // IDs are 64-bit: compared as text, JSON.parse would round them.
            const member = /"member_id":(\d+)/.exec(stdout)?.[1];
            if (member !== undefined && member === /"leader":(\d+)/.exec(stdout)?.[1]) return node;
          }
          return undefined;
        },
        'a leader',
        { timeout: 15_000, interval: 100 },
      );
    },
    async moveLeader(node) {
      const current = await cluster.leader();
      if (current === node) return;
      // `member list -w simple` prints IDs in hex, as move-leader takes them.
      const line = (await etcdctl(['member', 'list'])).split('\n').find((l) => l.includes(`, ${node.name}, `));
      const id = line?.split(',')[0]?.trim();
      if (!id) throw new Error(`no member ID for ${node.name}`);
      await run('etcdctl', [`--endpoints=${current.endpoint}`, ...clientTls, ...(rootPassword === undefined ? [] : [`--user=root:${rootPassword}`]), 'move-leader', id], { env: { ...process.env, ETCDCTL_API: '3' } });
      await waitFor(async () => (await cluster.leader()) === node, `${node.name} to lead`, { timeout: 15_000 });
    },
    async revision() {
      const [status] = JSON.parse(await etcdctl(['endpoint', 'status', '-w', 'json'])) as { Status: { header: { revision: number } } }[];
      return Number(status!.Status.header.revision);
    },
    async enableAuth(username, password) {
      await etcdctl(['user', 'add', `root:${ROOT_PASSWORD}`]);
      await etcdctl(['user', 'grant-role', 'root', 'root']);
      await etcdctl(['user', 'add', `${username}:${password}`]);
      await etcdctl(['user', 'grant-role', username, 'root']);
      await etcdctl(['auth', 'enable']);
      rootPassword = ROOT_PASSWORD;
    },
    async cleanup() {
      await Promise.all(nodes.map((n) => n.kill()));
      await dir.cleanup();
    },
  };

  /** The body of GET `endpoint`/health (with the test CA and client certificate over https). */
  async function health(endpoint: string): Promise<string> {
    if (tls === undefined) return (await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1000) })).text();
    const files = { ca: readFileSync(tls.pki.ca), cert: readFileSync(tls.pki.client.cert), key: readFileSync(tls.pki.client.key) };
    return new Promise((resolve, reject) => {
      const request = httpsGet(`${endpoint}/health`, { ...files, timeout: 1000 }, (response) => {
        let body = '';
        response.on('data', (chunk: Buffer) => (body += chunk.toString()));
        response.on('end', () => resolve(body));
        response.on('error', reject);
      });
      request.on('timeout', () => request.destroy(new Error('no answer within 1000 ms')));
      request.on('error', reject);
    });
  }

  for (const node of nodes) node.start();
  try {
    await Promise.all(nodes.map((n) => n.healthy()));
  } catch (err) {
    await cluster.cleanup();
    throw err;
  }
  return cluster;
}
