import { isIP } from 'node:net';
import { compareMembers, compareText, MEMBER_STATUSES, type Member } from '../members/model.js';
import { CONTROL, printable } from '../members/text.js';
import { isHostName } from '../net/hostname.js';

/**
 * Member data is untrusted: names, addresses and tags come from the network. This module is the one gate
 * every snapshot passes through, whatever its source (built-in or plugged in by a library user):
 * bad members are dropped with a reason, the rest is normalised and sorted so that the same membership
 * always renders byte-identical output.
 */

/** A member that was dropped from a snapshot, and why. */
export interface DroppedMember {
  /** How the member is named in warnings: its name (escaped) or its position. */
  member: string;
  reason: string;
}

/**
 * Validates raw members from a source. Returns the valid ones, normalised (own `source`, tags copied,
 * status defaulted to `alive`), sorted by name, address and port; members with a duplicate name keep the
 * first in that order.
 */
export function sanitizeMembers(
  raw: readonly unknown[],
  source: string,
): { members: Member[]; dropped: DroppedMember[] } {
  return sanitize(raw, source);
}

/**
 * What `sanitizeMembers` does. With `checks` (the last snapshot's results, by member key), a member identical
 * to one already checked is not checked again: it gets a copy of that result, and `next` collects this
 * snapshot's results for the following one.
 */
function sanitize(
  raw: readonly unknown[],
  source: string,
  checks?: { last: ReadonlyMap<string, Member | string>; next: Map<string, Member | string> },
): { members: Member[]; dropped: DroppedMember[] } {
  const valid: Member[] = [];
  const dropped: DroppedMember[] = [];
  raw.forEach((candidate, index) => {
    const fields = readFields(candidate);
    const key = checks && typeof fields !== 'string' ? memberKey(fields) : undefined;
    let result = key === undefined ? undefined : checks!.last.get(key);
    result ??= typeof fields === 'string' ? fields : checkMember(fields, source);
    if (key !== undefined) {
      checks!.next.set(key, result);
      // A copy out, so that nothing a consumer does to one snapshot's member reaches the next one's.
      if (typeof result !== 'string') result = copyMember(result);
    }
    if (typeof result === 'string') dropped.push({ member: describe(candidate, index), reason: result });
    else valid.push(result);
  });
  valid.sort(compareMembers);
  const members: Member[] = [];
  for (const member of valid) {
    const previous = members.at(-1);
    if (previous && previous.name === member.name) {
      dropped.push({ member: printable(member.name), reason: 'duplicate name (the first one is kept)' });
      continue;
    }
    members.push(member);
  }
  return { members, dropped };
}

/** True when two sanitized snapshots hold the same members with the same data. */
function sameMembers(a: readonly Member[], b: readonly Member[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.name !== y.name || x.address !== y.address || x.port !== y.port || x.status !== y.status) return false;
    if (x.source !== y.source || !sameTags(x.tags, y.tags)) return false;
  }
  return true;
}

/**
 * Wraps a snapshot callback so that it receives sanitized snapshots only when they differ from the last one.
 * Warnings for dropped members are reported once per snapshot in which they newly appear, so a bad member
 * that stays bad does not flood the log on every poll.
 */
export function createSnapshotGate(
  source: string,
  onSnapshot: (members: Member[]) => void,
  onDropped: (dropped: DroppedMember) => void,
): (raw: readonly unknown[]) => void {
  let last: Member[] | undefined;
  let warned = new Set<string>();
  // Most members are the same from one snapshot to the next: their check is kept for one snapshot.
  let checked = new Map<string, Member | string>();
  return (raw) => {
    const next = new Map<string, Member | string>();
    const { members, dropped } = sanitize(raw, source, { last: checked, next });
    checked = next;
    const nowWarned = new Set<string>();
    for (const d of dropped) {
      const key = `${d.member}\u0000${d.reason}`;
      nowWarned.add(key);
      if (!warned.has(key)) onDropped(d);
    }
    warned = nowWarned;
    if (last && sameMembers(last, members)) return;
    last = members;
    onSnapshot(members);
  };
}

// --- internal ---

/** A raw member's fields, each read once: a getter cannot show the checks one value and the member another. */
interface RawFields {
  name: unknown;
  address: unknown;
  port: unknown;
  status: unknown;
  /** The tags' own enumerable entries; undefined when `tags` is absent, `invalid` when it is not an object. */
  tags: [string, unknown][] | undefined | 'invalid';
}

