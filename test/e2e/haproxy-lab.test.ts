import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { masterCliCommand } from '../../src/haproxy/master-cli.js';
import { parseShowProc } from '../../src/haproxy/show-proc.js';
import { SerfClient } from '../../src/serf/client.js';
import { groupMembers, httpGet } from '../helpers/haproxy.js';
import { createLab, LAB_DIR, type Lab, type LabStatus } from '../helpers/lab.js';
import { startLoad, type Load, type LoadReport } from '../helpers/load.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The HAProxy + Serf example, end to end: real Serf agents, a real master-worker HAProxy, real Node apps and
 * the rosterd daemon, all started by the example's own `lab.mjs` from its own config and template (copied, so
 * that the test can edit them and send SIGHUP). Load runs on the frontend while nodes come and go.
 */

let dir: string;
let cleanup: (() => Promise<void>) | undefined;
let lab: Lab;
let lb: NonNullable<LabStatus['lb']>;
let conf: string;

beforeAll(async () => {
  ({ path: dir, cleanup } = await tempDir('rosterd-lab-'));
  conf = join(dir, 'conf');
  await mkdir(conf);
  for (const file of ['renderer.config.ts', 'haproxy.cfg.liquid']) await copyFile(join(LAB_DIR, file), join(conf, file));
  lab = createLab(join(dir, 'run'));
  // Two web nodes first, then the load balancer: they joined before it existed.
  await lab.run(['up', '--nodes', '2', '--config', join(conf, 'renderer.config.ts')]);
  lb = (await lab.status()).lb!;
}, 60_000);

afterAll(async () => {
  await lab?.run(['down'], { allowFailure: true }).catch(() => undefined);
  lab?.killAll();
  await cleanup?.();
}, 60_000);

const haproxyCfg = (): Promise<string> => readFile(join(lab.dir, 'haproxy.cfg'), 'utf8');
const servers = async (): Promise<string[]> => [...(await haproxyCfg()).matchAll(/^\s+server (\S+) /gm)].map((m) => m[1]!);
const served = (headers: Record<string, unknown>): string => decodeURIComponent(String(headers['x-served-by']));

/** Waits for a line of the load balancer's log written after `offset` (a length of the log) that matches. */
async function logLine(offset: number, pattern: RegExp, timeout = 20_000): Promise<string> {
  return waitFor(async () => (await lab.log()).slice(offset).split('\n').find((line) => pattern.test(line)), `a log line matching ${pattern}`, { timeout, interval: 50 });
}

/** Fails with the reports, and HAProxy's log of failed requests, when a client saw a failed request. */
async function expectNoFailure(reports: LoadReport[]): Promise<void> {
  // With `dontlog-normal`, HAProxy logs only the requests that went wrong (see the template).
  const logged = (await lab.log()).split('\n').filter((line) => /^\[haproxy\] \S+ \[[^\]]+\] www /.test(line) && !/ 200 /.test(line));
  for (const report of reports) {
    expect(report, `${report.mode}: ${[...report.errorSamples, ...logged.slice(-5)].join('\n')}`).toMatchObject({ errors: 0, timeouts: 0, non2xx: 0 });
  }
}

/** Runs `body` under load and stops the load however `body` ends. */
async function underLoad(options: { rate: number; maxSeconds: number }, body: (load: Load) => Promise<void>): Promise<{ load: Load; reports: LoadReport[] }> {
  const load = startLoad({ port: lb.httpPort, connections: 8, ...options });
  let reports: LoadReport[] = [];
  try {
    await body(load);
  } finally {
    reports = await load.stop();
  }
  return { load, reports };
}

