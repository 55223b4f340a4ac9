import { createSocket } from 'node:dgram';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { defineConfig } from '../../src/config/define.js';
import { loadConfig } from '../../src/config/load.js';
import type { RosterdConfig } from '../../src/config/schema.js';
import { SourceError } from '../../src/errors.js';
import { createRenderer, type Renderer } from '../../src/runner/renderer.js';
import { backoff, BACKOFF_CAP_MS, createDnsSource, nextPollDelay, TTL_FLOOR_MS, type DnsSourceOptions } from '../../src/sources/dns.js';
import { sanitizeMembers } from '../../src/sources/snapshot.js';
import type { Member, Source } from '../../src/sources/types.js';
import { startDnsmasq, type Dnsmasq, type SrvRecord } from '../helpers/dnsmasq.js';
import { freePort } from '../helpers/ports.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

const WEB = '_http._tcp.web.service.test';
const SRV_RECORDS: SrvRecord[] = [
  { name: WEB, target: 'web-a.service.test', port: 8080, priority: 10, weight: 5 },
  // No address record anywhere: left out, with a warning.
  { name: WEB, target: 'web-b.service.test', port: 8081, priority: 20, weight: 1 },
  { name: WEB, target: 'web-c.service.test', port: 8082, priority: 20, weight: 1 },
  // The same target on a second port: a second member.
  { name: WEB, target: 'web-a.service.test', port: 9090, priority: 30, weight: 0 },
  { name: WEB, target: 'web-6.service.test', port: 8083, priority: 10, weight: 0 },
  { name: WEB, target: 'multi.service.test', port: 8084, priority: 10, weight: 2 },
  // Its target gets an address later, through the hosts directory.
  { name: '_late._tcp.service.test', target: 'late.service.test', port: 7000, priority: 1, weight: 1 },
];
const HOST_RECORDS = [
  { name: 'web-a.service.test', addresses: ['10.0.0.5'] },
  { name: 'web-c.service.test', addresses: ['10.0.0.9', 'fd00::9'] },
  { name: 'web-6.service.test', addresses: ['fd00::6'] },
];
// `--host-record` takes one address per family: several come from a hosts file. In text order 10.0.0.20
// comes first; in numeric order 10.0.0.3 does.
const MULTI = ['10.0.0.20', '10.0.0.3', 'fd00::20', 'fd00::3'].map((address) => `${address} multi.service.test\n`);
const HOSTS_FILES = { multi: MULTI.join(''), pool: '10.1.0.1 pool.service.test\n' };

/** A logger that keeps every line (debug and up) as parsed JSON. */
function captureLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, lines };
}
const WARN = 40;
const debugLines = (lines: Record<string, unknown>[], msg: RegExp | string) =>
  lines.filter((l) => l.level === 20 && (typeof msg === 'string' ? l.msg === msg : msg.test(String(l.msg))));

/** A UDP socket on 127.0.0.1 that takes queries and never answers. */
async function silentServer(): Promise<{ server: string; received: () => number; close: () => Promise<void> }> {
  const socket = createSocket('udp4');
  let received = 0;
  socket.on('message', () => received++);
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return {
    server: `127.0.0.1:${socket.address().port}`,
    received: () => received,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

/**
 * A UDP DNS proxy for a fault real servers do not produce on demand: it loses the first query of each name
 * in `lose` (as a full socket buffer or a busy forwarder does) and relays everything else to `upstream`.
 */
async function lossyProxy(upstream: Dnsmasq, lose: ReadonlySet<string>): Promise<{ server: string; lost: () => number; close: () => Promise<void> }> {
  const front = createSocket('udp4');
  const back = createSocket('udp4');
  const clients = new Map<number, { port: number; address: string }>();
  const seen = new Set<string>();
  let lost = 0;
  front.on('message', (query, client) => {
    const labels: string[] = [];
    for (let at = 12; query[at]! > 0; at += query[at]! + 1) labels.push(query.toString('latin1', at + 1, at + 1 + query[at]!));
    const question = `${labels.join('.')}/${query.readUInt16BE(12 + labels.join('.').length + 2)}`;
    if (lose.has(labels.join('.')) && !seen.has(question)) {
      seen.add(question);
      lost++;
      return;
    }
    clients.set(query.readUInt16BE(0), client);
    back.send(query, upstream.port, '127.0.0.1');
  });
  back.on('message', (answer) => {
    const client = clients.get(answer.readUInt16BE(0));
    if (client) front.send(answer, client.port, client.address);
  });
  await new Promise<void>((resolve) => front.bind(0, '127.0.0.1', resolve));
  await new Promise<void>((resolve) => back.bind(0, '127.0.0.1', resolve));
  return {
    server: `127.0.0.1:${front.address().port}`,
    lost: () => lost,
    close: async () => {
      await new Promise<void>((resolve) => front.close(() => resolve()));
      await new Promise<void>((resolve) => back.close(() => resolve()));
    },
  };
}

const started: Source[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((s) => s.stop()));
});

