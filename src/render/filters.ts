import { createHash } from 'node:crypto';
import type { Member, MemberStatus } from '../sources/types.js';

/**
 * Filters for rendering configs from member lists. Each is a plain function of its input so it can be
 * tested alone; `createEngine` (engine.ts) registers them under their Liquid names.
 */

/** `members | tagged: "role"` keeps members that have the tag; `tagged: "role", "web"` those where it equals "web". */
export function tagged(members: unknown, key: string, value?: unknown): Member[] {
  return asMembers(members, 'tagged').filter((m) => {
    if (!Object.hasOwn(m.tags, key)) return false;
    return value === undefined || m.tags[key] === String(value);
  });
}

/** `members | status: "alive", "leaving"` keeps members with one of the statuses. */
export function status(members: unknown, ...statuses: MemberStatus[]): Member[] {
  return asMembers(members, 'status').filter((m) => statuses.includes(m.status));
}

/**
 * `list | sort_by: "tags.zone"` sorts by a dotted property path. The sort is stable, numbers compare as
 * numbers, strings in code-unit order (never by locale), and items without the property come last.
 */
export function sortBy(list: unknown, path: string): unknown[] {
  if (!Array.isArray(list)) throw new TypeError(`sort_by expects a list, got ${typeOf(list)}`);
  const keys = String(path).split('.');
  const get = (item: unknown): unknown =>
    keys.reduce<unknown>((v, k) => (typeof v === 'object' && v !== null && Object.hasOwn(v, k) ? (v as Record<string, unknown>)[k] : undefined), item);
  return list
    .map((item, index) => ({ item, index, key: get(item) }))
    .sort((a, b) => compareValues(a.key, b.key) || a.index - b.index)
    .map((entry) => entry.item);
}

/**
 * `members | group_by_tag: "zone"` → `[{ name: "a", items: [...], size: 2 }, ...]`, groups sorted by tag
 * value. Members without the tag are left out.
 */
export function groupByTag(members: unknown, key: string): { name: string; items: Member[]; size: number }[] {
  const groups = new Map<string, Member[]>();
  for (const m of asMembers(members, 'group_by_tag')) {
    if (!Object.hasOwn(m.tags, key)) continue;
    const value = m.tags[key]!;
    const group = groups.get(value);
    if (group) group.push(m);
    else groups.set(value, [m]);
  }
  return [...groups.entries()]
    .sort(([a], [b]) => compareValues(a, b))
    .map(([name, items]) => ({ name, items, size: items.length }));
}

const SLUG_SAFE = /[^A-Za-z0-9_.:-]/g;

/**
 * `m.name | slug` makes a value safe as an identifier in config languages (HAProxy server names, nginx
 * upstream names): only `[A-Za-z0-9_.:-]` is kept, anything else becomes `_`. When something had to be
 * replaced, a short hash of the original is appended, so that `web 1` and `web/1` stay two different
 * names (`web_1-1b2c3d` and `web_1-9f8e7a`) and never collide in a backend.
 */
export function slug(value: unknown): string {
  const text = String(value ?? '');
  const safe = text.replace(SLUG_SAFE, '_');
  if (safe === text && safe !== '') return safe;
  const hash = createHash('sha256').update(text).digest('hex').slice(0, 6);
  return `${safe}-${hash}`;
}

/**
 * `value | quote` wraps a value in double quotes, escaping `\`, `"` and `$`: a string HAProxy reads
 * literally (it expands `${VAR}` inside double quotes, so an unescaped `$` would let member data pull the
 * load balancer's environment into its config). Members with control characters never reach a template, so
 * no newline can appear here.
 */
export function quote(value: unknown): string {
  return `"${String(value ?? '').replace(/[\\"$]/g, (c) => `\\${c}`)}"`;
}

// --- internal ---

function asMembers(value: unknown, filter: string): Member[] {
  if (!Array.isArray(value)) throw new TypeError(`${filter} expects a list of members, got ${typeOf(value)}`);
  return value.filter((m): m is Member => typeof m === 'object' && m !== null && typeof (m as Member).tags === 'object');
}

function compareValues(a: unknown, b: unknown): number {
  if (a === undefined || a === null) return b === undefined || b === null ? 0 : 1;
  if (b === undefined || b === null) return -1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  const x = String(a);
  const y = String(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

function typeOf(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'a list' : typeof value;
}
