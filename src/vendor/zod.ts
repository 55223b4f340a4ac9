import { config } from 'zod/mini';
import en from 'zod/v4/locales/en.js';

/**
 * The part of zod that rosterd uses, in one module that the rest of `src/` imports as `* as z`: zod's
 * functional API (`zod/mini`), which loads and builds schemas faster than the classic one. The build replaces
 * this module's output with a bundle of it (`scripts/bundle-vendor.mjs`): a start then loads one file
 * instead of zod's many modules, and only the English locale, not all 60. Types still come from zod itself.
 */

// zod/mini sets no locale (every message would be "Invalid input"); classic zod sets English when none is
// set, and so does this. A locale set through another copy of zod (they share one config) wins.
if (!config().localeError) config(en());

export {
  _default,
  array,
  boolean,
  custom,
  discriminatedUnion,
  enum,
  int,
  literal,
  maximum,
  maxLength,
  minimum,
  minLength,
  NEVER,
  number,
  object,
  optional,
  pipe,
  prefault,
  record,
  refine,
  regex,
  strictObject,
  string,
  superRefine,
  transform,
  tuple,
  union,
} from 'zod/mini';
export type { core, input, output } from 'zod/mini';
