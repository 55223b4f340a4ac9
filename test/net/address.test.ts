import { describe, expect, it } from 'vitest';
import { parseHostPort, parseListen, splitHostPort } from '../../src/net/address.js';
import { parseRpcAddress } from '../../src/serf/address.js';
import { parseDnsServer } from '../../src/sources/drivers/dns.js';
import { listBindAddresses } from '../../src/haproxy/bind-guard.js';

describe('host:port, one parser with explicit rules', () => {
  it('splits host:port and [ipv6]:port; an IPv6 address without brackets has no port', () => {
    expect(splitHostPort('10.0.0.1:80')).toEqual({ host: '10.0.0.1', bracketed: false, port: '80' });
    expect(splitHostPort('[::1]:80')).toEqual({ host: '::1', bracketed: true, port: '80' });
    expect(splitHostPort('[::1]')).toEqual({ host: '::1', bracketed: true, port: undefined });
    expect(splitHostPort('::1')).toEqual({ host: '::1', bracketed: false, port: undefined });
    expect(splitHostPort('web')).toEqual({ host: 'web', bracketed: false, port: undefined });
    expect(splitHostPort('[::1]x')).toBeUndefined();
    expect(splitHostPort('a]:80')).toBeUndefined();
    // HAProxy's reading: the last colon starts the port, whatever comes after it.
    expect(splitHostPort('::1:80-90', { lastColon: true })).toEqual({ host: '::1', bracketed: false, port: '80-90' });
  });

  it('applies only the rules a caller asks for', () => {
    expect(parseHostPort('web:80')).toEqual({ host: 'web', family: 0, port: 80 });
    expect(parseHostPort('[::1]:80')).toEqual({ host: '::1', family: 6, port: 80 });
    expect(parseHostPort('web')).toMatchObject({ problem: 'form' });
    expect(parseHostPort('web', { optionalPort: true })).toEqual({ host: 'web', family: 0 });
    expect(parseHostPort(':80')).toMatchObject({ problem: 'host' });
    expect(parseHostPort(':80', { emptyHost: true })).toEqual({ host: '', family: 0, port: 80 });
    expect(parseHostPort('web:0')).toMatchObject({ problem: 'port', message: 'port 0 is not from 1 to 65535' });
    expect(parseHostPort('web:0', { portZero: true })).toEqual({ host: 'web', family: 0, port: 0 });
    expect(parseHostPort('web:65536', { portZero: true })).toMatchObject({ problem: 'port' });
    expect(parseHostPort('web:53', { ipOnly: true })).toMatchObject({ problem: 'host' });
    expect(parseHostPort('[10.0.0.1]:53')).toMatchObject({ problem: 'host', message: '"10.0.0.1" in brackets is not an IPv6 address' });
    expect(parseHostPort('web:http')).toMatchObject({ problem: 'form' });
  });

  it('keeps each caller’s rules: the Serf RPC address, the status endpoint, DNS servers, HAProxy binds', () => {
    expect(parseRpcAddress('127.0.0.1:7373')).toEqual({ host: '127.0.0.1', port: 7373 });
    expect(() => parseRpcAddress(':7373')).toThrow(TypeError);
    expect(() => parseRpcAddress('127.0.0.1:0')).toThrow(TypeError);
    expect(parseListen(':0')).toEqual({ host: undefined, port: 0 });
    expect(parseListen(' 127.0.0.1:9465 ')).toEqual({ host: '127.0.0.1', port: 9465 });
    expect(parseDnsServer('::1')).toEqual({ server: '::1' });
    expect(parseDnsServer('[::1]:5353')).toEqual({ server: '[::1]:5353' });
    expect(parseDnsServer('127.0.0.1:abc')).toMatch(/must be an IP address/);
    expect(listBindAddresses('frontend f\n  bind ::1:8080\n  bind [::]:81-82\n  bind *:80\n').map((b) => `${b.host} ${b.port}`)).toEqual([
      '::1 8080',
      ':: 81',
      ':: 82',
      '0.0.0.0 80',
    ]);
  });
});
