import { resolve } from 'node:path';
import { startAnnouncer, type AnnounceOptions } from '../../etcd/announce.js';
import { parseEtcdEndpoints } from '../../etcd/endpoints.js';
import { sanitizeMembers } from '../../sources/snapshot.js';
import type { CommandAction } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { PASSWORD_ENV, usageError } from '../options.js';

interface AnnounceFlags {
  endpoints: string;
  prefix: string;
  name: string;
  address: string;
  port?: string;
  tag: string[];
  ttl: number;
  user?: string;
  password?: string;
  passwordFile?: string;
  cacert?: string;
  cert?: string;
  key?: string;
  requestTimeout: number;
}

/**
 * `rosterd announce`: registers this node in etcd under a lease and keeps it alive until SIGTERM or SIGINT,
 * which revoke the lease (the node leaves at once) and exit 0. What it announces is checked with the rules
 * rosterd applies to every member, so a node cannot announce something rosterd would drop.
 */
export const action: CommandAction<AnnounceFlags> = async (flags, ctx) => {
  const { io } = ctx;
  const options = announceOptions(flags, ctx.cwd);
  let registered = false;
  let finish!: (code: number) => void;
  const done = new Promise<number>((resolveDone) => (finish = resolveDone));
  const announcement = startAnnouncer(options, ctx.logger, {
    onRegistered: () => (registered = true),
    // Refused credentials at the start are a mistake to fix, not an outage to wait out.
    onError: (failure) => {
      if (!registered && !failure.retryable) finish(ExitCode.SOURCE);
    },
  });
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (!stopping) {
      stopping = true;
      ctx.logger.info({ signal }, 'leaving: revoking the lease');
      finish(ExitCode.OK);
    } else if (signal === 'SIGINT') {
      ctx.logger.warn('second SIGINT: exiting without waiting for the revoke');
      forceExit(130);
    }
  };
  let forceExit!: (code: number) => void;
  const forced = new Promise<number>((resolveForced) => (forceExit = resolveForced));
  const handlers: [NodeJS.Signals, () => void][] = [
    ['SIGTERM', () => onSignal('SIGTERM')],
    ['SIGINT', () => onSignal('SIGINT')],
  ];
  if (io.handleSignals !== false) for (const [signal, handler] of handlers) process.on(signal, handler);
  try {
    const code = await done;
    stopping = true;
    return await Promise.race([announcement.stop().then(() => code), forced]);
  } finally {
    for (const [signal, handler] of handlers) process.off(signal, handler);
  }
};

/** Checks the flags and builds the announcer's options; throws a usage error naming the flag. */
function announceOptions(flags: AnnounceFlags, cwd: string): AnnounceOptions {
  const tls = flags.cacert !== undefined || flags.cert !== undefined || flags.key !== undefined;
  let endpoints: string[];
  try {
    endpoints = parseEtcdEndpoints(flags.endpoints.split(',').map((e) => e.trim()).filter((e) => e !== ''), tls).map((e) => e.url);
  } catch (err) {
    throw usageError(`--endpoints: ${(err as Error).message}`);
  }
  if ((flags.cert === undefined) !== (flags.key === undefined)) throw usageError('--cert and --key go together');
  if (flags.password !== undefined && flags.passwordFile !== undefined) throw usageError(`give the password once: --password-file, or $${PASSWORD_ENV} (or --password)`);
  const hasPassword = flags.password !== undefined || flags.passwordFile !== undefined;
  if (flags.user === undefined && hasPassword) throw usageError(`a password needs --user`);
  if (flags.user !== undefined && !hasPassword) throw usageError(`--user needs a password: set $${PASSWORD_ENV} or give --password-file`);

  if (!(flags.requestTimeout > 0)) throw usageError('--request-timeout: must be more than 0');
  const seconds = Math.ceil(flags.ttl / 1000);
  if (seconds < 1) throw usageError('--ttl: a lease lives at least 1s');
  let port: number | undefined;
  if (flags.port !== undefined) {
    port = /^\d{1,5}$/.test(flags.port) ? Number(flags.port) : Number.NaN;
    if (!(port >= 0 && port <= 65535)) throw usageError(`--port: ${JSON.stringify(flags.port)} is not a port from 0 to 65535`);
  }
  const tags: Record<string, string> = {};
  for (const tag of flags.tag) {
    const eq = tag.indexOf('=');
    if (eq <= 0) throw usageError(`--tag: expected key=value, got ${JSON.stringify(tag)}`);
    Object.defineProperty(tags, tag.slice(0, eq), { value: tag.slice(eq + 1), enumerable: true, writable: true, configurable: true });
  }
  const member = { name: flags.name, address: flags.address, tags, ...(port === undefined ? {} : { port }) };
  // The same rules as every snapshot: what rosterd would drop is refused here, before it is announced.
  const [dropped] = sanitizeMembers([member], 'announce').dropped;
  if (dropped !== undefined) throw usageError(`rosterd would drop this member: ${dropped.reason}`);
  if (flags.prefix === '') throw usageError('--prefix: give the key prefix the etcd source watches, e.g. /services/web/');

  const at = (path: string | undefined): string | undefined => (path === undefined ? undefined : resolve(cwd, path));
  return {
    endpoints,
    prefix: flags.prefix,
    member,
    ttl: seconds,
    requestTimeout: flags.requestTimeout,
    ...(flags.user === undefined ? {} : { auth: { username: flags.user, password: flags.password, passwordFile: at(flags.passwordFile) } }),
    ...(tls ? { tls: { ca: at(flags.cacert), cert: at(flags.cert), key: at(flags.key) } } : {}),
  };
}
