/**
 * What one rosterd tells its peers in answer to the `rosterd-fleet` Serf query, and how that answer is
 * encoded. An answer must fit the agent's query response limit (1024 bytes by default, the node name and the
 * message's framing included), so it is compact JSON, at most {@link MAX_ANSWER_BYTES}, and ages instead of
 * timestamps (machines' clocks differ; a message's age does not depend on them).
 */

/** The Serf query every rosterd's Serf sources answer. */
export const FLEET_QUERY = 'rosterd-fleet';
/** The largest encoded answer: below the agent's 1024-byte limit, with room for the node name and framing. */
export const MAX_ANSWER_BYTES = 768;
/** Hex digits of the content hash in an answer: 64 bits tell different contents apart. */
export const HASH_DIGITS = 16;

/** What one rosterd serves for one template. */
export interface ServedTemplate {
  template: string;
  /** The content hash (first {@link HASH_DIGITS} hex digits of the SHA-256) of the file in place. */
  hash: string;
  /** Members it was rendered with. */
  members: number;
  /** How long ago this content was installed (or first found in place), in ms. */
  ageMs: number;
}

/** A decoded answer. */
export interface FleetAnswer {
  templates: ServedTemplate[];
  /** Templates left out so the answer would fit. */
  omitted: number;
}

/** The question's payload: the group asked. */
export function encodeQuestion(group: string): Buffer {
  return Buffer.from(JSON.stringify({ v: 1, group }));
}

/** The group a question asks, or undefined when the payload is not a question this version knows. */
export function decodeQuestion(payload: Buffer | null): string | undefined {
  try {
    const value = JSON.parse(payload?.toString('utf8') ?? '') as { v?: unknown; group?: unknown };
    return value.v === 1 && typeof value.group === 'string' ? value.group : undefined;
  } catch {
    return undefined;
  }
}

/** Encodes an answer, leaving out the last templates while it is too big. */
export function encodeAnswer(templates: readonly ServedTemplate[]): Buffer {
  for (let kept = templates.length; ; kept--) {
    const rows = templates.slice(0, kept).map((t) => [t.template, t.hash.slice(0, HASH_DIGITS), t.members, Math.max(0, Math.round(t.ageMs))]);
    const body: { v: number; t: unknown[]; more?: number } = { v: 1, t: rows };
    if (kept < templates.length) body.more = templates.length - kept;
    const bytes = Buffer.from(JSON.stringify(body));
    if (bytes.length <= MAX_ANSWER_BYTES || kept === 0) return bytes;
  }
}

/**
 * Decodes an answer from a peer. Peers are other machines: anything that is not a well-formed answer is
 * refused (undefined), and nothing in it is trusted further than its shape.
 */
export function decodeAnswer(payload: Buffer): FleetAnswer | undefined {
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch {
    return undefined;
  }
  const body = value as { v?: unknown; t?: unknown; more?: unknown };
  if (typeof value !== 'object' || value === null || body.v !== 1 || !Array.isArray(body.t)) return undefined;
  const templates: ServedTemplate[] = [];
  for (const row of body.t as unknown[]) {
    if (!Array.isArray(row) || row.length !== 4) return undefined;
    const [template, hash, members, ageMs] = row as unknown[];
    if (typeof template !== 'string' || typeof hash !== 'string' || !/^[0-9a-f]{1,64}$/.test(hash)) return undefined;
    if (!Number.isSafeInteger(members) || (members as number) < 0 || !Number.isSafeInteger(ageMs) || (ageMs as number) < 0) return undefined;
    templates.push({ template, hash, members: members as number, ageMs: ageMs as number });
  }
  const omitted = Number.isSafeInteger(body.more) && (body.more as number) > 0 ? (body.more as number) : 0;
  return { templates, omitted };
}
