/**
 * The part of zod that rosterd uses, in one module that the rest of `src/` imports as `* as z`. The build
 * replaces this module's output with a bundle of it (`scripts/bundle-vendor.mjs`): a start then loads one file
 * instead of zod's 95 modules, and not its 60 locales. Types still come from zod itself.
 */
export { array, boolean, custom, discriminatedUnion, enum, literal, NEVER, number, object, record, string, tuple, union, ZodError, ZodType } from 'zod';
export type { core, input, output } from 'zod';