/** Creates and starts a dns source; snapshots are the raw emissions (no gate), one per successful poll. */
async function run(options: Partial<DnsSourceOptions> & Pick<DnsSourceOptions, 'name'>, logger: Logger = pino({ level: 'silent' })) {
  const snapshots: Member[][] = [];
  const errors: Error[] = [];
  const source = createDnsSource('web', { type: 'dns', record: 'SRV', interval: 200, timeout: 300, ...options }, { logger });
  started.push(source);
  await source.start(
    (members) => snapshots.push(members),
    (err) => errors.push(err),
  );
  return { source, snapshots, errors };
}

describe('dns source with 1,000 SRV targets', () => {
  const COUNT = 1000;
  const NAME = '_http._tcp.many.service.test';
  const target = (i: number) => `node-${i}.hosts.test`;
  let dns: Dnsmasq;
  let addresses: Dnsmasq;
  beforeAll(async () => {
    // The targets' addresses come from a second dnsmasq, through the first one: that is how a resolver in
    // front of a service registry answers, and forwarding is where too many queries at once get lost
    // (dnsmasq forwards at most 150 at a time). Without a cache, forwarded answers also stay out of the
    // SRV answer's additional section, which would not fit in one message for 1,000 targets.
    const hosts = Array.from({ length: COUNT }, (_, i) => `10.7.${i >> 8}.${i & 255} ${target(i)}`).join('\n');
    addresses = await startDnsmasq({ hostsFiles: { many: `${hosts}\n` } });
    const srvRecords = Array.from({ length: COUNT }, (_, i) => ({ name: NAME, target: target(i), port: 8000 + (i % 100) }));
    dns = await startDnsmasq({ srvRecords, forward: [{ domain: 'hosts.test', server: addresses.server }], cacheSize: 0 });
  });
  afterAll(async () => {
    await dns?.cleanup();
    await addresses?.cleanup();
  });

  it('gives a complete snapshot of every target, poll after poll', async () => {
    const { snapshots, errors } = await run({ name: NAME, servers: [dns.server], interval: 300, timeout: 1000 });
    await waitFor(() => snapshots.length >= 3, 'three complete polls', { timeout: 20_000 });
    expect(errors).toEqual([]);
    for (const members of snapshots) expect(members).toHaveLength(COUNT);
    expect(snapshots[0]!.find((m) => m.name === `${target(999)}:8099`)).toMatchObject({ address: '10.7.3.231', port: 8099 });
  });

  it('asks a lost answer again instead of failing the poll', async () => {
    // A few targets, so that the SRV answer fits in UDP: the proxy speaks UDP only.
    const few = Array.from({ length: 5 }, (_, i) => target(i));
    const small = await startDnsmasq({
      srvRecords: few.map((t, i) => ({ name: NAME, target: t, port: 8000 + i })),
      hostRecords: few.map((t, i) => ({ name: t, addresses: [`10.7.0.${i}`] })),
    });
    const proxy = await lossyProxy(small, new Set([target(1), target(3)]));
    try {
      const { snapshots, errors } = await run({ name: NAME, servers: [proxy.server], interval: 300, timeout: 300 });
      await waitFor(() => snapshots.length >= 1, 'a complete poll', { timeout: 10_000 });
      expect(errors.map((e) => e.message)).toEqual([]);
      expect(proxy.lost()).toBe(4);
      expect(snapshots[0]!.map((m) => m.address)).toEqual(['10.7.0.0', '10.7.0.1', '10.7.0.2', '10.7.0.3', '10.7.0.4']);
    } finally {
      await proxy.close();
      await small.cleanup();
    }
  });
});

