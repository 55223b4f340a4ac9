import { describe, expect, it, vi } from 'vitest';
import { createSnapshotGate, sanitizeMembers } from '../../src/sources/snapshot.js';

const ok = (name: string, extra: Record<string, unknown> = {}) => ({ name, address: '10.0.0.1', ...extra });

describe('sanitizeMembers (untrusted member data)', () => {
  it('keeps valid members, fills defaults and sets the source', () => {
    const { members, dropped } = sanitizeMembers([ok('a', { port: 80, tags: { role: 'web' }, source: 'spoofed' })], 'cluster');
    expect(dropped).toEqual([]);
    expect(members).toEqual([{ name: 'a', address: '10.0.0.1', port: 80, tags: { role: 'web' }, status: 'alive', source: 'cluster' }]);
  });

  it.each([
    ['a newline in the name', ok('web\nserver evil 6.6.6.6:80'), 'name contains a control character'],
    ['a carriage return in a tag value', ok('b', { tags: { role: 'web\r' } }), 'tag "role" contains a control character'],
    ['a control character in a tag name', ok('c', { tags: { 'ro\u0000le': 'x' } }), 'contains a control character'],
    ['DEL in the name', ok('d\u007f'), 'name contains a control character'],
    ['a C1 control (NEL) in the name', ok('d\u0085x'), 'name contains a control character'],
    ['a line separator (U+2028) in the name', ok('d\u2028x'), 'name contains a control character'],
    ['a paragraph separator (U+2029) in a tag value', ok('d2', { tags: { role: 'a\u2029b' } }), 'tag "role" contains a control character'],
    ['an empty address', ok('e', { address: '' }), 'address must be a non-empty string'],
    ['a missing address', { name: 'f' }, 'address must be a non-empty string'],
    ['an address that is no host', ok('g', { address: 'a b;c' }), 'neither an IP address nor a valid host name'],
    ['an address with a newline', ok('g2', { address: 'host\nbind :80' }), 'neither an IP address nor a valid host name'],
    ['a dotted name that resolvers read as 10.0.0.0', ok('n1', { address: '10.0.0' }), 'neither an IP address nor a valid host name'],
    ['a number that resolvers read as 127.0.0.1', ok('n2', { address: '2130706433' }), 'neither an IP address nor a valid host name'],
    ['hex and octal IPv4 shorthands', ok('n3', { address: '0x7f.1' }), 'neither an IP address nor a valid host name'],
    ['an IPv4 address with one label too many', ok('n4', { address: '10.0.0.1.5' }), 'neither an IP address nor a valid host name'],
    ['an IPv4 address with a leading zero', ok('n5', { address: '010.0.0.1' }), 'neither an IP address nor a valid host name'],
    ['an IPv6 zone ID that is a port', ok('z1', { address: '::1%:8080' }), 'has an IPv6 zone ID'],
    ['an IPv6 zone ID that is no interface', ok('z2', { address: 'fe80::1%-rf' }), 'has an IPv6 zone ID'],
    ['an IPv6 zone ID naming an interface', ok('z3', { address: 'fe80::1%lo' }), 'has an IPv6 zone ID'],
    ['a port out of range', ok('h', { port: 70000 }), 'port 70000 is not an integer from 0 to 65535'],
    ['a port that is text', ok('i', { port: 'http' }), 'port "http" is not an integer'],
    ['a tag that is not a string', ok('j', { tags: { weight: 5 } }), 'tag "weight" is not a string'],
    ['an unknown status', ok('k', { status: 'dead' }), 'status "dead" is not one of'],
    ['an empty name', ok(''), 'name must be a non-empty string'],
    ['not an object', 'web-1', 'not an object'],
  ])('drops a member with %s, saying why', (_what, raw, reason) => {
    const { members, dropped } = sanitizeMembers([raw, ok('good')], 's');
    expect(members.map((m) => m.name)).toEqual(['good']);
    expect(dropped).toHaveLength(1);
    expect(dropped[0]!.reason).toContain(reason);
  });

  it('names a dropped member safely (escaped, or by position)', () => {
    const { dropped } = sanitizeMembers([ok('evil\nline', { address: '' }), { address: '1.2.3.4' }], 's');
    expect(dropped.map((d) => d.member)).toEqual(['"evil\\nline"', '#2']);
    const separators = sanitizeMembers([ok('evil\u2028line\u0085'), ok('x', { address: 'a\u2029b' })], 's').dropped;
    expect(separators.map((d) => d.member)).toEqual(['"evil\\u2028line\\u0085"', '"x"']);
    expect(separators[1]!.reason).toBe('address "a\\u2029b" is neither an IP address nor a valid host name');
  });

  it('accepts IPv4, IPv6 and host names, digits included where a host name may have them', () => {
    const addresses = ['::1', 'web-1.example.com.', '192.168.0.1', '::ffff:10.0.0.1', '10-0-0-1.example.com', '1e100.net', '0xdead.example', 'web2', '123abc'];
    const { members, dropped } = sanitizeMembers(addresses.map((address, i) => ok(`m${i}`, { address })), 's');
    expect(dropped).toEqual([]);
    expect(members).toHaveLength(addresses.length);
  });

  it('sorts by name, address and port and keeps the first of duplicate names', () => {
    const { members, dropped } = sanitizeMembers([ok('b'), ok('a', { address: '10.0.0.2' }), ok('a', { address: '10.0.0.1' })], 's');
    expect(members.map((m) => `${m.name}@${m.address}`)).toEqual(['a@10.0.0.1', 'b@10.0.0.1']);
    expect(dropped).toEqual([{ member: '"a"', reason: 'duplicate name (the first one is kept)' }]);
  });

  it('orders tags by key, whatever order they arrived in', () => {
    const { members } = sanitizeMembers([ok('a', { tags: { zone: 'z', app: 'x', m: 'y' } })], 's');
    expect(Object.keys(members[0]!.tags)).toEqual(['app', 'm', 'zone']);
  });

  it('keeps a tag named __proto__ as a plain tag', () => {
    const raw = JSON.parse('{"name":"a","address":"10.0.0.1","tags":{"__proto__":"x"}}');
    const { members } = sanitizeMembers([raw], 's');
    expect(Object.keys(members[0]!.tags)).toEqual(['__proto__']);
    expect(Object.getPrototypeOf(members[0]!.tags)).toBe(Object.prototype);
  });
});

