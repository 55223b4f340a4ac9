import * as z from '../vendor/zod.js';
import { parseListen } from '../net/address.js';
import { SOURCE_DRIVERS, SOURCE_OPTION_SCHEMAS } from '../sources/registry.js';
import { isSource, type Source } from '../sources/types.js';
import { acceptedBy, duration, FLEET_GROUP, positiveDuration } from './fields.js';
import { command, haproxyReload, isHaproxyReload } from './reload.js';

/**
 * The one schema every config goes through. It is strict (unknown keys are errors), turns durations into
 * milliseconds and modes into numbers, and fills every default, so nothing downstream reads raw user input.
 * Paths are still as written; `resolveConfig` makes them absolute.
 */

// --- building blocks ---

/**
 * A file mode: a number (`420`, `0o644` in TS) or an octal string (`'0644'`, `'644'`, `'0o644'`).
 * YAML 1.2 reads an unquoted `0644` as decimal 644, which is almost never meant: it is refused with a hint.
 */
const perms = z.pipe(
  z.union([z.number(), z.string()]),
  z.transform((value: number | string, ctx) => {
    if (typeof value === 'string') {
      const match = /^(?:0o?)?([0-7]{3,4})$/.exec(value.trim());
      if (match) return Number.parseInt(match[1]!, 8);
      ctx.issues.push({ code: 'custom', message: `"${value}" is not an octal file mode such as "0644"`, input: value });
      return z.NEVER;
    }
    if (!Number.isInteger(value) || value < 0 || value > 0o7777) {
      ctx.issues.push({ code: 'custom', message: `${value} is not a file mode (0 to 0o7777)`, input: value });
      return z.NEVER;
    }
    if (value > 0o777 && /^[0-7]+$/.test(String(value))) {
      ctx.issues.push({
        code: 'custom',
        message: `${value} was read as a decimal number; write "0${value}" in quotes (or 0o${value} in TypeScript)`,
        input: value,
      });
      return z.NEVER;
    }
    return value;
  }),
);

/** Where the status endpoint listens: `host:port`, `[::1]:port`, or `:port` for every interface. */
const listenAddress = z.string().check(z.refine(acceptedBy(parseListen), 'expected "host:port" (IPv6 as "[::1]:port", every interface as ":port")'));

/** Names of sources become `sources.<name>` in templates, log fields and metric labels. */
const sourceName = z
  .string()
  .check(z.regex(/^[A-Za-z_][A-Za-z0-9_-]*$/, 'a source name starts with a letter or "_" and holds only letters, digits, "_" and "-"'));

// --- sources ---

/** A `Source` object plugged in by a library user instead of a source config. */
const customSource = z.custom<Source>(
  isSource,
  `expected a source config with a "type" (${SOURCE_DRIVERS.map((d) => d.type).join(', ')}) or an object with start() and stop()`,
);

const sourceConfig = z.union([
  z.discriminatedUnion('type', SOURCE_OPTION_SCHEMAS),
  customSource,
]);

// --- templates ---

const waitObject = z.strictObject({
  /** Render once changes have been quiet this long (`"200ms"`, `"2s"`). */
  min: duration,
  /** Render at the latest this long after the first change. Default: 4 × `min`. */
  max: z.optional(duration),
});
const wait = z.pipe(
  waitObject,
  z.transform((value: z.output<typeof waitObject>, ctx) => {
    // As consul-template: max defaults to 4 × min.
    const max = value.max ?? value.min * 4;
    if (max < value.min) ctx.issues.push({ code: 'custom', message: 'max must not be less than min', input: value, path: ['max'] });
    return { min: value.min, max };
  }),
);

/** Fan-out: one file per member (`member`), or one per value of a tag (`{ groupBy: "zone" }`). */
const forEach = z.union([z.literal('member'), z.strictObject({ groupBy: z.string().check(z.minLength(1)) })], {
  error: 'expected "member" or { groupBy: "<tag>" }',
});