describe('dns source against dnsmasq', () => {
  let dns: Dnsmasq;
  beforeAll(async () => {
    dns = await startDnsmasq({ hostRecords: HOST_RECORDS, srvRecords: SRV_RECORDS, hostsFiles: HOSTS_FILES });
  });
  afterAll(() => dns?.cleanup());

  it('SRV: one member per target and port, IPv4 preferred, priority and weight as tags', async () => {
    const { logger, lines } = captureLogger();
    const { snapshots, errors } = await run({ name: WEB, servers: [dns.server] }, logger);
    await waitFor(() => snapshots.length >= 3, 'three polls');
    const tags = (target: string, priority: number, weight: number, families: { ipv4?: string; ipv6?: string }) => ({
      target,
      priority: String(priority),
      weight: String(weight),
      ...families,
    });
    const member = (name: string, address: string, port: number, memberTags: Record<string, string>) => ({ name, address, port, tags: memberTags, status: 'alive', source: 'web' });
    expect(snapshots[0]).toEqual([
      member('multi.service.test:8084', '10.0.0.3', 8084, tags('multi.service.test', 10, 2, { ipv4: '10.0.0.3', ipv6: 'fd00::3' })),
      member('web-6.service.test:8083', 'fd00::6', 8083, tags('web-6.service.test', 10, 0, { ipv6: 'fd00::6' })),
      member('web-a.service.test:8080', '10.0.0.5', 8080, tags('web-a.service.test', 10, 5, { ipv4: '10.0.0.5' })),
      member('web-a.service.test:9090', '10.0.0.5', 9090, tags('web-a.service.test', 30, 0, { ipv4: '10.0.0.5' })),
      member('web-c.service.test:8082', '10.0.0.9', 8082, tags('web-c.service.test', 20, 1, { ipv4: '10.0.0.9', ipv6: 'fd00::9' })),
    ]);
    // Every poll emits the whole list, and the same one.
    expect(snapshots[1]).toEqual(snapshots[0]);
    expect(snapshots[2]).toEqual(snapshots[0]);
    expect(sanitizeMembers(snapshots[0]!, 'web').dropped).toEqual([]);
    expect(errors).toEqual([]);
    // The target without an address is warned about once, not on every poll.
    const warnings = lines.filter((l) => l.level === WARN);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ target: 'web-b.service.test' });
    expect(String(warnings[0]!.msg)).toContain('no A or AAAA record');
    // Routine polls log at debug level only.
    expect(lines.filter((l) => (l.level as number) > 20 && l.level !== WARN)).toEqual([]);
    expect(debugLines(lines, 'DNS poll').length).toBeGreaterThanOrEqual(3);
  });

  it('SRV: the same records in another order give the same members', async () => {
    const reversed = await startDnsmasq({
      hostRecords: [...HOST_RECORDS].reverse(),
      srvRecords: [...SRV_RECORDS].reverse(),
      hostsFiles: { multi: [...MULTI].reverse().join('') },
    });
    try {
      const a = await run({ name: WEB, servers: [dns.server] });
      const b = await run({ name: WEB, servers: [reversed.server] });
      await waitFor(() => a.snapshots.length > 0 && b.snapshots.length > 0, 'a snapshot from each server');
      expect(b.snapshots[0]).toEqual(a.snapshots[0]);
      expect(a.snapshots[0]!.length).toBe(5);
    } finally {
      await Promise.all(started.splice(0).map((s) => s.stop()));
      await reversed.cleanup();
    }
  });

  it('A and AAAA: one member per address, named by it, with the port option', async () => {
    const v4 = await run({ name: 'multi.service.test', record: 'A', port: 443, servers: [dns.server] });
    const v6 = await run({ name: 'multi.service.test', record: 'AAAA', servers: [dns.server] });
    await waitFor(() => v4.snapshots.length > 0 && v6.snapshots.length > 0, 'A and AAAA snapshots');
    const tags = { target: 'multi.service.test' };
    expect(v4.snapshots[0]).toEqual([
      { name: '10.0.0.3', address: '10.0.0.3', port: 443, tags, status: 'alive', source: 'web' },
      { name: '10.0.0.20', address: '10.0.0.20', port: 443, tags, status: 'alive', source: 'web' },
    ]);
    // Without a port option, no port.
    expect(v6.snapshots[0]).toEqual([
      { name: 'fd00::3', address: 'fd00::3', tags, status: 'alive', source: 'web' },
      { name: 'fd00::20', address: 'fd00::20', tags, status: 'alive', source: 'web' },
    ]);
  });

  it('a record written to the watched hosts directory appears in a following snapshot (A and SRV targets)', async () => {
    const pool = await run({ name: 'pool.service.test', record: 'A', port: 80, servers: [dns.server] });
    const late = await run({ name: '_late._tcp.service.test', servers: [dns.server] });
    await waitFor(() => pool.snapshots.length > 0 && late.snapshots.length > 0, 'first snapshots');
    expect(pool.snapshots[0]!.map((m) => m.address)).toEqual(['10.1.0.1']);
    expect(late.snapshots[0]).toEqual([]);

    await dns.writeHosts('pool', '10.1.0.1 pool.service.test\n10.1.0.2 pool.service.test\n');
    await dns.writeHosts('late', '10.2.0.1 late.service.test\n');
    await waitFor(() => pool.snapshots.at(-1)!.length === 2, 'the added address');
    expect(pool.snapshots.at(-1)!.map((m) => m.name)).toEqual(['10.1.0.1', '10.1.0.2']);
    await waitFor(() => late.snapshots.at(-1)!.length === 1, 'the SRV target with its new address');
    expect(late.snapshots.at(-1)![0]).toMatchObject({ name: 'late.service.test:7000', address: '10.2.0.1', port: 7000 });

    // A line taken out again is gone from a following snapshot.
    await dns.writeHosts('pool', '10.1.0.2 pool.service.test\n');
    await waitFor(() => pool.snapshots.at(-1)!.length === 1, 'the removed address gone');
    expect(pool.snapshots.at(-1)![0]!.address).toBe('10.1.0.2');
    expect([...pool.errors, ...late.errors]).toEqual([]);
  });

  it('NXDOMAIN and "no records of this type" are empty snapshots, not errors', async () => {
    const missingA = await run({ name: 'nothing.service.test', record: 'A', servers: [dns.server] });
    const missingSrv = await run({ name: '_none._tcp.service.test', servers: [dns.server] });
    // web-a has an A record but no AAAA: NODATA.
    const noData = await run({ name: 'web-a.service.test', record: 'AAAA', servers: [dns.server] });
    const all = [missingA, missingSrv, noData];
    await waitFor(() => all.every((r) => r.snapshots.length >= 2), 'two polls of each');
    for (const r of all) {
      expect(r.snapshots.every((s) => s.length === 0)).toBe(true);
      expect(r.errors).toEqual([]);
    }
  });

  it('a REFUSED answer is a retryable error naming the record, the name and the server', async () => {
    // A name outside dnsmasq's local domain, with no upstream: REFUSED.
    const { snapshots, errors } = await run({ name: 'www.example.com', record: 'A', servers: [dns.server] });
    await waitFor(() => errors.length > 0, 'an error');
    const error = errors[0] as SourceError;
    expect(error).toBeInstanceOf(SourceError);
    expect(error).toMatchObject({ code: 'E_SOURCE', retryable: true, source: 'web' });
    expect(error.message).toBe(`[source web] A lookup of www.example.com via ${dns.server} failed: the server refused the query (REFUSED) (EREFUSED)`);
    expect(snapshots).toEqual([]);
  });

  it('honours a positive TTL shorter than the interval, never polling faster than the floor', async () => {
    const short = await startDnsmasq({ localTtl: 1, hostsFiles: { ttl: '10.3.0.1 ttl.service.test\n' } });
    try {
      const { logger, lines } = captureLogger();
      const { snapshots } = await run({ name: 'ttl.service.test', record: 'A', servers: [short.server], interval: 60_000 }, logger);
      await waitFor(() => snapshots.length > 0, 'the first snapshot');
      expect(debugLines(lines, 'DNS poll')[0]).toMatchObject({ ttl: 1, nextPollMs: TTL_FLOOR_MS });
      await short.writeHosts('ttl', '10.3.0.1 ttl.service.test\n10.3.0.2 ttl.service.test\n');
      // Seen by the TTL-driven poll, long before the 60 s interval.
      await waitFor(() => snapshots.at(-1)!.length === 2, 'the added address', { timeout: 5_000 });
    } finally {
      await Promise.all(started.splice(0).map((s) => s.stop()));
      await short.cleanup();
    }
    // dnsmasq's local records have TTL 0: no shortening, the interval applies.
    const { logger, lines } = captureLogger();
    await run({ name: 'web-a.service.test', record: 'A', servers: [dns.server], interval: 60_000 }, logger);
    await waitFor(() => debugLines(lines, 'DNS poll').length > 0, 'a poll');
    expect(debugLines(lines, 'DNS poll')[0]).toMatchObject({ nextPollMs: 60_000 });
  });
});

