import { createConnection } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { HaproxyError } from './errors.js';

/**
 * A client for HAProxy's master CLI (`-S <unix socket>`), one command per connection, as
 * `echo '<command>' | socat <socket> -` does it.
 *
 * The master closes its CLI socket while it re-executes itself for a reload (~0.3 s for a small config,
 * more for a big one), so refused, missing and reset connections are retried until a deadline.
 */

/** Errno codes that mean "the master is re-executing, try again shortly". */
const TRANSIENT = new Set(['ECONNREFUSED', 'ENOENT', 'ECONNRESET', 'EPIPE', 'EAGAIN']);

/** Options of {@link masterCliCommand}. */
export interface MasterCliOptions {
  /** Deadline for the whole call, retries included, in ms. Default 5,000. */
  timeout?: number;
  /** Pause between two attempts, in ms. Default 10 (a refused connect on a unix socket costs microseconds). */
  retryDelay?: number;
  /**
   * Retry when the connection failed *after* the command was sent. Fine for read-only commands such as
   * `show proc` (the default, true); set it to false for `reload`, which must not run twice.
   */
  retryAfterSend?: boolean;
  /**
   * Retry an empty reply too. A master that re-executes for a reload may close a connection it had accepted
   * without answering: for `show proc` that is the same transient as a refused connection. Not for `reload`,
   * whose success is an empty reply. Default false.
   */
  retryEmpty?: boolean;
  /** Called before each retry, with the error that caused it (for logs and tests). */
  onRetry?: (error: MasterCliError, attempt: number) => void;
}

/** A master CLI exchange failed for good (deadline passed, or an error that retrying cannot fix). `code` is always `E_HAPROXY`. */
export class MasterCliError extends HaproxyError {
  /** The socket path. */
  readonly socket: string;
  /** The command that was sent (or tried). */
  readonly command: string;
  /** Errno-style code: `ECONNREFUSED`, `ENOENT`, `ETIMEDOUT`, ... */
  readonly errno: string | undefined;
  /** True when the connection was up and the command written: the master may have acted on it. */
  readonly sent: boolean;
  /** Number of connection attempts made. */
  readonly attempts: number;

  constructor(
    socket: string,
    command: string,
    message: string,
    details: { errno?: string | undefined; sent: boolean; attempts: number; cause?: unknown },
  ) {
    super(`master CLI ${socket}: "${command}": ${message}`, { cause: details.cause });
    this.socket = socket;
    this.command = command;
    this.errno = details.errno;
    this.sent = details.sent;
    this.attempts = details.attempts;
  }
}

/**
 * Sends one command to the master CLI and returns the whole reply (possibly empty: 2.6 answers `reload`
 * with nothing).
 *
 * The command is written with a trailing newline and the write side is then half-closed; the reply is
 * read until the master closes the connection.
 *
 * @throws MasterCliError (`E_HAPROXY`) once the deadline has passed or on a non-transient error.
 * @throws RangeError when `command` contains a line break (it would smuggle a second command in).
 */
export async function masterCliCommand(
  socketPath: string,
  command: string,
  options: MasterCliOptions = {},
): Promise<string> {
  if (/[\r\n]/.test(command)) throw new RangeError('a master CLI command must be a single line');
  const timeout = options.timeout ?? 5_000;
  const retryDelay = options.retryDelay ?? 10;
  const retryAfterSend = options.retryAfterSend ?? true;
  const deadline = Date.now() + timeout;
  for (let attempt = 1; ; attempt++) {
    const outcome = await exchange(socketPath, command, Math.max(1, deadline - Date.now()));
    if (outcome.ok) {
      const again = options.retryEmpty === true && outcome.reply.trim() === '' && Date.now() + retryDelay < deadline;
      if (!again) return outcome.reply;
      await delay(retryDelay);
      continue;
    }
    const { errno, sent } = outcome;
    const error = new MasterCliError(socketPath, command, describeFailure(outcome, timeout, attempt), {
      errno,
      sent,
      attempts: attempt,
      cause: outcome.cause,
    });
    const retryable = errno !== undefined && TRANSIENT.has(errno) && (!sent || retryAfterSend);
    if (!retryable || Date.now() + retryDelay >= deadline) throw error;
    options.onRetry?.(error, attempt);
    await delay(retryDelay);
  }
}

type Outcome =
  | { ok: true; reply: string }
  | { ok: false; errno: string | undefined; sent: boolean; cause: unknown; message: string };

/** One connection: connect, write + half-close, read to the end. Never rejects. */
function exchange(socketPath: string, command: string, timeout: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let sent = false;
    let settled = false;
    const socket = createConnection({ path: socketPath });
    const finish = (outcome: Outcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    };
    const timer = setTimeout(() => {
      finish({ ok: false, errno: 'ETIMEDOUT', sent, cause: undefined, message: `no complete reply within ${timeout} ms` });
    }, timeout);
    socket.on('connect', () => {
      sent = true;
      // Half-close as socat does: without the FIN, the master may keep waiting for more input.
      socket.end(`${command}\n`);
    });
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => finish({ ok: true, reply: Buffer.concat(chunks).toString('utf8') }));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      finish({ ok: false, errno: err.code, sent, cause: err, message: err.message });
    });
    socket.on('close', () => {
      // 'close' without 'end' or 'error' should not happen; settle anyway rather than hang.
      finish({ ok: false, errno: 'ECONNRESET', sent, cause: undefined, message: 'connection closed without a reply' });
    });
  });
}

function describeFailure(outcome: Extract<Outcome, { ok: false }>, timeout: number, attempts: number): string {
  const tries = attempts === 1 ? '1 attempt' : `${attempts} attempts`;
  return `${outcome.message} (${tries} within ${timeout} ms)`;
}
