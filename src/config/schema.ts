import { z } from 'zod';
import { DEFAULT_ETCD_ENDPOINT, parseEtcdEndpoint, parseEtcdEndpoints } from '../etcd/endpoints.js';
import { FLEET_GROUP } from '../fleet/answer.js';
import { parseListen } from '../net/address.js';
import { isHostName } from '../net/hostname.js';
import { DEFAULT_RPC_ADDRESS, parseRpcAddress } from '../serf/address.js';
import { parseDnsServer } from '../sources/dns.js';
import { MEMBER_STATUSES } from '../members/model.js';
import { isSource, type Source } from '../sources/types.js';
import { acceptedBy, duration, positiveDuration, regexSource } from './fields.js';
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
const perms = z.union([z.number(), z.string()]).transform((value, ctx) => {
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
});

/** Where the status endpoint listens: `host:port`, `[::1]:port`, or `:port` for every interface. */
const listenAddress = z.string().refine(acceptedBy(parseListen), 'expected "host:port" (IPv6 as "[::1]:port", every interface as ":port")');

/** A DNS server: `ip`, `ip:port` or `[ipv6]:port`, as the dns source parses it. */
const dnsServer = z.string().superRefine((value, ctx) => {
  const parsed = parseDnsServer(value);
  if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', message: parsed });
});

/** Names of sources become `sources.<name>` in templates, log fields and metric labels. */
const sourceName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_-]*$/, 'a source name starts with a letter or "_" and holds only letters, digits, "_" and "-"');

// --- sources ---

const fileSourceSchema = z
  .object({
    type: z.literal('file'),
    /** The member file (JSON or YAML, by extension). Relative to the config file's directory. */
    path: z.string().min(1),
  })
  .strict();

const serfSourceSchema = z
  .object({
    type: z.literal('serf'),
    rpcAddr: z
      .string()
      .refine(acceptedBy(parseRpcAddress), 'expected "host:port" with a port from 1 to 65535 (IPv6 as "[::1]:7373")')
      .default(DEFAULT_RPC_ADDRESS),
    authKey: z.string().optional(),
    /** Tag name → regular expression the whole value must match. */
    tags: z.record(z.string(), regexSource).optional(),
    status: z.array(z.enum(MEMBER_STATUSES)).min(1).default(['alive']),
    portTag: z.string().min(1).default('port'),
    /** Hints from the agent's log (`monitor`): read the member list as soon as a change is logged. */
    monitor: z.boolean().default(true),
    /** The poll: at most this often (less on big clusters); `false` turns it off. */
    refreshInterval: z.union([positiveDuration, z.literal(false)]).default(1000),
    resyncDelay: duration.default(20),
    connectTimeout: positiveDuration.default(5000),
  })
  .strict();

const dnsSourceSchema = z
  .object({
    type: z.literal('dns'),
    name: z.string().refine(isHostName, 'not a DNS name'),
    record: z.enum(['SRV', 'A', 'AAAA']).default('SRV'),
    // IP addresses only: a server named by a host name would need DNS to be found.
    servers: z.array(dnsServer).min(1).optional(),
    port: z.number().int().min(1).max(65535).optional(),
    interval: positiveDuration.default(5000),
    timeout: positiveDuration.default(2000),
  })
  .strict()
  .refine((s) => !(s.record === 'SRV' && s.port !== undefined), {
    message: 'SRV records carry their own port: "port" is for A and AAAA records',
    path: ['port'],
  });

const etcdSourceSchema = z
  .object({
    type: z.literal('etcd'),
    endpoints: z.array(z.string().refine(acceptedBy(parseEtcdEndpoint), 'expected "host:port", "http://host:port" or "https://host:port"')).min(1).default([DEFAULT_ETCD_ENDPOINT]),
    prefix: z.string().min(1),
    auth: z
      .object({ username: z.string().min(1), password: z.string().optional(), passwordFile: z.string().min(1).optional() })
      .strict()
      .refine((a) => (a.password === undefined) !== (a.passwordFile === undefined), 'give exactly one of "password" and "passwordFile"')
      .optional(),
    tls: z
      .object({ ca: z.string().min(1).optional(), cert: z.string().min(1).optional(), key: z.string().min(1).optional() })
      .strict()
      .refine((t) => (t.cert === undefined) === (t.key === undefined), 'give "cert" and "key" together')
      .optional(),
    requestTimeout: positiveDuration.default(5000),
  })
  .strict()
  .superRefine((s, ctx) => {
    try {
      parseEtcdEndpoints(s.endpoints, s.tls !== undefined);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message, path: ['endpoints'] });
    }
  });

/** A `Source` object plugged in by a library user instead of a source config. */
const customSource = z.custom<Source>(
  isSource,
  'expected a source config with a "type" (file, serf, dns, etcd) or an object with start() and stop()',
);

const sourceConfig = z.union([
  z.discriminatedUnion('type', [fileSourceSchema, serfSourceSchema, dnsSourceSchema, etcdSourceSchema]),
  customSource,
]);

// --- templates ---

const wait = z
  .object({ min: duration, max: duration.optional() })
  .strict()
  .transform((value, ctx) => {
    // As consul-template: max defaults to 4 × min.
    const max = value.max ?? value.min * 4;
    if (max < value.min) ctx.issues.push({ code: 'custom', message: 'max must not be less than min', input: value, path: ['max'] });
    return { min: value.min, max };
  });

/** Fan-out: one file per member (`member`), or one per value of a tag (`{ groupBy: "zone" }`). */
const forEach = z.union([z.literal('member'), z.object({ groupBy: z.string().min(1) }).strict()], {
  error: 'expected "member" or { groupBy: "<tag>" }',
});