function readFields(value: unknown): RawFields | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not an object';
  const m = value as Record<string, unknown>;
  const tags = m.tags;
  const entries = tags === undefined || tags === null ? undefined : typeof tags !== 'object' || Array.isArray(tags) ? 'invalid' : Object.entries(tags);
  return { name: m.name, address: m.address, port: m.port, status: m.status, tags: entries };
}

/**
 * A key that is the same for two members only when their checks must give the same result, or undefined for a
 * member of another shape (it is checked every time). JSON of strings and safe integers is one-to-one; an
 * absent port or status and a null one mean the same. Sorts the tag entries in place, in the order the member's
 * tags are kept (Serf sends them in a different order on each reply).
 */
function memberKey(f: RawFields): string | undefined {
  if (typeof f.name !== 'string' || typeof f.address !== 'string' || f.tags === 'invalid') return undefined;
  if (f.port !== undefined && f.port !== null && !(Number.isSafeInteger(f.port) && !Object.is(f.port, -0))) return undefined;
  if (f.status !== undefined && f.status !== null && typeof f.status !== 'string') return undefined;
  if (f.tags?.some(([, tagValue]) => typeof tagValue !== 'string')) return undefined;
  f.tags?.sort(byKey);
  return JSON.stringify([f.name, f.address, f.port ?? null, f.status ?? null, f.tags ?? null]);
}

function byKey([a]: [string, unknown], [b]: [string, unknown]): number {
  return compareText(a, b);
}

function copyMember(member: Member): Member {
  // Spread defines own properties, as defineProperty does: a tag named "__proto__" stays a plain tag.
  return { ...member, tags: { ...member.tags } };
}

function checkMember(f: RawFields, source: string): Member | string {
  const { name, address } = f;
  if (typeof name !== 'string' || name === '') return 'name must be a non-empty string';
  if (CONTROL.test(name)) return 'name contains a control character';
  if (typeof address !== 'string' || address === '') return 'address must be a non-empty string';
  const addressProblem = checkAddress(address);
  if (addressProblem) return `address ${printable(address)} ${addressProblem}`;
  let port: number | undefined;
  if (f.port !== undefined && f.port !== null) {
    if (typeof f.port !== 'number' || !Number.isInteger(f.port) || f.port < 0 || f.port > 65535) {
      return `port ${printable(f.port)} is not an integer from 0 to 65535`;
    }
    port = f.port;
  }
  const status = f.status ?? 'alive';
  if (!MEMBER_STATUSES.includes(status as Member['status'])) return `status ${printable(status)} is not one of ${MEMBER_STATUSES.join(', ')}`;
  if (f.tags === 'invalid') return 'tags must be an object of strings';
  const tags: Record<string, string> = {};
  if (f.tags) {
    // Sorted by key: Serf sends tags in a different order on each reply, and a template that prints them
    // (a loop over tags, `| json`) must still render byte-identical output for the same membership.
    for (const [key, tagValue] of f.tags.sort(byKey)) {
      if (typeof tagValue !== 'string') return `tag ${printable(key)} is not a string`;
      if (CONTROL.test(key)) return `tag name ${printable(key)} contains a control character`;
      if (CONTROL.test(tagValue)) return `tag ${printable(key)} contains a control character`;
      // defineProperty, not assignment: a tag named "__proto__" must stay a plain tag.
      Object.defineProperty(tags, key, { value: tagValue, enumerable: true, writable: true, configurable: true });
    }
  }
  const member: Member = { name, address, tags, status: status as Member['status'], source };
  if (port !== undefined) member.port = port;
  return member;
}

/** Why an address is refused, or undefined for an IP address or a host name. */
function checkAddress(address: string): string | undefined {
  // Node's isIP accepts any zone ID (`fe80::1%eth0`, even `::1%:8080`); HAProxy refuses them all, and a zone
  // only means something on one machine.
  if (isIP(address) !== 0) return address.includes('%') ? 'has an IPv6 zone ID, which config files cannot use' : undefined;
  return isHostName(address) ? undefined : 'is neither an IP address nor a valid host name';
}

function describe(value: unknown, index: number): string {
  const name = typeof value === 'object' && value !== null ? (value as Record<string, unknown>).name : undefined;
  // Escaped, so that the warning itself cannot be used to inject log lines.
  return typeof name === 'string' && name !== '' ? printable(name) : `#${index + 1}`;
}

function sameTags(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  for (const key of keys) if (a[key] !== b[key]) return false;
  return true;
}
