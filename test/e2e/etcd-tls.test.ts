import { readFile, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startCommand, startDaemon, type Daemon } from '../helpers/cli.js';
import { startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';
import { tempDir } from '../helpers/tmp.js';
import { createTestPki, type TestPki } from '../helpers/tls.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The CLI with etcd over TLS, where etcd requires client certificates (certificates made for the test):
 * `rosterd run` renders with `tls` files next to its config and logs nothing but log lines; a wrong CA
 * keeps the last good output and says what failed; `rosterd announce` joins and leaves with `--cacert`,
 * `--cert` and `--key`, and exits 3 with the reason when the handshake fails.
 */

const PREFIX = '/services/web/';
const TEMPLATE = '{% for m in members %}server {{ m.name }} {{ m.address }}:{{ m.port }}\n{% endfor %}';

let etcd: EtcdCluster;
let pki: TestPki;
let dir: string;
let cleanup: () => Promise<void>;
const processes: Daemon[] = [];

beforeAll(async () => {
  ({ path: dir, cleanup } = await tempDir());
  pki = await createTestPki(dir);
  etcd = await startEtcdCluster(1, { tls: { pki, clientCertAuth: true } });
  await etcd.etcdctl(['put', `${PREFIX}web-1`, JSON.stringify({ address: '10.0.0.1', port: 8080 })]);
}, 60_000);

afterAll(async () => {
  await etcd?.cleanup();
  await cleanup?.();
});

afterEach(async () => {
  for (const p of processes.splice(0)) await p.stop('SIGKILL').catch(() => undefined);
});

/** A config in `dir` with TLS files given relative to it, rendering to out.cfg. */
async function writeConfig(file: string, tls: Record<string, string>): Promise<string> {
  const relativeTls = Object.fromEntries(Object.entries(tls).map(([k, path]) => [k, relative(dir, path)]));
  const path = join(dir, file);
  const source = { type: 'etcd', endpoints: etcd.endpoints, prefix: PREFIX, requestTimeout: '2s', tls: relativeTls };
  await writeFile(path, JSON.stringify({ sources: { web: source }, templates: [{ contents: TEMPLATE, destination: 'out.cfg' }] }));
  return path;
}

const output = (): Promise<string> => readFile(join(dir, 'out.cfg'), 'utf8').catch(() => '');
const goodTls = () => ({ ca: pki.ca, cert: pki.client.cert, key: pki.client.key });
/** Lines on stderr that are not JSON log lines (Node's own warnings would be). */
const rawLines = (daemon: Daemon): unknown[] => daemon.logs.filter((l) => l.raw === true);

describe('rosterd run over TLS', () => {
  it('renders with tls.ca, tls.cert and tls.key relative to the config; every stderr line is a log line', async () => {
    const daemon = startDaemon(['-c', await writeConfig('good.json', goodTls())], { cwd: dir });
    processes.push(daemon);
    await waitFor(async () => (await output()) !== '', 'the first render', { timeout: 20_000 });
    expect(await output()).toBe('server web-1 10.0.0.1:8080\n');

    await etcd.etcdctl(['put', `${PREFIX}web-2`, JSON.stringify({ address: '10.0.0.2', port: 8080 })]);
    await waitFor(async () => (await output()).includes('web-2'), 'a change over the TLS watch', { timeout: 20_000 });
    // gRPC gives TLS the IP address as the server name, which Node warns about: a log line, not a raw one.
    expect(rawLines(daemon)).toEqual([]);
    expect(await daemon.stop('SIGTERM')).toBe(0);
    await etcd.etcdctl(['del', `${PREFIX}web-2`]);
  }, 60_000);

  it('a wrong CA: the last good output stays, the error says what failed; render --once exits 3 at once', async () => {
    const good = await runCli(['render', '--once', '--timeout', '10s', '-c', await writeConfig('good.json', goodTls())], { cwd: dir });
    expect(good.code).toBe(0);
    const before = await output();
    expect(before).toBe('server web-1 10.0.0.1:8080\n');
    await etcd.etcdctl(['put', `${PREFIX}web-3`, JSON.stringify({ address: '10.0.0.3', port: 8080 })]);
    const expected = `etcd at ${etcd.endpoints[0]}: etcd's TLS certificate is not accepted (unable to verify the first certificate): checked against the CA file ${pki.otherCa}`;

    const config = await writeConfig('wrong-ca.json', { ...goodTls(), ca: pki.otherCa });
    const daemon = startDaemon(['-c', config], { cwd: dir });
    processes.push(daemon);
    const error = await daemon.waitForLog(/TLS certificate is not accepted/, { timeout: 20_000 });
    expect(String(error.msg)).toContain(expected);
    expect(await output()).toBe(before);
    expect(await daemon.stop('SIGTERM')).toBe(0);
    expect(await output()).toBe(before);

    const started = Date.now();
    const once = await runCli(['render', '--once', '--timeout', '20s', '-c', config], { cwd: dir });
    expect(once.code).toBe(3);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(once.stderr).toContain(`[source web] ${expected}`);
    expect(await output()).toBe(before);
    await etcd.etcdctl(['del', `${PREFIX}web-3`]);
  }, 60_000);
});

describe('rosterd announce over TLS', () => {
  const announceArgs = (name: string, tls: string[]): string[] => ['--endpoints', etcd.endpoints.join(','), '--prefix', PREFIX, '--name', name, '--address', '10.0.0.9', '--port', '9000', ...tls];
  const tlsFlags = (files: { ca: string; cert?: string; key?: string }): string[] => [
    '--cacert',
    relative(dir, files.ca),
    ...(files.cert === undefined ? [] : ['--cert', relative(dir, files.cert)]),
    ...(files.key === undefined ? [] : ['--key', relative(dir, files.key)]),
  ];

  it('joins with --cacert, --cert and --key (relative to its directory) and leaves on SIGTERM', async () => {
    const node = startCommand('announce', announceArgs('web-9', tlsFlags(goodTls())), { cwd: dir });
    processes.push(node);
    await node.waitForLog(/announced web-9/, { timeout: 20_000 });
    expect(JSON.parse(await etcd.etcdctl(['get', `${PREFIX}web-9`, '--print-value-only']))).toEqual({ address: '10.0.0.9', port: 9000, tags: {} });
    expect(rawLines(node)).toEqual([]);
    expect(await node.stop('SIGTERM')).toBe(0);
    expect(await etcd.etcdctl(['get', `${PREFIX}web-9`])).toBe('');
  }, 30_000);

  it.each([
    ['a wrong CA', () => ({ ...goodTls(), ca: pki.otherCa }), () => `etcd's TLS certificate is not accepted (unable to verify the first certificate): checked against the CA file ${pki.otherCa}`],
    ['no client certificate', () => ({ ca: pki.ca }), () => 'etcd refused the TLS handshake (bad certificate): no client certificate was given'],
  ])('%s: exit 3 with the reason, nothing written', async (_, files, reason) => {
    const run = await runCli(['announce', ...announceArgs('web-8', tlsFlags(files()))], { cwd: dir });
    expect(run.code).toBe(3);
    expect(run.stderr).toContain(`cannot announce ${PREFIX}web-8: ${reason()}`);
    expect(await etcd.etcdctl(['get', `${PREFIX}web-8`])).toBe('');
  });

  it('--cert without --key is a usage error', async () => {
    const run = await runCli(['announce', ...announceArgs('web-8', ['--cacert', pki.ca, '--cert', pki.client.cert])], { cwd: dir });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('--cert and --key go together');
  });
});
