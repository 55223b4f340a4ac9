import { writeFileSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { describeCommand, idle, killAllCommands, runCommand } from '../../src/exec/run.js';
import { tempDir } from '../helpers/tmp.js';
import { isGone, readPids } from '../helpers/procs.js';
import { waitFor } from '../helpers/wait.js';

const BIN = fileURLToPath(new URL('../fixtures/bin/', import.meta.url));
const bin = (name: string): string => join(BIN, name);

let dir: { path: string; cleanup: () => Promise<void> };

beforeEach(async () => {
  dir = await tempDir();
});

afterEach(async () => {
  killAllCommands('SIGKILL');
  await idle();
  await dir.cleanup();
});


async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

const NASTY = "dir with space/it's; $(touch PWNED) `touch PWNED`.cfg";

describe('runCommand: argv form', () => {
  it('runs without a shell: $HOME, ;, globs and spaces stay literal', async () => {
    const args = ['$HOME', ';', 'a b', '*', '`id`', "it's"];
    const result = await runCommand([bin('print-args'), ...args], { placeholders: {}, timeout: 10_000 });
    expect(JSON.parse(result.output)).toEqual(args);
    expect(result).toMatchObject({ ok: true, exitCode: 0, timedOut: false });
    expect(result.signal).toBeUndefined();
    expect(result.error).toBeUndefined();
    expect(result.command).toBe(`${bin('print-args')} '$HOME' ';' 'a b' '*' '\`id\`' 'it'\\''s'`);
  });

  it('replaces placeholders in every element, leaves unknown ones alone', async () => {
    const candidate = join(dir.path, NASTY);
    const result = await runCommand(
      [bin('print-args'), '{{candidate}}', '--file={{ destination }}', '{{unknown}}'],
      { placeholders: { candidate, destination: '/etc/haproxy/haproxy.cfg' }, timeout: 10_000, cwd: dir.path },
    );
    expect(JSON.parse(result.output)).toEqual([candidate, '--file=/etc/haproxy/haproxy.cfg', '{{unknown}}']);
    expect(await exists(join(dir.path, 'PWNED'))).toBe(false);
  });

  it('reports the exit code and the output of a failing command', async () => {
    const result = await runCommand([bin('exit-with'), '3', 'bad config'], { placeholders: {}, timeout: 10_000 });
    expect(result).toMatchObject({ ok: false, exitCode: 3, timedOut: false, output: 'bad config\n' });
    expect(result.error).toBeUndefined();
    expect(result.signal).toBeUndefined();
  });

  it('treats timeout 0 as no limit', async () => {
    const result = await runCommand([bin('exit-with'), '0'], { placeholders: {}, timeout: 0 });
    expect(result).toMatchObject({ ok: true, exitCode: 0, timedOut: false });
  });

  it('returns a spawn failure instead of throwing', async () => {
    const missing = join(dir.path, 'no-such-binary');
    const result = await runCommand([missing, 'x'], { placeholders: {}, timeout: 10_000 });
    expect(result.ok).toBe(false);
    expect(result.exitCode).toBeUndefined();
    expect(result.timedOut).toBe(false);
    expect(result.error).toContain('ENOENT');
    expect(result.error).toContain(missing);
    // Nothing was started, so nothing is left to wait for.
    await expect(Promise.race([idle().then(() => 'idle'), new Promise((resolve) => setTimeout(resolve, 1000, 'busy'))])).resolves.toBe('idle');
  });

  it('returns a missing working directory as a failure', async () => {
    const result = await runCommand([bin('exit-with'), '0'], {
      placeholders: {},
      timeout: 10_000,
      cwd: join(dir.path, 'nowhere'),
    });
    expect(result.ok).toBe(false);
    expect(result.error).toContain('nowhere');
  });

  it('refuses an empty command', async () => {
    expect(await runCommand([], { placeholders: {}, timeout: 1000 })).toMatchObject({ ok: false, error: 'empty command' });
    expect(await runCommand('  ', { placeholders: {}, timeout: 1000 })).toMatchObject({ ok: false, error: 'empty command' });
  });
});

describe('runCommand: shell string', () => {
  it('runs with sh -c', async () => {
    const result = await runCommand('echo $((1 + 2)) | tr 3 x; exit 4', { placeholders: {}, timeout: 10_000 });
    expect(result).toMatchObject({ ok: false, exitCode: 4, output: 'x\n', command: 'echo $((1 + 2)) | tr 3 x; exit 4' });
  });

  it('reports a command the shell cannot find as exit code 127', async () => {
    const result = await runCommand('no-such-command-here', { placeholders: {}, timeout: 10_000 });
    expect(result).toMatchObject({ ok: false, exitCode: 127 });
    expect(result.output).toContain('no-such-command-here');
  });

  it('inserts a placeholder as one word: safe values as is, others single-quoted', async () => {
    const candidate = join(dir.path, NASTY);
    const placeholders = { candidate, destination: '/etc/haproxy/haproxy.cfg', empty: '' };
    const spec = `${bin('print-args')} -c {{candidate}} {{destination}} {{empty}} {{other}}`;
    const result = await runCommand(spec, { placeholders, timeout: 10_000, cwd: dir.path });
    expect(JSON.parse(result.output)).toEqual(['-c', candidate, '/etc/haproxy/haproxy.cfg', '', '{{other}}']);
    expect(await exists(join(dir.path, 'PWNED'))).toBe(false);
    const quoted = `'${candidate.replaceAll("'", `'\\''`)}'`;
    expect(result.command).toBe(`${bin('print-args')} -c ${quoted} /etc/haproxy/haproxy.cfg '' {{other}}`);
    expect(describeCommand(spec, placeholders)).toBe(result.command);
  });

  it('exports placeholders as ROSTERD_<NAME> next to the given env', async () => {
    const result = await runCommand('printf "%s|%s|%s" "$ROSTERD_CANDIDATE" "$ROSTERD_CHECK_FILE" "$EXTRA"', {
      placeholders: { candidate: "a b'c", 'check-file': '/x' },
      env: { EXTRA: 'extra value' },
      timeout: 10_000,
    });
    expect(result.output).toBe("a b'c|/x|extra value");
  });
});

describe('runCommand: output', () => {
  it('streams lines as they come, flushing a partial last line at exit', async () => {
    const go = join(dir.path, 'go');
    const lines: Array<[string, string]> = [];
    // The command waits for a file that only onLine creates: it finishes only if the first line was streamed.
    const spec = `echo first; while [ ! -e {{go}} ]; do sleep 0.02; done; echo second >&2; printf 'crlf\\r\\n'; printf partial`;
    const result = await runCommand(spec, {
      placeholders: { go },
      timeout: 20_000,
      onLine: (stream, line) => {
        lines.push([stream, line]);
        if (line === 'first') writeFileSync(go, '');
      },
    });
    expect(result).toMatchObject({ ok: true, timedOut: false });
    expect(lines).toEqual([
      ['stdout', 'first'],
      ['stderr', 'second'],
      ['stdout', 'crlf'],
      ['stdout', 'partial'],
    ]);
    expect(result.output).toBe('first\nsecond\ncrlf\r\npartial');
  });

  it('keeps only the last 8 KiB of output', async () => {
    const spec = 'i=0; while [ $i -lt 3000 ]; do echo "line $i"; i=$((i + 1)); done';
    const result = await runCommand(spec, { placeholders: {}, timeout: 20_000 });
    expect(result.ok).toBe(true);
    expect(result.output.length).toBeLessThanOrEqual(8192);
    expect(result.output.length).toBeGreaterThan(8000);
    expect(result.output.endsWith('line 2998\nline 2999\n')).toBe(true);
    expect(result.output).not.toContain('line 100\n');
  });
});

describe('runCommand: timeouts and process groups', () => {
  it('kills the whole process group on timeout, grandchild included, and settles near the timeout', async () => {
    const pidFile = join(dir.path, 'pids');
    const result = await runCommand([bin('sleep-with-child'), pidFile, '30'], { placeholders: {}, timeout: 300 });
    expect(result).toMatchObject({ ok: false, timedOut: true, signal: 'SIGTERM' });
    expect(result.exitCode).toBeUndefined();
    expect(result.error).toBe('timed out after 300 ms');
    expect(result.output).toBe('started\n');
    // The grandchild sleeps 30 s and holds the output pipe: settling before it means it was killed.
    expect(result.durationMs).toBeGreaterThanOrEqual(295);
    expect(result.durationMs).toBeLessThan(3000);
    const { leader, grandchild } = await readPids(pidFile);
    await waitFor(() => isGone(grandchild), `grandchild ${grandchild} to be gone`);
    await waitFor(() => isGone(leader), `command ${leader} to be gone`);
    await idle();
  });

  it('kills what a shell string started on timeout', async () => {
    const started = performance.now();
    const result = await runCommand('sleep 30; echo done', { placeholders: {}, timeout: 300 });
    expect(result).toMatchObject({ ok: false, timedOut: true, output: '' });
    expect(performance.now() - started).toBeLessThan(3000);
  });

  it('sends SIGKILL after the grace period to a command that ignores SIGTERM', async () => {
    const result = await runCommand([bin('ignore-term')], { placeholders: {}, timeout: 300, killGrace: 400 });
    expect(result).toMatchObject({ ok: false, timedOut: true, signal: 'SIGKILL' });
    expect(result.output).toContain('ready\n');
    expect(result.output).toContain('got TERM\n');
    expect(result.durationMs).toBeGreaterThanOrEqual(690);
    expect(result.durationMs).toBeLessThan(5000);
  });

  it('still sends SIGKILL to a TERM-ignoring leftover after the result, and idle waits for it', async () => {
    // The background sleep ignores SIGTERM and does not hold the output, so the result comes at the timeout.
    const spec = `(trap '' TERM; exec sleep 30) >/dev/null 2>&1 & echo $!; sleep 30`;
    const result = await runCommand(spec, { placeholders: {}, timeout: 300, killGrace: 1000 });
    expect(result).toMatchObject({ ok: false, timedOut: true });
    expect(result.durationMs).toBeLessThan(1000);
    const leftover = Number(result.output.trim());
    expect(isGone(leftover)).toBe(false);
    await idle();
    await waitFor(() => isGone(leftover), `leftover ${leftover} to be gone`);
  });

  it('returns once the command exits even if a background process keeps its output open', async () => {
    const result = await runCommand('echo started; sleep 30 & echo $!; exit 0', { placeholders: {}, timeout: 20_000 });
    expect(result).toMatchObject({ ok: true, exitCode: 0, timedOut: false });
    expect(result.durationMs).toBeLessThan(5000);
    const background = Number(result.output.split('\n')[1]);
    try {
      // Started on purpose (think of a daemon), so it is left alone.
      expect(isGone(background)).toBe(false);
      await idle();
    } finally {
      process.kill(background, 'SIGKILL');
    }
  });
});

describe('killAllCommands and idle', () => {
  it('idle resolves at once when nothing runs, and only after the last command otherwise', async () => {
    await idle();
    let idleNow = false;
    const running = runCommand('sleep 0.3', { placeholders: {}, timeout: 10_000 });
    const waiting = idle().then(() => {
      idleNow = true;
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(idleNow).toBe(false);
    expect((await running).ok).toBe(true);
    await waiting;
    expect(idleNow).toBe(true);
  });

  it('stops a command asked for just before killAllCommands, whether or not it had been spawned yet', async () => {
    // The first command of a process waits for execa to load; killAllCommands must stop it all the same. A
    // fresh copy of the module has not loaded execa; this one has (earlier tests ran commands).
    vi.resetModules();
    const fresh = await import('../../src/exec/run.js');
    for (const exec of [fresh, { runCommand, killAllCommands, idle }]) {
      const running = exec.runCommand([bin('sleep-with-child'), join(dir.path, 'early'), '30'], { placeholders: {}, timeout: 60_000, killGrace: 500 });
      let idleNow = false;
      const waiting = exec.idle().then(() => (idleNow = true));
      await Promise.resolve();
      expect(idleNow).toBe(false);
      exec.killAllCommands();
      const result = await running;
      expect(result).toMatchObject({ ok: false, timedOut: false });
      expect(result.error).toBe('stopped by killAllCommands (SIGTERM)');
      await waiting;
    }
  });

  it('kills every running command group, grandchildren included', async () => {
    const pidFiles = [join(dir.path, 'a'), join(dir.path, 'b')];
    const results = pidFiles.map((file) =>
      runCommand([bin('sleep-with-child'), file, '30'], { placeholders: {}, timeout: 60_000, killGrace: 500 }),
    );
    const pids = await Promise.all(pidFiles.map((file) => readPids(file)));
    const started = performance.now();
    killAllCommands();
    for (const result of await Promise.all(results)) {
      expect(result).toMatchObject({ ok: false, timedOut: false, signal: 'SIGTERM' });
      expect(result.error).toBe('stopped by killAllCommands (SIGTERM)');
    }
    expect(performance.now() - started).toBeLessThan(3000);
    await idle();
    for (const { leader, grandchild } of pids) {
      await waitFor(() => isGone(grandchild) && isGone(leader), `group of ${leader} to be gone`);
    }
  });

  it('escalates to SIGKILL after the grace period', async () => {
    let ready!: () => void;
    const isReady = new Promise<void>((resolve) => (ready = resolve));
    const running = runCommand([bin('ignore-term')], {
      placeholders: {},
      timeout: 60_000,
      killGrace: 300,
      onLine: (_stream, line) => {
        if (line === 'ready') ready();
      },
    });
    await isReady;
    killAllCommands();
    const result = await running;
    expect(result).toMatchObject({ ok: false, timedOut: false, signal: 'SIGKILL' });
    expect(result.output).toContain('got TERM');
    await idle();
  });
});
