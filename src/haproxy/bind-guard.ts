import { createSocket } from 'node:dgram';
import { createServer, isIP, SocketAddress } from 'node:net';
import { splitHostPort } from '../net/address.js';

/**
 * A `bind` on an address that another process holds passes `haproxy -c` (which does not bind), then makes
 * the reload fail. Worse, before giving up the new process pauses the old worker's listeners and retries
 * for ~2 s, so the running proxy stops accepting connections meanwhile. This guard finds such addresses
 * before the reload is triggered, by trying to listen on each *new* address from Node.
 */

/** One IP address a `bind` line listens on. */
export interface BindAddress {
  /** Normalised IP: `0.0.0.0` for `*` or an empty host, `::` for the IPv6 wildcard. */
  host: string;
  port: number;
  family: 4 | 6;
  /** `udp` for `udp@`, `quic4@`, `dgram+` ... addresses; `tcp` otherwise. */
  transport: 'tcp' | 'udp';
  /** 1-based line in the config text. */
  line: number;
}

// Address prefixes of HAProxy 2.6 (`str2sa_range()`): family forced (4/6), guessed (0), or not an IP (null).
const PREFIXES: Record<string, { family: 0 | 4 | 6; transport?: 'tcp' | 'udp' } | null> = {
  'ip@': { family: 0 },
  'ipv4@': { family: 4 },
  'ipv6@': { family: 6 },
  'tcp@': { family: 0, transport: 'tcp' },
  'tcp4@': { family: 4, transport: 'tcp' },
  'tcp6@': { family: 6, transport: 'tcp' },
  'udp@': { family: 0, transport: 'udp' },
  'udp4@': { family: 4, transport: 'udp' },
  'udp6@': { family: 6, transport: 'udp' },
  'quic4@': { family: 4, transport: 'udp' },
  'quic6@': { family: 6, transport: 'udp' },
  'unix@': null,
  'uxst@': null,
  'uxdg@': null,
  'abns@': null,
  'fd@': null,
  'sockpair@': null,
};

/** A port range wider than this is not probed port by port (and not reported). */
const MAX_RANGE = 64;

/**
 * Lists the IP addresses of every `bind` line in a HAProxy config text, in order. UNIX and abstract
 * sockets, inherited file descriptors, host names, `${ENV}` references and anything else that cannot be
 * parsed without running HAProxy are skipped.
 */
export function listBindAddresses(configText: string): BindAddress[] {
  const found: BindAddress[] = [];
  configText.split('\n').forEach((raw, index) => {
    const words = splitWords(raw);
    if (words[0] !== 'bind' || words[1] === undefined) return;
    // `bind :80,:443 ssl crt ...`: the first argument is a comma-separated list of addresses.
    for (const item of words[1].split(',')) {
      found.push(...parseAddress(item.trim(), index + 1));
    }
  });
  return found;
}

/**
 * Returns the `bind` addresses that `candidateText` adds (compared with `previousText`: the installed files
 * that the same HAProxy reads)
 * and that are already in use on this host, one human-readable line each (empty: no clash found).
 *
 * Each new address is tried with a Node listener (UDP socket for `udp@`/`quic@` addresses) that is closed at
 * once. Only "address in use" counts: other errors (no permission for a low port, an address this host does
 * not have) are left to the reload confirmation, since HAProxy may run with other privileges.
 *
 * An address whose port the previous file already binds on an overlapping address (e.g. `127.0.0.1:80`
 * becoming `*:80`) is not reported: the listener in the way is most likely the running HAProxy itself,
 * which shares the port with its successor through SO_REUSEPORT, so the reload works.
 */
export async function findBindClashes(previousText: string | undefined, candidateText: string): Promise<string[]> {
  const previous = previousText === undefined ? [] : listBindAddresses(previousText);
  const fresh = new Map<string, BindAddress>();
  for (const address of listBindAddresses(candidateText)) {
    const key = formatAddress(address);
    if (!fresh.has(key) && !previous.some((old) => overlaps(old, address))) fresh.set(key, address);
  }
  const results = await Promise.all([...fresh.values()].map(async (address) => ({ address, code: await probe(address) })));
  return results
    .filter(({ code }) => code === 'EADDRINUSE')
    .map(({ address }) => `${formatAddress(address)} (line ${address.line}) is already in use by another process`);
}

/** `127.0.0.1:80`, `[::1]:80`, `0.0.0.0:53/udp`. */
export function formatAddress(address: Pick<BindAddress, 'host' | 'port' | 'family' | 'transport'>): string {
  const host = address.family === 6 ? `[${address.host}]` : address.host;
  return `${host}:${address.port}${address.transport === 'udp' ? '/udp' : ''}`;
}

