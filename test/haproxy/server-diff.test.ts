import { describe, expect, it } from 'vitest';
import { parseHaproxyConfig, splitWords } from '../../src/haproxy/config.js';
import { desiredServers, diffServers } from '../../src/haproxy/server-diff.js';

const config = ({ servers = '', backend = '', defaults = '', extra = '' }: { servers?: string; backend?: string; defaults?: string; extra?: string } = {}): string => `global
    stats socket /run/admin.sock level admin   # comment
defaults
    mode http
    timeout connect 2s
    default-server check inter 1s${defaults}
frontend www
    bind 127.0.0.1:8080
    default_backend web
backend web
    balance roundrobin${backend}
${servers}
${extra}`;

const web = (...lines: string[]): string => lines.map((l) => `    server ${l}`).join('\n');

describe('splitWords', () => {
  it('splits on blanks, stops at a comment, keeps quotes and escapes in the word', () => {
    expect(splitWords('  server  web-1\t10.0.0.1:80   check # a comment')).toEqual(['server', 'web-1', '10.0.0.1:80', 'check']);
    expect(splitWords('http-request return string "a # b" hdr x\\ y')).toEqual(['http-request', 'return', 'string', '"a # b"', 'hdr', 'x\\ y']);
    expect(splitWords("acl a 'it''s'")).toEqual(['acl', 'a', "'it''s'"]);
    expect(splitWords('   # only a comment')).toEqual([]);
  });
});

describe('parseHaproxyConfig', () => {
  it('finds sections, their lines and the servers of backends', () => {
    const sections = parseHaproxyConfig(config({ servers: web('a 10.0.0.1:80', 'b [fd00::1]:81 weight 5', 'c fd00::2:82', 'd name.internal') }));
    expect(sections.map((s) => [s.kind, ...s.args].join(' '))).toEqual(['global', 'defaults', 'frontend www', 'backend web']);
    const servers = sections[3]!.servers.map((s) => [s.name, s.host, s.port, s.keywords.join(' ')]);
    expect(servers).toEqual([
      ['a', '10.0.0.1', 80, ''],
      ['b', 'fd00::1', 81, 'weight 5'],
      ['c', 'fd00::2', 82, ''],
      ['d', 'name.internal', undefined, ''],
    ]);
    expect(sections[3]!.lines.map((l) => l.words.join(' '))).toEqual(['balance roundrobin']);
  });
});

describe('diffServers', () => {
  it('sees added, removed, moved and re-weighted servers, adds first and removals last', () => {
    const before = config({ servers: web('a 10.0.0.1:80', 'b 10.0.0.2:80', 'c 10.0.0.3:80 weight 10') });
    const after = config({ servers: web('c 10.0.0.3:80 weight 20', 'd 10.0.0.4:80', 'a 10.0.0.9:81') });
    const diff = diffServers(before, after);
    expect(diff).toEqual({
      runtime: true,
      changes: [
        {
          kind: 'add',
          backend: 'web',
          name: 'd',
          address: '10.0.0.4:80',
          keywords: ['pool-max-conn', '-1', 'pool-purge-delay', '5s', 'check', 'inter', '1s'],
          health: true,
          agent: false,
          disabled: false,
        },
        { kind: 'update', backend: 'web', name: 'c', weight: 20 },
        { kind: 'update', backend: 'web', name: 'a', host: '10.0.0.9', port: 81 },
        { kind: 'remove', backend: 'web', name: 'b' },
      ],
    });
  });

  it('writes out default-server settings of the defaults and of the backend, the server line last', () => {
    const before = config({ backend: '\n    default-server weight 50' });
    const after = config({ backend: '\n    default-server weight 50', servers: web('a 10.0.0.1:80 no-check weight 7') });
    const diff = diffServers(before, after);
    expect(diff).toMatchObject({ runtime: true, changes: [{ kind: 'add', health: false, keywords: ['pool-max-conn', '-1', 'pool-purge-delay', '5s', 'check', 'inter', '1s', 'weight', '50', 'no-check', 'weight', '7'] }] });
    expect(desiredServers(after).servers).toEqual([{ backend: 'web', name: 'a', ip: '10.0.0.1', port: 80, weight: 7 }]);
  });

  it('finds nothing to do when only comments, blank space or the order of servers changed', () => {
    const before = config({ servers: web('a 10.0.0.1:80', 'b 10.0.0.2:80') });
    const after = `${config({ servers: web('b   10.0.0.2:80   # moved', 'a 10.0.0.1:80') })}\n# trailing comment\n`;
    expect(diffServers(before, after)).toEqual({ runtime: true, changes: [] });
  });

  it('refuses, with a reason, what the runtime API cannot do', () => {
    const base = config({ servers: web('a 10.0.0.1:80') });
    const cases: [string, RegExp][] = [
      [config({ servers: web('a 10.0.0.1:80'), extra: 'backend api\n    server x 10.0.0.8:80' }), /sections were added or removed/],
      [base.replace('bind 127.0.0.1:8080', 'bind 127.0.0.1:8081'), /frontend www changed outside its server lines \(line 8\)/],
      [base.replace('timeout connect 2s', 'timeout connect 3s'), /defaults changed outside/],
      [config({ servers: web('a 10.0.0.1:80 check inter 2s') }), /server a: keywords other than weight changed/],
      [config({ servers: web('a 10.0.0.1:80', 'b web-2.internal:80') }), /server b: only an IP address with a port/],
      [config({ servers: web('a 10.0.0.1:80', 'b 10.0.0.2:80 cookie "x y"') }), /server b: "\\"x y\\"" is not sent to the runtime API/],
      [config({ servers: web('a 10.0.0.1:80', 'b 10.0.0.2:80 cookie ${COOKIE}') }), /server b: "\$\{COOKIE\}"/],
      [config({ servers: web('a 10.0.0.1:80', 'a 10.0.0.2:80') }), /server a is declared twice/],
      [base.replace('global\n', ''), /no global section/],
    ];
    for (const [after, reason] of cases) {
      const diff = diffServers(base, after);
      expect(diff.runtime, after).toBe(false);
      expect(diff).toMatchObject({ reason: expect.stringMatching(reason) });
    }
  });

  it('takes servers at runtime only in backends whose algorithm is dynamic', () => {
    const withBalance = (balance: string, hash = '', servers = web('a 10.0.0.1:80')) => config({ servers, backend: `\n    hash-type ${hash || 'map-based'}` }).replace('balance roundrobin', `balance ${balance}`);
    const change = (balance: string, hash = '') => diffServers(withBalance(balance, hash), withBalance(balance, hash, web('a 10.0.0.1:80', 'b 10.0.0.2:80')));
    expect(change('static-rr')).toMatchObject({ runtime: false, reason: expect.stringMatching(/backend web: balance static-rr takes no servers at runtime/) });
    expect(change('source')).toMatchObject({ runtime: false, reason: expect.stringMatching(/balance source without hash-type consistent/) });
    expect(change('source', 'consistent')).toMatchObject({ runtime: true });
    expect(change('hdr(host)', 'consistent')).toMatchObject({ runtime: true });
    for (const dynamic of ['leastconn', 'first', 'random', 'random(2)']) expect(change(dynamic)).toMatchObject({ runtime: true });
    // The algorithm of the defaults counts when the backend sets none.
    const inherited = (servers: string) => config({ servers, defaults: '\n    balance static-rr' }).replace('    balance roundrobin', '');
    expect(diffServers(inherited(web('a 10.0.0.1:80')), inherited(web('a 10.0.0.1:80', 'b 10.0.0.2:80')))).toMatchObject({ runtime: false });
  });
});