describe('dns source when the server fails', () => {
  it('stopping the server: one retryable error, no snapshot, doubling retries; restarting it: recovery', async () => {
    const dns = await startDnsmasq({ hostsFiles: { h: '10.4.0.1 app.service.test\n' } });
    try {
      const { logger, lines } = captureLogger();
      const { snapshots, errors } = await run({ name: 'app.service.test', record: 'A', port: 80, servers: [dns.server] }, logger);
      await waitFor(() => snapshots.length > 0, 'the first snapshot');
      const good = snapshots[0]!;
      expect(good.map((m) => m.address)).toEqual(['10.4.0.1']);

      await dns.stop();
      const failedPolls = () => debugLines(lines, /retrying in/);
      await waitFor(() => failedPolls().length >= 1, 'a failed poll');
      const count = snapshots.length;
      await waitFor(() => failedPolls().length >= 3, 'three failed polls');
      expect(snapshots.length).toBe(count);
      expect(errors).toHaveLength(1); // the same failure again is not reported again
      const error = errors[0] as SourceError;
      expect(error).toBeInstanceOf(SourceError);
      expect(error).toMatchObject({ code: 'E_SOURCE', retryable: true, source: 'web' });
      expect(error.message).toContain(`A lookup of app.service.test via ${dns.server} failed`);
      expect(error.message).toContain('ECONNREFUSED');
      expect(failedPolls().slice(0, 3).map((l) => l.retryInMs)).toEqual([200, 400, 800]);

      await dns.restart();
      await waitFor(() => snapshots.length > count, 'a snapshot after the restart', { timeout: 5_000 });
      // The same members as before the break: the outage never showed as an empty or partial list.
      for (const members of snapshots) expect(members).toEqual(good);
      expect(lines.some((l) => l.level === 30 && /DNS answers again/.test(String(l.msg)))).toBe(true);
      // Backoff is reset by the success.
      expect(debugLines(lines, 'DNS poll').at(-1)).toMatchObject({ nextPollMs: 200 });
      expect(errors).toHaveLength(1);
    } finally {
      await Promise.all(started.splice(0).map((s) => s.stop()));
      await dns.cleanup();
    }
  });

  describe('a server that never answers', () => {
    let silent: Awaited<ReturnType<typeof silentServer>>;
    beforeAll(async () => {
      silent = await silentServer();
    });
    afterAll(() => silent?.close());

    it('times out after `timeout` ms with a retryable error', async () => {
      const begin = Date.now();
      const { snapshots, errors } = await run({ name: 'app.service.test', record: 'A', servers: [silent.server], timeout: 400, interval: 1000 });
      await waitFor(() => errors.length > 0, 'a timeout', { interval: 5 });
      const elapsed = Date.now() - begin;
      expect(elapsed).toBeGreaterThanOrEqual(390);
      // Node's resolver on its own gives up only at about twice its timeout option; the source keeps the option.
      expect(elapsed).toBeLessThan(700);
      expect(errors[0]).toMatchObject({ retryable: true, code: 'E_SOURCE' });
      expect(errors[0]!.message).toBe(`[source web] A lookup of app.service.test via ${silent.server} failed: no answer within 400 ms (ETIMEOUT)`);
      expect(snapshots).toEqual([]);
    });

    it('is skipped for the next server, which is asked first from then on', async () => {
      const dns = await startDnsmasq({ hostRecords: [{ name: 'app.service.test', addresses: ['10.5.0.1'] }] });
      try {
        const before = silent.received();
        const begin = Date.now();
        const { snapshots, errors } = await run({ name: 'app.service.test', record: 'A', port: 80, servers: [silent.server, dns.server], timeout: 300 });
        await waitFor(() => snapshots.length > 0, 'the first snapshot');
        expect(Date.now() - begin).toBeGreaterThanOrEqual(290);
        await waitFor(() => snapshots.length >= 3, 'two more polls');
        expect(snapshots[0]!.map((m) => m.address)).toEqual(['10.5.0.1']);
        expect(silent.received() - before).toBe(1);
        expect(errors).toEqual([]);
      } finally {
        await Promise.all(started.splice(0).map((s) => s.stop()));
        await dns.cleanup();
      }
    });

    it('stop() cancels a query under way and resolves at once, reporting nothing', async () => {
      const before = silent.received();
      const { source, errors } = await run({ name: 'app.service.test', record: 'A', servers: [silent.server], timeout: 10_000 });
      await waitFor(() => silent.received() > before, 'the query to reach the server');
      const begin = Date.now();
      await source.stop();
      expect(Date.now() - begin).toBeLessThan(500);
      expect(process.getActiveResourcesInfo()).not.toContain('QueryReqWrap');
      expect(errors).toEqual([]);
    });
  });

  it('when every server fails, one error names each of them', async () => {
    const servers = [`127.0.0.1:${await freePort()}`, `127.0.0.1:${await freePort()}`];
    const { snapshots, errors } = await run({ name: 'app.service.test', record: 'AAAA', servers });
    await waitFor(() => errors.length > 0, 'an error');
    const each = (server: string) => `AAAA lookup of app.service.test via ${server} failed: the server could not be reached (connection refused) (ECONNREFUSED)`;
    expect(errors[0]!.message).toBe(`[source web] ${each(servers[0]!)}; ${each(servers[1]!)}`);
    expect(errors[0]).toMatchObject({ retryable: true });
    expect(snapshots).toEqual([]);
  });
});

