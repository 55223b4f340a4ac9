import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { findBindClashes } from '../../src/haproxy/bind-guard.js';
import { masterCliCommand } from '../../src/haproxy/master-cli.js';
import { reloadHaproxy } from '../../src/haproxy/reload.js';
import { parseShowProc } from '../../src/haproxy/show-proc.js';
import { defineConfig } from '../../src/config/define.js';
import { createRenderer } from '../../src/runner/renderer.js';
import { haproxyConfig, httpGet, startHaproxy, type HaproxyProcess } from '../helpers/haproxy.js';
import { freePort } from '../helpers/ports.js';
import { tempDir } from '../helpers/tmp.js';

let dir: { path: string; cleanup: () => Promise<void> };

beforeEach(async () => {
  dir = await tempDir('rosterd-reload-');
});

afterEach(async () => {
  await dir.cleanup();
});

describe('reloadHaproxy against HAProxy 2.6', () => {
  let haproxy: HaproxyProcess;
  let port: number;
  const others: Server[] = [];

  beforeEach(async () => {
    port = await freePort();
    haproxy = await startHaproxy({ dir: dir.path, config: haproxyConfig({ port, gen: 1 }) });
  });

  afterEach(async () => {
    await haproxy.stop();
    await Promise.all(others.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
  });

  it('confirms a good reload through the CLI: a new worker serves the new config', async () => {
    expect((await httpGet(port)).body).toBe('gen 1');
    await haproxy.writeConfig(haproxyConfig({ port, gen: 2 }));

    const result = await reloadHaproxy({ masterSocket: haproxy.masterSocket, timeout: 5_000 });

    expect(result.reason).toBeUndefined();
    expect(result.ok).toBe(true);
    expect(result.before.master.pid).toBe(haproxy.pid);
    const oldPids = result.before.workers.map((w) => w.pid);
    expect(oldPids).toHaveLength(1);
    expect(result.after?.master).toMatchObject({ pid: haproxy.pid, reloads: result.before.master.reloads + 1, failedReloads: 0 });
    expect(result.after?.workers).toHaveLength(1);
    expect(oldPids).not.toContain(result.after?.workers[0]?.pid);
    expect(result.after?.workers[0]?.reloads).toBe(0);
    expect(result.durationMs).toBeGreaterThan(0);
    expect(result.durationMs).toBeLessThan(5_000);

    const response = await httpGet(port);
    expect(response.body).toBe('gen 2');
    expect(response.headers['x-gen']).toBe('2');
  });

  it('confirms a reload sent as SIGUSR2 to the pid from the pid file', async () => {
    expect((await readFile(haproxy.pidFile, 'utf8')).trim()).toBe(String(haproxy.pid));
    await haproxy.writeConfig(haproxyConfig({ port, gen: 'signal' }));

    const result = await reloadHaproxy({ masterSocket: haproxy.masterSocket, method: 'signal', pidFile: haproxy.pidFile, timeout: 5_000 });

    expect(result.ok).toBe(true);
    expect(result.after?.master.reloads).toBe(result.before.master.reloads + 1);
    expect(result.before.workers.map((w) => w.pid)).not.toContain(result.after?.workers[0]?.pid);
    expect((await httpGet(port)).body).toBe('gen signal');
  });

  it('runs concurrent reloads of the same master one after the other, each confirmed on its own', async () => {
    await haproxy.writeConfig(haproxyConfig({ port, gen: 'twice' }));
    const options = { masterSocket: haproxy.masterSocket, timeout: 5_000 };

    const [first, second] = await Promise.all([reloadHaproxy(options), reloadHaproxy(options)]);

    expect([first.ok, second.ok]).toEqual([true, true]);
    expect(second.before.master.reloads).toBe(first.before.master.reloads + 1);
    expect(second.after?.master.reloads).toBe(first.before.master.reloads + 2);
    expect(second.after?.workers[0]?.pid).not.toBe(first.after?.workers[0]?.pid);
    expect((await httpGet(port)).body).toBe('gen twice');
  });

  it('detects a broken config as a failed reload; the old worker keeps serving', async () => {
    await haproxy.writeConfig(`${haproxyConfig({ port, gen: 2 })}  no-such-keyword here\n`);

    const failed = await reloadHaproxy({ masterSocket: haproxy.masterSocket, timeout: 5_000 });

    expect(failed.ok).toBe(false);
    expect(failed.reason).toMatch(/did not load the new config .*1 failed reload/);
    expect(failed.after?.master.failedReloads).toBe(failed.before.master.failedReloads + 1);
    expect(failed.after?.master.reloads).toBe(failed.before.master.reloads + 1);
    expect(failed.after?.workers.map((w) => w.pid)).toEqual(failed.before.workers.map((w) => w.pid));
    expect((await httpGet(port)).body).toBe('gen 1');
    expect(haproxy.output()).toContain('Loading failure!');

    // A second failure in a row is still seen (the count goes on growing), and a good config then
    // reloads normally (the count goes back to 0).
    const again = await reloadHaproxy({ masterSocket: haproxy.masterSocket, timeout: 5_000 });
    expect(again.ok).toBe(false);
    expect(again.after?.master.failedReloads).toBe(2);

    await haproxy.writeConfig(haproxyConfig({ port, gen: 3 }));
    const fixed = await reloadHaproxy({ masterSocket: haproxy.masterSocket, timeout: 5_000 });
    expect(fixed.ok).toBe(true);
    expect(fixed.after?.master.failedReloads).toBe(0);
    expect((await httpGet(port)).body).toBe('gen 3');
  });

  it('finds a bind clash before the reload, and a reload done anyway is detected as failed', async () => {
    const other = createServer((socket) => socket.end());
    others.push(other);
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    const taken = (other.address() as { port: number }).port;

    const previous = await readFile(haproxy.configPath, 'utf8');
    const candidate = haproxyConfig({
      port,
      gen: 2,
      extra: `\nfrontend more\n  bind 127.0.0.1:${taken}\n  http-request return status 200 content-type text/plain string "more"\n`,
    });
    const clashes = await findBindClashes(previous, candidate);
    expect(clashes).toEqual([expect.stringContaining(`127.0.0.1:${taken}`)]);

    await haproxy.writeConfig(candidate);
    const result = await reloadHaproxy({ masterSocket: haproxy.masterSocket, timeout: 10_000 });

    expect(result.ok).toBe(false);
    expect(result.reason).toMatch(/did not load the new config/);
    expect(result.after?.master.failedReloads).toBe(result.before.master.failedReloads + 1);
    expect(result.after?.workers.map((w) => w.pid)).toEqual(result.before.workers.map((w) => w.pid));
    expect((await httpGet(port)).body).toBe('gen 1');
  });

  it('sends no signal when the pid file names another process', async () => {
    const pidFile = join(dir.path, 'stale.pid');
    // Above the kernel's pid_max ceiling (2^22): no process can have it.
    await writeFile(pidFile, `${2 ** 22 + 1}\n`);

    const result = await reloadHaproxy({ masterSocket: haproxy.masterSocket, method: 'signal', pidFile, timeout: 2_000 });

    expect(result.ok).toBe(false);
    expect(result.reason).toMatch(/no signal sent/);
    expect(result.after).toBeUndefined();
    const now = parseShowProc(await masterCliCommand(haproxy.masterSocket, 'show proc'));
    expect(now.master.reloads).toBe(result.before.master.reloads);
  });
});

describe('reloadHaproxy against a scripted master CLI', () => {
  let server: Server | undefined;
  const sockets = new Set<Socket>();

  afterEach(async () => {
    for (const socket of sockets) socket.destroy();
    sockets.clear();
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
    server = undefined;
  });

  const line = (pid: number, type: string, reloads: string): string =>
    `${String(pid).padEnd(15)} ${type.padEnd(15)} ${reloads.padEnd(15)} 0d00h00m01s     2.6.12-1+deb12u4\n`;
  const showProc = (master: number, reloads: number, failed: number, worker: number): string =>
    `#<PID>          <type>          <reloads>       <uptime>        <version>      \n` +
    line(master, 'master', `${reloads} [failed: ${failed}]`) +
    '# workers\n' +
    line(worker, 'worker', '0') +
    '# programs\n\n';

  /** A unix socket answering `show proc` from `state()` and `reload` with `onReload()`. */
  async function scripted(state: () => string, onReload: () => string): Promise<string> {
    const path = join(dir.path, 'fake-master.sock');
    server = createServer({ allowHalfOpen: true }, (socket) => {
      sockets.add(socket);
      let request = '';
      socket.on('data', (chunk: Buffer) => (request += chunk.toString()));
      socket.on('end', () => socket.end(request.trim() === 'reload' ? onReload() : state()));
    });
    await new Promise<void>((resolve) => server!.listen(path, resolve));
    return path;
  }

  it('fails with a reason when no reload is seen before the timeout', async () => {
    const path = await scripted(() => showProc(100, 3, 0, 101), () => '');
    const result = await reloadHaproxy({ masterSocket: path, timeout: 300 });
    expect(result.ok).toBe(false);
    expect(result.reason).toMatch(/no reload seen within 300 ms.*counter is still 3/);
    expect(result.after?.master.reloads).toBe(3);
    // Triggered but not confirmed: HAProxy may still be loading the new file.
    expect(result.unconfirmed).toBe(true);
  });

  it('through the renderer: a bind moving between two files of one HAProxy is not a clash', async () => {
    let reloads = 0;
    const path = await scripted(() => showProc(100, reloads, 0, 101 + reloads), () => {
      reloads++;
      return '';
    });
    // The running HAProxy holds the port, through the first file.
    const holder = createServer();
    const port = await freePort();
    await new Promise<void>((resolve) => holder.listen(port, '127.0.0.1', resolve));
    try {
      const a = join(dir.path, 'a.cfg');
      const b = join(dir.path, 'b.cfg');
      await writeFile(a, `frontend fe\n    bind 127.0.0.1:${port}\n`);
      await writeFile(b, 'backend be\n');
      const reload = { haproxy: { masterSocket: path } };
      const renderer = await createRenderer(
        defineConfig({
          sources: { s: { name: 's', start: async (emit) => emit([]), stop: async () => undefined } },
          templates: [
            { contents: 'backend be\n', destination: a, reload },
            { contents: `frontend fe\n    bind 127.0.0.1:${port}\n`, destination: b, reload },
          ],
        }),
      );
      const results = await renderer.renderOnce();
      expect(results.map((r) => r.error?.message)).toEqual([undefined, undefined]);
      expect(await readFile(b, 'utf8')).toContain(`bind 127.0.0.1:${port}`);
      expect(reloads).toBe(1);
    } finally {
      await new Promise((resolve) => holder.close(resolve));
    }
  });

  it('refuses a timeout that leaves no time to confirm', () => {
    expect(() => reloadHaproxy({ masterSocket: join(dir.path, 'none.sock'), timeout: 0 })).toThrow(RangeError);
  });

  it('through the renderer: an unconfirmed reload leaves the new file in place, a refused one restores the old', async () => {
    let failed = 0;
    let reloads = 3;
    let confirm: 'never' | 'refuse' = 'never';
    const path = await scripted(() => showProc(100, reloads, failed, 101), () => {
      if (confirm === 'refuse') {
        reloads++;
        failed++;
      }
      return '';
    });
    const destination = join(dir.path, 'haproxy.cfg');
    const render = async (contents: string) => {
      await writeFile(destination, 'previous\n');
      const renderer = await createRenderer(
        defineConfig({
          sources: { s: { name: 's', start: async (emit) => emit([]), stop: async () => undefined } },
          templates: [{ contents, destination, timeout: '300ms', reload: { haproxy: { masterSocket: path, bindGuard: false } } }],
        }),
      );
      return (await renderer.renderOnce())[0]!;
    };
    const unconfirmed = await render('new\n');
    expect(unconfirmed.error?.message).toContain('it may still take effect, so the new file stays in place');
    expect(await readFile(destination, 'utf8')).toBe('new\n');

    confirm = 'refuse';
    const refused = await render('newer\n');
    expect(refused.error?.message).toContain('HAProxy did not load the new config');
    expect(refused.error?.message).toContain('previous file restored');
    expect(await readFile(destination, 'utf8')).toBe('previous\n');
  });

  it('fails when the counter moves but the same worker stays', async () => {
    let reloads = 3;
    const path = await scripted(() => showProc(100, reloads, 0, 101), () => {
      reloads++;
      return '';
    });
    const result = await reloadHaproxy({ masterSocket: path, timeout: 2_000 });
    expect(result.ok).toBe(false);
    expect(result.reason).toMatch(/no new worker appeared.*worker 101/);
  });

  it('fails when the master pid changed (a restart, not a reload)', async () => {
    let master = 100;
    const path = await scripted(() => showProc(master, 0, 0, master + 1), () => {
      master = 200;
      return '';
    });
    const result = await reloadHaproxy({ masterSocket: path, timeout: 2_000 });
    expect(result.ok).toBe(false);
    expect(result.reason).toMatch(/master process changed \(pid 100 → 200\)/);
  });

  it('fails at once when the CLI refuses the reload command', async () => {
    const path = await scripted(() => showProc(100, 3, 0, 101), () => 'Permission denied\n');
    const result = await reloadHaproxy({ masterSocket: path, timeout: 5_000 });
    expect(result.ok).toBe(false);
    expect(result.reason).toMatch(/refused "reload": Permission denied/);
    expect(result.durationMs).toBeLessThan(1_000);
  });

  it('throws a RosterdError when the state before cannot be read', async () => {
    await expect(reloadHaproxy({ masterSocket: join(dir.path, 'absent.sock'), timeout: 200 })).rejects.toMatchObject({
      code: 'E_HAPROXY',
      errno: 'ENOENT',
    });
  });
});
