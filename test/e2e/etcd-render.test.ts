import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startCommand, startDaemon, type Daemon } from '../helpers/cli.js';
import { startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The CLI with real etcd: `rosterd run` renders the members under a prefix, and web nodes come and go with
 * `rosterd announce` (joined under a lease, gone at once on SIGTERM, gone after the TTL on a crash). Bad
 * values are dropped with a warning naming the key; a wrong password is a clear error that never shows
 * the password.
 */

const PREFIX = '/services/web/';
const TEMPLATE = '{% for m in members %}server {{ m.name | slug }} {{ m.address }}:{{ m.port }}{% if m.tags.zone %} # {{ m.tags.zone }}{% endif %}\n{% endfor %}';

let etcd: EtcdCluster;
let dir: string;
let cleanup: () => Promise<void>;
const processes: Daemon[] = [];

async function writeConfig(file: string, source: Record<string, unknown>, destination = 'out.cfg'): Promise<string> {
  const path = join(dir, file);
  const config = { sources: { web: { type: 'etcd', endpoints: etcd.endpoints, prefix: PREFIX, requestTimeout: '2s', ...source } }, templates: [{ contents: TEMPLATE, destination }] };
  await writeFile(path, JSON.stringify(config));
  return path;
}

const output = (file = 'out.cfg'): Promise<string> => readFile(join(dir, file), 'utf8').catch(() => '');
const lines = async (): Promise<string[]> => (await output()).split('\n').filter(Boolean);
const put = async (name: string, value: string): Promise<void> => {
  await etcd.etcdctl(['put', `${PREFIX}${name}`, value]);
};

function announce(args: readonly string[], env: NodeJS.ProcessEnv = {}): Daemon {
  const started = startCommand('announce', ['--endpoints', etcd.endpoints.join(','), '--prefix', PREFIX, ...args], { cwd: dir, env });
  processes.push(started);
  return started;
}

/** The lease a key is attached to (etcd's decimal id), or undefined when the key does not exist. */
async function leaseOf(name: string): Promise<string | undefined> {
  const out = await etcd.etcdctl(['get', `${PREFIX}${name}`, '-w', 'json']);
  if (!out.includes('"kvs"')) return undefined;
  // Lease ids are 64-bit: read as text, JSON.parse would round them.
  return /"lease":(\d+)/.exec(out)?.[1] ?? '0';
}

beforeAll(async () => {
  ({ path: dir, cleanup } = await tempDir());
  etcd = await startEtcdCluster(1);
}, 60_000);

afterAll(async () => {
  for (const p of processes) await p.stop('SIGKILL').catch(() => undefined);
  await etcd?.cleanup();
  await cleanup?.();
}, 60_000);

describe('rendering from etcd', () => {
  let daemon: Daemon;
  beforeAll(async () => {
    await put('web-1', JSON.stringify({ address: '10.0.0.1', port: 8080, tags: { zone: 'a' } }));
    daemon = startDaemon(['-c', await writeConfig('renderer.config.json', {})], { cwd: dir });
    processes.push(daemon);
  }, 30_000);

  it('renders the members under the prefix, named after their keys', async () => {
    await waitFor(async () => (await output()) !== '', 'the first render', { timeout: 20_000 });
    expect(await output()).toBe('server web-1 10.0.0.1:8080 # a\n');
  });

  it('a node joins with `announce` and leaves at once on SIGTERM: its lease is revoked', async () => {
    const node = announce(['--name', 'web-2', '--address', '10.0.0.2', '--port', '8081', '--tag', 'zone=b', '--ttl', '60s']);
    await waitFor(async () => (await output()).includes('server web-2 10.0.0.2:8081 # b'), 'the announced node rendered', { timeout: 20_000 });
    const lease = await leaseOf('web-2');
    expect(lease).toMatch(/^[1-9]\d*$/);

    expect(await node.stop('SIGTERM')).toBe(0);
    // Gone with its lease, long before the 60 s TTL could have run out.
    expect(await leaseOf('web-2')).toBeUndefined();
    expect(await etcd.etcdctl(['lease', 'list'])).not.toContain(BigInt(lease!).toString(16));
    await waitFor(async () => !(await output()).includes('web-2'), 'the leave rendered', { timeout: 20_000 });
    expect(await output()).toBe('server web-1 10.0.0.1:8080 # a\n');
  }, 60_000);

  it('a crashed node stays until its lease expires, then leaves', async () => {
    const node = announce(['--name', 'web-3', '--address', '10.0.0.3', '--port', '8082', '--ttl', '2s']);
    await waitFor(async () => (await output()).includes('server web-3'), 'the announced node rendered', { timeout: 20_000 });
    await node.stop('SIGKILL');
    // Nobody revoked the lease: the key is still there right after the crash...
    expect(await leaseOf('web-3')).toBeDefined();
    // ...and goes when the lease expires.
    await waitFor(async () => (await leaseOf('web-3')) === undefined, 'the lease to expire', { timeout: 20_000 });
    await waitFor(async () => !(await output()).includes('web-3'), 'the expiry rendered', { timeout: 20_000 });
  }, 60_000);

  it('drops values that are not member objects, warning once with the key; the others render', async () => {
    const since = daemon.logs.length;
    await put('not-json', 'hello');
    await put('a-list', '[1, 2]');
    await put('evil', JSON.stringify({ address: '10.0.0.66', port: 80, tags: { zone: 'x\n    server injected 6.6.6.6:80' } }));
    await put('web-4', JSON.stringify({ address: '10.0.0.4', port: 8083 }));
    await waitFor(async () => (await output()).includes('web-4'), 'the good member rendered', { timeout: 20_000 });
    await daemon.waitForLog(/key "\/services\/web\/not-json" dropped: the value is not valid JSON/, { since });
    await daemon.waitForLog(/key "\/services\/web\/a-list" dropped: the value is an array, not a JSON member object/, { since });
    await daemon.waitForLog(/member "evil" dropped: tag "zone" contains a control character/, { since });
    expect(await lines()).toEqual(['server web-1 10.0.0.1:8080 # a', 'server web-4 10.0.0.4:8083']);

    // Another change re-emits the members: the bad keys are not warned about again.
    await put('web-5', JSON.stringify({ address: '10.0.0.5', port: 8084 }));
    await waitFor(async () => (await output()).includes('web-5'), 'the next member rendered', { timeout: 20_000 });
    const warnings = daemon.logs.slice(since).filter((l) => /dropped/.test(String(l.msg)));
    expect(warnings).toHaveLength(3);
    for (const name of ['not-json', 'a-list', 'evil', 'web-4', 'web-5']) await etcd.etcdctl(['del', `${PREFIX}${name}`]);
  }, 60_000);

  it('keeps the output while etcd is down, reports it, and follows again once it is back', async () => {
    const node = announce(['--name', 'web-6', '--address', '10.0.0.6', '--port', '8085', '--ttl', '2s']);
    await waitFor(async () => (await output()).includes('web-6'), 'the announced node rendered', { timeout: 20_000 });
    const firstLease = await leaseOf('web-6');
    const before = await output();
    const since = daemon.logs.length;
    const announceSince = node.logs.length;
    await etcd.nodes[0]!.kill();
    await daemon.waitForLog(/etcd at .* etcd unreachable/, { since, timeout: 20_000 });
    expect(await output()).toBe(before);
    // The node cannot renew its lease for longer than the TTL: it gives the lease up and keeps trying.
    await node.waitForLog(/the lease was lost/, { since: announceSince, timeout: 20_000 });

    await etcd.nodes[0]!.restart();
    await put('web-7', JSON.stringify({ address: '10.0.0.7', port: 8086 }));
    await waitFor(async () => (await output()).includes('web-7'), 'a change after etcd came back', { timeout: 30_000 });
    // The node announced itself again, under a new lease.
    await waitFor(async () => {
      const lease = await leaseOf('web-6');
      return lease !== undefined && lease !== firstLease;
    }, 'web-6 under a new lease', { timeout: 30_000 });
    expect(await output()).toContain('server web-6 10.0.0.6:8085');
    expect(await node.stop('SIGTERM')).toBe(0);
    await etcd.etcdctl(['del', `${PREFIX}web-7`]);
  }, 120_000);
});

describe('announce refuses what rosterd would drop', () => {
  it.each([
    [['--name', 'web-x', '--address', 'not an address'], /address "not an address" is neither an IP address nor a valid host name/],
    [['--name', 'web-x', '--address', '10.0.0.9', '--tag', 'note=a\nb'], /tag "note" contains a control character/],
    [['--name', 'web-x', '--address', '10.0.0.9', '--port', '80a'], /--port: "80a" is not a port/],
    [['--name', 'web-x', '--address', '10.0.0.9', '--tag', 'novalue'], /--tag: expected key=value/],
    [['--name', 'web-x', '--address', '10.0.0.9', '--user', 'someone'], /--user needs a password/],
  ])('%j', async (args, message) => {
    const run = await runCli(['announce', '--endpoints', etcd.endpoints.join(','), '--prefix', PREFIX, ...args]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(message);
    expect(await leaseOf('web-x')).toBeUndefined();
  });
});

describe('auth', () => {
  let secured: EtcdCluster;
  const password = 'correct horse battery';
  beforeAll(async () => {
    secured = await startEtcdCluster(1);
    await secured.enableAuth('rosterd', password);
    await secured.etcdctl(['put', `${PREFIX}web-1`, JSON.stringify({ address: '10.0.1.1', port: 9000 })]);
  }, 60_000);
  afterAll(() => secured?.cleanup());
  afterEach(async () => {
    for (const p of processes.splice(0)) await p.stop('SIGKILL').catch(() => undefined);
  });

  const config = (file: string, auth: Record<string, string>) => writeConfig(file, { endpoints: secured.endpoints, auth }, `${file}.out`);

  it('renders with the right password, read from a file next to the config', async () => {
    await writeFile(join(dir, 'etcd.password'), `${password}\n`);
    const run = await runCli(['render', '--once', '--timeout', '10s', '-c', await config('right.json', { username: 'rosterd', passwordFile: 'etcd.password' })]);
    expect(run.stderr).not.toMatch(/ERROR|WARN/);
    expect(run.code).toBe(0);
    expect(await output('right.json.out')).toBe('server web-1 10.0.1.1:9000\n');
  });

  it('a wrong password is a clear error, exit 3 at once, and never reaches the log', async () => {
    const started = Date.now();
    const run = await runCli(['render', '--once', '--timeout', '20s', '--log-level', 'trace', '-c', await config('wrong.json', { username: 'rosterd', password: 'wrong-password-value' })]);
    expect(run.code).toBe(3);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(run.stderr).toContain(`[source web] etcd at ${secured.endpoints[0]}: etcd refused the user name or password (user "rosterd")`);
    expect(run.stderr).not.toContain('wrong-password-value');
  });

  it('announce takes the password from $ROSTERD_ETCD_PASSWORD; a wrong one exits 3 without showing it', async () => {
    const args = ['announce', '--endpoints', secured.endpoints.join(','), '--prefix', PREFIX, '--name', 'web-2', '--address', '10.0.1.2', '--user', 'rosterd'];
    const wrong = await runCli(['--log-level', 'trace', ...args], { env: { ROSTERD_ETCD_PASSWORD: 'wrong-password-value' } });
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toContain('etcd refused the user name or password (user "rosterd")');
    expect(wrong.stderr).not.toContain('wrong-password-value');

    const node = startCommand('announce', args.slice(1), { env: { ROSTERD_ETCD_PASSWORD: password } });
    processes.push(node);
    await node.waitForLog(/announced web-2/);
    expect(await secured.etcdctl(['get', `${PREFIX}web-2`, '--print-value-only'])).toBe('{"address":"10.0.1.2","tags":{}}\n');
    expect(await node.stop('SIGTERM')).toBe(0);
    expect(await secured.etcdctl(['get', `${PREFIX}web-2`])).toBe('');
  });
});