describe('dns source options', () => {
  const make = (options: Partial<DnsSourceOptions>) => () =>
    createDnsSource('web', { type: 'dns', name: 'web.service.test', record: 'A', interval: 200, timeout: 300, ...options }, { logger: pino({ level: 'silent' }) });

  it('are checked when the source is created', () => {
    const refused: [Partial<DnsSourceOptions>, RegExp][] = [
      [{ servers: ['dns.example.com:53'] }, /servers\[0\].*must be an IP address/],
      // Node's setServers would abort the whole process on this one.
      [{ servers: ['127.0.0.1:0'] }, /port 0 is not from 1 to 65535/],
      [{ servers: ['127.0.0.1:65536'] }, /port 65536/],
      [{ servers: ['127.0.0.1', '[dns.example]:53'] }, /servers\[1\].*must be an IP address/],
      [{ servers: [] }, /servers.*non-empty/],
      [{ record: 'SRV', port: 80 }, /SRV records carry their own port/],
      [{ record: 'MX' as 'A' }, /record.*SRV, A or AAAA/],
      [{ interval: 0 }, /interval.*positive/],
      [{ timeout: Number.NaN }, /timeout.*positive/],
      [{ name: 'not a name' }, /name.*not a DNS name/],
    ];
    for (const [options, message] of refused) {
      const create = make(options);
      expect(create, JSON.stringify(options)).toThrow(SourceError);
      expect(create, JSON.stringify(options)).toThrow(message);
    }
    for (const servers of [['127.0.0.1'], ['127.0.0.1:5353', '[::1]:5353'], ['::1']]) expect(make({ servers })).not.toThrow();
  });

  it('poll delays: TTL shortens down to the floor; failures double up to the cap', () => {
    expect(nextPollDelay(5000, undefined)).toBe(5000);
    expect(nextPollDelay(5000, 0)).toBe(5000);
    expect(nextPollDelay(5000, 2)).toBe(2000);
    expect(nextPollDelay(5000, 0.1)).toBe(TTL_FLOOR_MS);
    expect(nextPollDelay(500, 1)).toBe(500);
    expect(nextPollDelay(5000, 3600)).toBe(5000);
    expect([1, 2, 3, 4, 5].map((n) => backoff(5000, n))).toEqual([5000, 10_000, 20_000, BACKOFF_CAP_MS, BACKOFF_CAP_MS]);
    expect(backoff(120_000, 5)).toBe(120_000);
    expect(backoff(200, 1000)).toBe(BACKOFF_CAP_MS);
  });
});

