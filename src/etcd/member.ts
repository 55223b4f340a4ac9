/**
 * A member as it is stored in etcd: the key is the prefix followed by the member's name, the value a JSON
 * object in the member-file shape. `rosterd announce` writes what the `etcd` source reads, so both use
 * these two functions.
 */

/** What `announce` registers: a member without its source. */
export interface AnnouncedMember {
  name: string;
  address: string;
  port?: number;
  tags: Record<string, string>;
}

/** The key and value that announce `member` under `prefix`. The name is the key's part after the prefix. */
export function encodeMember(prefix: string, member: AnnouncedMember): { key: string; value: string } {
  const { name, ...fields } = member;
  return { key: `${prefix}${name}`, value: JSON.stringify(fields) };
}

/**
 * A key's value as a raw member (validated later, by the snapshot gate), or why it is not one: a JSON
 * object, named after the key unless it names itself. The reason never quotes the value: values are
 * untrusted and may hold anything.
 */
export function decodeMember(keyName: string, value: Buffer): { member: Record<string, unknown> } | { problem: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value.toString('utf8'));
  } catch {
    return { problem: value.length === 0 ? 'the value is empty, not a JSON member object' : 'the value is not valid JSON' };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    const kind = Array.isArray(parsed) ? 'an array' : parsed === null ? 'null' : `a ${typeof parsed}`;
    return { problem: `the value is ${kind}, not a JSON member object` };
  }
  const member = { ...(parsed as Record<string, unknown>) };
  if (member.name === undefined) member.name = keyName;
  return { member };
}
