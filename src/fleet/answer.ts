import * as z from '../vendor/zod.js';
import { FLEET_GROUP } from '../config/fields.js';
import { CONTROL } from '../members/text.js';


/**
 * What one rosterd tells its peers in answer to the `rosterd-fleet` Serf query, and how question and answer
 * are encoded. Both are network input: they are parsed with a schema, bounded in size and count, and anything
 * else is refused.
 *
 * An answer must fit the agent's `query_response_size_limit` (1024 bytes by default), which counts the whole
 * response message: measured, a 1-character node name leaves 982 bytes for the payload and a 128-character
 * one 853. An answer is therefore compact JSON of at most {@link MAX_ANSWER_BYTES}, and a rosterd with more
 * templates than fit answers in pages: the question says from which template on. Times are ages, not
 * timestamps: machines' clocks differ, a message's age does not depend on them.
 */

/** The Serf query every rosterd's Serf sources answer. */
export const FLEET_QUERY = 'rosterd-fleet';
/** The largest encoded answer: below the agent's default limit with room for a node name of 128 characters. */
export const MAX_ANSWER_BYTES = 768;
/** Hex digits of the content hash in an answer: 64 bits tell different contents apart. */
export const HASH_DIGITS = 16;
/** The longest template name an answer carries; a template with a longer name is left out of answers. */
export const MAX_TEMPLATE_NAME = 128;
/** The most templates one rosterd reports, over all pages. */
export const MAX_TEMPLATES = 256;

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

/** A decoded answer: one page of a rosterd's templates. */
export interface FleetAnswer {
  templates: ServedTemplate[];
  /** Templates after these, for the next page. */
  more: number;
}

/** A decoded question. */
export interface FleetQuestion {
  group: string;
  /** The page: the index of the first template to report. */
  from: number;
}

/** Ten years, in ms: no answer reports an older content. */
const MAX_AGE_MS = 10 * 365 * 24 * 3600 * 1000;

const questionSchema = z.object({
  v: z.literal(1),
  group: z.string().check(z.regex(FLEET_GROUP)),
  from: z._default(z.number().check(z.int(), z.minimum(0), z.maximum(MAX_TEMPLATES)), 0),
});

const templateName = z.string().check(
  z.minLength(1),
  z.maxLength(MAX_TEMPLATE_NAME),
  z.refine((name) => !CONTROL.test(name), 'control character'),
);

const answerSchema = z.object({
  v: z.literal(1),
  t: z
    .array(
      z.tuple([
        templateName,
        z.string().check(z.regex(new RegExp(`^[0-9a-f]{${HASH_DIGITS}}$`))),
        z.number().check(z.int(), z.minimum(0), z.maximum(1e9)),
        z.number().check(z.int(), z.minimum(0), z.maximum(MAX_AGE_MS)),
      ]),
    )
    .check(z.maxLength(MAX_TEMPLATES)),
  more: z._default(z.number().check(z.int(), z.minimum(0), z.maximum(MAX_TEMPLATES)), 0),
});

/** The question's payload: the group asked, and the page. */
export function encodeQuestion(question: FleetQuestion): Buffer {
  return Buffer.from(JSON.stringify({ v: 1, group: question.group, ...(question.from > 0 ? { from: question.from } : {}) }));
}

/** A question from a peer, or undefined when the payload is not a question this version knows. */
export function decodeQuestion(payload: Buffer | null): FleetQuestion | undefined {
  const value = parseJson(payload, 256);
  const parsed = questionSchema.safeParse(value);
  return parsed.success ? { group: parsed.data.group, from: parsed.data.from } : undefined;
}

/**
 * One page of an answer: the templates from index `from` on (sorted by name), as many as fit in
 * {@link MAX_ANSWER_BYTES}, and how many follow. Templates whose names peers would refuse (longer than
 * {@link MAX_TEMPLATE_NAME}, or with a control character) and those beyond {@link MAX_TEMPLATES} are not
 * reported.
 */
export function encodeAnswer(served: readonly ServedTemplate[], from: number): Buffer {
  const templates = served
    .filter((t) => t.template.length <= MAX_TEMPLATE_NAME && !CONTROL.test(t.template))
    .sort((a, b) => (a.template < b.template ? -1 : a.template > b.template ? 1 : 0))
    .slice(0, MAX_TEMPLATES);
  const rows: unknown[] = [];
  const encode = (more: number): Buffer => Buffer.from(JSON.stringify({ v: 1, t: rows, ...(more > 0 ? { more } : {}) }));
  let bytes = encode(0);
  for (let i = from; i < templates.length; i++) {
    const t = templates[i]!;
    rows.push([t.template, t.hash.slice(0, HASH_DIGITS), t.members, Math.min(MAX_AGE_MS, Math.max(0, Math.round(t.ageMs)))]);
    const next = encode(templates.length - i - 1);
    if (next.length > MAX_ANSWER_BYTES) {
      rows.pop();
      return encode(templates.length - i);
    }
    bytes = next;
  }
  return bytes;
}

/**
 * An answer from a peer, or undefined when it is not a well-formed one. Nothing in it is trusted further than
 * its shape: sizes, counts, numbers and names are bounded, duplicate templates refuse the whole answer.
 */
export function decodeAnswer(payload: Buffer): FleetAnswer | undefined {
  const parsed = answerSchema.safeParse(parseJson(payload, 4096));
  if (!parsed.success) return undefined;
  const templates = parsed.data.t.map(([template, hash, members, ageMs]) => ({ template, hash, members, ageMs }));
  if (new Set(templates.map((t) => t.template)).size !== templates.length) return undefined;
  return { templates, more: parsed.data.more };
}

/** JSON from a payload of at most `limit` bytes, or undefined. */
function parseJson(payload: Buffer | null, limit: number): unknown {
  if (payload === null || payload.length > limit) return undefined;
  try {
    return JSON.parse(payload.toString('utf8'));
  } catch {
    return undefined;
  }
}
