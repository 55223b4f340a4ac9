import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Etcd3, IOptions } from 'etcd3';

/**
 * The etcd client as rosterd uses it: the `etcd3` package (gRPC), loaded on first use only, so that
 * `rosterd --version` and configs without an etcd source never pay for it. Both the `etcd` source and
 * `rosterd announce` build their client here, so they fail over, time out and explain errors alike.
 */

/** How to reach etcd. Paths are absolute. */
export interface EtcdClientOptions {
  /** Parsed endpoints (`http://host:port` or `https://host:port`), see `parseEtcdEndpoints`. */
  endpoints: readonly string[];
  /** User name and password (or a file holding it). The password is never logged. */
  auth?: { username: string; password?: string; passwordFile?: string };
  /** PEM files: the CA that signed the servers' certificates, and a client certificate and key. */
  tls?: { ca?: string; cert?: string; key?: string };
  /** Milliseconds each request (and the confirmation of a watch) may take. */
  requestTimeout: number;
}

type EtcdModule = typeof import('etcd3');
type GrpcModule = typeof import('@grpc/grpc-js');
type CockatielModule = typeof import('cockatiel');
interface Modules {
  etcd: EtcdModule;
  grpc: GrpcModule;
  cockatiel: CockatielModule;
}

/** gRPC keepalive: a connection that stopped answering is noticed within about 15 s, even without traffic. */
const KEEPALIVE_TIME_MS = 10_000;
const KEEPALIVE_TIMEOUT_MS = 5_000;
/** gRPC's reconnect backoff otherwise grows to two minutes: an etcd that is back would be noticed late. */
const RECONNECT_BACKOFF = { initial: 250, max: 2_000 };
/**
 * Delay before the etcd3 watch manager re-opens a watch stream of its own. rosterd drops a watch that
 * lost its stream and reads afresh on its own schedule, so this only ends the manager's own timer soon.
 */
const WATCH_MANAGER_RETRY_MS = 50;
/**
 * An endpoint that failed 3 times in a row is skipped for this long (etcd3's default is 5 s). Callers back
 * off on their own; a long pause here would only delay noticing that etcd is back.
 */
const ENDPOINT_PAUSE_MS = 1000;

let loading: Promise<Modules> | undefined;
/** The etcd3 module once loaded: its error classes tell failures apart. */
let loaded: EtcdModule | undefined;

/** Loads the etcd3, gRPC and cockatiel (etcd3's fault handling) modules once (about 160 ms and 25 MiB). */
function loadEtcd(): Promise<Modules> {
  loading ??= Promise.all([import('etcd3'), import('@grpc/grpc-js'), import('cockatiel')]).then(([etcd, grpc, cockatiel]) => {
    loaded = etcd;
    return { etcd, grpc, cockatiel };
  });
  return loading;
}

/** A problem with the client's own files (TLS, password): waiting will not fix it. */
export class EtcdSetupError extends Error {}

/**
 * Creates a client. Reads the TLS and password files now (so a rotated password is picked up by the next
 * client). Every call carries etcd's "require leader" flag: a member cut off from its cluster refuses
 * requests and ends watch streams at once ("no leader") instead of serving a stale view or going silent.
 */
