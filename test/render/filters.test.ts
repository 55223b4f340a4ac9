import { describe, expect, it } from 'vitest';
import { groupByTag, quote, slug, SlugScope, sortBy, status, tagged } from '../../src/render/filters.js';
import type { Member } from '../../src/sources/types.js';

const member = (name: string, tags: Record<string, string> = {}, extra: Partial<Member> = {}): Member => ({
  name,
  address: '10.0.0.1',
  tags,
  status: 'alive',
  source: 's',
  ...extra,
});

describe('filters', () => {
  const list = [member('a', { role: 'web', zone: 'b' }), member('b', { role: 'db' }), member('c', { role: 'web', zone: 'a' }, { status: 'failed' })];

  it('tagged keeps members with a tag, or with a tag of a value', () => {
    expect(tagged(list, 'zone').map((m) => m.name)).toEqual(['a', 'c']);
    expect(tagged(list, 'role', 'web').map((m) => m.name)).toEqual(['a', 'c']);
    expect(tagged(list, 'role', 'none')).toEqual([]);
  });

  it('tagged does not see inherited properties as tags', () => {
    expect(tagged(list, 'toString')).toEqual([]);
  });

  it('status keeps members with one of the statuses', () => {
    expect(status(list, 'failed').map((m) => m.name)).toEqual(['c']);
    expect(status(list, 'alive', 'failed')).toHaveLength(3);
  });

  it('sort_by sorts by a dotted path, stable, missing values last, numbers as numbers', () => {
    expect(sortBy(list, 'tags.zone').map((m) => (m as Member).name)).toEqual(['c', 'a', 'b']);
    expect(sortBy([{ p: 10 }, { p: 9 }, { p: 100 }], 'p')).toEqual([{ p: 9 }, { p: 10 }, { p: 100 }]);
    expect(sortBy([{ k: 'x', i: 1 }, { k: 'x', i: 2 }, { k: 'a', i: 3 }], 'k')).toEqual([{ k: 'a', i: 3 }, { k: 'x', i: 1 }, { k: 'x', i: 2 }]);
    expect(() => sortBy('nope', 'x')).toThrow(/expects a list/);
  });

  it('group_by_tag groups by tag value, sorted, leaving out members without it', () => {
    const groups = groupByTag(list, 'zone');
    expect(groups.map((g) => [g.name, g.size, g.items.map((m) => m.name)])).toEqual([
      ['a', 1, ['c']],
      ['b', 1, ['a']],
    ]);
  });

  it('slug keeps safe names and makes others safe and distinct', () => {
    expect(slug('web-1.a:b_c')).toBe('web-1.a:b_c');
    const names = ['web 1', 'web/1', 'web"2', 'web&3', 'web/4', 'web;5', ''].map((name) => slug(name));
    for (const name of names) expect(name).toMatch(/^[A-Za-z0-9_.:-]+$/);
    expect(new Set(names).size).toBe(names.length);
    expect(slug('web 1')).toMatch(/^web_1-[0-9a-f]{6}$/);
    expect(slug('web 1')).toBe(slug('web 1'));
  });

  it('slug in a scope never gives two values the same identifier, whichever comes first', () => {
    expect(slug('web 2')).toBe('web_2-88f3e9');
    for (const order of [['web 2', 'web_2-88f3e9'], ['web_2-88f3e9', 'web 2']]) {
      const scope = new SlugScope();
      const [first, second] = order.map((name) => slug(name, scope));
      expect(first).toBe(slug(order[0]));
      expect(second).not.toBe(first);
      expect(second).toMatch(/^web_2-88f3e9-?[0-9a-f]{6}$/);
      // The same value keeps its identifier for the rest of the render.
      expect(slug(order[1], scope)).toBe(second);
    }
  });

  it('slug in a scope survives names chosen so that six digits of their hashes agree', () => {
    const pair = hashCollision();
    expect(slug(pair[0])).toBe(slug(pair[1]));
    const scope = new SlugScope();
    const [a, b] = pair.map((name) => slug(name, scope));
    expect(a).toBe(slug(pair[0]));
    expect(b).not.toBe(a);
    expect(b).toMatch(/^x______-[0-9a-f]{12}$/);
  });

  it('quote escapes backslashes, quotes and dollars (HAProxy expands ${VAR} in double quotes)', () => {
    expect(quote('a "b" \\c ${HOME}')).toBe('"a \\"b\\" \\\\c \\${HOME}"');
  });

  it('quote keeps any value on one line: control characters become HAProxy \\xHH escapes of their UTF-8 bytes', () => {
    expect(quote('a\nb\u2028c\u0085d\u007f\u0000')).toBe('"a\\x0ab\\xe2\\x80\\xa8c\\xc2\\x85d\\x7f\\x00"');
    expect(quote('é ✓')).toBe('"é ✓"');
  });
});

/** Two names with the same safe form whose slugs agree, found by trying names of six replaced characters. */
function hashCollision(): [string, string] {
  const unsafe = ' !#$%&()*';
  const seen = new Map<string, string>();
  for (let i = 0; ; i++) {
    let name = 'x';
    for (let n = i, k = 0; k < 6; k++, n = Math.floor(n / unsafe.length)) name += unsafe[n % unsafe.length];
    const id = slug(name);
    const other = seen.get(id);
    if (other !== undefined) return [other, name];
    seen.set(id, name);
  }
}
