import { Writable } from 'node:stream';
import { prettyFactory } from 'pino-pretty';
import { describe, expect, it } from 'vitest';
import { createLogger, PRETTY_OPTIONS, textFormatter, type Logger } from '../src/logger.js';

/** Every line a logger writes, as written. */
function recorder(format: 'json' | 'text'): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({ write: (chunk, _encoding, done) => (lines.push(String(chunk)), done()) });
  return { logger: createLogger({ level: 'trace', format, destination: stream }), lines };
}

/** A spread of what rosterd and its users log, the unusual included. */
function logAll(logger: Logger): void {
  const hostile = Object.defineProperty({ ok: 1 }, '__proto__', { value: { polluted: true }, enumerable: true });
  logger.info('plain');
  logger.info({ source: 'web', members: 4 }, 'first snapshot');
  logger.warn({ member: 'bad\nname', nested: { a: [1, 2, null], b: true } }, 'dropped: name contains a control character');
  logger.debug({ path: 'C:\\dir\\file', quote: 'say "hi"', tab: 'a\tb', bell: 'a\u0007b', sep: 'x\u2028y' }, 'back\\slash "quoted" \u001b[31m red \u0007 bell\nnext line');
  logger.error({ err: new Error('boom') }, 'failed');
  logger.error({ error: 'a string' }, 'error key');
  logger.fatal(new Error('direct'));
  logger.info({ name: 'web-1' }, 'a name key');
  logger.info({ pid: 7, hostname: 'h' }, 'ignored keys');
  logger.info({ msg2: 'no message' });
  logger.info({ authKey: 'secret', config: { sources: { web: { password: 'p' } } } }, 'redacted');
  logger.child({ template: 't' }).trace({ undefinedValue: undefined, n: 1e21, neg: -0.5 }, 'child');
  logger.info(hostile, 'a __proto__ key');
  logger.info({ constructor: { prototype: { x: 1 } } }, 'a constructor key');
  logger.info({ timestamp: 5, caller: 'x' }, 'metadata keys');
  logger.warn('ünïcødé ✓');
}

describe('the text log off a terminal', () => {
  it('is what pino-pretty writes, line for line', () => {
    const json = recorder('json');
    logAll(json.logger);
    const ours = textFormatter();
    const theirs = prettyFactory({ ...PRETTY_OPTIONS, colorize: false });
    expect(json.lines.length).toBe(16);
    for (const line of json.lines) expect(ours(line)).toBe(theirs(line));
  });

  it('is what createLogger writes to a stream that is no terminal', () => {
    const json = recorder('json');
    const text = recorder('text');
    json.logger.info({ source: 'web' }, 'first snapshot');
    text.logger.info({ source: 'web' }, 'first snapshot');
    // The two calls may fall in different milliseconds: compare the lines without their times.
    const untimed = (line: string): string => line.replace(/^\[\d\d:\d\d:\d\d\.\d{3}\] /, '');
    expect(text.lines.map(untimed)).toEqual([untimed(prettyFactory({ ...PRETTY_OPTIONS, colorize: false })(json.lines[0]!))]);
    expect(text.lines[0]).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: first snapshot \{"source":"web"\}\n$/);
  });
});