const templateSchema = z
  .strictObject({
    /** Names the template in logs, events and metrics; unique. Default: the destination's file name. */
    name: z.optional(z.string().check(z.minLength(1))),
    /** A Liquid template file, relative to the config file. Exactly one of `source` and `contents`. */
    source: z.optional(z.string().check(z.minLength(1))),
    /** An inline Liquid template. Exactly one of `source` and `contents`. */
    contents: z.optional(z.string()),
    /**
     * The file to write, relative to the config file; parents are created. With `forEach`, a Liquid template
     * rendered per item (`out/{{ member.name | slug }}.conf`).
     */
    destination: z.string().check(z.minLength(1)),
    /** Fan-out: one file per member (`"member"`), or per value of a tag (`{ groupBy: "zone" }`). Default: one file. */
    forEach: z.optional(forEach),
    /** Fan-out: remove the files of members or groups that are gone, only files this template wrote. @default false */
    prune: z._default(z.boolean(), false),
    /** Which sources feed `members` (merged) and `sources.<name>`. Default: all of them. */
    sources: z.optional(z.array(z.string()).check(z.minLength(1))),
    /** Environment variables the template may read as `env.NAME`. Nothing else is exposed. @default [] */
    env: z._default(z.array(z.string().check(z.regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'not an environment variable name'))), []),
    /**
     * Quiescence: render once changes have been quiet for `min`, at the latest `max` after the first change;
     * `false` renders as soon as a snapshot changes. The first render never waits. @default false
     */
    wait: z._default(z.union([wait, z.literal(false)]), false),
    /** Mode of the written file (`"0644"`, quoted in YAML and JSON). Default: the existing file's, else 0644. */
    perms: z.optional(perms),
    /** Owner of the written file (needs root or CAP_CHOWN). Default: the existing file's owner. */
    uid: z.optional(z.number().check(z.int(), z.minimum(0))),
    /** Group of the written file. Default: the existing file's group. */
    gid: z.optional(z.number().check(z.int(), z.minimum(0))),
    /** Keep the previous file as `<destination>.bak`. @default false */
    backup: z._default(z.boolean(), false),
    /** Refuse to render with fewer members than this; the previous file stays. @default 0 */
    minMembers: z._default(z.number().check(z.int(), z.minimum(0)), 0),
    /** Refuse a render that drops more than this fraction (0–1) of the members last installed. Default: off. */
    maxShrink: z.optional(z.number().check(z.minimum(0), z.maximum(1))),
    /** Runs on the candidate file before it is installed (argv without a shell, or a `sh -c` string); a failure means no install. */
    check: z.optional(command),
    /** Runs after the install: a command, or `{ haproxy: { masterSocket } }` for the confirmed HAProxy reload. A failure restores the previous file. */
    reload: z.optional(z.union([command, haproxyReload])),
    /** Limit for each `check` and `reload`; the command's process group is killed after it. @default "30s" */
    timeout: z._default(duration, 30_000),
    /** On a failed reload, put the previous file back. @default true */
    rollback: z._default(z.boolean(), true),
    /** An undefined variable or unknown filter is an error, not an empty string. @default true */
    strict: z._default(z.boolean(), true),
  })
  .check(
    z.refine((t) => !(isHaproxyReload(t.reload) && t.timeout === 0), {
      message: 'the HAProxy reloader needs a timeout above 0 to confirm the reload',
      path: ['timeout'],
    }),
    z.refine((t) => !(t.prune && t.forEach === undefined), {
      message: 'prune removes the files of a fan-out: it needs forEach',
      path: ['prune'],
    }),
    z.refine((t) => (t.source === undefined) !== (t.contents === undefined), {
      message: 'give exactly one of "source" (a file) and "contents" (inline)',
      // Checked even when other keys of the template are wrong, so that every problem is reported at once.
      when: (payload) => typeof payload.value === 'object' && payload.value !== null,
    }),
  );

