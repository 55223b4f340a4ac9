import { createServer, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import msgpack from 'msgpack-lite';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { SourceError } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import { SerfClient, SerfError } from '../../src/serf/index.js';
import createSerfSource, { type SerfSourceOptions } from '../../src/sources/serf.js';
import { fakeAgent, header, reply, type FakeAgent, type Request } from '../helpers/fake-serf.js';
import { serfMemberRecord } from '../helpers/serf-wire.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The client and the source against a fake agent (test/helpers/fake-serf.ts), for what a real one will not do:
 * garbage, cut replies, missing bodies, unknown Seqs.
 */

const member = (name: string) => serfMemberRecord(name);

describe('SerfClient against a misbehaving agent', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /** A fake agent plus a connected client, both closed after the test. */
  async function setup(onRequest: (request: Request, socket: Socket) => void, options: { requestTimeout?: number } = {}) {
    const agent = await fakeAgent(onRequest);
    cleanups.push(agent.close);
    const client = await SerfClient.connect({ address: agent.address, ...options });
    cleanups.push(() => client.close());
    const closed = new Promise<SerfError | undefined>((resolve) => client.once('close', resolve));
    return { agent, client, closed };
  }

  it('reads replies cut into 1-byte chunks and pairs bodies by command', async () => {
    const { client } = await setup((request, socket) => {
      const bytes =
        request.command === 'members' ? reply(request.seq, { Members: [member('x'), member('y')] })
        : request.command === 'stats' ? reply(request.seq, { agent: { name: 'x' } })
        : reply(request.seq);
      for (const byte of bytes) socket.write(Uint8Array.of(byte));
    });
    const [members, , stats] = await Promise.all([client.members(), client.tags({ a: 'b' }), client.stats()]);
    expect(members.map((m) => [m.name, m.addr, m.tags.role])).toEqual([['x', '10.0.0.1', 'web'], ['y', '10.0.0.1', 'web']]);
    expect(stats).toEqual({ agent: { name: 'x' } });
  });

  it('sends a body exactly for the commands that take one, even when it is empty', async () => {
    const { agent, client } = await setup((request, socket) => {
      socket.write(request.command === 'members' || request.command === 'members-filtered' ? reply(request.seq, { Members: [] }) : reply(request.seq, request.command === 'stats' ? {} : undefined));
    });
    await client.members();
    await client.membersFiltered();
    await client.stats();
    // The fake pairs by its own table: had the client left a body out or added one, the Seqs would not line up.
    expect(agent.requests.map((r) => [r.command, r.seq, r.body])).toEqual([
      ['handshake', 1, { Version: 1 }],
      ['members', 2, undefined],
      ['members-filtered', 3, { Tags: {}, Status: '', Name: '' }],
      ['stats', 4, undefined],
    ]);
    // handshake + body, members, members-filtered + body, stats.
    expect(agent.values).toHaveLength(6);
  });

  it('never sends auth without a key', async () => {
    const { agent } = await setup(() => {});
    expect(agent.requests.map((r) => r.command)).toEqual(['handshake']);
  });

  it('encodes integers of 2^32 and more as uint64, not as float64', async () => {
    const { agent, client } = await setup((request, socket) => socket.write(reply(request.seq)));
    await client.stop(2 ** 40);
    expect(agent.requests.at(-1)).toEqual({ command: 'stop', seq: 2, body: { Stop: 2 ** 40 } });
    const key = msgpack.encode('Stop');
    const asUint64 = Buffer.concat([key, Buffer.from('cf0000010000000000', 'hex')]);
    const asFloat64 = Buffer.concat([key, Buffer.from([0xcb])]); // what msgpack-lite alone would write
    expect(msgpack.encode({ Stop: 2 ** 40 }).includes(asFloat64)).toBe(true);
    expect(agent.received().includes(asUint64)).toBe(true);
    expect(agent.received().includes(asFloat64)).toBe(false);
  });

  it('treats garbage as a fatal protocol error: pending requests fail, close is emitted, nothing is thrown', async () => {
    const { client, closed } = await setup((request, socket) => {
      if (request.command === 'members') socket.write(Buffer.from([0xc1, 0x00, 0xff]));
    });
    const pending = client.members().catch((err: unknown) => err);
    const error = await closed;
    expect(error).toBeInstanceOf(SerfError);
    expect(error).toMatchObject({ code: 'E_SERF', reason: 'protocol' });
    expect(error!.message).toMatch(/0xc1/);
    expect(await pending).toMatchObject({ reason: 'protocol', command: 'members' });
    expect(client.closed).toBe(true);
    await expect(client.stats()).rejects.toMatchObject({ reason: 'protocol', command: 'stats' });
  });

  it('treats a second value after a header, where a header is due, as a protocol error', async () => {
    const { client, closed } = await setup((request, socket) => {
      // A body right after a header belongs to it (and is dropped if the command has none); a second one cannot.
      if (request.command === 'tags') socket.write(Buffer.concat([reply(request.seq), msgpack.encode({ Num: 1 }), msgpack.encode({ Num: 2 })]));
    });
    await client.tags({ a: 'b' }); // its reply was whole before the stray values came
    expect(await closed).toMatchObject({ reason: 'protocol', message: expect.stringMatching(/reply header was expected/) });
    await expect(client.members()).rejects.toMatchObject({ reason: 'protocol', command: 'members' });
  });

  it('treats a reply for an unknown Seq as a protocol error', async () => {
    const { client, closed } = await setup((request, socket) => {
      if (request.command === 'tags') socket.write(reply(request.seq + 100));
    });
    const pending = client.tags({ a: 'b' }).catch((err: unknown) => err);
    expect(await closed).toMatchObject({ reason: 'protocol', message: expect.stringMatching(/unknown Seq/) });
    expect(await pending).toMatchObject({ reason: 'protocol' });
  });

  it('fails the request when a reply is cut mid-value and the socket closes', async () => {
    const { client, closed } = await setup((request, socket) => {
      const bytes = reply(request.seq, { Members: [member('x'), member('y')] });
      socket.end(bytes.subarray(0, bytes.length - 20));
    });
    const pending = client.members().catch((err: unknown) => err);
    const error = await closed;
    expect(error).toMatchObject({ reason: 'closed', message: expect.stringMatching(/in the middle of a message/) });
    expect(await pending).toMatchObject({ reason: 'closed', command: 'members' });
  });

  it('fails every pending request when the socket closes', async () => {
    const { client, closed } = await setup((request, socket) => {
      if (request.command === 'stats') socket.destroy();
    });
    const results = Promise.all([client.members(), client.tags({ a: 'b' }), client.stats()].map((p) => p.catch((err: unknown) => err)));
    expect(await closed).toMatchObject({ reason: 'closed' });
    expect(await results).toEqual([
      expect.objectContaining({ reason: 'closed', command: 'members' }),
      expect.objectContaining({ reason: 'closed', command: 'tags' }),
      expect.objectContaining({ reason: 'closed', command: 'stats' }),
    ]);
  });

  it('takes an error header with no body, where a body was expected, as the whole reply', async () => {
    const { client } = await setup((request, socket) => {
      if (request.command === 'members') socket.write(header(request.seq, 'something broke'));
      else socket.write(reply(request.seq, { agent: { name: 'x' } }));
    });
    const [members, stats] = await Promise.all([client.members().catch((err: unknown) => err), client.stats()]);
    expect(members).toMatchObject({ reason: 'agent', command: 'members', agentError: 'something broke', authFailed: false });
    expect(stats).toEqual({ agent: { name: 'x' } });
    expect(client.closed).toBe(false);
  });

  it('knows the bare error headers ("Authentication required") without waiting for the next message', async () => {
    const { client } = await setup((request, socket) => socket.write(header(request.seq, 'Authentication required')));
    await expect(client.members()).rejects.toMatchObject({ authFailed: true, agentError: 'Authentication required' });
  });

  it('delivers stream records, reads and drops those that come after stop, and stays in step', async () => {
    let streamSeq = 0;
    const record = (name: string) => Buffer.concat([header(streamSeq), msgpack.encode({ Event: 'member-join', Members: [member(name)] })]);
    const { client } = await setup((request, socket) => {
      if (request.command === 'stream') {
        streamSeq = request.seq;
        // A record may come before the stream's own reply: the agent starts the stream, then answers.
        socket.write(Buffer.concat([record('early'), reply(request.seq), record('x')]));
      } else if (request.command === 'stop') {
        socket.write(Buffer.concat([reply(request.seq), record('late-1'), record('late-2')]));
      } else if (request.command === 'members') {
        socket.write(reply(request.seq, { Members: [member('m')] }));
      }
    });
    const seen: string[] = [];
    const stream = await client.stream('member-join', (event) => {
      if (event.event !== 'user' && event.event !== 'query') seen.push(...event.members.map((m) => m.name));
    });
    await waitFor(() => seen.length === 2, 'two stream records');
    await stream.stop();
    const members = await client.members();
    expect(members.map((m) => m.name)).toEqual(['m']);
    expect(seen).toEqual(['early', 'x']);
    expect(client.closed).toBe(false);
  });

  it('delivers monitor lines (each a header and a {Log} body), with the replay that comes before its reply', async () => {
    let seq = 0;
    const line = (text: string) => Buffer.concat([header(seq), msgpack.encode({ Log: text })]);
    const { agent, client } = await setup((request, socket) => {
      if (request.command === 'monitor') {
        seq = request.seq;
        socket.write(Buffer.concat([line('replayed'), reply(request.seq), line('live')]));
      } else if (request.command === 'members') socket.write(reply(request.seq, { Members: [] }));
    });
    const lines: string[] = [];
    await client.monitor('DEBUG', (text) => lines.push(text));
    await waitFor(() => lines.length === 2, 'two log lines');
    expect(lines).toEqual(['replayed', 'live']);
    expect(agent.requests.find((r) => r.command === 'monitor')?.body).toEqual({ LogLevel: 'DEBUG' });
    expect(await client.members()).toEqual([]);
  });

  it('drops monitor lines that `accept` refuses, and still checks records of another shape', async () => {
    let seq = 0;
    const record = (body: unknown) => Buffer.concat([header(seq), msgpack.encode(body)]);
    const long = `[DEBUG] agent.ipc: ${'x'.repeat(70_000)}`;
    const { client, closed } = await setup((request, socket) => {
      if (request.command !== 'monitor') return;
      seq = request.seq;
      // Short (fixstr), str 8, str 16 and str 32 lines, then a record that is not a log line at all.
      const lines = ['[INFO] serf: a', '[DEBUG] agent.ipc: b', `[INFO] serf: ${'c'.repeat(100)}`, `[DEBUG] agent: ${'d'.repeat(300)}`, long, `[INFO] serf: ${'e'.repeat(70_000)}`];
      socket.write(Buffer.concat([reply(request.seq), ...lines.map((text) => record({ Log: text })), record({ Log: 42 })]));
    });
    const lines: string[] = [];
    const offered: number[] = [];
    await client.monitor('DEBUG', (text) => lines.push(text), { accept: (line) => (offered.push(line.length), line.includes('serf: ')) });
    expect(await closed).toMatchObject({ reason: 'protocol', message: expect.stringMatching(/Log is not a string/) });
    expect(lines.map((l) => l.slice(0, 16))).toEqual(['[INFO] serf: a', `[INFO] serf: ccc`, `[INFO] serf: eee`]);
    expect(lines.map((l) => l.length)).toEqual([14, 113, 70_013]);
    expect(offered).toEqual([14, 20, 113, 315, long.length, 70_013]);
  });

  it('treats a malformed reply body as a protocol error', async () => {
    const { client, closed } = await setup((request, socket) => socket.write(reply(request.seq, { Members: [{ Name: 42 }] })));
    await expect(client.members()).rejects.toMatchObject({ reason: 'protocol', message: expect.stringMatching(/Name is not a string/) });
    expect(await closed).toMatchObject({ reason: 'protocol' });
  });

  it('drops the connection when a request gets no reply in time', async () => {
    const { client, closed } = await setup(() => {}, { requestTimeout: 200 });
    await expect(client.members()).rejects.toMatchObject({ reason: 'timeout', command: 'members' });
    expect(await closed).toMatchObject({ reason: 'timeout' });
  });

  it('gives up connecting when the handshake gets no answer in time', async () => {
    const silent = createServer((socket) => socket.resume()); // reads (so it sees the client go) but never answers
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as { port: number };
    try {
      const started = Date.now();
      const error = await SerfClient.connect({ address: `127.0.0.1:${port}`, connectTimeout: 300 }).catch((err: unknown) => err);
      expect(error).toMatchObject({ reason: 'connect', message: expect.stringMatching(/within 300 ms/) });
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  it('can be aborted while connecting', async () => {
    const silent = createServer((socket) => socket.resume()); // reads (so it sees the client go) but never answers
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as { port: number };
    try {
      const abort = new AbortController();
      const connecting = SerfClient.connect({ address: `127.0.0.1:${port}`, signal: abort.signal }).catch((err: unknown) => err);
      abort.abort();
      expect(await connecting).toMatchObject({ reason: 'connect', message: expect.stringMatching(/aborted/) });
    } finally {
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  it('rejects an address that is not host:port', async () => {
    await expect(SerfClient.connect({ address: 'localhost' })).rejects.toThrow(TypeError);
    await expect(SerfClient.connect({ address: '[nope]:7373' })).rejects.toThrow(/host:port/);
  });
});

describe('the serf source against a fake agent', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  const event = (seq: number, name: string) => Buffer.concat([header(seq), msgpack.encode({ Event: 'member-join', Members: [member(name)] })]);

  async function watch(agent: FakeAgent, options: Partial<SerfSourceOptions> = {}, logger = silentLogger()) {
    const snapshots: string[][] = [];
    const errors: Error[] = [];
    const source = createSerfSource('cluster', { rpcAddr: agent.address, status: ['alive'], portTag: 'port', resyncDelay: 50, connectTimeout: 2000, ...options }, { logger });
    await source.start(
      (members) => snapshots.push(members.map((m) => m.name)),
      (err) => errors.push(err),
    );
    cleanups.push(() => source.stop());
    return { snapshots, errors };
  }

  it('takes members from `members` only, never from event bodies, and merges a burst of events into one refresh', async () => {
    let stream: { seq: number; socket: Socket } | undefined;
    const agent = await fakeAgent((request, socket) => {
      if (request.command === 'stream') {
        stream = { seq: request.seq, socket };
        socket.write(reply(request.seq));
      } else if (request.command === 'monitor') socket.write(reply(request.seq));
      else if (request.command === 'members') socket.write(reply(request.seq, { Members: [member('x')] }));
    });
    cleanups.push(agent.close);
    const watched = await watch(agent);
    await waitFor(() => watched.snapshots.length === 1 && stream, 'the first snapshot');
    const membersCalls = () => agent.requests.filter((r) => r.command === 'members').length;
    // Ten events naming a member that `members` does not list.
    for (let i = 0; i < 10; i++) stream!.socket.write(event(stream!.seq, 'ghost'));
    await waitFor(() => membersCalls() === 2, 'one refresh after the burst');
    // One more event is the barrier: its refresh is the third, so the burst caused exactly one.
    stream!.socket.write(event(stream!.seq, 'ghost'));
    await waitFor(() => membersCalls() === 3, 'the refresh after the barrier');
    await waitFor(() => watched.snapshots.length === 3, 'the snapshot of each refresh');
    expect(watched.snapshots.flat()).not.toContain('ghost');
    expect(watched.errors).toEqual([]);
  });

  /** A fake agent whose `monitor` can be fed lines; `members` answers with `list()`, after `delay` ms. */
  async function loggingAgent(list: () => string[], options: { delay?: number; replay?: string[] } = {}) {
    let monitor: { seq: number; socket: Socket } | undefined;
    const agent = await fakeAgent((request, socket) => {
      if (request.command === 'stream') socket.write(reply(request.seq));
      else if (request.command === 'monitor') {
        monitor = { seq: request.seq, socket };
        const replay = (options.replay ?? []).map((text) => Buffer.concat([header(request.seq), msgpack.encode({ Log: text })]));
        socket.write(Buffer.concat([reply(request.seq), ...replay]));
      } else if (request.command === 'members') {
        const answer = () => socket.write(reply(request.seq, { Members: list().map(member) }));
        if (options.delay) setTimeout(answer, options.delay);
        else answer();
      }
    });
    cleanups.push(agent.close);
    return {
      agent,
      reads: () => agent.requests.filter((r) => r.command === 'members').length,
      log: (...lines: string[]) => {
        for (const text of lines) monitor!.socket.write(Buffer.concat([header(monitor!.seq), msgpack.encode({ Log: text })]));
      },
      monitoring: () => monitor !== undefined,
    };
  }

  const at = '2026/01/02 03:04:05';

  it('reads the member list on membership lines of the log only, not on RPC or other lines', async () => {
    let names = ['x'];
    const fake = await loggingAgent(() => names);
    const watched = await watch(fake.agent, { resyncDelay: 10 });
    await waitFor(() => watched.snapshots.length === 1 && fake.monitoring(), 'the first snapshot');
    expect(fake.reads()).toBe(1);
    // What the agent logs about its own RPC traffic, member names inside other lines, other components.
    fake.log(
      `${at} [DEBUG] agent.ipc: Request: members serf: EventMemberJoin: y`,
      `${at} [INFO] agent.ipc: Accepted client: 127.0.0.1:5000`,
      `Members: []interface {}{"serf: EventMemberJoin: y"}`,
      `${at} [DEBUG] memberlist: Stream connection from=127.0.0.1:4000`,
      `${at} [INFO] agent: Received event: member-join`,
    );
    names = ['x', 'y'];
    fake.log(`${at} [INFO] serf: EventMemberJoin: y 127.0.0.1`);
    await waitFor(() => JSON.stringify(watched.snapshots.at(-1)) === '["x","y"]', 'y from the hint');
    expect(fake.reads()).toBe(2);
    // A graceful leave shows first as a DEBUG intent; gossip repeats it, and a repeat within a second is one change.
    names = ['x'];
    fake.log(`${at} [DEBUG] serf: messageLeaveType: y`);
    await waitFor(() => JSON.stringify(watched.snapshots.at(-1)) === '["x"]', 'y gone on the leave intent');
    fake.log(`${at} [DEBUG] serf: messageLeaveType: y`, `${at} [DEBUG] serf: messageLeaveType: y`);
    // A barrier: the next real line's read is the fourth, so the repeats caused none.
    fake.log(`${at} [INFO] serf: EventMemberUpdate: x`);
    await waitFor(() => fake.reads() === 4, 'the read after the barrier');
    expect(fake.reads()).toBe(4);
    expect(watched.errors).toEqual([]);
  });

  it('takes the 512 replayed lines of the monitor as one more read at most', async () => {
    const replay = Array.from({ length: 512 }, (_, i) => `${at} [INFO] serf: EventMemberJoin: n${i} 10.0.0.1`);
    const fake = await loggingAgent(() => ['x'], { replay });
    const watched = await watch(fake.agent, { resyncDelay: 10 });
    await waitFor(() => watched.snapshots.length === 1, 'the first snapshot');
    // A barrier after the replay: its read comes last, so everything before it is counted.
    await new Promise((resolve) => setTimeout(resolve, 100));
    fake.log(`${at} [INFO] serf: EventMemberUpdate: x`);
    const before = fake.reads();
    await waitFor(() => fake.reads() === before + 1, 'the read after the barrier');
    expect(before).toBeLessThanOrEqual(2);
  });

  it('says once when a change came that the log did not announce, and goes on polling', async () => {
    let names = ['x'];
    const fake = await loggingAgent(() => names);
    const lines: string[] = [];
    const logs = new Writable({ write: (chunk, _, done) => (lines.push(String(chunk)), done()) });
    const watched = await watch(fake.agent, { refreshInterval: 50 }, pino({ level: 'info' }, logs));
    await waitFor(() => watched.snapshots.length === 1, 'the first snapshot');
    // Lines in a format the source does not know: only the poll sees the changes.
    names = ['x', 'y'];
    fake.log(`${at} [INFO] serf: MemberJoined y`);
    await waitFor(() => watched.snapshots.at(-1)?.includes('y'), 'the poll to see y');
    names = ['x', 'y', 'z'];
    await waitFor(() => watched.snapshots.at(-1)?.includes('z'), 'the poll to see z');
    const warning = await waitFor(() => lines.find((line) => line.includes('did not announce')), 'the warning', { timeout: 5000 });
    expect(JSON.parse(warning)).toMatchObject({ level: 40, rpcAddr: fake.agent.address });
    names = ['x'];
    await waitFor(() => JSON.stringify(watched.snapshots.at(-1)) === '["x"]', 'the poll to see y and z go');
    await new Promise((resolve) => setTimeout(resolve, 2500));
    expect(lines.filter((line) => line.includes('did not announce'))).toHaveLength(1);
  });

  it('takes members listed in another order (the agent iterates a Go map) for no change', async () => {
    let replies = 0;
    const fake = await loggingAgent(() => (replies++ % 2 === 0 ? ['x', 'y', 'z'] : ['z', 'x', 'y']));
    const lines: string[] = [];
    const logs = new Writable({ write: (chunk, _, done) => (lines.push(String(chunk)), done()) });
    await watch(fake.agent, { refreshInterval: 50 }, pino({ level: 'info' }, logs));
    await waitFor(() => fake.reads() >= 10, 'ten polls');
    await new Promise((resolve) => setTimeout(resolve, 2500));
    expect(lines.filter((line) => line.includes('did not announce'))).toEqual([]);
  });

  it('polls less often when reading the member list is costly', async () => {
    // Each read takes 100 ms: polls then take at most 2% of the time, one every 5 s, whatever refreshInterval says.
    const fake = await loggingAgent(() => ['x'], { delay: 100 });
    const watched = await watch(fake.agent, { refreshInterval: 50, monitor: false });
    await waitFor(() => watched.snapshots.length === 1, 'the first snapshot');
    await new Promise((resolve) => setTimeout(resolve, 2000));
    expect(fake.reads()).toBe(1);
  });

  it('drops a connection that sends garbage, reports it, reconnects and takes a fresh snapshot', async () => {
    const connections = new Set<Socket>();
    const agent = await fakeAgent((request, socket) => {
      connections.add(socket);
      if (request.command === 'stream' || request.command === 'monitor') socket.write(reply(request.seq));
      else if (request.command === 'members') socket.write(connections.size === 1 ? Buffer.from([0xc1, 0xc1, 0xc1]) : reply(request.seq, { Members: [member('x')] }));
    });
    cleanups.push(agent.close);
    const watched = await watch(agent);
    await waitFor(() => watched.snapshots.length === 1, 'a snapshot over a second connection');
    expect(watched.snapshots[0]).toEqual(['x']);
    expect(watched.errors).toHaveLength(1);
    expect(watched.errors[0]).toBeInstanceOf(SourceError);
    expect(connections.size).toBe(2);
  });
});
