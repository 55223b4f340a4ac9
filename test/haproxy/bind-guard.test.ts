import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { findBindClashes, listBindAddresses } from '../../src/haproxy/bind-guard.js';
import { freePort } from '../helpers/ports.js';

const holders: Array<Server | UdpSocket> = [];

afterEach(async () => {
  await Promise.all(
    holders.splice(0).map(
      (holder) =>
        new Promise<void>((resolve) => (holder instanceof Server ? holder.close(() => resolve()) : holder.close(() => resolve()))),
    ),
  );
});

/** Holds a TCP port on 127.0.0.1, as another program would. */
async function holdTcp(): Promise<number> {
  const server = createServer();
  holders.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as { port: number }).port;
}

async function holdUdp(): Promise<number> {
  const socket = createSocket('udp4');
  holders.push(socket);
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return socket.address().port;
}

describe('listBindAddresses', () => {
  it('reads the IP forms of bind lines and skips the rest', () => {
    const text = [
      'global',
      '  stats socket /run/admin.sock mode 600 level admin',
      '# bind 10.0.0.1:1 (a comment)',
      'frontend a',
      '  bind 127.0.0.1:8080',
      '  bind *:80',
      '  bind :443 ssl crt /etc/cert.pem alpn h2,http/1.1',
      '  bind [::1]:8443',
      '  bind :::9000 v4v6',
      '  bind ipv6@:9001',
      '  bind ipv4@10.1.2.3:9002 # trailing comment',
      '  bind "127.0.0.2:9003"',
      '  bind 127.0.0.1:7000-7002',
      '  bind :81,127.0.0.3:82',
      '  bind quic4@:8443',
      '  bind [::0001]:9004',
      '\tbind\t127.0.0.4:9005',
      'frontend skipped',
      '  bind /run/haproxy/fe.sock',
      '  bind unix@fe.sock',
      '  bind abns@fe',
      '  bind fd@3',
      '  bind sockpair@4',
      '  bind localhost:80',
      '  bind "${FE_ADDR}"',
      '  bind 127.0.0.1:1-1000',
      '  bind 127.0.0.1:70000',
      '  bind 127.0.0.1',
      '  bind ipv4@[::1]:80',
      '  bind',
      '  server-bind 1.2.3.4:5',
    ].join('\n');
    const found = listBindAddresses(text).map((a) => `${a.transport} ${a.family} ${a.host} ${a.port} @${a.line}`);
    expect(found).toEqual([
      'tcp 4 127.0.0.1 8080 @5',
      'tcp 4 0.0.0.0 80 @6',
      'tcp 4 0.0.0.0 443 @7',
      'tcp 6 ::1 8443 @8',
      'tcp 6 :: 9000 @9',
      'tcp 6 :: 9001 @10',
      'tcp 4 10.1.2.3 9002 @11',
      'tcp 4 127.0.0.2 9003 @12',
      'tcp 4 127.0.0.1 7000 @13',
      'tcp 4 127.0.0.1 7001 @13',
      'tcp 4 127.0.0.1 7002 @13',
      'tcp 4 0.0.0.0 81 @14',
      'tcp 4 127.0.0.3 82 @14',
      'udp 4 0.0.0.0 8443 @15',
      'tcp 6 ::1 9004 @16',
      'tcp 4 127.0.0.4 9005 @17',
    ]);
  });
});

describe('findBindClashes', () => {
  it('reports a new bind on a port another process holds', async () => {
    const held = await holdTcp();
    const free = await freePort();
    const previous = `frontend fe\n  bind 127.0.0.1:${free}\n`;
    const candidate = `${previous}frontend extra\n  bind 127.0.0.1:${held}\n`;
    const clashes = await findBindClashes(previous, candidate);
    expect(clashes).toHaveLength(1);
    expect(clashes[0]).toContain(`127.0.0.1:${held}`);
    expect(clashes[0]).toContain('line 4');
    expect(clashes[0]).toMatch(/in use/);
  });

  it('finds nothing when the new addresses are free, and leaves them free', async () => {
    const [a, b] = [await freePort(), await freePort()];
    const candidate = `frontend fe\n  bind 127.0.0.1:${a}\n  bind 127.0.0.1:${b}\n`;
    await expect(findBindClashes(undefined, candidate)).resolves.toEqual([]);
    // The probe listeners are closed again: the ports can be taken right away.
    const server = createServer();
    holders.push(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(a, '127.0.0.1', resolve);
    });
  });

  it('does not probe addresses the previous file already binds', async () => {
    // The running HAProxy holds its own ports; they must not count as clashes.
    const held = await holdTcp();
    const previous = `frontend fe\n  bind 127.0.0.1:${held}\n`;
    const candidate = `frontend fe\n  bind ipv4@127.0.0.1:${held} # same address, other spelling\n`;
    await expect(findBindClashes(previous, candidate)).resolves.toEqual([]);
  });

  it('does not report a wildcard that covers an address the previous file binds on that port', async () => {
    // `127.0.0.1:P` → `*:P`: the holder is the running HAProxy, which shares the port with its successor.
    const held = await holdTcp();
    const previous = `frontend fe\n  bind 127.0.0.1:${held}\n`;
    await expect(findBindClashes(previous, `frontend fe\n  bind *:${held}\n`)).resolves.toEqual([]);
    // Without that previous bind, the same wildcard is a clash.
    const clashes = await findBindClashes(undefined, `frontend fe\n  bind *:${held}\n`);
    expect(clashes).toEqual([expect.stringContaining(`0.0.0.0:${held}`)]);
  });

  it('probes UDP addresses with a UDP socket', async () => {
    const held = await holdUdp();
    const clashes = await findBindClashes(undefined, `frontend fe\n  bind quic4@127.0.0.1:${held}\n`);
    expect(clashes).toEqual([expect.stringContaining(`127.0.0.1:${held}/udp`)]);
    // The TCP port of the same number is not held.
    await expect(findBindClashes(undefined, `frontend fe\n  bind 127.0.0.1:${held}\n`)).resolves.toEqual([]);
  });
});
