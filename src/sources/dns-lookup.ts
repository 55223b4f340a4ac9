import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import { SourceError } from '../errors.js';
import type { Member } from '../members/model.js';
import type { DnsSourceOptions } from './drivers/dns.js';

/**
 * One DNS lookup of a `dns` source, usable on its own: ask the servers in turn for the SRV, A or AAAA records
 * and the SRV targets' addresses, and turn the answers into raw members. Polling, backoff and reporting are
 * the source's (`dns.ts`).
 */

/**
 * Address queries for SRV targets in flight at once, per server. Sending every query of a large SRV name at
 * once overflows socket buffers and server limits (dnsmasq answered 128 targets, not 150), and one lost
 * answer failed the whole poll.
 */
export const TARGET_QUERY_CONCURRENCY = 32;
/** Times an SRV target's address query is sent when no answer comes within `timeout`: a lost UDP answer is asked again. */
export const TARGET_QUERY_TRIES = 2;

/** Answers that mean "the name has no such records": an empty list, not a failure. */
const NO_RECORDS = new Set(['ENOTFOUND', 'ENODATA']);
/** What a resolver error code means, for messages people read. */
const REASONS: Record<string, string> = {
  ESERVFAIL: 'the server answered SERVFAIL',
  EREFUSED: 'the server refused the query (REFUSED)',
  ECONNREFUSED: 'the server could not be reached (connection refused)',
  ENOTIMP: 'the server does not implement this query (NOTIMP)',
  EFORMERR: 'the server could not parse the query (FORMERR)',
  EBADRESP: 'the answer was malformed',
  EBADFAMILY: 'unsupported address family',
  EBADNAME: 'not a valid DNS name',
  EBADQUERY: 'the query is malformed',
  ECONNRESET: 'the connection to the server was reset',
  ENOMEM: 'out of memory',
  EOF: 'the server closed the connection',
};
// Node's resolver takes a timeout as a 32-bit integer.
const MAX_TIMEOUT = 2 ** 31 - 1;

/** What one lookup found. */
export interface LookupResult {
  members: Member[];
  /** The lowest positive TTL among the address answers, in seconds. */
  ttl: number | undefined;
  /** SRV targets with no address record. */
  unresolved: string[];
}

/** Looks up a `dns` source's records; `cancel()` ends the queries under way. */
export interface DnsLookup {
  /** One cycle: each server in turn, from the one that answered last, until one answers (or `going()` turns false). */
  lookup(going: () => boolean): Promise<LookupResult>;
  /** Cancels every query under way. */
  cancel(): void;
}

/**
 * Prepares the lookups of one source: one resolver per server (`servers` as `validateDnsOptions` returns
 * them, or undefined for the system's). Members, for SRV: one per distinct target and port, named
 * `target:port`, `port` from the record, tags `target`, `priority` and `weight` (as strings), and
 * `ipv4`/`ipv6` with the target's address of each family when it has one; for A and AAAA: one member per
 * address, named by the address, with the `port` option and the tag `target`.
 */
