import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SerfClient, SerfError, type SerfStreamEvent } from '../../src/serf/index.js';
import { freePort } from '../helpers/ports.js';
import { startSerfAgent, type SerfAgent } from '../helpers/serf.js';
import { waitFor } from '../helpers/wait.js';

// Serf coalesces member events for about a second before they reach a stream.
const EVENT_WAIT = { timeout: 15_000 };

describe('SerfClient against real agents', () => {
  const agents: SerfAgent[] = [];
  const clients: SerfClient[] = [];
  let a: SerfAgent;
  let b: SerfAgent;
  let c: SerfAgent;

  const start = async (...args: Parameters<typeof startSerfAgent>) => {
    const agent = await startSerfAgent(...args);
    agents.push(agent);
    return agent;
  };
  const connect = async (agent: SerfAgent, authKey?: string) => {
    const client = await SerfClient.connect({ address: agent.rpcAddr, authKey });
    clients.push(client);
    return client;
  };
  const names = (members: { name: string }[]) => members.map((m) => m.name).sort();

  beforeAll(async () => {
    a = await start({ name: 'a', tags: { role: 'web', port: '8080' } });
    [b, c] = await Promise.all([
      start({ name: 'b', tags: { role: 'db' }, join: [a.bindAddr] }),
      start({ name: 'c', join: [a.bindAddr] }),
    ]);
    // Gossip needs a moment: wait until every agent sees all three.
    for (const agent of [a, b, c]) {
      const client = await connect(agent);
      await waitFor(async () => (await client.members()).length === 3, `${agent.name} to see 3 members`, EVENT_WAIT);
    }
  });

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((client) => client.close()));
  });

  afterAll(async () => {
    await Promise.all(agents.map((agent) => agent.kill()));
  });

  it('lists the members of a 3-agent cluster as typed records', async () => {
    const client = await connect(b);
    const members = await client.members();
    expect(names(members)).toEqual(['a', 'b', 'c']);
    const first = members.find((m) => m.name === 'a')!;
    expect(first).toMatchObject({
      name: 'a',
      addr: '127.0.0.1',
      port: a.bindPort,
      tags: { role: 'web', port: '8080' },
      status: 'alive',
    });
    for (const range of [first.protocol, first.delegate]) {
      expect(range.min).toBeLessThanOrEqual(range.cur);
      expect(range.cur).toBeLessThanOrEqual(range.max);
    }
    expect(members.find((m) => m.name === 'c')!.tags).toEqual({});
  });

  it('filters members on the agent: tag patterns (missing tag = ""), status and name', async () => {
    const client = await connect(a);
    expect(names(await client.membersFiltered({ tags: { role: 'web|db' } }))).toEqual(['a', 'b']);
    expect(names(await client.membersFiltered({ tags: { role: '' } }))).toEqual(['c']);
    expect(names(await client.membersFiltered({ tags: { role: '.+' } }))).toEqual(['a', 'b']);
    expect(names(await client.membersFiltered({ status: 'alive|failed' }))).toEqual(['a', 'b', 'c']);
    expect(names(await client.membersFiltered({ status: 'left' }))).toEqual([]);
    // Without the client's grouping, the agent would anchor `zzz|` as `^zzz|$` and match everyone.
    expect(names(await client.membersFiltered({ name: 'zzz|' }))).toEqual([]);
    expect(names(await client.membersFiltered({ name: 'b' }))).toEqual(['b']);
    expect(names(await client.membersFiltered({}))).toEqual(['a', 'b', 'c']);
  });

  it('reads stats', async () => {
    const client = await connect(c);
    const stats = await client.stats();
    expect(stats.agent?.name).toBe('c');
    expect(stats.serf?.members).toBe('3');
    expect(stats.tags).toEqual({});
  });

  // The tests that add or remove nodes use clusters of their own, so the a-b-c cluster stays as it is.

  it('joins another agent and the cluster sees the new member', async () => {
    const [d, d2] = await Promise.all([start({ name: 'd' }), start({ name: 'd2' })]);
    const client = await connect(d);
    expect(names(await client.members())).toEqual(['d']);
    expect(await client.join([d2.bindAddr])).toBe(1);
    const onD2 = await connect(d2);
    await waitFor(async () => names(await onD2.members()).includes('d'), 'd2 to see d', EVENT_WAIT);
    await expect(client.join(['127.0.0.1:1'])).rejects.toMatchObject({ reason: 'agent', command: 'join', agentError: expect.stringMatching(/Failed to join/) });
    // The error reply carried a body too; the connection is still in step.
    expect(names(await client.members())).toEqual(['d', 'd2']);
  });

  it('streams a member-update when a node changes its tags', async () => {
    const watcher = await connect(a);
    const events: SerfStreamEvent[] = [];
    await watcher.stream(['member-update'], (event) => events.push(event));
    const onB = await connect(b);
    await onB.tags({ version: '2' }, ['role']);
    const update = await waitFor(
      () => events.find((e) => e.event === 'member-update' && e.members.some((m) => m.name === 'b' && m.tags.version === '2')),
      'a member-update for b',
      EVENT_WAIT,
    );
    expect(update.event).toBe('member-update');
    const record = (update as Extract<SerfStreamEvent, { members: unknown }>).members.find((m) => m.name === 'b')!;
    expect(record.tags).toEqual({ version: '2' });
    await onB.tags({ role: 'db' }, ['version']);
  });

  it('stops a stream: its handler gets nothing more and the connection stays in step', async () => {
    const watcher = await connect(a);
    const stopped: SerfStreamEvent[] = [];
    const kept: SerfStreamEvent[] = [];
    const first = await watcher.stream('member-update', (event) => stopped.push(event));
    const second = await watcher.stream('member-update', (event) => kept.push(event));
    expect(second.seq).not.toBe(first.seq);
    await first.stop();
    const onC = await connect(c);
    await onC.tags({ mark: 'stop-test' });
    await waitFor(() => kept.some((e) => e.event === 'member-update' && e.members.some((m) => m.tags.mark === 'stop-test')), 'the open stream to see the update', EVENT_WAIT);
    expect(stopped).toEqual([]);
    expect(names(await watcher.members())).toEqual(['a', 'b', 'c']);
    await onC.tags({}, ['mark']);
  });

  it('delivers user events to a stream filtered by name', async () => {
    const watcher = await connect(b);
    const events: SerfStreamEvent[] = [];
    await watcher.stream('user:deploy', (event) => events.push(event));
    const sender = await connect(c);
    await sender.event('other', 'ignored', { coalesce: false });
    await sender.event('deploy', Buffer.from('v42'), { coalesce: false });
    const event = await waitFor(() => events.find((e) => e.event === 'user'), 'the deploy event', EVENT_WAIT);
    expect(event).toMatchObject({ event: 'user', name: 'deploy', coalesce: false });
    expect((event as Extract<SerfStreamEvent, { event: 'user' }>).payload?.toString()).toBe('v42');
    expect(events.every((e) => e.event === 'user' && e.name === 'deploy')).toBe(true);
  });

  it('reports an invalid stream filter as an agent error and stays usable', async () => {
    const client = await connect(a);
    const error = await client.stream('member-join, member-leave', () => {}).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(SerfError);
    expect(error).toMatchObject({ code: 'E_SERF', reason: 'agent', command: 'stream', agentError: 'Invalid event filter' });
    expect(names(await client.members())).toEqual(['a', 'b', 'c']);
  });

  it('sends integers of 2^31 and more as 64-bit integers, which the agent accepts', async () => {
    const client = await connect(a);
    // As a float64 (msgpack-lite's default above 32 bits) the agent would drop the connection.
    await client.stop(2 ** 40);
    await client.stop(2 ** 31);
    expect(client.closed).toBe(false);
    expect(names(await client.members())).toEqual(['a', 'b', 'c']);
  });

  it('force-leaves a node that was killed', async () => {
    const p = await start({ name: 'p' });
    const e = await start({ name: 'e', join: [p.bindAddr] });
    const client = await connect(p);
    await waitFor(async () => names(await client.members()).includes('e'), 'a to see e', EVENT_WAIT);
    await e.kill();
    await client.forceLeave('e');
    // A node that is down but not yet declared failed goes to `leaving` at once (no event), then `left`.
    const status = async () => (await client.members()).find((m) => m.name === 'e')?.status;
    await waitFor(async () => ['leaving', 'left'].includes((await status()) ?? ''), 'e to be leaving', EVENT_WAIT);
    await client.forceLeave('no-such-node');
    expect(names(await client.membersFiltered({ status: 'alive' }))).toEqual(['p']);
  });

  it('leaves the cluster on request; the agent then closes the connection', async () => {
    const f = await start({ name: 'f' });
    const client = await connect(f);
    const closed = new Promise<SerfError | undefined>((resolve) => client.once('close', resolve));
    await client.leave();
    const error = await closed;
    expect(error).toMatchObject({ reason: 'closed' });
    expect(client.closed).toBe(true);
    await expect(client.members()).rejects.toMatchObject({ reason: 'closed', command: 'members' });
    await f.stop(); // already exiting: resolves when it is gone
  });

  it('rejects pending requests when closed, and emits close without an error', async () => {
    const client = await SerfClient.connect({ address: a.rpcAddr });
    let closeArg: unknown = 'not emitted';
    client.once('close', (err) => (closeArg = err));
    const pending = client.members().catch((err: unknown) => err);
    await client.close();
    await expect(pending).resolves.toMatchObject({ reason: 'closed', command: 'members' });
    expect(closeArg).toBeUndefined();
    await client.close(); // idempotent
  });

  it('fails to connect to a port where nothing listens', async () => {
    const port = await freePort();
    const error = await SerfClient.connect({ address: `127.0.0.1:${port}` }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(SerfError);
    expect(error).toMatchObject({ reason: 'connect', authFailed: false });
    expect((error as Error).message).toMatch(/ECONNREFUSED/);
  });

  describe('auth', () => {
    let secured: SerfAgent;

    beforeAll(async () => {
      secured = await start({ name: 'secured', authKey: 'right-key' });
    });

    it('works with the right key', async () => {
      const client = await connect(secured, 'right-key');
      expect(names(await client.members())).toEqual(['secured']);
    });

    it('refuses a wrong key with authFailed', async () => {
      const error = await SerfClient.connect({ address: secured.rpcAddr, authKey: 'wrong-key' }).catch((err: unknown) => err);
      expect(error).toBeInstanceOf(SerfError);
      expect(error).toMatchObject({ authFailed: true, command: 'auth', agentError: 'Invalid authentication token' });
      expect((error as Error).message).not.toContain('wrong-key');
    });

    it('without a key, a command gets "Authentication required" (a bare header) and the connection stays in step', async () => {
      const client = await connect(secured);
      await expect(client.members()).rejects.toMatchObject({ authFailed: true, agentError: 'Authentication required' });
      await expect(client.stats()).rejects.toMatchObject({ authFailed: true });
      expect(client.closed).toBe(false);
    });

    it('a key sent to an agent without auth is refused', async () => {
      const error = await SerfClient.connect({ address: a.rpcAddr, authKey: 'some-key' }).catch((err: unknown) => err);
      expect(error).toMatchObject({ authFailed: true, agentError: 'Invalid authentication token' });
    });
  });
});