describe('the HAProxy + Serf lab (examples/haproxy-serf)', () => {
  it('serves the nodes that joined before the load balancer, from its first haproxy.cfg on', async () => {
    const seen = new Set<string>();
    await waitFor(async () => seen.add(served((await httpGet(lb.httpPort)).headers)).size === 2, 'both early nodes to answer');
    expect([...seen].sort()).toEqual(['web-1', 'web-2']);
    expect(await servers()).toEqual(['web-1', 'web-2']);
    expect(await lab.log()).toMatch(/first haproxy\.cfg rendered with 2 member\(s\)/);
    // The daemon found that file already right: no reload was needed.
    expect((await lab.status()).lb?.reloads).toBe(0);
  });

  it("serves a joining node before the agent streams its member-join, without a new HAProxy worker", async () => {
    const workers = async (): Promise<number[]> => parseShowProc(await masterCliCommand(lb.masterSocket, 'show proc', { retryEmpty: true })).workers.map((w) => w.pid);
    const before = await workers();
    const watcher = await SerfClient.connect({ address: `127.0.0.1:${lb.serfRpc}` });
    let streamed: number | undefined;
    await watcher.stream('member-join', (event) => {
      if ('members' in event && event.members.some((m) => m.name === 'fast')) streamed ??= Date.now();
    });
    let added = false;
    try {
      await lab.run(['add', 'fast', '--no-wait']);
      added = true;
      const first = await waitFor(async () => served((await httpGet(lb.httpPort)).headers) === 'fast' && Date.now(), 'fast to serve', { timeout: 30_000, interval: 5 });
      await waitFor(() => streamed, "the agent's member-join", { timeout: 30_000 });
      expect(first).toBeLessThan(streamed!);
      expect(await workers()).toEqual(before);
      added = false;
      await lab.run(['remove', 'fast']);
      expect(await servers()).not.toContain('fast');
      expect(await workers()).toEqual(before);
    } finally {
      await watcher.close();
      // A failure above must not leave the node to the tests after this one.
      if (added) await lab.run(['remove', 'fast'], { allowFailure: true }).catch(() => undefined);
    }
  }, 60_000);

  it('converges when rosterd is killed in the middle of changes and starts again', async () => {
    const offset = (await lab.log()).length;
    const rosterd = (await lab.status()).lb!.rosterdPid!;
    const adding = Promise.all(['k-1', 'k-2'].map((name) => lab.run(['add', name, '--no-wait'])));
    // Killed as soon as it has written a file for the first of them: its apply may not have run.
    await logLine(offset, /INFO: wrote /);
    process.kill(rosterd, 'SIGKILL');
    await adding;
    // The lab's supervisor starts it again; it reads the members, renders, and makes HAProxy match the file.
    await waitFor(async () => (await lab.status()).lb?.rosterdPid !== rosterd, 'rosterd to be started again', { timeout: 20_000 });
    const running = async (): Promise<string[]> =>
      (await masterCliCommand(lb.masterSocket, '@1 show servers state web', { retryEmpty: true }))
        .split('\n')
        .filter((l) => /^\d+ web /.test(l))
        .map((l) => l.split(' ')[3]!)
        .sort();
    await waitFor(async () => {
      const file = (await servers()).sort();
      return file.includes('k-1') && file.includes('k-2') && (await running()).join() === file.join();
    }, 'HAProxy to run the servers of haproxy.cfg, k-1 and k-2 included', { timeout: 30_000 });
    await Promise.all(['k-1', 'k-2'].map((name) => lab.run(['remove', name])));
    await waitFor(async () => (await running()).join() === (await servers()).sort().join() && !(await running()).includes('k-1'), 'k-1 and k-2 gone', { timeout: 30_000 });
  }, 90_000);

  it('answers every request while 20 nodes join and 22 leave under load, 9 of them killed', async () => {
    const add = (name: string) => lab.run(['add', name]);
    const leave = (name: string) => lab.run(['remove', name]);
    const kill = (name: string) => lab.run(['remove', name, '--kill']);
    const awkward = ['web 1', 'web"2', 'web&3', 'web/4'];
    const wave = ['wave-1', 'wave-2', 'wave-3', 'wave-4', 'wave-5', 'wave-6', 'wave-7', 'wave-8', 'wave-9', 'wave-10'];
    const joined = ['web-1', 'web-2', ...awkward, 'web-5', 'web-6', 'web-7', 'web-8', 'web-9', 'web-10', ...wave];

    const { load, reports } = await underLoad({ rate: 250, maxSeconds: 240 }, async (load) => {
      const seen = (names: string[]) =>
        Promise.all(names.map((name) => waitFor(() => load.served.get(name), `${name} to serve the load`, { timeout: 30_000 })));
      await seen(['web-1', 'web-2']);
      await Promise.all(awkward.map(add));
      await seen(awkward);
      await Promise.all([...['web-5', 'web-6', 'web-7', 'web-8'].map(add), leave('web-1'), kill('web-2')]);
      await seen(['web-5', 'web-6', 'web-7', 'web-8']);
      await Promise.all([leave('web 1'), kill('web"2'), leave('web&3'), kill('web/4'), add('web-9'), add('web-10')]);
      await seen(['web-9', 'web-10']);
      await Promise.all([kill('web-5'), leave('web-6'), leave('web-7'), kill('web-8')]);
      // A second wave: five join, five more, then all ten leave in two groups of five (four of them killed).
      for (let i = 0; i < wave.length; i += 5) {
        await Promise.all(wave.slice(i, i + 5).map(add));
        await seen(wave.slice(i, i + 5));
      }
      await Promise.all([leave('wave-1'), kill('wave-2'), leave('wave-3'), kill('wave-4'), leave('wave-5')]);
      await Promise.all([leave('wave-6'), kill('wave-7'), leave('wave-8'), kill('wave-9'), leave('wave-10')]);
      // Every departure is in haproxy.cfg, with the load still running.
      await waitFor(async () => (await servers()).join() === 'web-10,web-9', 'only web-9 and web-10 in haproxy.cfg', { timeout: 60_000 });
    });

    await expectNoFailure(reports);
    for (const report of reports) expect(report.requests).toBeGreaterThan(1000);
    for (const name of joined) expect(load.served.get(name)?.count, `requests served by ${name}`).toBeGreaterThan(0);
    const after = await lab.status();
    expect(after.lb?.failedReloads).toBe(0);
    // Joins and departures only change server lines: the runtime API applies them, without a reload.
    expect(((await lab.log()).match(/applied without a reload, through the HAProxy runtime API/g) ?? []).length).toBeGreaterThanOrEqual(4);
  }, 300_000);

  it('refuses a member whose weight HAProxy rejects, keeps serving the previous file, and recovers when it leaves', async () => {
    const before = await haproxyCfg();
    const { reloads } = (await lab.status()).lb!;
    const offset = (await lab.log()).length;

    const { load, reports } = await underLoad({ rate: 150, maxSeconds: 60 }, async (load) => {
      await lab.run(['add', 'heavy', '--tag', 'weight=300', '--no-wait']);
      // `plus: 0` in the template prints the tag as a number only; HAProxy's check says why it is refused.
      await logLine(offset, /E_CHECK_FAILED/);
      expect(await logLine(offset, /\[ALERT\]/)).toMatch(/weight of server heavy is not within 0 and 256 \(300\)/);
      expect(await haproxyCfg()).toBe(before);
      expect((await lab.status()).lb?.reloads).toBe(reloads);
      await lab.run(['remove', 'heavy']);
      await lab.run(['add', 'web-11']);
      await waitFor(() => load.served.get('web-11'), 'web-11 to serve the load', { timeout: 10_000 });
    });

    await expectNoFailure(reports);
    expect(load.served.has('heavy')).toBe(false);
    expect(load.served.get('web-11')?.count).toBeGreaterThan(0);
    expect(await servers()).toEqual(['web-10', 'web-11', 'web-9']);
  }, 90_000);

  it('refuses a new bind on a port in use; without the bind guard, sees the failed reload in show proc and rolls back', async () => {
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const heldPort = (holder.address() as AddressInfo).port;
    const templateFile = join(conf, 'haproxy.cfg.liquid');
    const configFile = join(conf, 'renderer.config.ts');
    const template = await readFile(templateFile, 'utf8');
    const config = await readFile(configFile, 'utf8');
    // The lab's supervisor passes SIGHUP to rosterd, which re-reads its config and template.
    const hup = (): boolean => process.kill(lb.pid, 'SIGHUP');
    try {
      const before = await haproxyCfg();
      const { reloads } = (await lab.status()).lb!;
      const clashing = template.replace(/^( {4}bind .*LAB_HTTP_PORT.*)$/m, `$1\n    bind 127.0.0.1:${heldPort}`);
      expect(clashing).not.toBe(template);
      await writeFile(templateFile, clashing);

      let offset = (await lab.log()).length;
      hup();
      expect(await logLine(offset, /E_CHECK_FAILED/)).toContain(`new bind address already in use: 127.0.0.1:${heldPort}`);
      expect(await haproxyCfg()).toBe(before);
      expect((await lab.status()).lb?.reloads).toBe(reloads);

      const unguarded = config.replace('bindGuard: true', 'bindGuard: false');
      expect(unguarded).not.toBe(config);
      await writeFile(configFile, unguarded);
      offset = (await lab.log()).length;
      hup();
      const failure = await logLine(offset, /E_RELOAD_FAILED/);
      expect(failure).toMatch(/HAProxy did not load the new config \(show proc: 1 failed reload/);
      expect(failure).toContain('previous file restored');
      expect(await haproxyCfg()).toBe(before);
      expect((await lab.status()).lb).toMatchObject({ reloads: reloads! + 1, failedReloads: 1, workers: 1 });
      // HAProxy paused its listeners while it retried the bind (~2 s), then resumed them.
      await waitFor(async () => (await httpGet(lb.httpPort)).status === 200, 'HAProxy to serve again', { timeout: 10_000 });
    } finally {
      await writeFile(templateFile, template);
      await writeFile(configFile, config);
      holder.close();
    }
    const offset = (await lab.log()).length;
    hup();
    await logLine(offset, /config reloaded/);
    // A join after that is a server change again: applied at runtime, served at once.
    await lab.run(['add', 'web-12']);
    expect(await logLine(offset, /applied without a reload/)).toContain('add web/web-12');
  }, 90_000);

  it('down stops every process the lab started', async () => {
    const status = await lab.status();
    const groups = [status.lb!.pid, ...status.nodes.filter((n) => n.running).map((n) => n.pid!)];
    expect(groups).toHaveLength(5);
    await lab.run(['down']);
    for (const group of groups) expect(await groupMembers(group)).toEqual([]);
    expect(await lab.status()).toMatchObject({ nodes: [] });
  }, 60_000);
});