export function createDnsLookup(name: string, options: DnsSourceOptions, configured: { server: string; label: string }[] | undefined): DnsLookup {
  const record = options.record;
  const query = options.name;
  const newResolver = (): Resolver => new Resolver({ timeout: Math.min(Math.ceil(options.timeout), MAX_TIMEOUT), tries: 1 });
  // One resolver per server: Node's resolver moves on to the next server only after about twice its
  // timeout and in an order of its own; asking each server separately keeps both the timeout and the order.
  const upstreams: Upstream[] = (configured ?? newResolver().getServers().map((server) => ({ server, label: `${server} (system resolver)` }))).map(
    ({ server, label }) => {
      const resolver = newResolver();
      resolver.setServers([server]);
      return { label, server, resolver, lanes: [] };
    },
  );
  /** The resolvers that ask `upstream` for SRV targets' addresses, one query at a time each: made on first use. */
  const lanesOf = (upstream: Upstream): Resolver[] => {
    while (upstream.lanes.length < TARGET_QUERY_CONCURRENCY) {
      const lane = newResolver();
      lane.setServers([upstream.server]);
      upstream.lanes.push(lane);
    }
    return upstream.lanes;
  };

  /** The server that answered last: the next cycle starts with it. */
  let preferred = 0;

  /** One full lookup on one server: the raw members, the lowest positive TTL seen, and SRV targets without an address. */
  async function lookupVia(upstream: Upstream): Promise<LookupResult> {
    const { resolver } = upstream;
    /** Runs `work` with a deadline of `timeout` ms, after which every query under way on `on` is cancelled. */
    const step = async <T>(work: () => Promise<T>, on: Resolver = resolver): Promise<T> => {
      let expired = false;
      const deadline = setTimeout(() => {
        expired = true;
        on.cancel();
      }, options.timeout);
      try {
        return await work();
      } catch (err) {
        if (expired && err instanceof LookupFailure && err.code === 'ECANCELLED') throw err.withCode('ETIMEOUT');
        throw err;
      } finally {
        clearTimeout(deadline);
      }
    };
    /** One query; "no records" answers become an empty list, other failures a `LookupFailure`. */
    const ask = async <T>(type: RecordType, host: string, about: string, run: () => Promise<T[]>): Promise<T[]> => {
      try {
        return await run();
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? 'UNKNOWN';
        if (NO_RECORDS.has(code)) return [];
        throw new LookupFailure(type, host, about, code, err);
      }
    };
    const addresses4 = (host: string, about = '', on = resolver) => ask('A', host, about, () => on.resolve4(host, { ttl: true }));
    const addresses6 = (host: string, about = '', on = resolver) => ask('AAAA', host, about, () => on.resolve6(host, { ttl: true }));

    /**
     * The A and AAAA answers of every target, `TARGET_QUERY_CONCURRENCY` queries at a time, each with its own
     * deadline and tries. A partial answer must not shrink the roster: one query that fails for good fails the
     * whole cycle; the queries under way are then cancelled and awaited, so none is left running after it.
     */
    const addressesOfTargets = async (targets: readonly string[], about: string): Promise<[Answer, Answer][]> => {
      const found = targets.map((): [Answer, Answer] => [[], []]);
      const queries = targets.flatMap((_, i) => [0, 1].map((family) => ({ i, family })));
      const lanes = lanesOf(upstream).slice(0, queries.length);
      let next = 0;
      let failure: { error: unknown } | undefined;
      const askUntilAnswered = async (lane: Resolver, host: string, family: number): Promise<Answer> => {
        for (let tries = 1; ; tries++) {
          try {
            return await step(() => (family === 0 ? addresses4(host, about, lane) : addresses6(host, about, lane)), lane);
          } catch (err) {
            if (tries < TARGET_QUERY_TRIES && err instanceof LookupFailure && err.code === 'ETIMEOUT' && !failure) continue;
            throw err;
          }
        }
      };
      await Promise.all(
        lanes.map(async (lane) => {
          while (!failure && next < queries.length) {
            const { i, family } = queries[next++]!;
            try {
              found[i]![family] = await askUntilAnswered(lane, targets[i]!, family);
            } catch (error) {
              // The first failure is the one to report; the cancelled queries it causes are not.
              failure ??= { error };
              for (const other of lanes) if (other !== lane) other.cancel();
            }
          }
        }),
      );
      if (failure) throw failure.error;
      return found;
    };

    if (record !== 'SRV') {
      const answers = await step(() => (record === 'A' ? addresses4(query) : addresses6(query)));
      const target = hostName(query);
      const members = distinctAddresses(answers).map((address) => makeMember({ name: address, address, port: options.port, tags: { target } }));
      return { members, ttl: lowestTtl(answers), unresolved: [] };
    }

    const records = dedupeSrv(await step(() => ask('SRV', query, '', () => resolver.resolveSrv(query))));
    const targets = [...new Set(records.map((r) => r.target).filter((t) => isIP(t) === 0))];
    const found = await addressesOfTargets(targets, ` (a target of ${query})`);
    const byTarget = new Map<string, { v4: string[]; v6: string[] }>();
    const answered: Answer = [];
    targets.forEach((target, i) => {
      const [a = [], aaaa = []] = found[i]!;
      answered.push(...a, ...aaaa);
      byTarget.set(target, { v4: distinctAddresses(a), v6: distinctAddresses(aaaa) });
    });

    const members: Member[] = [];
    const unresolved = new Set<string>();
    for (const r of records) {
      // A target written as an IP address (not valid per RFC 2782, but seen) is its own address.
      const family = isIP(r.target);
      const known = byTarget.get(r.target);
      const ipv4 = family === 4 ? r.target : known?.v4[0];
      const ipv6 = family === 6 ? r.target : known?.v6[0];
      const address = ipv4 ?? ipv6;
      if (address === undefined) {
        unresolved.add(r.target);
        continue;
      }
      const tags: Record<string, string> = { target: r.target, priority: String(r.priority), weight: String(r.weight) };
      if (ipv4 !== undefined) tags.ipv4 = ipv4;
      if (ipv6 !== undefined) tags.ipv6 = ipv6;
      members.push(makeMember({ name: `${r.target}:${r.port}`, address, port: r.port, tags }));
    }
    return { members, ttl: lowestTtl(answered), unresolved: [...unresolved].sort() };
  }

  /** One cycle: each server in turn, from the preferred one, until one answers. */
  async function lookup(going: () => boolean): Promise<LookupResult> {
    if (upstreams.length === 0) throw new NoServer();
    const failed: { index: number; error: unknown }[] = [];
    for (let k = 0; k < upstreams.length && going(); k++) {
      const index = (preferred + k) % upstreams.length;
      try {
        const result = await lookupVia(upstreams[index]!);
        preferred = index;
        return result;
      } catch (error) {
        failed.push({ index, error });
      }
    }
    // In the configured order, so that the same outage always reads the same.
    failed.sort((a, b) => a.index - b.index);
    throw new AllFailed(failed.map(({ index, error }) => ({ server: upstreams[index]!.label, error })));
  }

  function makeMember(fields: { name: string; address: string; port: number | undefined; tags: Record<string, string> }): Member {
    const member: Member = { name: fields.name, address: fields.address, tags: fields.tags, status: 'alive', source: name };
    if (fields.port !== undefined) member.port = fields.port;
    return member;
  }

  return {
    lookup,
    cancel() {
      for (const { resolver, lanes } of upstreams) for (const r of [resolver, ...lanes]) r.cancel();
    },
  };
}

