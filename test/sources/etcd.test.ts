import { execFile, execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { SourceError } from '../../src/errors.js';
import { createLogger, silentLogger } from '../../src/logger.js';
import createEtcdSource, { type EtcdSourceOptions } from '../../src/sources/etcd.js';
import { createSnapshotGate } from '../../src/sources/snapshot.js';
import type { Member, Source } from '../../src/sources/types.js';
import { connectedMember, startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The etcd source against real etcd: a watch whose start revision was compacted, a three-member cluster
 * losing its leader (and then its quorum) while members change, and what the source refuses or keeps secret.
 */

const PREFIX = '/services/web/';
const member = (i: number): string => JSON.stringify({ address: `10.0.0.${i}`, port: 8000 + i });

/** A started source whose gated snapshots and errors are recorded. */
interface Run {
  source: Source;
  snapshots: Member[][];
  errors: Error[];
  names(): string[];
}

const started: Source[] = [];
afterEach(async () => {
  for (const source of started.splice(0)) await source.stop();
});

async function run(options: Partial<EtcdSourceOptions> & Pick<EtcdSourceOptions, 'endpoints'>, onSnapshot?: (members: Member[]) => void): Promise<Run> {
  const source = createEtcdSource('web', { type: 'etcd', prefix: PREFIX, requestTimeout: 2000, ...options }, { logger: silentLogger() });
  const snapshots: Member[][] = [];
  const errors: Error[] = [];
  const gate = createSnapshotGate('web', (members) => {
    snapshots.push(members);
    onSnapshot?.(members);
  }, () => {});
  await source.start(gate, (err) => errors.push(err));
  started.push(source);
  return { source, snapshots, errors, names: () => (snapshots.at(-1) ?? []).map((m) => m.name) };
}

describe('a single member', () => {
  let etcd: EtcdCluster;
  beforeAll(async () => {
    etcd = await startEtcdCluster(1);
  }, 60_000);
  afterAll(() => etcd?.cleanup());

  it('reads afresh when the revision it was about to watch from was compacted', async () => {
    await etcd.etcdctl(['put', `${PREFIX}web-1`, member(1)]);
    const ctl = (...args: string[]): string => execFileSync('etcdctl', [`--endpoints=${etcd.endpoints[0]}`, ...args], { encoding: 'utf8' });
    let first = true;
    // The first snapshot is delivered between the read and the start of the watch: changing etcd and
    // compacting right there (synchronously) makes the watch start at a revision that no longer exists.
    const r = await run({ endpoints: etcd.endpoints }, () => {
      if (!first) return;
      first = false;
      ctl('put', `${PREFIX}web-2`, member(2));
      ctl('del', `${PREFIX}web-1`);
      const revision = /"revision":(\d+)/.exec(ctl('get', `${PREFIX}web-2`, '-w', 'json'))![1]!;
      ctl('compact', revision);
    });
    await waitFor(() => r.names().join() === 'web-2', 'the state after the compaction', { timeout: 15_000 });
    expect(r.snapshots.map((s) => s.map((m) => m.name))).toEqual([['web-1'], ['web-2']]);
    expect(r.errors).toEqual([]);

    // And it watches again from there.
    await etcd.etcdctl(['put', `${PREFIX}web-3`, member(3)]);
    await waitFor(() => r.names().join() === 'web-2,web-3', 'a change after the fresh read', { timeout: 15_000 });
    await etcd.etcdctl(['del', '--prefix', PREFIX]);
  }, 30_000);

  it('a value may name the member itself; without a name, the key after the prefix names it', async () => {
    await etcd.etcdctl(['put', `${PREFIX}nested/key`, member(4)]);
    await etcd.etcdctl(['put', `${PREFIX}k5`, JSON.stringify({ name: 'web-5', address: '10.0.0.5', tags: { a: 'b' } })]);
    const r = await run({ endpoints: etcd.endpoints });
    await waitFor(() => r.snapshots.length > 0, 'a snapshot');
    expect(r.snapshots[0]).toEqual([
      { name: 'nested/key', address: '10.0.0.4', port: 8004, tags: {}, status: 'alive', source: 'web' },
      { name: 'web-5', address: '10.0.0.5', tags: { a: 'b' }, status: 'alive', source: 'web' },
    ]);
    await etcd.etcdctl(['del', '--prefix', PREFIX]);
  });

  it('an empty prefix is an empty list, not an error', async () => {
    const r = await run({ endpoints: etcd.endpoints, prefix: '/nothing/here/' });
    await waitFor(() => r.snapshots.length > 0, 'a snapshot');
    expect(r.snapshots).toEqual([[]]);
    expect(r.errors).toEqual([]);
  });

  it('an endpoint that does not answer is skipped: the next one serves', async () => {
    const r = await run({ endpoints: ['http://127.0.0.1:1', ...etcd.endpoints, 'http://127.0.0.1:2'] });
    await etcd.etcdctl(['put', `${PREFIX}web-6`, member(6)]);
    await waitFor(() => r.names().includes('web-6'), 'the member through the live endpoint', { timeout: 15_000 });
    await etcd.etcdctl(['del', '--prefix', PREFIX]);
  }, 30_000);

  it('the password reaches no log line, even at trace level', async () => {
    await etcd.enableAuth('rosterd', 'good-password');
    let logged = '';
    const logger = createLogger({ level: 'trace', format: 'json', destination: new Writable({ write: (chunk, _e, done) => ((logged += String(chunk)), done()) }) });
    const source = createEtcdSource('web', { type: 'etcd', endpoints: etcd.endpoints, prefix: PREFIX, requestTimeout: 2000, auth: { username: 'rosterd', password: 'wrong-password-value' } }, { logger });
    started.push(source);
    const errors: Error[] = [];
    await source.start(() => {}, (err) => errors.push(err));
    await waitFor(() => errors.length > 0, 'the refusal');
    expect(errors[0]).toMatchObject({ code: 'E_SOURCE', retryable: false });
    expect(errors[0]!.message).toContain('etcd refused the user name or password (user "rosterd")');
    // Logged with the options the way a careless caller might: redacted.
    logger.info({ options: { auth: { username: 'rosterd', password: 'wrong-password-value' } } }, 'options');
    expect(logged).toContain('[redacted]');
    expect(logged).not.toContain('wrong-password-value');
    expect(JSON.stringify(errors[0], Object.getOwnPropertyNames(errors[0]))).not.toContain('wrong-password-value');
  });
});

describe('a three-member cluster', () => {
  let etcd: EtcdCluster;
  beforeAll(async () => {
    etcd = await startEtcdCluster(3);
  }, 60_000);
  afterAll(() => etcd?.cleanup());
  // Each case starts with all three members up.
  afterEach(async () => {
    for (const node of etcd.nodes) if (node.pid === undefined) await node.restart();
  }, 60_000);

  it('follows while the leader is killed and members change; never empties; catches up', async () => {
    for (let i = 1; i <= 3; i++) await etcd.etcdctl(['put', `${PREFIX}web-${i}`, member(i)]);
    const r = await run({ endpoints: etcd.endpoints });
    await waitFor(() => r.names().length === 3, 'the first three members');

    // The member the source reads and watches through becomes the leader, and is then killed: the source
    // loses its watch during the election and fails over to another member.
    const leader = await waitFor(() => connectedMember(etcd), 'the member the source is connected to');
    await etcd.moveLeader(leader);
    // Changes keep coming while the leader dies and the others elect a new one. A write that was in flight
    // to the dying leader may fail: it is sent again (to the members that are up) until it is taken.
    const write = (args: string[]) => waitFor(() => etcd.etcdctl(args).then(() => true), `etcdctl ${args.join(' ')}`, { timeout: 30_000, interval: 100 });
    const writes = (async () => {
      for (let i = 4; i <= 12; i++) await write(['put', `${PREFIX}web-${i}`, member(i)]);
      await write(['del', `${PREFIX}web-1`]);
    })();
    await leader.kill();
    await writes;
    const expected = Array.from({ length: 11 }, (_, i) => `web-${i + 2}`).sort();
    await waitFor(() => r.names().join() === expected.join(), 'every change after the leader died', { timeout: 30_000 });
    for (const snapshot of r.snapshots) expect(snapshot.length).toBeGreaterThanOrEqual(3);
  }, 90_000);

  it('without a quorum it reports "no leader" and keeps the last snapshot; with the quorum back it catches up', async () => {
    await etcd.etcdctl(['del', '--prefix', PREFIX]);
    await etcd.etcdctl(['put', `${PREFIX}web-1`, member(1)]);
    // Only the member that will survive: it stays reachable, but alone it has no leader.
    const [survivor, ...others] = etcd.nodes;
    const r = await run({ endpoints: [survivor!.endpoint] });
    await waitFor(() => r.names().join() === 'web-1', 'the first snapshot');
    const count = r.snapshots.length;

    for (const node of others) await node.kill();
    await waitFor(() => r.errors.length > 0, 'an error once the quorum is lost', { timeout: 30_000 });
    expect(r.errors[0]).toBeInstanceOf(SourceError);
    expect(r.errors[0]!.message).toMatch(/etcd has no leader/);
    expect(r.snapshots.length).toBe(count);

    await Promise.all(others.map((node) => node.restart()));
    await etcd.etcdctl(['put', `${PREFIX}web-2`, member(2)]);
    await waitFor(() => r.names().join() === 'web-1,web-2', 'the change after the quorum came back', { timeout: 30_000 });
    for (const snapshot of r.snapshots) expect(snapshot.length).toBeGreaterThan(0);
  }, 90_000);
});

describe('etcd unreachable', () => {
  it('reports the failure once while it goes on, through every retry', async () => {
    let logged = '';
    const logger = createLogger({ level: 'debug', format: 'json', destination: new Writable({ write: (chunk, _e, done) => ((logged += String(chunk)), done()) }) });
    // Nothing listens on port 1: each read fails at once, and after three the client pauses the endpoint.
    const source = createEtcdSource('web', { type: 'etcd', endpoints: ['http://127.0.0.1:1'], prefix: PREFIX, requestTimeout: 2000 }, { logger });
    started.push(source);
    const errors: Error[] = [];
    await source.start(() => {}, (err) => errors.push(err));
    await waitFor(() => logged.split('again later').length > 5, 'five failed reads', { timeout: 20_000 });
    expect(errors.map((e) => e.message)).toEqual(['[source web] etcd at http://127.0.0.1:1: etcd unreachable: connect ECONNREFUSED 127.0.0.1:1']);
  }, 30_000);
});

describe('the etcd client is loaded only when a source starts', () => {
  it('not by the CLI, the config schema, or building the source', async () => {
    const main = new URL('../../dist/cli/main.js', import.meta.url).href;
    const script = `
      import { createRequire } from 'node:module';
      const { main } = await import(${JSON.stringify(main)});
      const { createSource } = await import(${JSON.stringify(new URL('../../dist/sources/index.js', import.meta.url).href)});
      const { loadConfig } = await import(${JSON.stringify(new URL('../../dist/config/load.js', import.meta.url).href)});
      const { silentLogger } = await import(${JSON.stringify(new URL('../../dist/logger.js', import.meta.url).href)});
      const config = await loadConfig({ sources: { web: { type: 'etcd', prefix: '/x/' } }, templates: [{ contents: 'x', destination: 'out' }] });
      createSource('web', config.sources.web, silentLogger());
      const loaded = () => Object.keys(createRequire(import.meta.url).cache).filter((f) => f.includes('/node_modules/etcd3/') || f.includes('/node_modules/@grpc/')).length;
      const before = loaded();
      // The check itself can see the client once it is loaded.
      await import('etcd3');
      console.log(JSON.stringify([before, loaded() > 0]));
    `;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { cwd: fileURLToPath(new URL('../..', import.meta.url)) });
    expect(JSON.parse(stdout)).toEqual([0, true]);
  });
});

describe('options', () => {
  const base: EtcdSourceOptions = { type: 'etcd', endpoints: ['127.0.0.1:2379'], prefix: PREFIX, requestTimeout: 1000 };
  it.each([
    [{ endpoints: ['ftp://127.0.0.1:2379'] }, /`endpoints`: "ftp:\/\/127.0.0.1:2379": the scheme must be http:\/\/ or https:\/\//],
    [{ endpoints: ['127.0.0.1'] }, /give a port/],
    [{ endpoints: ['http://a:1', 'https://b:2'] }, /mix http:\/\/ and https:\/\//],
    [{ endpoints: ['http://a:1'], tls: { ca: '/ca.pem' } }, /the endpoint must be https:\/\//],
    [{ prefix: '' }, /`prefix`/],
    [{ auth: { username: 'u' } }, /exactly one of `password` and `passwordFile`/],
    [{ tls: { cert: '/c.pem' } }, /`cert` and `key` together/],
    [{ requestTimeout: 0 }, /`requestTimeout`/],
  ])('refuses %j', (options, message) => {
    expect(() => createEtcdSource('web', { ...base, ...options }, { logger: silentLogger() })).toThrow(message);
  });

  it('the config resolves the TLS and password files against its directory, and an endpoint without scheme means https with TLS', async () => {
    const config = await loadConfig(
      {
        sources: { web: { type: 'etcd', endpoints: ['10.0.0.1:2379'], prefix: PREFIX, auth: { username: 'u', passwordFile: 'secret' }, tls: { ca: 'tls/ca.pem' } } },
        templates: [{ contents: 'x', destination: 'out' }],
      },
      { baseDir: '/etc/rosterd' },
    );
    expect(config.sources.web).toEqual({
      type: 'etcd',
      endpoints: ['10.0.0.1:2379'],
      prefix: PREFIX,
      auth: { username: 'u', passwordFile: '/etc/rosterd/secret' },
      tls: { ca: '/etc/rosterd/tls/ca.pem' },
      requestTimeout: 5000,
    });
    const source = createEtcdSource('web', config.sources.web as EtcdSourceOptions, { logger: silentLogger() });
    expect(source.name).toBe('web');
  });

  it('the config refuses mixed schemes and an auth with both a password and a file', async () => {
    const attempt = loadConfig({
      sources: { web: { type: 'etcd', endpoints: ['http://a:1', 'https://b:2'], prefix: PREFIX, auth: { username: 'u', password: 'p', passwordFile: 'f' } } },
      templates: [{ contents: 'x', destination: 'out' }],
    });
    await expect(attempt).rejects.toThrow(/sources\.web\.auth: give exactly one of "password" and "passwordFile"/);
  });
});