/** True when both listeners would compete for the same port: same transport and port, and one address covers the other. */
function overlaps(a: BindAddress, b: BindAddress): boolean {
  if (a.transport !== b.transport || a.port !== b.port) return false;
  if (a.host === b.host) return true;
  const wildcard = (x: BindAddress): boolean => x.host === '0.0.0.0' || x.host === '::';
  // An IPv6 wildcard is dual-stack by default on Linux, so it covers IPv4 addresses too.
  if (a.host === '::' || b.host === '::') return true;
  return a.family === b.family && (wildcard(a) || wildcard(b));
}

function parseAddress(text: string, line: number): BindAddress[] {
  let rest = text;
  let transport: 'tcp' | 'udp' = 'tcp';
  let family: 0 | 4 | 6 = 0;
  if (rest.startsWith('dgram+')) {
    transport = 'udp';
    rest = rest.slice('dgram+'.length);
  } else if (rest.startsWith('stream+')) {
    rest = rest.slice('stream+'.length);
  }
  const prefix = /^[a-z0-9]+@/.exec(rest)?.[0];
  if (prefix !== undefined) {
    const known = PREFIXES[prefix];
    if (!known) return [];
    family = known.family;
    transport = known.transport ?? transport;
    rest = rest.slice(prefix.length);
  }
  if (rest.startsWith('/') || rest.includes('$')) return [];
  // HAProxy reads an unbracketed IPv6 address with a port by its last colon (`::1:80`).
  const split = splitHostPort(rest, { lastColon: true });
  if (split?.port === undefined) return [];
  const ports = parsePorts(split.port);
  const ip = normaliseHost(split.host, family);
  if (ip === undefined || ports.length === 0) return [];
  return ports.map((port) => ({ ...ip, port, transport, line }));
}

function normaliseHost(host: string, family: 0 | 4 | 6): { host: string; family: 4 | 6 } | undefined {
  if (host === '' || host === '*') return family === 6 ? { host: '::', family: 6 } : { host: '0.0.0.0', family: 4 };
  const detected = isIP(host);
  if (detected === 0 || (family !== 0 && detected !== family)) return undefined;
  const ipFamily = detected === 6 ? 6 : 4;
  const normalised = new SocketAddress({ address: host, family: ipFamily === 6 ? 'ipv6' : 'ipv4' }).address;
  return { host: normalised, family: ipFamily };
}

function parsePorts(text: string): number[] {
  const match = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text);
  if (!match) return [];
  const low = Number(match[1]);
  const high = match[2] === undefined ? low : Number(match[2]);
  if (low < 1 || high > 65_535 || high < low || high - low >= MAX_RANGE) return [];
  return Array.from({ length: high - low + 1 }, (_, i) => low + i);
}

/**
 * Splits a config line into words the way HAProxy does for the cases that matter here: blanks separate
 * words, `#` starts a comment, quotes group, a backslash escapes the next character.
 */
function splitWords(line: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote !== undefined) {
      if (c === quote) quote = undefined;
      else if (c === '\\' && quote === '"' && i + 1 < line.length) word += line[++i];
      else word += c;
      continue;
    }
    if (c === '#') break;
    if (c === ' ' || c === '\t' || c === '\r') {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
      continue;
    }
    inWord = true;
    if (c === '"' || c === "'") quote = c;
    else if (c === '\\' && i + 1 < line.length) word += line[++i];
    else word += c;
  }
  if (inWord) words.push(word);
  return words;
}

/** Tries to listen on the address; resolves with the error code, or `undefined` when it was free. */
function probe(address: BindAddress): Promise<string | undefined> {
  return address.transport === 'udp' ? probeUdp(address) : probeTcp(address);
}

function probeTcp(address: BindAddress): Promise<string | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'UNKNOWN'));
    // `exclusive`: a real bind even inside a cluster worker, never a handle shared with the primary.
    server.listen({ host: address.host, port: address.port, exclusive: true }, () => {
      server.close(() => resolve(undefined));
    });
  });
}

function probeUdp(address: BindAddress): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = createSocket({ type: address.family === 6 ? 'udp6' : 'udp4' });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      try {
        socket.close();
      } catch {
        // Already closed by the failed bind.
      }
      resolve(err.code ?? 'UNKNOWN');
    });
    socket.bind({ address: address.host, port: address.port, exclusive: true }, () => {
      socket.close(() => resolve(undefined));
    });
  });
}
