import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import { formatSerfAddr } from '../../src/serf/address.js';

const bytes = (...values: number[]) => Buffer.from(values);
const v6 = (text: string) => Buffer.from(ipaddr.IPv6.parse(text).toByteArray());

describe('formatSerfAddr', () => {
  it('formats 4 bytes as a dotted quad', () => {
    expect(formatSerfAddr(bytes(127, 0, 0, 1))).toBe('127.0.0.1');
    expect(formatSerfAddr(bytes(10, 200, 0, 255))).toBe('10.200.0.255');
  });

  it('formats a 16-byte IPv4-mapped address as the dotted quad of its last 4 bytes', () => {
    expect(formatSerfAddr(bytes(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 168, 1, 2))).toBe('192.168.1.2');
    expect(formatSerfAddr(v6('::ffff:0:0'))).toBe('0.0.0.0');
  });

  it('formats other 16-byte addresses as RFC 5952 IPv6 text, like Go', () => {
    const cases: [string, string][] = [
      ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
      ['0:0:0:0:0:0:0:1', '::1'],
      ['0:0:0:0:0:0:0:0', '::'],
      ['fe80:0:0:0:0:0:0:0', 'fe80::'],
      ['2001:db8:0:1:0:0:0:1', '2001:db8:0:1::1'], // the longest run wins
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // the first of two equal runs
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a single zero group stays
      ['FD00:ABCD:0:0:0:0:0:9', 'fd00:abcd::9'], // lower case
      ['0:0:0:0:0:0:102:304', '::102:304'], // IPv4-compatible is not dotted (Go neither)
      ['0:0:0:0:ffff:0:0:0', '::ffff:0:0:0'], // not mapped: the ffff is in the wrong place
    ];
    for (const [input, expected] of cases) expect(formatSerfAddr(v6(input)), input).toBe(expected);
  });

  it('agrees with ipaddr.js RFC 5952 output on random addresses with zero runs', () => {
    let seed = 42;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < 2000; i++) {
      const groups = Array.from({ length: 8 }, () => (random() < 0.5 ? 0 : Math.floor(random() * 0x10000)));
      if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) continue; // mapped: dotted
      const addr = new ipaddr.IPv6(groups);
      expect(formatSerfAddr(Buffer.from(addr.toByteArray()))).toBe(addr.toRFC5952String());
    }
  });

  it('gives undefined for no address and Go\'s "?hex" form for a wrong length', () => {
    expect(formatSerfAddr(null)).toBeUndefined();
    expect(formatSerfAddr(undefined)).toBeUndefined();
    expect(formatSerfAddr(Buffer.alloc(0))).toBeUndefined();
    expect(formatSerfAddr(bytes(1, 2, 3, 4, 5))).toBe('?0102030405');
  });

  it('accepts a Uint8Array view into a larger buffer', () => {
    const backing = Buffer.from([9, 9, 10, 0, 0, 7, 9]);
    expect(formatSerfAddr(new Uint8Array(backing.buffer, backing.byteOffset + 2, 4))).toBe('10.0.0.7');
    expect(formatSerfAddr(new Uint8Array(backing.buffer, backing.byteOffset + 1, 5))).toBe('?090a000007');
  });
});
