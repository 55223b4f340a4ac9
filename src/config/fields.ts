import * as z from '../vendor/zod.js';
import { parseDuration } from './duration.js';

/**
 * Building blocks of option schemas, shared by the config schema and the source drivers (which declare
 * their own options). They import nothing of rosterd but `duration.ts`, so any module may use them
 * without pulling in the config schema.
 */

/**
 * A check that accepts what `parse` accepts (it throws otherwise): the code that uses a value decides what is
 * valid, so `validate` and the running daemon never disagree.
 */
export function acceptedBy(parse: (value: string) => unknown): (value: string) => boolean {
  return (value) => {
    try {
      parse(value);
      return true;
    } catch {
      return false;
    }
  };
}

/** A duration as a config writes it: `"200ms"`, `"2s"`, `"1m30s"`, or a number of milliseconds. */
export type DurationInput = number | string;

/** `'200ms'`, `'2s'`, `'1m30s'` or a number of milliseconds → milliseconds. */
export const duration = z.pipe(
  z.union([z.number(), z.string()]),
  z.transform((value: number | string, ctx) => {
    const parsed = parseDuration(value);
    if (typeof parsed === 'number') return parsed;
    ctx.issues.push({ code: 'custom', message: parsed.error, input: value });
    return z.NEVER;
  }),
);

/** A duration above zero (an interval or a timeout). */
export const positiveDuration = duration.check(z.refine((ms) => ms > 0, 'must be more than 0'));

/** A regular expression, checked when the config is loaded rather than when a source starts. */
export const regexSource = z.string().check(
  z.refine(
    acceptedBy((pattern) => new RegExp(pattern)),
    'not a valid regular expression',
  ),
);

/** `fleet.group`: which rosterds compare with each other (also checked in every answer a peer sends). */
export const FLEET_GROUP = /^[A-Za-z0-9_.-]{1,64}$/;