export async function createEtcdClient(options: EtcdClientOptions): Promise<Etcd3> {
  const [{ etcd, grpc, cockatiel }, files] = await Promise.all([loadEtcd(), readClientFiles(options)]);
  const requireLeader: import('@grpc/grpc-js').Interceptor = (callOptions, nextCall) =>
    new grpc.InterceptingCall(nextCall(callOptions), {
      start(metadata, listener, next) {
        metadata.set('hasleader', 'true');
        next(metadata, listener);
      },
    });
  const config: IOptions = {
    hosts: [...options.endpoints],
    // Streams (watch, lease keepalive) live long: only single requests get a deadline.
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + options.requestTimeout }),
    grpcOptions: {
      'grpc.keepalive_time_ms': KEEPALIVE_TIME_MS,
      'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS,
      'grpc.initial_reconnect_backoff_ms': RECONNECT_BACKOFF.initial,
      'grpc.max_reconnect_backoff_ms': RECONNECT_BACKOFF.max,
      // A large prefix is one range reply: no 4 MiB cap on it.
      'grpc.max_receive_message_length': -1,
      // Not shared with other clients in the process: each source recovers on its own.
      'grpc.use_local_subchannel_pool': 1,
      // The generated gRPC clients take interceptors among their options (not typed as a channel option).
      ...({ interceptors: [requireLeader] } as object),
    },
    faultHandling: {
      host: () => cockatiel.circuitBreaker(cockatiel.handleWhen(etcd.isRecoverableError), { halfOpenAfter: ENDPOINT_PAUSE_MS, breaker: new cockatiel.ConsecutiveBreaker(3) }),
      // Typed as a backoff, used as a factory (its next() is called first): a constant backoff is both.
      watchBackoff: new cockatiel.ConstantBackoff(WATCH_MANAGER_RETRY_MS).next(),
    },
  };
  if (files.password !== undefined) config.auth = { username: options.auth!.username, password: files.password };
  if (files.ca !== undefined || files.cert !== undefined) {
    // Without a CA file, the system's roots verify the servers (null is what gRPC takes for that).
    config.credentials = { rootCertificate: files.ca as Buffer, privateKey: files.key, certChain: files.cert };
  }
  return new etcd.Etcd3(config);
}

/** Why a request failed, in words for a log line, and whether trying again may help. */
export interface EtcdFailure {
  reason: string;
  retryable: boolean;
  /** True when the member answered that it has no leader (the cluster lost its quorum, or this member is cut off). */
  noLeader: boolean;
  /** True when the client did not even try: every endpoint is paused after failing in a row, for failures already seen. */
  endpointsPaused?: true;
}

/** Explains an error from the etcd client (or from `createEtcdClient`). */
export function describeEtcdError(err: unknown, options: Pick<EtcdClientOptions, 'requestTimeout' | 'auth' | 'tls'>): EtcdFailure {
  const message = err instanceof Error ? err.message : String(err);
  const etcd = loaded;
  if (err instanceof EtcdSetupError || etcd === undefined) return { reason: message, retryable: !(err instanceof EtcdSetupError), noLeader: false };
  const user = options.auth === undefined ? '' : ` (user ${JSON.stringify(options.auth.username)})`;
  if (err instanceof etcd.EtcdAuthenticationFailedError) return { reason: `etcd refused the user name or password${user}`, retryable: false, noLeader: false };
  if (err instanceof etcd.EtcdPermissionDeniedError) return { reason: `etcd denied access: permission denied${user}`, retryable: false, noLeader: false };
  if (/etcdserver: (?:user name is empty|authentication is not enabled)/.test(message)) return { reason: `etcd: ${message.replace(/^.*etcdserver: /, '')}`, retryable: false, noLeader: false };
  if (/no leader/.test(message)) return { reason: 'etcd has no leader (too few members are up for a quorum, or this member is cut off)', retryable: true, noLeader: true };
  if (err instanceof etcd.GRPCDeadlineExceededError) return { reason: `etcd did not answer within ${options.requestTimeout} ms`, retryable: true, noLeader: false };
  if ((err as { isBrokenCircuitError?: unknown }).isBrokenCircuitError === true) return { reason: 'no etcd endpoint answered (each failed several times in a row; trying again)', retryable: true, noLeader: false, endpointsPaused: true };
  const cause = connectionCause(message);
  // A refused certificate is a setup to fix: not retried soon, and the next client reads the TLS files again.
  const tls = describeTlsFailure(cause, options.tls);
  if (tls !== undefined) return { reason: tls, retryable: false, noLeader: false };
  return { reason: `etcd unreachable: ${cause}`, retryable: true, noLeader: false };
}

