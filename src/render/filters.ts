import { createHash } from 'node:crypto';
import type { Member, MemberStatus } from '../members/model.js';
import { CONTROL_CHARACTERS } from '../members/text.js';

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
 * The identifiers `slug` gave out during one render. Two different values never get the same one within a
 * render: a clean name can look like another value's hashed slug (`web_2-88f3e9` and `web 2`), and six hex
 * digits of a hash can agree (on purpose, for a member name chosen to collide). The value slugged later then
 * gets a longer hash. A render slugs members in their sorted order, so the same membership always gets the
 * same identifiers.
 */
export class SlugScope {
  readonly #byValue = new Map<string, string>();
  readonly #taken = new Set<string>();

  /** The identifier of `text`: the one it already has, else the first candidate nobody else has. */
  claim(text: string, candidates: Iterable<string>): string {
    const known = this.#byValue.get(text);
    if (known !== undefined) return known;
    for (const candidate of candidates) {
      if (this.#taken.has(candidate)) continue;
      this.#taken.add(candidate);
      this.#byValue.set(text, candidate);
      return candidate;
    }
    throw new Error('unreachable: slug candidates never run out');
  }
}

/**
 * `m.name | slug` makes a value safe as an identifier in config languages (HAProxy server names, nginx
 * upstream names): only `[A-Za-z0-9_.:-]` is kept, anything else becomes `_`. When something had to be
 * replaced, `-` and six hex digits of the SHA-256 of the original are appended, so that `web 1` and `web/1`
 * stay two different names (`web_1-1b2c3d` and `web_1-9f8e7a`). With a `scope` (the engine gives each render
 * one), a value whose identifier is already another value's gets a longer hash instead (see {@link SlugScope}).
 */
export function slug(value: unknown, scope?: SlugScope): string {
  const text = String(value ?? '');
  const safe = text.replace(SLUG_SAFE, '_');
  const clean = safe === text && safe !== '';
  if (scope === undefined) return clean ? safe : `${safe}-${sha256(text).slice(0, 6)}`;
  return scope.claim(text, slugCandidates(text, safe, clean));
}

/**
 * `value | quote` wraps a value in double quotes, escaping `\`, `"` and `$`: a string HAProxy reads
 * literally (it expands `${VAR}` inside double quotes, so an unescaped `$` would let member data pull the
 * load balancer's environment into its config). Control characters (C0, DEL, C1, U+2028, U+2029) become
 * HAProxy's `\xHH` escapes of their UTF-8 bytes, so the result is one line whatever the value: member data
 * never holds them (the gate drops such members), but `env` values and literals may.
 */
export function quote(value: unknown): string {
  const escaped = String(value ?? '')
    .replace(/[\\"$]/g, (c) => `\\${c}`)
    .replace(CONTROL_CHARACTERS, (c) => [...Buffer.from(c)].map((byte) => `\\x${byte.toString(16).padStart(2, '0')}`).join(''));
  return `"${escaped}"`;
}

// --- internal ---


/** The identifiers `text` may get, best first: itself when clean, then its hash in 6, 12, … 64 digits, then numbered. */
function* slugCandidates(text: string, safe: string, clean: boolean): Generator<string> {
  if (clean) yield safe;
  const digest = sha256(text);
  for (let digits = 6; digits < digest.length; digits += 6) yield `${safe}-${digest.slice(0, digits)}`;
  yield `${safe}-${digest}`;
  for (let n = 2; ; n++) yield `${safe}-${digest}-${n}`;
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

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
