import * as z from '../../vendor/zod.js';
import { acceptedBy, positiveDuration, type DurationInput } from '../../config/fields.js';
import { DEFAULT_ETCD_ENDPOINT, parseEtcdEndpoint, parseEtcdEndpoints } from '../../etcd/endpoints.js';
import { defineSourceDriver } from '../driver.js';
import { checkSourceName, invalidOption } from '../lifecycle.js';

/** Resolved options of an `etcd` source (defaults are filled in by the config schema, paths are absolute). */
export interface EtcdSourceOptions {
  type: 'etcd';
  /** Client endpoints: `host:port`, `http://host:port` or `https://host:port`. Requests fail over between them. */
  endpoints: string[];
  /** The key prefix; each key under it is a member. Usually ends with `/` (`/services/web/`). */
  prefix: string;
  /** etcd user name, and its password inline or in a file (read at each start). */
  auth?: { username: string; password?: string; passwordFile?: string };
  /** PEM files: `ca` verifies the servers (default: the system's roots), `cert` and `key` authenticate rosterd. */
  tls?: { ca?: string; cert?: string; key?: string };
  /** Milliseconds a read (and the confirmation of a new watch) may take. */
  requestTimeout: number;
}

/** What a config gets when it leaves an `etcd` option out. */
export const ETCD_DEFAULTS = { endpoints: [DEFAULT_ETCD_ENDPOINT] as string[], requestTimeout: 5000 } as const satisfies Partial<EtcdSourceOptions>;

/** An `etcd` source as a config writes it. */
export interface EtcdSourceConfig {
  type: 'etcd';
  /** Client endpoints, `host:port`, `http://host:port` or `https://host:port`, all of one scheme; requests fail over between them. @default ["http://127.0.0.1:2379"] */
  endpoints?: string[];
  /** The key prefix: every key under it is a member. A byte prefix: end it with `/` (`/services/web/`). */
  prefix: string;
  /** An etcd user, with exactly one of `password` and `passwordFile`. Default: none. */
  auth?: {
    /** The etcd user name. */
    username: string;
    /** The password, inline. Never logged. */
    password?: string;
    /** A file that holds the password (relative to the config file), read at each connection. */
    passwordFile?: string;
  };
  /** PEM files, relative to the config file. With `tls`, an endpoint without a scheme means `https://`. Default: none. */
  tls?: {
    /** The CA that verifies the servers. Default: the system's roots. */
    ca?: string;
    /** rosterd's client certificate; give `key` with it. */
    cert?: string;
    /** The client certificate's private key. */
    key?: string;
  };
  /** Time a read (and the confirmation of a new watch) may take. @default "5s" */
  requestTimeout?: DurationInput;
}

/** The `etcd` source: the keys under a prefix, read and then watched. Loads the etcd client on start. */
export default defineSourceDriver<EtcdSourceConfig>()({
  type: 'etcd',
  options: z
    .strictObject({
      type: z.literal('etcd'),
      /** Client endpoints, `host:port`, `http://host:port` or `https://host:port`; requests fail over between them. @default ["http://127.0.0.1:2379"] */
      endpoints: z._default(
        z
          .array(z.string().check(z.refine(acceptedBy(parseEtcdEndpoint), 'expected "host:port", "http://host:port" or "https://host:port"')))
          .check(z.minLength(1)),
        ETCD_DEFAULTS.endpoints,
      ),
      /** The key prefix: each key under it is a member (`/services/web/`). */
      prefix: z.string().check(z.minLength(1)),
      /** An etcd user, with its password inline or in a file (relative to the config file). Default: none. */
      auth: z.optional(
        z
          .strictObject({
            /** The etcd user name. */
            username: z.string().check(z.minLength(1)),
            /** The password, inline. Never logged. */
            password: z.optional(z.string()),
            /** A file that holds the password, read at each start. */
            passwordFile: z.optional(z.string().check(z.minLength(1))),
          })
          .check(z.refine((a) => (a.password === undefined) !== (a.passwordFile === undefined), 'give exactly one of "password" and "passwordFile"')),
      ),
      /** PEM files (relative to the config file): `ca` checks the servers (default: the system's roots), `cert` and `key` are rosterd's. */
      tls: z.optional(
        z
          .strictObject({
            /** The CA that verifies the servers. Default: the system's roots. */
            ca: z.optional(z.string().check(z.minLength(1))),
            /** rosterd's client certificate; give `key` with it. */
            cert: z.optional(z.string().check(z.minLength(1))),
            /** The client certificate's private key. */
            key: z.optional(z.string().check(z.minLength(1))),
          })
          .check(z.refine((t) => (t.cert === undefined) === (t.key === undefined), 'give "cert" and "key" together')),
      ),
      /** Time a read (and the confirmation of a new watch) may take. @default "5s" */
      requestTimeout: z._default(positiveDuration, ETCD_DEFAULTS.requestTimeout),
    })
    .check(
      z.superRefine((s, ctx) => {
        try {
          parseEtcdEndpoints(s.endpoints, s.tls !== undefined);
        } catch (err) {
          ctx.addIssue({ code: 'custom', message: (err as Error).message, path: ['endpoints'] });
        }
      }),
    ),
  defaults: ETCD_DEFAULTS,
  validate: (name: string, options: EtcdSourceOptions) => void validateEtcdOptions(name, options),
  load: async () => (await import('../etcd.js')).default,
});

/** Checks the options of an `etcd` source; returns the parsed endpoints. */
export function validateEtcdOptions(name: string, options: EtcdSourceOptions): string[] {
  const invalid = (option: string, message: string) => invalidOption(name, option, message);
  checkSourceName(name);
  if (typeof options.prefix !== 'string' || options.prefix === '') throw invalid('prefix', 'expected a non-empty key prefix such as "/services/web/"');
  let endpoints: string[];
  try {
    endpoints = parseEtcdEndpoints(Array.isArray(options.endpoints) ? options.endpoints : [], options.tls !== undefined).map((e) => e.url);
  } catch (err) {
    throw invalid('endpoints', (err as Error).message);
  }
  const auth = options.auth;
  if (auth !== undefined) {
    if (typeof auth.username !== 'string' || auth.username === '') throw invalid('auth.username', 'expected a non-empty string');
    if ((auth.password === undefined) === (auth.passwordFile === undefined)) throw invalid('auth', 'give exactly one of `password` and `passwordFile`');
  }
  if (options.tls !== undefined && (options.tls.cert === undefined) !== (options.tls.key === undefined)) {
    throw invalid('tls', 'give `cert` and `key` together (a client certificate needs its key)');
  }
  if (!(options.requestTimeout > 0 && Number.isFinite(options.requestTimeout))) {
    throw invalid('requestTimeout', `expected a positive number of milliseconds, got ${options.requestTimeout}`);
  }
  return endpoints;
}