export const configSchema = z
  .strictObject({
    /** Where members come from: name → `{ type: "file" | "serf" | "dns" | "etcd", … }` or a `Source` object. */
    sources: z.record(sourceName, sourceConfig).check(z.refine((s) => Object.keys(s).length > 0, 'declare at least one source')),
    /** What to render: at least one template. */
    templates: z.array(templateSchema).check(z.minLength(1, 'declare at least one template')),
    /** The status endpoint (the status page, `/health`, `/ready`, `/metrics`, `/history`, `/fleet`). Default: off. */
    http: z.optional(
      z.strictObject({
        /** `host:port`, `[::1]:port`, or `:port` for every interface. @default "127.0.0.1:9465" */
        listen: z._default(listenAddress, '127.0.0.1:9465'),
      }),
    ),
    /** How often to warn while a template waits for a source's first snapshot (at least 100ms). @default "10s" */
    warnInterval: z._default(duration.check(z.refine((ms) => ms >= 100, 'must be at least 100ms')), 10_000),
    /** The render history, served by the status endpoint and, when `file` is given, written there. */
    history: z.prefault(
      z.strictObject({
        /** Renders kept in memory per template (1–10,000). @default 100 */
        entries: z._default(z.number().check(z.int(), z.minimum(1), z.maximum(10_000)), 100),
        /** The largest diff kept per render, in bytes; 0 keeps none. @default 65536 */
        maxDiffBytes: z._default(z.number().check(z.int(), z.minimum(0)), 65_536),
        /** A JSON-lines file every render is appended to, relative to the config file. Default: none. */
        file: z.optional(z.string().check(z.minLength(1))),
        /** Size in bytes at which the file is rotated to `<file>.1` (at least 4096). @default 10485760 */
        maxFileBytes: z._default(z.number().check(z.int(), z.minimum(4096)), 10_485_760),
        /** Rotated files kept (`<file>.1` … `<file>.N`, 0–100); 0 starts the file afresh. @default 1 */
        keepFiles: z._default(z.number().check(z.int(), z.minimum(0), z.maximum(100)), 1),
      }),
      {},
    ),
    /** The fleet view: what this rosterd tells its peers over Serf, and how it compares them. */
    fleet: z.prefault(
      z.strictObject({
        /** The Serf sources answer the `rosterd-fleet` query with this rosterd's content hashes. @default true */
        answer: z._default(z.boolean(), true),
        /** Only rosterds of the same group answer each other: one group per set of load balancers that render alike. @default "default" */
        group: z._default(z.string().check(z.regex(FLEET_GROUP, 'up to 64 letters, digits, "_", "." and "-"')), 'default'),
        /** With the status endpoint on: how often the daemon surveys its peers (at least 1s). @default "15s" */
        interval: z._default(duration.check(z.refine((ms) => ms >= 1000, 'must be at least 1s')), 15_000),
        /** A rosterd that has differed from the majority for longer than this lags. @default "30s" */
        lag: z._default(duration, 30_000),
        /** How long a survey waits for answers (at most 60s). @default "2s" */
        timeout: z._default(positiveDuration.check(z.refine((ms) => ms <= 60_000, 'must be at most 60s')), 2000),
      }),
      {},
    ),
  })
  .check(
    z.superRefine(
      (value, ctx) => {
        // Runs even when other parts of the config are wrong, so every problem is reported at once; the
        // input may therefore be malformed here.
        if (typeof value !== 'object' || value === null) return;
        const config = value as { sources?: unknown; templates?: unknown };
        if (typeof config.sources !== 'object' || config.sources === null || !Array.isArray(config.templates)) return;
        const declared = Object.keys(config.sources);
        config.templates.forEach((t: unknown, i) => {
          const selected = (t as { sources?: unknown } | null)?.sources;
          if (!Array.isArray(selected)) return;
          selected.forEach((name: unknown, j) => {
            if (typeof name !== 'string' || declared.includes(name)) return;
            ctx.addIssue({
              code: 'custom',
              message: `unknown source "${name}" (declared: ${declared.map((n) => `"${n}"`).join(', ')})`,
              path: ['templates', i, 'sources', j],
            });
          });
        });
      },
      { when: () => true },
    ),
  );

/** The config as a user writes it (documented key by key in `input.ts`, equal to `z.input` of the schema). */
export type { RosterdConfig } from './input.js';
/** The config after validation: durations in ms, modes as numbers, defaults filled. Paths as written. */
type ParsedConfig = z.output<typeof configSchema>;
export type ParsedTemplate = ParsedConfig['templates'][number];
export type { SourceConfig } from '../sources/registry.js';
export type { ReloadConfig } from './reload.js';
export type HistoryConfig = ParsedConfig['history'];
export type FleetConfig = ParsedConfig['fleet'];
export type ForEach = NonNullable<ParsedTemplate['forEach']>;
