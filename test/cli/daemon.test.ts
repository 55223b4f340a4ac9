import { access, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { Daemon } from '../helpers/cli.js';
import { isGone, readPids } from '../helpers/procs.js';
import { waitFor } from '../helpers/wait.js';
import { useWorkspace } from '../helpers/workspace.js';

const BIN_DIR = fileURLToPath(new URL('../fixtures/bin/', import.meta.url));

const ws = useWorkspace();
const at = ws.at;
let daemon: Daemon | undefined;
const TEMPLATE = '{% for m in members %}server {{ m.name }} {{ m.address }}\n{% endfor %}';


async function writeConfig(template: Record<string, unknown>): Promise<void> {
  const config = { sources: { web: { type: 'file', path: 'members.json' } }, templates: [{ contents: TEMPLATE, destination: 'out.cfg', ...template }] };
  await writeFile(at('renderer.config.json'), JSON.stringify(config));
}

const output = (): Promise<string> => readFile(at('out.cfg'), 'utf8').catch(() => '');
const reloadCount = async (): Promise<number> => (await readFile(at('reloads'), 'utf8').catch(() => '')).split('\n').filter(Boolean).length;


describe('rosterd run (daemon)', () => {
  it('renders at start and follows an edit within wait.max plus a margin', async () => {
    await ws.writeMembers('a');
    await writeConfig({ wait: { min: '100ms', max: '400ms' } });
    daemon = ws.startDaemon();
    await waitFor(async () => (await output()) === 'server a 10.0.0.1\n', 'the first render', { timeout: 15_000 });
    const edited = Date.now();
    await ws.writeMembers('a', 'b');
    await waitFor(async () => (await output()).includes('server b'), 'the edit rendered', { timeout: 5000, interval: 10 });
    expect(Date.now() - edited).toBeLessThan(400 + 1000);
    expect(await daemon.stop('SIGTERM')).toBe(0);
  });

  it('a burst of edits inside wait.min gives one render and one reload', async () => {
    await ws.writeMembers('a');
    await writeConfig({ wait: { min: '1500ms', max: '10s' }, reload: `echo reload >> ${at('reloads')}` });
    daemon = ws.startDaemon();
    await waitFor(async () => (await reloadCount()) === 1, 'the first render and reload');
    // The command has written its line; the daemon logs the reload when the command has exited.
    await daemon.waitForLog(/^reloaded/);
    const since = daemon.logs.length;
    for (const name of ['b', 'c', 'd', 'e', 'f']) await ws.writeMembers('a', name);
    await waitFor(async () => (await output()).includes('server f'), 'the burst rendered');
    await daemon.waitForLog(/^reloaded/, { since });
    expect(daemon.logs.slice(since).filter((l) => String(l.msg).startsWith('wrote '))).toHaveLength(1);
    expect(await reloadCount()).toBe(2);
  });

  it('a corrupt member file keeps the old output and the daemon alive; fixing it renders again', async () => {
    await ws.writeMembers('a');
    await writeConfig({});
    daemon = ws.startDaemon();
    await waitFor(async () => (await output()) === 'server a 10.0.0.1\n', 'the first render');
    await writeFile(at('members.json'), '[{"name": "b", "address": ');
    const error = await daemon.waitForLog(/invalid JSON/);
    expect(error).toMatchObject({ level: 50, source: 'web' });
    expect(await output()).toBe('server a 10.0.0.1\n');
    expect(daemon.child.exitCode).toBeNull();
    await ws.writeMembers('b');
    await waitFor(async () => (await output()) === 'server b 10.0.0.1\n', 'a render after the fix');
  });

  it('SIGHUP with an invalid config keeps the old one; with a valid one applies it', async () => {
    await ws.writeMembers('a');
    await writeConfig({});
    daemon = ws.startDaemon();
    await waitFor(async () => (await output()) === 'server a 10.0.0.1\n', 'the first render');
    await writeConfig({ contents: 'v2 {{ members | size }}', wiat: 1 });
    let since = daemon.logs.length;
    daemon.child.kill('SIGHUP');
    await daemon.waitForLog(/still running the previous one/, { since });
    expect(daemon.logs.slice(since).some((l) => l.path === 'templates[0].wiat')).toBe(true);
    await ws.writeMembers('a', 'b');
    await waitFor(async () => (await output()).includes('server b'), 'the old config still renders');
    await writeConfig({ contents: 'v2 {{ members | size }}\n' });
    since = daemon.logs.length;
    daemon.child.kill('SIGHUP');
    await daemon.waitForLog(/^config reloaded/, { since });
    await waitFor(async () => (await output()) === 'v2 2\n', 'the new template rendered');
  });

  it('SIGTERM during a reload lets the command finish, then exits 0', async () => {
    await ws.writeMembers('a');
    await writeConfig({ reload: `touch ${at('started')}; sleep 1; echo done > ${at('finished')}`, timeout: '30s' });
    daemon = ws.startDaemon();
    await waitFor(() => readFile(at('started')).then(() => true, () => false), 'the reload command to start');
    expect(await daemon.stop('SIGTERM')).toBe(0);
    expect(await readFile(at('finished'), 'utf8')).toBe('done\n');
  });

  it('SIGTERM during a reload that outlasts its timeout kills its whole group, exits 0 and leaves no process behind', async () => {
    await ws.writeMembers('a');
    const pids = at('pids');
    await writeConfig({ reload: [join(BIN_DIR, 'sleep-with-child'), pids, '30'], timeout: '1s' });
    daemon = ws.startDaemon();
    const { leader, grandchild } = await readPids(pids);
    expect(isGone(grandchild)).toBe(false);
    const started = Date.now();
    expect(await daemon.stop('SIGTERM')).toBe(0);
    expect(Date.now() - started).toBeLessThan(8000);
    await waitFor(() => isGone(leader) && isGone(grandchild), 'the command and its child to be gone', { timeout: 5000 });
  });

  it('a second SIGINT exits at once, killing running commands', async () => {
    await ws.writeMembers('a');
    const pids = at('pids');
    await writeConfig({ reload: [join(BIN_DIR, 'sleep-with-child'), pids, '30'], timeout: '60s' });
    daemon = ws.startDaemon();
    const { grandchild } = await readPids(pids);
    const child = daemon.child;
    child.kill('SIGINT');
    await daemon.waitForLog(/^stopping/);
    const started = Date.now();
    expect(await daemon.stop('SIGINT', 5000)).toBe(130);
    expect(Date.now() - started).toBeLessThan(3000);
    await waitFor(() => isGone(grandchild), 'the reload command to be killed', { timeout: 5000 });
  });

  describe('signals while it starts (the config takes a second to load)', () => {
    /** A config whose loading takes `ms` and leaves the file `loaded` behind when done. */
    async function slowConfig(ms: number): Promise<void> {
      const config = { sources: { web: { type: 'file', path: 'members.json' } }, templates: [{ contents: 'x {{ members | size }}\n', destination: 'out.cfg' }] };
      await writeFile(
        at('renderer.config.mjs'),
        `import { writeFileSync } from 'node:fs';\nexport default async () => {\n  await new Promise((resolve) => setTimeout(resolve, ${ms}));\n  writeFileSync(${JSON.stringify(at('loaded'))}, '');\n  return ${JSON.stringify(config)};\n};\n`,
      );
    }
    const loaded = () => access(at('loaded')).then(() => true, () => false);
    /** True once the process catches SIGHUP (bit 1 of SigCgt): from then on a SIGHUP cannot kill it. */
    const catchesSighup = async (pid: number) => (BigInt(`0x${/SigCgt:\s*([0-9a-f]+)/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))![1]}`) & 1n) === 1n;

    it('a SIGHUP before the config is loaded keeps it alive and means "load again once started"', async () => {
      await ws.writeMembers('a');
      await slowConfig(1500);
      daemon = ws.startDaemon();
      await waitFor(() => catchesSighup(daemon!.child.pid!), 'the SIGHUP handler', { interval: 5 });
      daemon.child.kill('SIGHUP');
      expect(await loaded()).toBe(false);
      await daemon.waitForLog(/^started/);
      await daemon.waitForLog(/^SIGHUP: reloading the config/);
      await daemon.waitForLog(/^config reloaded/);
      expect(await output()).toBe('x 1\n');
      expect(daemon.child.exitCode).toBeNull();
      expect(await daemon.stop('SIGTERM')).toBe(0);
    });

    it('a SIGTERM before the config is loaded ends the start cleanly, writing nothing', async () => {
      await ws.writeMembers('a');
      await slowConfig(1000);
      daemon = ws.startDaemon();
      await waitFor(() => catchesSighup(daemon!.child.pid!), 'the signal handlers', { interval: 5 });
      daemon.child.kill('SIGTERM');
      expect(await loaded()).toBe(false);
      expect(await daemon.stop('SIGTERM')).toBe(0);
      expect(daemon.logs.map((l) => l.msg)).toContain('stopping before the start');
      expect(await output()).toBe('');
    });
  });
});
