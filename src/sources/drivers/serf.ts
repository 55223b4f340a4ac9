import * as z from '../../vendor/zod.js';
import { acceptedBy, duration, positiveDuration, regexSource, type DurationInput } from '../../config/fields.js';
import { MEMBER_STATUSES, type MemberStatus } from '../../members/model.js';
import { DEFAULT_RPC_ADDRESS, parseRpcAddress } from '../../serf/address.js';
import type { SerfMember } from '../../serf/client.js';
import { defineSourceDriver } from '../driver.js';
import { checkSourceName, invalidOption } from '../lifecycle.js';

/** Resolved options of a `serf` source (defaults are filled in by the config schema). */
export interface SerfSourceOptions {
  /** The agent's RPC address, `host:port` (`[::1]:7373` for IPv6). The schema's default is `127.0.0.1:7373`. */
  rpcAddr: string;
  /** The agent's `rpc_auth` key. Sent only when set (an empty string counts as not set). Never logged. */
  authKey?: string;
  /**
   * Keep only members whose tags match: tag name → JavaScript regular expression that must match the whole
   * value (like `serf members -tag`). A member without the tag is matched as if its value were `""`.
   */
  tags?: Record<string, string>;
  /** Keep only members with one of these statuses. The schema's default is `['alive']`. */
  status: MemberStatus[];
  /** The tag that holds a member's service port. A value that is not a decimal integer gets the member dropped. Default `port`. */
  portTag: string;
  /**
   * Read the agent's log (`monitor` at DEBUG level, whatever level the agent logs at) for membership changes,
   * and read the member list as soon as one is logged. Default true (the schema's default too).
   */
  monitor?: boolean;
  /**
   * Poll: the least number of milliseconds between two reads of the member list when nothing else triggers
   * one. On a big cluster the poll waits longer, so that it takes at most 2% of the time. Off when absent or
   * false; the schema's default is 1000.
   */
  refreshInterval?: number | false;
  /** Milliseconds to wait after a hint or a member event before reading, so a burst costs one `members` call. */
  resyncDelay: number;
  /** Milliseconds allowed for connecting, handshake and auth. */
  connectTimeout: number;
}

/** What a config gets when it leaves a `serf` option out. */
export const SERF_DEFAULTS = {
  rpcAddr: DEFAULT_RPC_ADDRESS,
  status: ['alive'] as MemberStatus[],
  portTag: 'port',
  monitor: true,
  refreshInterval: 1000,
  resyncDelay: 20,
  connectTimeout: 5000,
} as const satisfies Partial<SerfSourceOptions>;

/** A `serf` source as a config writes it. */
export interface SerfSourceConfig {
  type: 'serf';
  /** The agent's RPC address, `host:port` (IPv6 as `[::1]:7373`). Serf RPC is plain TCP: keep it on loopback. @default "127.0.0.1:7373" */
  rpcAddr?: string;
  /** The agent's `rpc_auth` key, sent only when set and non-empty. Never logged. Default: none. */
  authKey?: string;
  /** Keep members whose tag matches: tag name → regular expression the whole value must match (a missing tag is `""`). Default: all members. */
  tags?: Record<string, string>;
  /** Keep only members with one of these statuses. @default ["alive"] */
  status?: MemberStatus[];
  /** The tag that holds a member's port; a value that is not a decimal integer gets the member dropped. @default "port" */
  portTag?: string;
  /** Read the member list as soon as the agent's log shows a membership change. @default true */
  monitor?: boolean;
  /** The poll: re-read the member list this often when nothing else did (less on big clusters); `false` turns it off. @default "1s" */
  refreshInterval?: DurationInput | false;
  /** The wait after a log line or a member event before reading, so a burst costs one read. @default "20ms" */
  resyncDelay?: DurationInput;
  /** Time allowed for the connection, the handshake and the auth together. @default "5s" */
  connectTimeout?: DurationInput;
}

