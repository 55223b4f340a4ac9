import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { parseListen } from '../../src/net/address.js';

describe('the status endpoint address', () => {
  it('is off unless configured, and on loopback when the http block gives no address', async () => {
    const base = { sources: { a: { type: 'file' as const, path: 'm' } }, templates: [{ contents: 'x', destination: 'o' }] };
    expect((await loadConfig(base)).http).toBeUndefined();
    expect((await loadConfig({ ...base, http: {} })).http).toEqual({ listen: '127.0.0.1:9465' });
  });

  it('parses host:port, [ipv6]:port and :port (every interface)', () => {
    expect(parseListen('127.0.0.1:9465')).toEqual({ host: '127.0.0.1', port: 9465 });
    expect(parseListen('[::1]:9465')).toEqual({ host: '::1', port: 9465 });
    expect(parseListen(':9465')).toEqual({ host: undefined, port: 9465 });
    expect(() => parseListen('9465')).toThrow(/not "host:port"/);
    expect(() => parseListen('127.0.0.1:70000')).toThrow(/not "host:port"/);
  });
});