describe('createSnapshotGate', () => {
  it('emits only when the sanitized snapshot changes, and warns once per newly bad member', () => {
    const snapshots = vi.fn();
    const dropped = vi.fn();
    const gate = createSnapshotGate('s', snapshots, dropped);
    gate([ok('b'), ok('a')]);
    gate([ok('a'), ok('b')]); // same membership, other order
    gate([ok('a'), ok('b'), ok('bad\n')]); // a bad member only: the valid snapshot is the same
    gate([ok('a'), ok('b'), ok('bad\n')]);
    gate([ok('a')]);
    gate([]);
    expect(snapshots.mock.calls.map(([m]) => m.map((x: { name: string }) => x.name))).toEqual([['a', 'b'], ['a'], []]);
    expect(dropped).toHaveBeenCalledTimes(1);
  });

  it('sees a tag change as a change', () => {
    const snapshots = vi.fn();
    const gate = createSnapshotGate('s', snapshots, () => undefined);
    gate([ok('a', { tags: { v: '1' } })]);
    gate([ok('a', { tags: { v: '2' } })]);
    expect(snapshots).toHaveBeenCalledTimes(2);
  });

  it('gives an unchanged member, whatever order its tags come in, the same checked data as the first time', () => {
    const snapshots = vi.fn();
    const gate = createSnapshotGate('s', snapshots, () => undefined);
    gate([ok('a', { port: 80, tags: { zone: 'z', app: 'x' } })]);
    // A consumer that changes its snapshot does not change the next one.
    snapshots.mock.calls[0]![0][0].tags.app = 'changed';
    gate([ok('a', { port: 80, tags: { app: 'x', zone: 'z' } }), ok('b')]);
    const second = snapshots.mock.calls[1]![0];
    expect(second[0]).toEqual({ name: 'a', address: '10.0.0.1', port: 80, status: 'alive', source: 's', tags: { app: 'x', zone: 'z' } });
    expect(Object.keys(second[0].tags)).toEqual(['app', 'zone']);
  });

  it('checks again a member that differs from the last one in any field, null and absent alike', () => {
    const dropped = vi.fn();
    const gate = createSnapshotGate('s', () => undefined, dropped);
    gate([ok('a', { port: 80, tags: { v: '1' } })]);
    gate([ok('a', { port: 80.5, tags: { v: '1' } })]);
    gate([ok('a', { port: 80, tags: { v: '1\n' } })]);
    gate([ok('a', { port: 80, tags: { v: 1 } })]);
    gate([ok('a', { port: 80, tags: null })]);
    expect(dropped.mock.calls.map(([d]) => d.reason)).toEqual([
      'port 80.5 is not an integer from 0 to 65535',
      'tag "v" contains a control character',
      'tag "v" is not a string',
    ]);
  });

  it('reads each field of a member once, so that a getter cannot pass the checks with one value and give another', () => {
    const snapshots = vi.fn();
    const dropped = vi.fn();
    const gate = createSnapshotGate('s', snapshots, dropped);
    let reads = 0;
    const raw = { address: '10.0.0.1', get name() { return reads++ === 0 ? 'good' : 'evil\nline'; } };
    gate([raw]);
    expect(snapshots.mock.calls[0]![0].map((m: { name: string }) => m.name)).toEqual(['good']);
  });
});
