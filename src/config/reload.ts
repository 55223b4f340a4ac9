import * as z from '../vendor/zod.js';
import { positiveDuration, type DurationInput } from './fields.js';

/**
 * A template's `reload` setting: a command, or the built-in HAProxy reloader. Kept out of the config
 * schema so that the reloaders can know its shape without importing the schema.
 */

/** A command: an argv array (run without a shell) or a string (run with `sh -c`). */
export const command = z.union([
  z.string().check(z.minLength(1, 'empty command')),
  z.array(z.string()).check(z.minLength(1, 'empty argv: give at least the program')),
]);

/** The built-in HAProxy reloader's options. */
export const haproxyReload = z.strictObject({
  haproxy: z.strictObject({
    /** The master CLI socket HAProxy was started with (`-S`). */
    masterSocket: z.string().check(z.minLength(1)),
    /** `cli`: `reload` on the master CLI; `signal`: SIGUSR2 to the master. Both are confirmed through `show proc`. @default "cli" */
    method: z._default(z.enum(['cli', 'signal']), 'cli'),
    /** For `signal`: the master's pid file (`-p`). Default: the pid from `show proc`. */
    pidFile: z.optional(z.string().check(z.minLength(1))),
    /** Refuse a candidate that adds a `bind` on an address already in use (it would freeze the listeners). @default true */
    bindGuard: z._default(z.boolean(), true),
    /** Apply changes to server lines of existing backends through the runtime API instead of reloading. @default false */
    runtime: z._default(z.boolean(), false),
    /** Runtime mode: the longest wait for a removed server's sessions to end before falling back to a reload. @default "10s" */
    drainTimeout: z._default(positiveDuration, 10_000),
    /** Before each reload, write `show servers state` here (HAProxy's `server-state-file`). Default: none. */
    stateFile: z.optional(z.string().check(z.minLength(1))),
  }),
});

/** A template's `reload`: an argv array, a shell command, or the built-in HAProxy reloader. */
export type ReloadConfig = z.output<typeof command> | HaproxyReload;

/** A template's `reload` when it is the built-in HAProxy reloader, resolved. */
export type HaproxyReload = z.output<typeof haproxyReload>;

/** True when a template's `reload` is the built-in HAProxy reloader rather than a command. */
export function isHaproxyReload(reload: unknown): reload is HaproxyReload {
  return typeof reload === 'object' && reload !== null && !Array.isArray(reload) && 'haproxy' in reload;
}

/** A command as a config writes it: an argv array (run without a shell) or a string (run with `sh -c`). */
export type CommandInput = string | string[];

/** The built-in HAProxy reloader as a config writes it: `reload: { haproxy: { masterSocket } }`. */
export interface HaproxyReloadInput {
  haproxy: {
    /** The master CLI socket HAProxy was started with (`-S`). */
    masterSocket: string;
    /** `cli`: `reload` on the master CLI; `signal`: SIGUSR2 to the master. Both are confirmed through `show proc`. @default "cli" */
    method?: 'cli' | 'signal';
    /** For `signal`: the master's pid file (`-p`). Default: the pid from `show proc`. */
    pidFile?: string;
    /** Refuse a candidate that adds a `bind` on an address already in use (it would freeze the listeners). @default true */
    bindGuard?: boolean;
    /** Apply changes to server lines of existing backends through the runtime API instead of reloading. @default false */
    runtime?: boolean;
    /** Runtime mode: the longest wait for a removed server's sessions to end before falling back to a reload. @default "10s" */
    drainTimeout?: DurationInput;
    /** Before each reload, write `show servers state` here (HAProxy's `server-state-file`). Default: none. */
    stateFile?: string;
  };
}