const templateSchema = z
  .object({
    /** Names the template in logs, events and metrics. Default: the destination's file name. */
    name: z.string().min(1).optional(),
    /** A Liquid template file. Exactly one of `source` and `contents`. */
    source: z.string().min(1).optional(),
    /** An inline Liquid template. */
    contents: z.string().optional(),
    /** The file to write; with `forEach`, a Liquid template rendered per item (`out/{{ member.name | slug }}.conf`). */
    destination: z.string().min(1),
    /** Fan-out: one file per member, or per value of a tag (`{ groupBy: zone }`). */
    forEach: forEach.optional(),
    /** Fan-out: remove the files of members or groups that are gone. Only files this template wrote. */
    prune: z.boolean().default(false),
    /** Which sources feed `members`. Default: all of them. */
    sources: z.array(z.string()).min(1).optional(),
    /** Environment variables the template may read as `env.NAME`. Nothing else is exposed. */
    env: z.array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'not an environment variable name')).default([]),
    wait: z.union([wait, z.literal(false)]).default(false),
    perms: perms.optional(),
    uid: z.number().int().min(0).optional(),
    gid: z.number().int().min(0).optional(),
    backup: z.boolean().default(false),
    minMembers: z.number().int().min(0).default(0),
    maxShrink: z.number().min(0).max(1).optional(),
    check: command.optional(),
    reload: z.union([command, haproxyReload]).optional(),
    timeout: duration.default(30_000),
    rollback: z.boolean().default(true),
    strict: z.boolean().default(true),
  })
  .strict()
  .refine((t) => !(isHaproxyReload(t.reload) && t.timeout === 0), {
    message: 'the HAProxy reloader needs a timeout above 0 to confirm the reload',
    path: ['timeout'],
  })
  .refine((t) => !(t.prune && t.forEach === undefined), {
    message: 'prune removes the files of a fan-out: it needs forEach',
    path: ['prune'],
  })
  .refine((t) => (t.source === undefined) !== (t.contents === undefined), {
    message: 'give exactly one of "source" (a file) and "contents" (inline)',
    // Checked even when other keys of the template are wrong, so that every problem is reported at once.
    when: (payload) => typeof payload.value === 'object' && payload.value !== null,
  });

export const configSchema = z
  .object({
    sources: z.record(sourceName, sourceConfig).refine((s) => Object.keys(s).length > 0, 'declare at least one source'),
    templates: z.array(templateSchema).min(1, 'declare at least one template'),
    /** The status endpoint (`/health`, `/ready`, `/metrics`). Off unless given; loopback by default. */
    http: z.object({ listen: listenAddress.default('127.0.0.1:9465') }).strict().optional(),
    /** How often to warn while a template waits for a source's first snapshot. */
    warnInterval: duration.refine((ms) => ms >= 100, 'must be at least 100ms').default(10_000),
    /** The render history, served by the status endpoint and, when `file` is given, written there. */
    history: z
      .object({
        /** Renders kept in memory per template. */
        entries: z.number().int().min(1).max(10_000).default(100),
        /** The largest diff kept per render, in bytes; 0 keeps none. */
        maxDiffBytes: z.number().int().min(0).default(65_536),
        /** A JSON-lines file every render is appended to. Relative to the config file's directory. */
        file: z.string().min(1).optional(),
        /** Size in bytes at which the file is rotated to `<file>.1`. */
        maxFileBytes: z.number().int().min(4096).default(10_485_760),
        /** Rotated files kept (`<file>.1` … `<file>.N`); 0 starts the file afresh. */
        keepFiles: z.number().int().min(0).max(100).default(1),
      })
      .strict()
      .prefault({}),
    /** The fleet view: what this rosterd tells its peers over Serf, and how it compares them. */
    fleet: z
      .object({
        /** The Serf sources answer the `rosterd-fleet` query with this rosterd's content hashes. */
        answer: z.boolean().default(true),
        /** Only rosterds of the same group answer each other: one group per set of load balancers that render alike. */
        group: z.string().regex(FLEET_GROUP, 'up to 64 letters, digits, "_", "." and "-"').default('default'),
        /** With the status endpoint on: how often the daemon surveys its peers. */
        interval: duration.refine((ms) => ms >= 1000, 'must be at least 1s').default(15_000),
        /** A rosterd that has differed from the majority for longer than this lags. */
        lag: duration.default(30_000),
        /** How long a survey waits for answers. */
        timeout: positiveDuration.refine((ms) => ms <= 60_000, 'must be at most 60s').default(2000),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .superRefine(
    (value, ctx) => {
    // Runs even when other parts of the config are wrong, so every problem is reported at once; the
    // input may therefore be malformed here.
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
  );

/** The config as a user writes it. */
export type RosterdConfig = z.input<typeof configSchema>;
/** The config after validation: durations in ms, modes as numbers, defaults filled. Paths as written. */
type ParsedConfig = z.output<typeof configSchema>;
export type ParsedTemplate = ParsedConfig['templates'][number];
type FileSourceConfig = z.output<typeof fileSourceSchema>;
type SerfSourceConfig = z.output<typeof serfSourceSchema>;
type DnsSourceConfig = z.output<typeof dnsSourceSchema>;
type EtcdSourceConfig = z.output<typeof etcdSourceSchema>;
export type SourceConfig = FileSourceConfig | SerfSourceConfig | DnsSourceConfig | EtcdSourceConfig;
export type { ReloadConfig } from './reload.js';
export type HistoryConfig = ParsedConfig['history'];
export type FleetConfig = ParsedConfig['fleet'];
export type ForEach = NonNullable<ParsedTemplate['forEach']>;
