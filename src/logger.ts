import { createRequire } from 'node:module';
import type { Logger, LevelWithSilent } from 'pino';

export type { Logger } from 'pino';

export type LogFormat = 'text' | 'json';

export interface LoggerOptions {
  /** Defaults to `info`. */
  level?: LevelWithSilent;
  /** `text` is for people, `json` (one object per line) for machines. Defaults to text on a TTY, else json. */
  format?: LogFormat;
  /** File descriptor or stream to write to. Defaults to stderr: stdout carries only what was asked for. */
  destination?: number | NodeJS.WritableStream;
}

/**
 * Paths that must never reach a log line, should a source's options be logged: the Serf `authKey` and the
 * etcd `password` (at the top level of a log object, or up to three levels down).
 */
const SECRETS = ['authKey', 'password'];
const REDACT = SECRETS.flatMap((key) => [key, `*.${key}`, `*.*.${key}`, `*.*.*.${key}`, `config.sources.*.${key}`, `config.sources.*.*.${key}`]);

/** Creates the process logger. Components take `logger.child({ source })` or `logger.child({ template })`. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const pino = loadPino();
  const destination = options.destination ?? 2;
  const format = options.format ?? (isTty(destination) ? 'text' : 'json');
  const base = {
    level: options.level ?? 'info',
    base: undefined,
    redact: { paths: REDACT, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (format === 'json') {
    const stream = typeof destination === 'number' ? pino.destination({ fd: destination, sync: true }) : destination;
    return pino(base, stream);
  }
  // Required only for text: a JSON log (a service's, a node's `announce`) starts without it.
  const pretty = require('pino-pretty') as typeof import('pino-pretty');
  const stream = pretty({
    sync: true,
    colorize: isTty(destination),
    destination: typeof destination === 'number' ? destination : (destination as NodeJS.WritableStream),
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname',
    singleLine: true,
  });
  return pino(base, stream);
}

/** A logger that drops everything, for library use without a logger. */
export function silentLogger(): Logger {
  return loadPino()({ level: 'silent' });
}

const require = createRequire(import.meta.url);

/** pino, required when the first logger is made: importing rosterd loads no logger. */
function loadPino(): typeof import('pino').pino {
  return (require('pino') as typeof import('pino')).pino;
}

function isTty(destination: number | NodeJS.WritableStream): boolean {
  if (destination === 2) return process.stderr.isTTY === true;
  if (destination === 1) return process.stdout.isTTY === true;
  return (destination as { isTTY?: boolean }).isTTY === true;
}
