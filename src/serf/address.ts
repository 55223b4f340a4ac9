import { isAddressProblem, parseHostPort } from '../net/address.js';
/**
 * Formats a Serf member's `Addr` (Go `net.IP` sent as raw bytes) the way Go's `net.IP.String()` does, which
 * is also what the agent's event-handler scripts and `serf members` print:
 *
 * - 4 bytes → dotted quad (`10.0.0.1`);
 * - 16 bytes of an IPv4-mapped address (`::ffff:a.b.c.d`) → the dotted quad of the last 4;
 * - other 16 bytes → IPv6 text per RFC 5952 (lower-case hex, the longest run of two or more zero groups,
 *   the first one on a tie, written as `::`);
 * - no bytes (`null`, `undefined` or empty) → `undefined` (Go prints `<nil>`);
 * - any other length → `?` followed by the bytes in hex, as Go does: not an address, so the member gate
 *   drops it with a reason.
 */
export function formatSerfAddr(addr: Uint8Array | null | undefined): string | undefined {
  if (addr === null || addr === undefined || addr.length === 0) return undefined;
  if (addr.length === 4) return dottedQuad(addr, 0);
  if (addr.length !== 16) return `?${Buffer.from(addr.buffer, addr.byteOffset, addr.length).toString('hex')}`;
  if (isV4Mapped(addr)) return dottedQuad(addr, 12);
  return ipv6Text(addr);
}

// --- internal ---

function dottedQuad(bytes: Uint8Array, from: number): string {
  return `${bytes[from]}.${bytes[from + 1]}.${bytes[from + 2]}.${bytes[from + 3]}`;
}

function isV4Mapped(bytes: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return false;
  return bytes[10] === 0xff && bytes[11] === 0xff;
}

function ipv6Text(bytes: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  // Longest run of zero groups; a single zero group is not shortened (RFC 5952 §4.2.2).
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let end = i;
    while (end < 8 && groups[end] === 0) end++;
    if (end - i > bestLength) {
      bestStart = i;
      bestLength = end - i;
    }
    i = end;
  }
  const hex = (from: number, to: number) => groups.slice(from, to).map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLength, 8)}`;
}

/** The agent's default RPC address. */
export const DEFAULT_RPC_ADDRESS = '127.0.0.1:7373';

/**
 * Splits `host:port` (IPv6 in brackets) into its parts.
 * @throws {TypeError} when the address is not of that form or the port is not 1–65535.
 */
export function parseRpcAddress(address: string): { host: string; port: number } {
  const parsed = parseHostPort(address);
  if (isAddressProblem(parsed)) {
    throw new TypeError(`expected an address of the form host:port (IPv6 as [::1]:7373), got ${JSON.stringify(address)}`);
  }
  return { host: parsed.host, port: parsed.port! };
}