// --- internal ---

type RecordType = 'SRV' | 'A' | 'AAAA';
type Answer = { address: string; ttl: number }[];
/** One server to ask: how messages name it, and resolvers that ask only it. */
interface Upstream {
  label: string;
  /** As `Resolver.setServers` takes it. */
  server: string;
  resolver: Resolver;
  /** For SRV targets' address queries, see `lanesOf`. */
  lanes: Resolver[];
}

/** A query that failed for a reason other than "no such records". */
class LookupFailure extends Error {
  constructor(
    readonly record: RecordType,
    readonly host: string,
    /** Extra words after the host, e.g. " (a target of _http._tcp.example.com)". */
    readonly about: string,
    readonly code: string,
    cause?: unknown,
  ) {
    super(`${record} ${host}: ${code}`, { cause });
  }

  withCode(code: string): LookupFailure {
    return new LookupFailure(this.record, this.host, this.about, code, this.cause);
  }
}

/** Every server failed (or was not asked because the source stopped). */
class AllFailed extends Error {
  constructor(readonly failures: { server: string; error: unknown }[]) {
    super('no DNS server answered');
  }
}

/** No server to ask: none configured and none in the system's configuration. */
class NoServer extends Error {}

/** SRV records by target and port: one record per pair (the lowest priority, then the highest weight), targets lower-cased. */
function dedupeSrv(records: { name: string; port: number; priority: number; weight: number }[]): { target: string; port: number; priority: number; weight: number }[] {
  const best = new Map<string, { target: string; port: number; priority: number; weight: number }>();
  for (const r of records) {
    const target = hostName(r.name);
    // "." as the only target means "no service here" (RFC 2782).
    if (target === '') continue;
    const key = `${target}:${r.port}`;
    const previous = best.get(key);
    if (!previous || r.priority < previous.priority || (r.priority === previous.priority && r.weight > previous.weight)) {
      best.set(key, { target, port: r.port, priority: r.priority, weight: r.weight });
    }
  }
  return [...best.values()].sort((a, b) => (a.target < b.target ? -1 : a.target > b.target ? 1 : a.port - b.port));
}