describe('dns source through the renderer', () => {
  let dns: Dnsmasq;
  let dir: string;
  let cleanupDir: () => Promise<void>;
  let renderer: Renderer | undefined;
  beforeAll(async () => {
    dns = await startDnsmasq({ hostRecords: HOST_RECORDS, srvRecords: SRV_RECORDS, hostsFiles: HOSTS_FILES });
    ({ path: dir, cleanup: cleanupDir } = await tempDir());
  });
  afterEach(async () => {
    await renderer?.stop();
    renderer = undefined;
  });
  afterAll(async () => {
    await dns?.cleanup();
    await cleanupDir?.();
  });

  const TEMPLATE = '{% for m in members %}server {{ m.name }} {{ m.address }}:{{ m.port }} weight {{ m.tags.weight }}\n{% endfor %}# {{ members | size }} server(s)\n';
  async function make(source: Partial<DnsSourceOptions>, template: Partial<RosterdConfig['templates'][number]> = {}): Promise<Renderer> {
    const config = defineConfig({
      sources: { web: { type: 'dns', name: WEB, servers: [dns.server], interval: '200ms', timeout: '300ms', ...source } },
      templates: [{ contents: TEMPLATE, destination: 'out.cfg', ...template }],
    });
    renderer = await createRenderer(await loadConfig(config, { baseDir: dir }));
    return renderer;
  }

  it('renders the SRV members', async () => {
    const r = await make({}, { destination: 'srv.cfg' });
    const [result] = await r.renderOnce({ timeout: 5_000 });
    expect(result).toMatchObject({ status: 'written', members: 5 });
    expect(await readFile(join(dir, 'srv.cfg'), 'utf8')).toBe(
      [
        'server multi.service.test:8084 10.0.0.3:8084 weight 2',
        'server web-6.service.test:8083 fd00::6:8083 weight 0',
        'server web-a.service.test:8080 10.0.0.5:8080 weight 5',
        'server web-a.service.test:9090 10.0.0.5:9090 weight 0',
        'server web-c.service.test:8082 10.0.0.9:8082 weight 1',
        '# 5 server(s)',
        '',
      ].join('\n'),
    );
  });

  it('a name that does not exist renders an empty set', async () => {
    const r = await make({ name: 'nothing.service.test', record: 'A', port: 80 }, { destination: 'empty.cfg' });
    const [result] = await r.renderOnce({ timeout: 5_000 });
    expect(result).toMatchObject({ status: 'written', members: 0 });
    expect(await readFile(join(dir, 'empty.cfg'), 'utf8')).toBe('# 0 server(s)\n');
  });

  it('with minMembers, an empty answer is guarded and the previous file stays', async () => {
    await writeFile(join(dir, 'guarded.cfg'), 'previous\n');
    const r = await make({ name: 'nothing.service.test', record: 'A', port: 80 }, { destination: 'guarded.cfg', minMembers: 1 });
    const [result] = await r.renderOnce({ timeout: 5_000 });
    expect(result).toMatchObject({ status: 'failed', members: 0 });
    expect(result!.error?.code).toBe('E_GUARD');
    expect(await readFile(join(dir, 'guarded.cfg'), 'utf8')).toBe('previous\n');
  });

  it('an unreachable server gives E_SOURCE_TIMEOUT after the timeout', async () => {
    const nobody = `127.0.0.1:${await freePort()}`;
    const r = await make({ servers: [nobody] }, { destination: 'unreachable.cfg' });
    const begin = Date.now();
    const [result] = await r.renderOnce({ timeout: 600 });
    expect(Date.now() - begin).toBeGreaterThanOrEqual(590);
    expect(result).toMatchObject({ status: 'failed' });
    expect(result!.error?.code).toBe('E_SOURCE_TIMEOUT');
    expect(result!.error?.message).toContain(nobody);
    await expect(readFile(join(dir, 'unreachable.cfg'), 'utf8')).rejects.toThrow();
  });
});
