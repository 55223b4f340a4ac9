import { describe, expect, it } from 'vitest';
import { unifiedDiff } from '../../src/output/diff.js';

describe('unifiedDiff', () => {
  it('is empty when nothing changed', () => {
    expect(unifiedDiff('/etc/haproxy/haproxy.cfg', 'a\nb\n', 'a\nb\n')).toBe('');
  });

  it('shows an empty new file as created, as the install would create it', () => {
    expect(unifiedDiff('/etc/haproxy/haproxy.cfg', undefined, '')).toBe('--- /dev/null\n+++ b/etc/haproxy/haproxy.cfg\n');
  });

  it('labels a change a/<path> and b/<path>, without the leading slash', () => {
    const before = 'backend web\n  server a 10.0.0.1:80\n  server b 10.0.0.2:80\n';
    const after = 'backend web\n  server a 10.0.0.1:80\n  server c 10.0.0.3:80\n';
    expect(unifiedDiff('/etc/haproxy/haproxy.cfg', before, after)).toBe(
      [
        '--- a/etc/haproxy/haproxy.cfg',
        '+++ b/etc/haproxy/haproxy.cfg',
        '@@ -1,3 +1,3 @@',
        ' backend web',
        '   server a 10.0.0.1:80',
        '-  server b 10.0.0.2:80',
        '+  server c 10.0.0.3:80',
        '',
      ].join('\n'),
    );
  });

  it('keeps a relative path as it is', () => {
    expect(unifiedDiff('out/x.cfg', 'a\n', 'b\n').split('\n').slice(0, 2)).toEqual(['--- a/out/x.cfg', '+++ b/out/x.cfg']);
  });

  it('shows a new file as coming from /dev/null', () => {
    expect(unifiedDiff('/etc/x.cfg', undefined, 'one\ntwo\n')).toBe(
      ['--- /dev/null', '+++ b/etc/x.cfg', '@@ -0,0 +1,2 @@', '+one', '+two', ''].join('\n'),
    );
  });

  it('marks a missing final newline', () => {
    const diff = unifiedDiff('x.cfg', 'a\n', 'a\nb');
    expect(diff).toContain('+b\n\\ No newline at end of file\n');
  });

  it('shows a file emptied by the render', () => {
    expect(unifiedDiff('x.cfg', 'a\n', '')).toBe(['--- a/x.cfg', '+++ b/x.cfg', '@@ -1,1 +0,0 @@', '-a', ''].join('\n'));
  });
});