/** DNS names compare without case and without the root's trailing dot. */
function hostName(value: string): string {
  return value.toLowerCase().replace(/\.$/, '');
}

/** The distinct addresses of an answer, in numeric order. */
function distinctAddresses(answers: readonly { address: string }[]): string[] {
  return [...new Set(answers.map((a) => a.address))].sort(compareAddresses);
}

function lowestTtl(answers: readonly { ttl: number }[]): number | undefined {
  let lowest: number | undefined;
  for (const { ttl } of answers) if (ttl > 0 && (lowest === undefined || ttl < lowest)) lowest = ttl;
  return lowest;
}

/** Numeric order of addresses (IPv4 before IPv6), so "the lowest address" does not depend on text order. */
function compareAddresses(a: string, b: string): number {
  const x = addressBytes(a);
  const y = addressBytes(b);
  if (x.length !== y.length) return x.length - y.length;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return 0;
}

function addressBytes(address: string): number[] {
  if (isIP(address) === 4) return address.split('.').map(Number);
  // Expand "::" into the missing zero groups; an embedded IPv4 tail counts as two groups.
  let text = address;
  const v4Tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4Tail) {
    const [p, q, r, s] = v4Tail[1]!.split('.').map(Number);
    text = `${text.slice(0, -v4Tail[1]!.length)}${((p! << 8) | q!).toString(16)}:${((r! << 8) | s!).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return groups.flatMap((g) => {
    const value = Number.parseInt(g, 16);
    return [value >> 8, value & 0xff];
  });
}

/** The error a failed lookup is reported as, naming each server and why it failed. */
export function toSourceError(sourceName: string, record: RecordType, query: string, err: unknown, timeout: number): SourceError {
  if (err instanceof NoServer) {
    return new SourceError(sourceName, `${record} lookup of ${query}: no DNS server to ask (give \`servers\`, or fix the system's resolver configuration)`);
  }
  if (!(err instanceof AllFailed)) {
    return new SourceError(sourceName, `${record} lookup of ${query} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const parts = err.failures.map(({ server, error }) => {
    if (!(error instanceof LookupFailure)) return `${record} lookup of ${query} via ${server} failed: ${error instanceof Error ? error.message : String(error)}`;
    const reason = error.code === 'ETIMEOUT' ? `no answer within ${timeout} ms` : (REASONS[error.code] ?? 'lookup failed');
    return `${error.record} lookup of ${error.host}${error.about} via ${server} failed: ${reason} (${error.code})`;
  });
  // A malformed name will not become valid by waiting.
  const retryable = err.failures.some(({ error }) => !(error instanceof LookupFailure) || error.code !== 'EBADNAME');
  const first = err.failures[0]?.error;
  return new SourceError(sourceName, parts.join('; '), { cause: err.failures.length === 1 ? first : err, retryable });
}
