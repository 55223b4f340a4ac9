import { execFileSync } from 'node:child_process';
import { readdir, readFile, rename, symlink, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import msgpack from 'msgpack-lite';
import { afterEach, describe, expect, it } from 'vitest';
import type { Daemon } from '../helpers/cli.js';
import { startDnsmasq } from '../helpers/dnsmasq.js';
import { fakeAgent, header } from '../helpers/fake-serf.js';
import { HAPROXY_BIN } from '../helpers/haproxy.js';
import { serfMemberRecord } from '../helpers/serf-wire.js';
import { freePort } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';
import { useWorkspace } from '../helpers/workspace.js';

/**
 * Faults and hostile input against the built daemon: each test checks that `rosterd run` stays alive,
 * answers /health, keeps the last good output and says what failed.
 */

const ws = useWorkspace();
const at = ws.at;
let daemon: Daemon | undefined;
let base = '';

afterEach(() => {
  daemon = undefined;
});

const output = (): Promise<string> => readFile(at('out.cfg'), 'utf8').catch(() => '');

/** Writes a JSON config with one template over the given sources, and starts the daemon with a status endpoint. */
async function start(config: { sources?: Record<string, unknown>; template?: Record<string, unknown> } = {}): Promise<Daemon> {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const sources = config.sources ?? { web: { type: 'file', path: 'members.json' } };
  const template = { contents: '{% for m in members %}server {{ m.name | slug }} {{ m.address }}\n{% endfor %}', destination: 'out.cfg', ...config.template };
  await writeFile(at('renderer.config.json'), JSON.stringify({ sources, templates: [template], http: { listen: `127.0.0.1:${port}` } }));
  daemon = ws.startDaemon();
  return daemon;
}

/** The daemon runs and answers /health; `/ready` is returned for the caller to look at. */
async function expectAlive(): Promise<{ status: number; body: { ready: boolean; templates: { error?: string }[]; sources: { up: boolean; error?: string }[] } }> {
  expect(daemon!.child.exitCode).toBeNull();
  expect(daemon!.child.signalCode).toBeNull();
  const health = await fetch(`${base}/health`, { signal: AbortSignal.timeout(2000) });
  expect(health.status).toBe(200);
  const ready = await fetch(`${base}/ready`, { signal: AbortSignal.timeout(2000) });
  return { status: ready.status, body: (await ready.json()) as never };
}

const HAPROXY_TEMPLATE = `defaults
  mode http
  timeout connect 1s
  timeout client 1s
  timeout server 1s
frontend fe
  bind 127.0.0.1:1
  default_backend web
backend web
{% for m in members %}  server {{ m.name | slug }} {{ m.address }}:80
{% endfor %}`;

/** Replaces members.json atomically with these members. */
async function writeMembers(members: { name: string; address: string }[]): Promise<void> {
  await writeFile(at('members.json.tmp'), JSON.stringify(members));
  await rename(at('members.json.tmp'), at('members.json'));
}

/**
 * A fake Serf agent that answers like a real one (stream, monitor, members: `a`, then `web-1`…) until
 * `attack()` writes the given bytes to every connection. Real agents never send such bytes; that is why it is a fake.
 */
async function fakeSerfAgent(memberCount = 1): Promise<{ address: string; connections: () => number; attack(bytes: Buffer): void; close(): Promise<void> }> {
  // Encoded once: the same reply to every `members`.
  const membersReply = msgpack.encode({ Members: Array.from({ length: memberCount }, (_, i) => serfMemberRecord(i === 0 ? 'a' : `web-${i}`, { addr: [10, ((i + 1) >> 16) & 255, ((i + 1) >> 8) & 255, (i + 1) & 255] })) });
  const sockets = new Set<Socket>();
  const agent = await fakeAgent((request, socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.write(request.command === 'members' ? Buffer.concat([header(request.seq), membersReply]) : header(request.seq));
  });
  return {
    address: agent.address,
    connections: () => agent.requests.filter((r) => r.command === 'handshake').length,
    attack: (bytes) => {
      for (const socket of sockets) socket.write(bytes);
    },
    close: () => agent.close(),
  };
}

/** `count` members as JSON, generated rather than committed. */
function memberFile(count: number): string {
  const members = Array.from({ length: count }, (_, i) => ({ name: `web-${i}`, address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, port: 8080 }));
  return JSON.stringify(members);
}

describe('rosterd run under faults', () => {
  it('renders 200,000 members from a member file', async () => {
    await writeFile(at('members.json'), memberFile(200_000));
    await start({ template: { contents: '{{ members | size }} {{ members.last.name }}\n' } });
    await waitFor(async () => (await output()) === '200000 web-99999\n', 'the 200,000-member render', { timeout: 60_000, interval: 100 });
    expect((await expectAlive()).status).toBe(200);
  });

  it('renders 200,000 members from one Serf members reply', async () => {
    const agent = await fakeSerfAgent(200_000);
    try {
      await start({ sources: { cluster: { type: 'serf', rpcAddr: agent.address } }, template: { contents: '{{ members | size }} {{ members.last.name }}\n' } });
      await waitFor(async () => (await output()) === '200000 web-99999\n', 'the 200,000-member render', { timeout: 60_000, interval: 100 });
      expect((await expectAlive()).status).toBe(200);
    } finally {
      await agent.close();
    }
  });

  it('slugged server names never collide, so HAProxy accepts a member named like the slug of another', async () => {
    await writeMembers([{ name: 'web 2', address: '10.0.0.2' }]);
    await start({ template: { contents: HAPROXY_TEMPLATE, check: [HAPROXY_BIN, '-c', '-q', '-f', '{{candidate}}'] } });
    await waitFor(async () => (await output()).includes('server web_2-88f3e9 10.0.0.2:80'), 'the first render');
    await writeMembers([{ name: 'web 2', address: '10.0.0.2' }, { name: 'web_2-88f3e9', address: '10.0.0.3' }]);
    await waitFor(async () => (await output()).includes('10.0.0.3'), 'the look-alike member installed');
    const servers = (await output()).split('\n').filter((line) => line.startsWith('  server '));
    expect(servers).toEqual(['  server web_2-88f3e9 10.0.0.2:80', expect.stringMatching(/^ {2}server web_2-88f3e9-[0-9a-f]{6} 10\.0\.0\.3:80$/)]);
    expect(daemon!.logs.filter((l) => l.level === 50)).toEqual([]);
    expect((await expectAlive()).status).toBe(200);
  });

  it('drops addresses that no host name or IP is (10.0.0, 2130706433, zone IDs), saying which, and installs the rest', async () => {
    await writeMembers([{ name: 'a', address: '10.0.0.13' }]);
    await start({ template: { contents: HAPROXY_TEMPLATE, check: [HAPROXY_BIN, '-c', '-q', '-f', '{{candidate}}'] } });
    await waitFor(async () => (await output()).includes('server a 10.0.0.13:80'), 'the first render');
    const since = daemon!.logs.length;
    await writeMembers([
      { name: 'a', address: '10.0.0' },
      { name: 'b', address: '2130706433' },
      { name: 'c', address: '::1%:8080' },
      { name: 'd', address: 'fe80::1%-rf' },
      { name: 'e', address: '10.0.0.14' },
    ]);
    await waitFor(async () => (await output()).includes('server e 10.0.0.14:80'), 'the valid member installed');
    expect((await output()).split('\n').filter((line) => line.startsWith('  server '))).toEqual(['  server e 10.0.0.14:80']);
    const warnings = daemon!.logs.slice(since).filter((l) => l.level === 40).map((l) => l.msg);
    expect(warnings).toEqual(
      expect.arrayContaining([
        'member "a" dropped: address "10.0.0" is neither an IP address nor a valid host name',
        'member "b" dropped: address "2130706433" is neither an IP address nor a valid host name',
        'member "c" dropped: address "::1%:8080" has an IPv6 zone ID, which config files cannot use',
        'member "d" dropped: address "fe80::1%-rf" has an IPv6 zone ID, which config files cannot use',
      ]),
    );
    expect((await expectAlive()).status).toBe(200);
  });

  it('a SIGHUP to a config with a source named __proto__ is refused, naming it, and the old config keeps running', async () => {
    await writeMembers([{ name: 'a', address: '10.0.0.1' }]);
    await start();
    await waitFor(async () => (await output()) === 'server a 10.0.0.1\n', 'the first render');
    const config = JSON.parse(await readFile(at('renderer.config.json'), 'utf8')) as { sources: Record<string, unknown> };
    const raw = JSON.stringify({ ...config, sources: {} }).replace('"sources":{}', `"sources":{"__proto__":${JSON.stringify(config.sources.web)},"web":${JSON.stringify(config.sources.web)}}`);
    await writeFile(at('renderer.config.json'), raw);
    const since = daemon!.logs.length;
    daemon!.child.kill('SIGHUP');
    await daemon!.waitForLog(/still running the previous one/, { since });
    expect(daemon!.logs.slice(since).find((l) => l.path === 'sources.__proto__')?.msg).toMatch(/"__proto__" cannot be a name here/);
    await writeMembers([{ name: 'b', address: '10.0.0.2' }]);
    await waitFor(async () => (await output()) === 'server b 10.0.0.2\n', 'the old config still renders');
    expect((await expectAlive()).status).toBe(200);
  });

  it('128 MiB of nested array headers on the Serf RPC port fail that connection, not the daemon', async () => {
    const agent = await fakeSerfAgent();
    try {
      await start({ sources: { cluster: { type: 'serf', rpcAddr: agent.address } } });
      await waitFor(async () => (await output()) === 'server a 10.0.0.1\n', 'the first render');
      const since = daemon!.logs.length;
      agent.attack(Buffer.alloc(128 << 20, 0x91));
      // The fleet view's own connection to the agent may meet the garbage first (a warning of its own).
      const error = await daemon!.waitForLog(/\[source cluster\].*nested deeper than 32 levels/, { since });
      expect(error).toMatchObject({ level: 50, source: 'cluster' });
      expect(await output()).toBe('server a 10.0.0.1\n');
      await expectAlive();
      // The source reconnects with backoff and reads the members again.
      await waitFor(() => agent.connections() >= 2, 'a reconnect');
      await waitFor(async () => (await expectAlive()).status === 200, 'the source up again');
    } finally {
      await agent.close();
    }
  });

  it('a FIFO at the member file path is refused without blocking; a file after it is read; SIGTERM still ends it', async () => {
    await writeMembers([{ name: 'a', address: '10.0.0.1' }]);
    await start();
    await waitFor(async () => (await output()) === 'server a 10.0.0.1\n', 'the first render');
    const since = daemon!.logs.length;
    execFileSync('mkfifo', [at('fifo')]);
    await rename(at('fifo'), at('members.json'));
    const error = await daemon!.waitForLog(/is not a regular file/, { since });
    expect(error).toMatchObject({ level: 50, source: 'web', msg: `[source web] member file ${at('members.json')} is not a regular file (it is a FIFO)` });
    const { status, body } = await expectAlive();
    expect(status).toBe(503);
    expect(body.sources[0]).toMatchObject({ up: false, error: expect.stringContaining('a FIFO') });
    expect(await output()).toBe('server a 10.0.0.1\n');
    await writeMembers([{ name: 'b', address: '10.0.0.2' }]);
    await waitFor(async () => (await output()) === 'server b 10.0.0.2\n', 'the file after the FIFO');
    expect(await daemon!.stop('SIGTERM', 5000)).toBe(0);
  });

  it('a member-file symlink swapped to a good file after it dangled is read, and /ready says so', async () => {
    await writeFile(at('v1.json'), JSON.stringify([{ name: 'a', address: '10.0.0.1' }]));
    await writeFile(at('v2.json'), JSON.stringify([{ name: 'b', address: '10.0.0.2' }]));
    await symlink('v1.json', at('members.json'));
    await start();
    await waitFor(async () => (await output()) === 'server a 10.0.0.1\n', 'the first render');
    const swapLink = async (target: string): Promise<void> => {
      await symlink(target, at('link.tmp'));
      await rename(at('link.tmp'), at('members.json'));
    };
    await swapLink('missing.json');
    await waitFor(async () => (await expectAlive()).status === 503, '/ready to report the dangling link');
    expect((await expectAlive()).body.sources[0]!.error).toMatch(/members\.json (was removed|does not exist)/);
    expect(await output()).toBe('server a 10.0.0.1\n');
    await swapLink('v2.json');
    await waitFor(async () => (await output()) === 'server b 10.0.0.2\n', 'the file behind the swapped link');
    await waitFor(async () => (await expectAlive()).status === 200, '/ready to be 200 again');
  });

  it('renders a DNS SRV name with 1,000 targets', async () => {
    const name = '_http._tcp.many.service.test';
    const target = (i: number) => `node-${i}.hosts.test`;
    const hosts = Array.from({ length: 1000 }, (_, i) => `10.7.${i >> 8}.${i & 255} ${target(i)}`).join('\n');
    // Addresses through a forwarder, as in the dns source's test (see there why).
    const addresses = await startDnsmasq({ hostsFiles: { many: `${hosts}\n` } });
    const srvRecords = Array.from({ length: 1000 }, (_, i) => ({ name, target: target(i), port: 8000 }));
    const dns = await startDnsmasq({ srvRecords, forward: [{ domain: 'hosts.test', server: addresses.server }], cacheSize: 0 });
    try {
      await start({ sources: { web: { type: 'dns', name, servers: [dns.server], interval: '1s', timeout: '1s' } }, template: { contents: '{{ members | size }}\n' } });
      await waitFor(async () => (await output()) === '1000\n', 'the 1,000-target render', { timeout: 20_000 });
      const { status } = await expectAlive();
      expect(status).toBe(200);
    } finally {
      await dns.cleanup();
      await addresses.cleanup();
    }
  });

  describe('a runaway template loaded by SIGHUP fails its render, not the daemon', () => {
    /** Starts with a good template, then SIGHUPs to `contents`; resolves with the log index before the SIGHUP. */
    async function reloadTo(contents: string): Promise<number> {
      await writeMembers([{ name: 'a', address: '10.0.0.1' }]);
      await start();
      await waitFor(async () => (await output()) === 'server a 10.0.0.1\n', 'the first render');
      // The file can be on disk before its log line is read: the mark must come after that line.
      await daemon!.waitForLog(/^wrote/);
      const config = JSON.parse(await readFile(at('renderer.config.json'), 'utf8')) as { templates: Record<string, unknown>[] };
      config.templates[0]!.contents = contents;
      await writeFile(at('renderer.config.json'), JSON.stringify(config));
      const since = daemon!.logs.length;
      daemon!.child.kill('SIGHUP');
      await daemon!.waitForLog(/^config reloaded/, { since });
      return since;
    }

    it('a loop over (1..100000000): the allocation limit, at once', async () => {
      const since = await reloadTo('{% for i in (1..100000000) %}x{% endfor %}');
      const error = await daemon!.waitForLog(/failed to render/, { since });
      expect(error).toMatchObject({ level: 50, code: 'E_RENDER', msg: '[template out.cfg] <inline templates[0].contents>:1:1: failed to render: memory alloc limit exceeded' });
      expect(await output()).toBe('server a 10.0.0.1\n');
      const { status, body } = await expectAlive();
      expect(status).toBe(503);
      expect(body.templates[0]!.error).toContain('memory alloc limit exceeded');
      expect(await daemon!.stop('SIGTERM', 5000)).toBe(0);
    });

    it('a partial that includes itself: the nesting limit, at once', async () => {
      await writeFile(at('self.liquid'), '{% include "self.liquid" %}');
      const since = await reloadTo('{% include "self.liquid" %}');
      const error = await daemon!.waitForLog(/failed to render/, { since });
      expect(String(error.msg)).toContain('partials nested more than 50 deep ({% include %}: does a partial include itself?)');
      expect(await output()).toBe('server a 10.0.0.1\n');
      expect((await expectAlive()).status).toBe(503);
    });

    it('a loop that runs for long: /health answers and SIGTERM ends the daemon while it renders', async () => {
      // Some 10 s of work within every limit: an `if` per step, no allocation.
      const since = await reloadTo('{% for i in (1..60000000) %}{% if i == 0 %}x{% endif %}{% endfor %}');
      for (let i = 0; i < 3; i++) {
        const asked = Date.now();
        await expectAlive();
        expect(Date.now() - asked).toBeLessThan(1500);
        await new Promise((resolve) => setTimeout(resolve, 300));
      }
      expect(await output()).toBe('server a 10.0.0.1\n');
      // Still rendering: neither written nor failed yet.
      expect(daemon!.logs.slice(since).filter((l) => /^wrote|failed to render/.test(String(l.msg)))).toEqual([]);
      const stopped = Date.now();
      expect(await daemon!.stop('SIGTERM', 10_000)).toBe(0);
      expect(Date.now() - stopped).toBeLessThan(5000);
      expect(await output()).toBe('server a 10.0.0.1\n');
    });
  });

  it('removes the temporary files an earlier, killed run left next to the output, and nothing else', async () => {
    await writeMembers([{ name: 'a', address: '10.0.0.1' }]);
    const stale = ['.out.cfg.rosterd-0badc0de', '.out.cfg.rosterd-12345678'];
    const others = ['.out.cfg.rosterd-12345678.orig', '.notes.rosterd-12345678', 'out.cfg.rosterd-12345678'];
    for (const name of [...stale, ...others]) await writeFile(at(name), 'left over\n');
    // Stale means unchanged for twice the template's timeout.
    await new Promise((resolve) => setTimeout(resolve, 500));
    await start({ template: { timeout: '200ms' } });
    await waitFor(async () => (await output()) === 'server a 10.0.0.1\n', 'the first render');
    const removed = await daemon!.waitForLog(/temporary file\(s\) left by an earlier run/);
    expect((removed.removed as string[]).sort()).toEqual(stale.map((name) => at(name)));
    const names = await readdir(ws.dir);
    for (const name of stale) expect(names).not.toContain(name);
    for (const name of others) expect(names).toContain(name);
    expect((await expectAlive()).status).toBe(200);
  });

  it('slow clients on the status endpoint are capped and timed out; the daemon goes on rendering', async () => {
    await writeMembers([{ name: 'a', address: '10.0.0.1' }]);
    await start();
    await waitFor(async () => (await output()) === 'server a 10.0.0.1\n', 'the first render');
    const { port } = new URL(base);
    // 150 clients that start a request and never finish its headers.
    const opened = Date.now();
    const closedAfter: number[] = [];
    const sockets = await Promise.all(
      Array.from({ length: 150 }, () => new Promise<Socket>((resolve, reject) => {
        const socket = connect(Number(port), '127.0.0.1', () => {
          socket.write('GET /health HTTP/1.1\r\nHost: x\r\n');
          socket.resume();
          resolve(socket);
        });
        socket.on('error', () => undefined);
        socket.once('close', () => closedAfter.push(Date.now() - opened));
        socket.once('error', reject);
      })),
    );
    try {
      // Those beyond the cap of 100 are closed at once, the others after the 5 s header timeout.
      await waitFor(() => closedAfter.length >= 50, 'the connections beyond the cap closed', { timeout: 3000 });
      await waitFor(() => closedAfter.length === 150, 'every slow connection closed', { timeout: 12_000, interval: 100 });
      expect(closedAfter.filter((ms) => ms < 3000).length).toBeGreaterThanOrEqual(50);
      expect(Math.max(...closedAfter)).toBeLessThan(9000);
      expect((await expectAlive()).status).toBe(200);
      await writeMembers([{ name: 'b', address: '10.0.0.2' }]);
      await waitFor(async () => (await output()) === 'server b 10.0.0.2\n', 'a render after the load');
    } finally {
      for (const socket of sockets) socket.destroy();
    }
  });
});