/** The `serf` source: the members of a Serf cluster, as one agent sees them over RPC. Loads the Serf client on start. */
export default defineSourceDriver<SerfSourceConfig>()({
  type: 'serf',
  options: z.strictObject({
    type: z.literal('serf'),
    /** The agent's RPC address, `host:port` (IPv6 as `[::1]:7373`). @default "127.0.0.1:7373" */
    rpcAddr: z._default(
      z.string().check(z.refine(acceptedBy(parseRpcAddress), 'expected "host:port" with a port from 1 to 65535 (IPv6 as "[::1]:7373")')),
      SERF_DEFAULTS.rpcAddr,
    ),
    /** The agent's `rpc_auth` key. Never logged. Default: none. */
    authKey: z.optional(z.string()),
    /** Tag name → regular expression the whole value must match. Default: no filter. */
    tags: z.optional(z.record(z.string(), regexSource)),
    /** Keep only members with one of these statuses. @default ["alive"] */
    status: z._default(z.array(z.enum(MEMBER_STATUSES)).check(z.minLength(1)), SERF_DEFAULTS.status),
    /** The tag that holds a member's port. @default "port" */
    portTag: z._default(z.string().check(z.minLength(1)), SERF_DEFAULTS.portTag),
    /** Hints from the agent's log (`monitor`): read the member list as soon as a change is logged. @default true */
    monitor: z._default(z.boolean(), SERF_DEFAULTS.monitor),
    /** The poll: at most this often (less on big clusters); `false` turns it off. @default "1s" */
    refreshInterval: z._default(z.union([positiveDuration, z.literal(false)]), SERF_DEFAULTS.refreshInterval),
    /** The wait after a hint or an event before reading, so a burst costs one read. @default "20ms" */
    resyncDelay: z._default(duration, SERF_DEFAULTS.resyncDelay),
    /** Time allowed for connecting, the handshake and auth. @default "5s" */
    connectTimeout: z._default(positiveDuration, SERF_DEFAULTS.connectTimeout),
  }),
  defaults: SERF_DEFAULTS,
  validate: (name: string, options: SerfSourceOptions) => void validateSerfOptions(name, options),
  load: async () => (await import('../serf.js')).default,
});

/** Checks the options of a `serf` source and compiles its member filter. */
export function validateSerfOptions(name: string, options: SerfSourceOptions): { keep: (member: SerfMember) => boolean } {
  const invalid = (option: string, message: string) => invalidOption(name, option, message);
  checkSourceName(name);
  try {
    parseRpcAddress(options.rpcAddr);
  } catch (err) {
    throw invalid('rpcAddr', (err as Error).message);
  }
  if (options.authKey !== undefined && typeof options.authKey !== 'string') throw invalid('authKey', 'expected a string');
  if (!Array.isArray(options.status) || options.status.length === 0 || !options.status.every((s) => MEMBER_STATUSES.includes(s))) {
    throw invalid('status', `expected a non-empty list of ${MEMBER_STATUSES.join(', ')}, got ${JSON.stringify(options.status)}`);
  }
  if (typeof options.portTag !== 'string' || options.portTag === '') throw invalid('portTag', 'expected a non-empty string');
  if (options.monitor !== undefined && typeof options.monitor !== 'boolean') throw invalid('monitor', `expected true or false, got ${JSON.stringify(options.monitor)}`);
  const interval = options.refreshInterval;
  if (interval !== undefined && interval !== false && !(interval > 0 && Number.isFinite(interval))) {
    throw invalid('refreshInterval', `expected a positive number of milliseconds or false, got ${interval}`);
  }
  if (!(options.resyncDelay >= 0 && Number.isFinite(options.resyncDelay))) {
    throw invalid('resyncDelay', `expected a number of milliseconds, got ${options.resyncDelay}`);
  }
  if (!(options.connectTimeout > 0 && Number.isFinite(options.connectTimeout))) {
    throw invalid('connectTimeout', `expected a positive number of milliseconds, got ${options.connectTimeout}`);
  }
  const tagPatterns: [string, RegExp][] = [];
  for (const [tag, pattern] of Object.entries(options.tags ?? {})) {
    if (typeof pattern !== 'string') throw invalid(`tags.${tag}`, 'expected a regular expression as a string');
    try {
      tagPatterns.push([tag, new RegExp(`^(?:${pattern})$`)]);
    } catch (err) {
      throw invalid(`tags.${tag}`, (err as Error).message);
    }
  }
  const statuses = new Set<string>(options.status);
  return {
    keep: (member) =>
      statuses.has(member.status) &&
      tagPatterns.every(([tag, pattern]) => pattern.test(Object.hasOwn(member.tags, tag) ? member.tags[tag]! : '')),
  };
}
