import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { RosterdError } from '../../src/errors.js';
import { parseShowProc, uptimeSeconds } from '../../src/haproxy/show-proc.js';

// Replies captured from HAProxy 2.6.12 (`echo 'show proc' | socat <master.sock> -`) in each state.
const fixture = (name: string): Promise<string> =>
  readFile(new URL(`./fixtures/show-proc-${name}.txt`, import.meta.url), 'utf8');

describe('parseShowProc', () => {
  it('reads the master and the worker of a fresh start', async () => {
    const state = parseShowProc(await fixture('started'));
    expect(state.master).toEqual({ pid: 5343, reloads: 0, failedReloads: 0, uptime: '0d00h00m01s', version: '2.6.12-1+deb12u4' });
    expect(state.workers).toEqual([{ pid: 5346, reloads: 0, uptime: '0d00h00m01s', version: '2.6.12-1+deb12u4' }]);
    expect(state.oldWorkers).toEqual([]);
    expect(state.programs).toEqual([]);
    expect(state.oldPrograms).toEqual([]);
  });

  it('separates the new worker from a draining old one after a reload', async () => {
    const state = parseShowProc(await fixture('reloaded-old-worker'));
    expect(state.master.reloads).toBe(1);
    expect(state.master.failedReloads).toBe(0);
    expect(state.workers.map((w) => [w.pid, w.reloads])).toEqual([[5358, 0]]);
    expect(state.oldWorkers.map((w) => [w.pid, w.reloads])).toEqual([[5346, 1]]);
  });

  it('reads the failed-reload count, which grows with each failure in a row', async () => {
    const once = parseShowProc(await fixture('failed'));
    expect(once.master).toMatchObject({ reloads: 2, failedReloads: 1 });
    // The worker is still the one from before the failed reload; its own counter moved.
    expect(once.workers.map((w) => [w.pid, w.reloads])).toEqual([[5358, 1]]);
    const twice = parseShowProc(await fixture('failed-twice'));
    expect(twice.master).toMatchObject({ reloads: 3, failedReloads: 2 });
    expect(twice.workers.map((w) => w.pid)).toEqual([5358]);
    expect(twice.oldWorkers.map((w) => [w.pid, w.reloads])).toEqual([[5346, 3]]);
  });

  it('reads programs and old programs, and a reload count wider than its column', async () => {
    const state = parseShowProc(await fixture('programs'));
    expect(state.master).toMatchObject({ pid: 5343, reloads: 10, failedReloads: 0 });
    expect(state.workers.map((w) => w.pid)).toEqual([5438]);
    expect(state.programs).toEqual([{ name: 'stubborn', pid: 5437, reloads: 0, uptime: '0d00h00m01s', version: '-' }]);
    expect(state.oldPrograms.map((p) => [p.name, p.pid, p.reloads])).toEqual([
      ['stubborn', 5429, 1],
      ['stubborn', 5421, 2],
      ['stubborn', 5413, 3],
      ['stubborn', 5405, 4],
      ['stubborn', 5391, 5],
      ['stubborn', 5383, 6],
    ]);
    const next = parseShowProc(await fixture('old-programs'));
    expect(next.master.reloads).toBe(11);
    expect(next.oldPrograms).toHaveLength(7);
    expect(next.oldWorkers).toEqual([]);
  });

  it('accepts CRLF line ends and skips unknown sections', async () => {
    const text = (await fixture('reloaded-old-worker')).replace('# programs', '# something new\n1 thing 0 0d00h00m00s -\n# programs');
    const state = parseShowProc(text.replaceAll('\n', '\r\n'));
    expect(state.workers.map((w) => w.pid)).toEqual([5358]);
    expect(state.oldWorkers.map((w) => w.pid)).toEqual([5346]);
    expect(state.programs).toEqual([]);
  });

  it('rejects a reply that is not show proc', () => {
    for (const text of ['', 'Unknown command.\n', 'Permission denied\n']) {
      let caught: unknown;
      try {
        parseShowProc(text);
      } catch (err) {
        caught = err;
      }
      expect(RosterdError.is(caught)).toBe(true);
      expect((caught as RosterdError).code).toBe('E_HAPROXY');
      expect((caught as Error).message).toMatch(/not a "show proc" reply/);
    }
  });
});

describe('uptimeSeconds', () => {
  it('converts the d/h/m/s form', () => {
    expect(uptimeSeconds('0d00h01m13s')).toBe(73);
    expect(uptimeSeconds('12d03h04m05s')).toBe(12 * 86_400 + 3 * 3_600 + 4 * 60 + 5);
    expect(uptimeSeconds('-')).toBeUndefined();
  });
});
