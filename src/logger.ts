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
  if (!isTty(destination)) {
    // The same text without colours, mostly without pino-pretty (see textFormatter): a CI step's `render --once`.
    const formatLine = textFormatter();
    const out = typeof destination === 'number' ? pino.destination({ fd: destination, sync: true }) : destination;
    return pino(base, { write: (line: string) => void out.write(formatLine(line)) });
  }
  // Required only for text on a terminal: a JSON log (a service's, a node's `announce`) starts without it.
  const pretty = require('pino-pretty') as typeof import('pino-pretty');
  const stream = pretty({ ...PRETTY_OPTIONS, sync: true, colorize: true, destination: typeof destination === 'number' ? destination : (destination as NodeJS.WritableStream) });
  return pino(base, stream);
}

/** A logger that drops everything, for library use without a logger. */
export function silentLogger(): Logger {
  return loadPino()({ level: 'silent' });
}

const require = createRequire(import.meta.url);

/**
 * pino, required when the first logger is made: importing rosterd loads no logger. Through `vendor/pino.cjs`,
 * which the build makes a bundle of pino.
 */
function loadPino(): typeof import('pino').pino {
  return (require('./vendor/pino.cjs') as typeof import('pino')).pino;
}

function isTty(destination: number | NodeJS.WritableStream): boolean {
  if (destination === 2) return process.stderr.isTTY === true;
  if (destination === 1) return process.stdout.isTTY === true;
  return (destination as { isTTY?: boolean }).isTTY === true;
}

// --- the text format ---

/*
 * The text log format off a terminal: the lines pino-pretty writes with rosterd's options (`[12:00:00.000]
 * INFO: message {"key":"value"}`), written without loading it. pino-pretty and what it needs took about
 * 20 ms of every `rosterd validate` and `render --once`, which log a line or two. A line the formatter does
 * not write itself (an error object, a key pino-pretty prints its own way, anything unusual) is handed to
 * pino-pretty, loaded then, so that every line reads exactly as pino-pretty writes it (test/logger.test.ts
 * compares the two).
 */

/** pino-pretty's options for rosterd's text log; the terminal's adds colours. Internal. */
export const PRETTY_OPTIONS = { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', singleLine: true } as const;

const LEVELS: Readonly<Record<number, string>> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
/** Keys pino-pretty prints its own way (metadata, errors, its time key) or drops (`ignore`). */
const OWN_WAY = ['name', 'caller', 'pid', 'hostname', 'timestamp', 'err', 'error'];
/** What pino-pretty removes from the message and the time. */
// oxlint-disable-next-line no-control-regex
const UNSAFE_CONTROL = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F]/g;

/** Formats one line of pino's JSON output as text, as pino-pretty (no colours) would. Internal. */
export function textFormatter(): (line: string) => string {
  let pretty: ((line: string) => string) | undefined;
  const byPinoPretty = (line: string): string => {
    pretty ??= (require('pino-pretty') as typeof import('pino-pretty')).prettyFactory({ ...PRETTY_OPTIONS, colorize: false });
    return pretty(line);
  };
  return (line) => {
    // pino-pretty's JSON parser removes `__proto__` keys and refuses `constructor`: those lines are its own.
    if (line.includes('"__proto__"') || line.includes('"constructor"')) return byPinoPretty(line);
    let log: Record<string, unknown>;
    try {
      log = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return byPinoPretty(line);
    }
    if (typeof log !== 'object' || log === null || Array.isArray(log)) return byPinoPretty(line);
    const level = typeof log.level === 'number' ? LEVELS[log.level] : undefined;
    const time = typeof log.time === 'string' ? new Date(log.time) : undefined;
    if (level === undefined || time === undefined || Number.isNaN(time.getTime())) return byPinoPretty(line);
    if (OWN_WAY.some((key) => key in log) || log.type === 'Error' || ('msg' in log && typeof log.msg !== 'string')) return byPinoPretty(line);

    const { level: _level, time: _time, msg, ...rest } = log;
    let text = `[${clock(time)}] ${level}:`;
    if (typeof msg === 'string') text += ` ${msg.replace(UNSAFE_CONTROL, '')}`;
    // As pino-pretty: one JSON object, with escaped backslashes shown single.
    return Object.keys(rest).length > 0 ? `${text} ${`${JSON.stringify(rest)}\n`.replace(/\\\\/g, '\\')}` : `${text}\n`;
  };
}

/** `HH:MM:ss.l` in local time. */
function clock(time: Date): string {
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${two(time.getHours())}:${two(time.getMinutes())}:${two(time.getSeconds())}.${String(time.getMilliseconds()).padStart(3, '0')}`;
}
