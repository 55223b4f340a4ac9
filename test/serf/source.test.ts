import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SourceError } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import { SerfClient } from '../../src/serf/index.js';
import createSerfSource, { type SerfSourceOptions } from '../../src/sources/serf.js';
import { createSnapshotGate, type DroppedMember } from '../../src/sources/snapshot.js';
import type { Member, Source } from '../../src/sources/types.js';
import { freePort } from '../helpers/ports.js';
import { startSerfAgent, type SerfAgent } from '../helpers/serf.js';
import { waitFor } from '../helpers/wait.js';

// Serf delivers member events after ~1-2 s; a killed node is declared dead after several more.
const EVENT_WAIT = { timeout: 20_000 };

interface Watched {
  source: Source;
  snapshots: Member[][];
  errors: Error[];
  dropped: DroppedMember[];
  /** Names in the latest snapshot. */
  names(): string[];
}

describe('serf source against real agents', () => {
  const agents: SerfAgent[] = [];
  const sources: Source[] = [];
  let a: SerfAgent;
  let b: SerfAgent;
  let c: SerfAgent;

  const start = async (...args: Parameters<typeof startSerfAgent>) => {
    const agent = await startSerfAgent(...args);
    agents.push(agent);
    return agent;
  };
  const rpc = async (agent: SerfAgent, action: (client: SerfClient) => Promise<unknown>) => {
    const client = await SerfClient.connect({ address: agent.rpcAddr });
    try {
      await action(client);
    } finally {
      await client.close();
    }
  };

  /** Starts a source on `agent`, its snapshots passed through the gate as the runner does. */
  const watch = async (agent: SerfAgent, options: Partial<SerfSourceOptions> = {}, logger = silentLogger()): Promise<Watched> => {
    const source = createSerfSource(
      'cluster',
      { rpcAddr: agent.rpcAddr, status: ['alive'], portTag: 'port', resyncDelay: 100, connectTimeout: 2000, ...options },
      { logger },
    );
    sources.push(source);
    const watched: Watched = {
      source,
      snapshots: [],
      errors: [],
      dropped: [],
      names: () => (watched.snapshots.at(-1) ?? []).map((m) => m.name),
    };
    const gate = createSnapshotGate(source.name, (members) => watched.snapshots.push(members), (d) => watched.dropped.push(d));
    await source.start(gate, (err) => watched.errors.push(err));
    return watched;
  };
  const hasNames = (watched: Watched, expected: string[]) => JSON.stringify(watched.names()) === JSON.stringify(expected);

  beforeAll(async () => {
    a = await start({ name: 'a', tags: { role: 'web', port: '8001' } });
    [b, c] = await Promise.all([
      start({ name: 'b', tags: { role: 'web', port: '8002' }, join: [a.bindAddr] }),
      start({ name: 'c', tags: { role: 'db', port: '8003' }, join: [a.bindAddr] }),
    ]);
    for (const agent of [a, b, c]) {
      await rpc(agent, (client) => waitFor(async () => (await client.members()).length === 3, `${agent.name} to see 3 members`, EVENT_WAIT));
    }
  });

  afterEach(async () => {
    await Promise.all(sources.splice(0).map((source) => source.stop()));
  });

  afterAll(async () => {
    await Promise.all(agents.map((agent) => agent.kill()));
  });

  it('renders the members of three agents', async () => {
    const watched = await watch(a);
    await waitFor(() => watched.snapshots.length > 0, 'a snapshot');
    expect(watched.snapshots[0]).toEqual([
      { name: 'a', address: '127.0.0.1', port: 8001, tags: { role: 'web', port: '8001' }, status: 'alive', source: 'cluster' },
      { name: 'b', address: '127.0.0.1', port: 8002, tags: { role: 'web', port: '8002' }, status: 'alive', source: 'cluster' },
      { name: 'c', address: '127.0.0.1', port: 8003, tags: { role: 'db', port: '8003' }, status: 'alive', source: 'cluster' },
    ]);
    expect(watched.errors).toEqual([]);
  });

  it('shows a node that joins, and drops it when it leaves', async () => {
    const watched = await watch(a);
    await waitFor(() => hasNames(watched, ['a', 'b', 'c']), 'the first snapshot');
    const d = await start({ name: 'd', tags: { role: 'temp' }, join: [b.bindAddr] });
    await waitFor(() => hasNames(watched, ['a', 'b', 'c', 'd']), 'd to appear', EVENT_WAIT);
    expect(watched.snapshots.at(-1)!.find((m) => m.name === 'd')).not.toHaveProperty('port');
    const leaving = d.stop('SIGINT'); // a graceful leave: member-leave comes before the process exits
    await waitFor(() => hasNames(watched, ['a', 'b', 'c']), 'd to disappear', EVENT_WAIT);
    await leaving;
    // The roster never flapped: every snapshot had the three steady nodes.
    for (const members of watched.snapshots) expect(members.map((m) => m.name)).toEqual(expect.arrayContaining(['a', 'b', 'c']));
    expect(watched.errors).toEqual([]);
  });

  it('drops a node that fails (killed, then force-left)', async () => {
    // Let e's member-join go by first, so that it cannot be what makes the event-driven source look again.
    const watcher = await SerfClient.connect({ address: a.rpcAddr });
    let joined = false;
    await watcher.stream('member-join', (event) => (joined ||= event.event === 'member-join' && event.members.some((m) => m.name === 'e')));
    const e = await start({ name: 'e', join: [a.bindAddr] });
    await waitFor(() => joined, 'the member-join of e', EVENT_WAIT);
    await watcher.close();
    const onEvents = await watch(a);
    // `leaving` comes with no event, so only a periodic refresh sees it at once.
    const polling = await watch(b, { refreshInterval: 300 });
    for (const watched of [onEvents, polling]) await waitFor(() => watched.names().includes('e'), 'e to appear', EVENT_WAIT);
    await e.kill();
    await rpc(a, (client) => client.forceLeave('e'));
    await waitFor(() => !polling.names().includes('e'), 'the polling source to drop e', EVENT_WAIT);
    // The other one drops it on the member-leave event that ends the failure detection.
    await waitFor(() => !onEvents.names().includes('e'), 'the event-driven source to drop e', EVENT_WAIT);
    expect(onEvents.names()).toEqual(expect.arrayContaining(['a', 'b', 'c']));
  });

  it("sees a join and a graceful leave from the agent's log, before its event stream, with the agent logging at warn", async () => {
    const quiet = await start({ name: 'quiet', join: [a.bindAddr], config: { log_level: 'warn' } });
    const streamed = new Map<string, number>();
    const watcher = await SerfClient.connect({ address: quiet.rpcAddr });
    await watcher.stream('member-join,member-leave,member-failed', (event) => {
      // Under load a leave can reach this agent as a failure: either one is its event.
      const kind = event.event === 'member-failed' ? 'member-leave' : event.event;
      if ('members' in event) for (const m of event.members) if (m.name === 'f' && !streamed.has(kind)) streamed.set(kind, performance.now());
    });
    // No poll: only the log's hints and the stream can make it look.
    const watched = await watch(quiet, { refreshInterval: false, monitor: true });
    await waitFor(() => watched.names().includes('quiet'), 'the first snapshot', EVENT_WAIT);
    const f = await start({ name: 'f', join: [a.bindAddr] });
    const joined = await waitFor(() => watched.names().includes('f') && performance.now(), 'f to appear', EVENT_WAIT);
    const joinEvent = await waitFor(() => streamed.get('member-join'), "the stream's member-join", EVENT_WAIT);
    expect(joined).toBeLessThan(joinEvent);
    const leaving = f.stop('SIGINT');
    const left = await waitFor(() => !watched.names().includes('f') && performance.now(), 'f to go', EVENT_WAIT);
    const leaveEvent = await waitFor(() => streamed.get('member-leave'), "the stream's member-leave", EVENT_WAIT);
    expect(left).toBeLessThan(leaveEvent);
    await leaving;
    await watcher.close();
    // A graceful leave, so that the other tests never see it as alive while its failure is being detected.
    await quiet.stop('SIGINT');
  });

  it('filters by status and by tag patterns that must match the whole value (missing tag = "")', async () => {
    const web = await watch(a, { tags: { role: 'web' } });
    const webOrDb = await watch(a, { tags: { role: 'db|web' } });
    const partial = await watch(a, { tags: { role: 'we' } });
    const noZone = await watch(a, { tags: { zone: '' } });
    const left = await watch(a, { status: ['left'] });
    await waitFor(() => [web, webOrDb, partial, noZone, left].every((w) => w.snapshots.length > 0), 'every snapshot');
    expect(web.names()).toEqual(['a', 'b']);
    expect(webOrDb.names()).toEqual(['a', 'b', 'c']);
    expect(partial.names()).toEqual([]);
    expect(noZone.names()).toEqual(expect.arrayContaining(['a', 'b', 'c']));
    // A node that leaves gracefully stays listed as `left` until it is reaped: only that source sees it.
    const leaver = await start({ name: 'leaver', tags: { role: 'web' }, join: [a.bindAddr] });
    await waitFor(() => web.names().includes('leaver'), 'the leaver to join', EVENT_WAIT);
    await leaver.stop('SIGINT');
    await waitFor(() => left.names().includes('leaver'), 'the leaver listed as left', EVENT_WAIT);
    await waitFor(() => !web.names().includes('leaver'), 'the leaver gone from the alive members', EVENT_WAIT);
    for (const member of left.snapshots.at(-1)!) expect(member.status).toBe('left');
    expect(left.names()).not.toContain('a');
  });

  it('drops a member whose tag holds a newline, or whose port tag is not a number, with a reason', async () => {
    const watched = await watch(a);
    await waitFor(() => watched.names().includes('c'), 'the first snapshot');
    await rpc(c, (client) => client.tags({ note: 'line one\nline two' }));
    await rpc(b, (client) => client.tags({ port: 'http' }));
    await waitFor(() => !watched.names().includes('c') && !watched.names().includes('b'), 'b and c to be dropped', EVENT_WAIT);
    expect(watched.dropped).toEqual(
      expect.arrayContaining([
        { member: '"c"', reason: 'tag "note" contains a control character' },
        { member: '"b"', reason: expect.stringMatching(/^port "http" is not an integer/) },
      ]),
    );
    await rpc(c, (client) => client.tags({}, ['note']));
    await rpc(b, (client) => client.tags({ port: '8002' }));
    await waitFor(() => watched.names().includes('c') && watched.names().includes('b'), 'b and c to come back', EVENT_WAIT);
  });

  it('reports the loss of its agent, emits nothing meanwhile, and resyncs when it is back on the same ports', async () => {
    const r = await start({ name: 'r', join: [a.bindAddr] });
    const watched = await watch(r);
    await waitFor(() => hasNames(watched, ['a', 'b', 'c', 'r']), 'r to see everyone', EVENT_WAIT);
    const count = watched.snapshots.length;
    await r.stop('SIGTERM');
    await waitFor(() => watched.errors.length > 0, 'an error', EVENT_WAIT);
    expect(watched.errors[0]).toBeInstanceOf(SourceError);
    expect(watched.errors[0]).toMatchObject({ source: 'cluster', retryable: true, code: 'E_SOURCE' });
    expect(watched.errors[0]!.message).toContain(r.rpcAddr);
    expect(watched.snapshots.length).toBe(count);

    const back = await start({ name: 'r', tags: { generation: '2' }, bindPort: r.bindPort, rpcPort: r.rpcPort, join: [a.bindAddr] });
    await waitFor(
      () => hasNames(watched, ['a', 'b', 'c', 'r']) && watched.snapshots.at(-1)!.find((m) => m.name === 'r')?.tags.generation === '2',
      'the restarted agent\'s members',
      EVENT_WAIT,
    );
    // A fresh agent may answer with itself alone until its join completes; never with nothing.
    for (const members of watched.snapshots) expect(members.length).toBeGreaterThan(0);
    await back.kill();
  });

  describe('auth', () => {
    let secured: SerfAgent;
    beforeAll(async () => {
      secured = await start({ name: 'secured', authKey: 'the-right-key', tags: { port: '9000' } });
    });

    it('works with the right key', async () => {
      const watched = await watch(secured, { authKey: 'the-right-key' });
      await waitFor(() => hasNames(watched, ['secured']), 'a snapshot');
    });

    it('reports a wrong key as a non-retryable error, without logging the key', async () => {
      const lines: string[] = [];
      const logs = new Writable({ write: (chunk, _, done) => (lines.push(String(chunk)), done()) });
      const watched = await watch(secured, { authKey: 'a-wrong-key' }, pino({ level: 'trace' }, logs));
      await waitFor(() => watched.errors.length > 0, 'an error');
      const [error] = watched.errors;
      expect(error).toBeInstanceOf(SourceError);
      expect(error).toMatchObject({ retryable: false, source: 'cluster' });
      expect(error!.message).toMatch(/refused the auth key/);
      expect(error!.message).not.toContain('a-wrong-key');
      expect(watched.snapshots).toEqual([]);
      expect(lines.length).toBeGreaterThan(0);
      expect(lines.join('')).not.toContain('a-wrong-key');
    });

    it('reports a missing key as a non-retryable error', async () => {
      const watched = await watch(secured);
      await waitFor(() => watched.errors.length > 0, 'an error');
      expect(watched.errors[0]).toMatchObject({ retryable: false, message: expect.stringMatching(/requires an auth key/) });
      expect(watched.snapshots).toEqual([]);
    });
  });

  it('stops cleanly while it waits to reconnect', async () => {
    const port = await freePort();
    const source = createSerfSource(
      'nowhere',
      { rpcAddr: `127.0.0.1:${port}`, status: ['alive'], portTag: 'port', resyncDelay: 100, connectTimeout: 1000 },
      { logger: silentLogger() },
    );
    const errors: Error[] = [];
    const timersBefore = process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;
    await source.start(() => {}, (err) => errors.push(err));
    await waitFor(() => errors.length > 0, 'a connection error');
    expect(errors[0]).toMatchObject({ retryable: true, message: expect.stringMatching(/ECONNREFUSED/) });
    await source.stop();
    const timersAfter = process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;
    expect(timersAfter).toBeLessThanOrEqual(timersBefore);
  });

  it('checks its options when created', () => {
    const valid: SerfSourceOptions = { rpcAddr: '127.0.0.1:7373', status: ['alive'], portTag: 'port', resyncDelay: 100, connectTimeout: 1000 };
    const create = (options: Partial<SerfSourceOptions>) => () => createSerfSource('cluster', { ...valid, ...options }, { logger: silentLogger() });
    expect(create({})).not.toThrow();
    const cases: [Partial<SerfSourceOptions>, RegExp][] = [
      [{ rpcAddr: 'localhost' }, /`rpcAddr`.*host:port/],
      [{ rpcAddr: '127.0.0.1:99999' }, /`rpcAddr`/],
      [{ tags: { role: '(' } }, /`tags\.role`/],
      [{ status: [] }, /`status`/],
      [{ status: ['bogus' as 'alive'] }, /`status`/],
      [{ portTag: '' }, /`portTag`/],
      [{ refreshInterval: 0 }, /`refreshInterval`/],
      [{ resyncDelay: -1 }, /`resyncDelay`/],
      [{ connectTimeout: 0 }, /`connectTimeout`/],
    ];
    for (const [options, message] of cases) {
      let error: unknown;
      try {
        create(options)();
      } catch (err) {
        error = err;
      }
      expect(error, JSON.stringify(options)).toBeInstanceOf(SourceError);
      expect(error).toMatchObject({ retryable: false, message: expect.stringMatching(message) });
    }
  });
});
