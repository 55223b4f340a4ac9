/**
 * The member model: what a member is, the statuses it can have and the order members are rendered in.
 * Sources produce members, the runner keeps them, templates render them; all three import this module and
 * none of them imports another for it.
 */

/** Every status a member can have. Serf reports all four; file and DNS members are `alive` unless told. */
export const MEMBER_STATUSES = ['alive', 'leaving', 'left', 'failed'] as const;

/** The status a member can have. */
export type MemberStatus = (typeof MEMBER_STATUSES)[number];

/** One member of a roster, as templates see it. */
export interface Member {
  /** Unique within its source. */
  name: string;
  /** IPv4/IPv6 text or a hostname. */
  address: string;
  /** Serf: from the tag named by the source's `portTag`; DNS: the SRV port or the configured one. */
  port?: number;
  tags: Record<string, string>;
  status: MemberStatus;
  /** The source's name in the config. */
  source: string;
}

/** The order members are rendered in: name, then address, then port (no port first). */
export function compareMembers(a: Member, b: Member): number {
  return compareText(a.name, b.name) || compareText(a.address, b.address) || (a.port ?? -1) - (b.port ?? -1);
}

/** Plain code-unit order, not locale order: the output must not depend on the machine's locale. */
export function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