// --- internal ---

/** Reads the password and TLS files; a file that cannot be read, or is not what it should be, is named now. */
async function readClientFiles(options: EtcdClientOptions): Promise<{ password?: string; ca?: Buffer; cert?: Buffer; key?: Buffer }> {
  const certificate = { is: 'a PEM certificate', parse: (pem: Buffer) => new X509Certificate(pem) };
  const privateKey = { is: 'a PEM private key (without a passphrase)', parse: (pem: Buffer) => createPrivateKey(pem) };
  const read = async (what: string, path: string | undefined, expected?: typeof certificate | typeof privateKey): Promise<Buffer | undefined> => {
    if (path === undefined) return undefined;
    let contents: Buffer;
    try {
      contents = await readFile(path);
    } catch (err) {
      throw new EtcdSetupError(`cannot read the ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    try {
      expected?.parse(contents);
    } catch {
      throw new EtcdSetupError(`the ${what} ${path} is not ${expected!.is}`);
    }
    return contents;
  };
  const [passwordFile, ca, cert, key] = await Promise.all([
    read('password file', options.auth?.passwordFile),
    read('CA file', options.tls?.ca, certificate),
    read('client certificate', options.tls?.cert, certificate),
    read('client key', options.tls?.key, privateKey),
  ]);
  // Otherwise the handshake fails later, and it would look as if etcd refused the certificate.
  if (cert !== undefined && key !== undefined && !new X509Certificate(cert).checkPrivateKey(createPrivateKey(key))) {
    throw new EtcdSetupError(`the client key ${options.tls!.key} is not the key of the client certificate ${options.tls!.cert}`);
  }
  // A password file usually ends with a newline that is not part of the password.
  const password = options.auth?.password ?? passwordFile?.toString('utf8').replace(/\r?\n$/, '');
  return { password, ca, cert, key };
}

/**
 * The cause in gRPC's connection error ("14 UNAVAILABLE: No connection established. Last error: Error:
 * connect ECONNREFUSED …. Resolution note: "), without the time gRPC stamps on some causes: the same
 * failure again must read the same, or it would be reported again at every retry.
 */
function connectionCause(message: string): string {
  const withoutCode = message.replace(/^\d+ [A-Z_]+: /, '');
  const last = /^No connection established\. Last error: ([\s\S]*?)\. Resolution note: [\s\S]*$/.exec(withoutCode)?.[1];
  if (last === undefined) return withoutCode;
  return last
    .replace(/\s*\(\d{4}-\d\d-\d\dT[\d:.]+Z\)$/, '')
    .replace(/^Error(?: \[[A-Z_]+\])?: /, '')
    .trim();
}

/** Why a TLS handshake failed, in words, or undefined when `cause` is not a TLS failure. */
function describeTlsFailure(cause: string, tls: EtcdClientOptions['tls']): string | undefined {
  // OpenSSL's "…:SSL routines:ssl3_read_bytes:sslv3 alert bad certificate:…:SSL alert number 42": the server's alert.
  const alert = /(?:sslv3|tlsv1\d?) alert ([a-z ]+)/.exec(cause)?.[1];
  if (alert !== undefined) {
    if (!/certificate|unknown ca/.test(alert)) return `etcd refused the TLS handshake (${alert})`;
    const certificate = tls?.cert === undefined ? 'no client certificate was given' : `it did not accept the client certificate ${tls.cert}`;
    return `etcd refused the TLS handshake (${alert}): ${certificate}`;
  }
  // Node's verification errors: "unable to verify the first certificate", "certificate has expired", "Hostname/IP does not match …".
  if (!/certificate|Hostname\/IP does not match/i.test(cause)) return undefined;
  const checked = tls?.ca === undefined ? "no CA file is given, so the system's root CAs checked it" : `checked against the CA file ${tls.ca}`;
  return `etcd's TLS certificate is not accepted (${cause}): ${checked}`;
}
