import { isIP } from 'node:net';

/**
 * `host:port` as rosterd reads it everywhere (the Serf agent's RPC address, the status endpoint, DNS
 * servers, HAProxy `bind` lines). The syntax is the same for all of them; what differs is spelled out in
 * {@link HostPortRules}, so that each caller says which rules it needs instead of carrying its own parser:
 *
 * - `host:port`, where the host holds no `:`, `[` or `]`;
 * - `[ipv6]:port` (a bracketed host must be an IPv6 address);
 * - the port is 1 to 5 digits.
 */

/** What differs between the places that read an address. Every rule is off by default. */
export interface HostPortRules {
  /** Accept `:9465`, an empty host (the status endpoint: every interface). @default false */
  emptyHost?: boolean;
  /** Accept a host without a port (`10.0.0.1`, `[::1]`, and IPv6 without brackets, `::1`). @default false */
  optionalPort?: boolean;
  /** Accept only IP addresses as hosts, no names (a DNS server cannot be found by its name). @default false */
  ipOnly?: boolean;
  /** Accept port 0 (the system picks one). @default false: 1 to 65535 */
  portZero?: boolean;
}

/** An address split into its parts. The host is unbracketed; `port` is absent only with `optionalPort`. */
export interface HostPort {
  host: string;
  /** The IP family of the host (4 or 6), or 0 for a host name or an empty host. */
  family: 0 | 4 | 6;
  port?: number;
}

/** Why an address was refused: its form, its host or its port, so that each caller can word its message. */
export interface AddressProblem {
  problem: 'form' | 'host' | 'port';
  message: string;
}

/**
 * Splits `text` into host and port text by the syntax above, without judging either. With `lastColon`,
 * an unbracketed host may hold colons and the last one starts the port (`::1:80`), as HAProxy reads a
 * `bind` address; its port text may then be anything after that colon (a range such as `80-90`).
 * Returns undefined when the text is not of that form.
 */
export function splitHostPort(text: string, options: { lastColon?: boolean } = {}): { host: string; bracketed: boolean; port: string | undefined } | undefined {
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) return undefined;
    const rest = text.slice(close + 1);
    if (rest !== '' && !rest.startsWith(':')) return undefined;
    return { host: text.slice(1, close), bracketed: true, port: rest === '' ? undefined : rest.slice(1) };
  }
  if (options.lastColon) {
    const colon = text.lastIndexOf(':');
    if (colon < 0 || text.includes('[') || text.includes(']')) return colon < 0 ? { host: text, bracketed: false, port: undefined } : undefined;
    return { host: text.slice(0, colon), bracketed: false, port: text.slice(colon + 1) };
  }
  const colons = text.split(':').length - 1;
  if (text.includes('[') || text.includes(']')) return undefined;
  // Two colons or more and no brackets: an IPv6 address on its own, without a port.
  if (colons !== 1) return { host: text, bracketed: false, port: undefined };
  const colon = text.indexOf(':');
  return { host: text.slice(0, colon), bracketed: false, port: text.slice(colon + 1) };
}

/** Parses `text` as `host:port` under `rules`. Returns the parts, or what is wrong (see {@link AddressProblem}). */
export function parseHostPort(text: string, rules: HostPortRules = {}): HostPort | AddressProblem {
  const split = splitHostPort(text);
  if (split === undefined) return { problem: 'form', message: 'expected "host:port" (IPv6 as "[::1]:port")' };
  const { host, bracketed, port } = split;
  if (port !== undefined && !/^\d{1,5}$/.test(port)) return { problem: 'form', message: `port ${JSON.stringify(port)} is not a number` };
  if (port === undefined && !rules.optionalPort) return { problem: 'form', message: 'expected "host:port" (IPv6 as "[::1]:port")' };
  const family = isIP(host) as 0 | 4 | 6;
  if (host === '') {
    if (!rules.emptyHost || bracketed) return { problem: 'host', message: 'the host is missing' };
  } else if (bracketed && family !== 6) {
    return { problem: 'host', message: `${JSON.stringify(host)} in brackets is not an IPv6 address` };
  } else if (rules.ipOnly && family === 0) {
    return { problem: 'host', message: `${JSON.stringify(host)} is not an IP address` };
  }
  if (port === undefined) return { host, family };
  const number = Number(port);
  if (number > 65535 || (number === 0 && !rules.portZero)) return { problem: 'port', message: `port ${port} is not from ${rules.portZero ? 0 : 1} to 65535` };
  return { host, family, port: number };
}

/** True when `parsed` is a refusal rather than an address. */
export function isAddressProblem(parsed: HostPort | AddressProblem): parsed is AddressProblem {
  return 'problem' in parsed;
}

/** Writes an address back as `host:port`, IPv6 in brackets. */
export function formatHostPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Where the status endpoint listens: `127.0.0.1:9465`, `[::1]:9465`, `:9465` (every interface, `host`
 * undefined). Port 0 lets the system pick one.
 * @throws {TypeError} when the address is not of that form.
 */
export function parseListen(listen: string): { host: string | undefined; port: number } {
  const parsed = parseHostPort(listen.trim(), { emptyHost: true, portZero: true });
  if (isAddressProblem(parsed)) throw new TypeError(`listen address "${listen}" is not "host:port"`);
  return { host: parsed.host === '' ? undefined : parsed.host, port: parsed.port! };
}
