import * as z from '../../vendor/zod.js';
import { positiveDuration, type DurationInput } from '../../config/fields.js';
import { formatHostPort, isAddressProblem, parseHostPort } from '../../net/address.js';
import { isHostName } from '../../net/hostname.js';
import { defineSourceDriver } from '../driver.js';
import { checkSourceName, invalidOption } from '../lifecycle.js';

/** Resolved options of a `dns` source (defaults are filled in by the config schema). */
export interface DnsSourceOptions {
  type: 'dns';
  /** The name to look up: an SRV name such as `_http._tcp.web.example.com`, or a host name for A/AAAA. */
  name: string;
  /** The record type. SRV gives target and port per record; A and AAAA give addresses only. */
  record: 'SRV' | 'A' | 'AAAA';
  /**
   * DNS servers to ask, in order: `ip`, `ip:port` or `[ipv6]:port` (IP addresses only: a server named by a
   * host name would need DNS to be found). Default: the system's resolvers.
   */
  servers?: string[];
  /** The members' port for A and AAAA records. Not allowed with SRV, whose records carry their own port. */
  port?: number;
  /** Milliseconds between polls (shortened by a lower positive TTL, see `TTL_FLOOR_MS`). */
  interval: number;
  /**
   * Milliseconds a server gets to answer one query before the next server is asked. The address queries of
   * SRV targets run `TARGET_QUERY_CONCURRENCY` at a time, and one that gets no answer is asked again
   * (`TARGET_QUERY_TRIES`) before the server counts as failed.
   */
  timeout: number;
}

/** What a config gets when it leaves a `dns` option out. */
export const DNS_DEFAULTS = { record: 'SRV', interval: 5000, timeout: 2000 } as const satisfies Partial<DnsSourceOptions>;

/** A DNS server: `ip`, `ip:port` or `[ipv6]:port`, as the dns source parses it. */
const dnsServer = z.string().check(
  z.superRefine((value, ctx) => {
    const parsed = parseDnsServer(value);
    if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', message: parsed });
  }),
);

/** A `dns` source as a config writes it. */
export interface DnsSourceConfig {
  type: 'dns';
  /** The name to look up: an SRV name (`_http._tcp.web.example.com`) or a host name for A and AAAA. */
  name: string;
  /** The record type: SRV records carry target and port, A and AAAA addresses only. @default "SRV" */
  record?: 'SRV' | 'A' | 'AAAA';
  /** DNS servers to ask, in order: `ip`, `ip:port` or `[ipv6]:port`, IP addresses only. Default: the system's resolvers. */
  servers?: string[];
  /** The members' port for A and AAAA records (SRV records carry their own). Default: none. */
  port?: number;
  /** Time between polls; a lower positive TTL brings the next one forward (never below 1s). @default "5s" */
  interval?: DurationInput;
  /** Time a server gets to answer before the next one is asked. @default "2s" */
  timeout?: DurationInput;
}

/** The `dns` source: SRV, A or AAAA records, polled. */
export default defineSourceDriver<DnsSourceConfig>()({
  type: 'dns',
  options: z
    .strictObject({
      type: z.literal('dns'),
      /** The name to look up: an SRV name (`_http._tcp.web.example.com`) or a host name for A and AAAA. */
      name: z.string().check(z.refine(isHostName, 'not a DNS name')),
      /** The record type: SRV records carry target and port, A and AAAA addresses only. @default "SRV" */
      record: z._default(z.enum(['SRV', 'A', 'AAAA']), DNS_DEFAULTS.record),
      /**
       * DNS servers to ask, in order: `ip`, `ip:port` or `[ipv6]:port`. Default: the system's resolvers.
       * IP addresses only: a server named by a host name would need DNS to be found.
       */
      servers: z.optional(z.array(dnsServer).check(z.minLength(1))),
      /** The members' port for A and AAAA records (SRV records carry their own). Default: none. */
      port: z.optional(z.number().check(z.int(), z.minimum(1), z.maximum(65535))),
      /** Time between polls, shortened by a lower TTL (never below 1s). @default "5s" */
      interval: z._default(positiveDuration, DNS_DEFAULTS.interval),
      /** Time a server gets to answer before the next one is asked. @default "2s" */
      timeout: z._default(positiveDuration, DNS_DEFAULTS.timeout),
    })
    .check(
      z.refine((s) => !(s.record === 'SRV' && s.port !== undefined), {
        message: 'SRV records carry their own port: "port" is for A and AAAA records',
        path: ['port'],
      }),
    ),
  defaults: DNS_DEFAULTS,
  validate: (name: string, options: DnsSourceOptions) => void validateDnsOptions(name, options),
  load: async () => (await import('../dns.js')).createDnsSource,
});

/**
 * Checks the options of a `dns` source. Returns the servers, each in the form `Resolver.setServers` takes
 * and as messages name it (as written), or undefined for the system's.
 */
export function validateDnsOptions(name: string, options: DnsSourceOptions): { server: string; label: string }[] | undefined {
  const invalid = (option: string, message: string) => invalidOption(name, option, message);
  checkSourceName(name);
  if (typeof options.name !== 'string' || !isHostName(options.name)) throw invalid('name', `${JSON.stringify(options.name)} is not a DNS name`);
  if (options.record !== 'SRV' && options.record !== 'A' && options.record !== 'AAAA') {
    throw invalid('record', `expected SRV, A or AAAA, got ${JSON.stringify(options.record)}`);
  }
  if (options.port !== undefined) {
    if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65535) throw invalid('port', `expected an integer from 1 to 65535, got ${JSON.stringify(options.port)}`);
    if (options.record === 'SRV') throw invalid('port', 'SRV records carry their own port; `port` applies to A and AAAA records only');
  }
  for (const key of ['interval', 'timeout'] as const) {
    const value = options[key];
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 1) throw invalid(key, `expected a positive number of milliseconds, got ${JSON.stringify(value)}`);
  }
  if (options.servers === undefined) return undefined;
  if (!Array.isArray(options.servers) || options.servers.length === 0) throw invalid('servers', 'expected a non-empty list (leave it out for the system resolvers)');
  return options.servers.map((entry, i) => {
    const parsed = typeof entry === 'string' ? parseDnsServer(entry) : 'expected a string';
    if (typeof parsed === 'object') return { server: parsed.server, label: entry };
    throw invalid(`servers[${i}]`, `${JSON.stringify(entry)}: ${parsed}`);
  });
}

/**
 * Parses `ip`, `ip:port` or `[ipv6]:port`. Returns the server for `setServers`, or why it is refused.
 * The port is checked here because Node's `setServers` does not: it takes 99999 modulo 65536, ignores 0 for
 * IPv6 and aborts the whole process on an IPv4 address with port 0.
 */
export function parseDnsServer(entry: string): { server: string } | string {
  const parsed = parseHostPort(entry, { optionalPort: true, ipOnly: true });
  if (isAddressProblem(parsed)) {
    return parsed.problem === 'port' ? parsed.message : 'a DNS server must be an IP address (optionally with a port: "ip:port", "[ipv6]:port")';
  }
  return { server: parsed.port === undefined ? parsed.host : formatHostPort(parsed.host, parsed.port) };
}
