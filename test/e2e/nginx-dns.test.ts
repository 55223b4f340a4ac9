import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { groupMembers, httpGet } from '../helpers/haproxy.js';
import { createLab, type Lab } from '../helpers/lab.js';
import { startLoad, type Load, type LoadReport } from '../helpers/load.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The nginx + DNS example, end to end: a real dnsmasq serving the SRV records, a real nginx, real Node apps
 * and the rosterd daemon, all started by the example's own `lab.mjs` from its own config, template and check
 * script (copied, so that the test can edit the template and send SIGHUP). Load runs on nginx while records
 * come and go.
 */

const EXAMPLE = fileURLToPath(new URL('../../examples/nginx-dns/', import.meta.url));

/** `lab.mjs status --json` (the parts the test reads). */
interface NginxLabStatus {
  lab: { httpPort: number; dnsPort: number } | null;
  programs: Record<'dnsmasq' | 'nginx' | 'rosterd', { pid?: number; running: boolean }>;
  records: { name: string; port: number; priority: number; weight: number }[];
  upstream: number[];
  nodes: { name: string; pid: number; port: number; running: boolean; inDns: boolean; inUpstream: boolean }[];
}

let dir: string;
let cleanup: (() => Promise<void>) | undefined;
let lab: Lab<NginxLabStatus>;
let httpPort: number;
let conf: string;

beforeAll(async () => {
  ({ path: dir, cleanup } = await tempDir('rosterd-nginx-'));
  conf = join(dir, 'conf');
  await mkdir(conf);
  for (const file of ['renderer.config.ts', 'upstream.conf.liquid', 'check.mjs']) await copyFile(join(EXAMPLE, file), join(conf, file));
  lab = createLab<NginxLabStatus>(join(dir, 'run'), join(EXAMPLE, 'lab.mjs'));
  await lab.run(['up', '--nodes', '2', '--config', join(conf, 'renderer.config.ts')]);
  httpPort = (await lab.status()).lab!.httpPort;
}, 60_000);

afterAll(async () => {
  await lab?.run(['down'], { allowFailure: true }).catch(() => undefined);
  lab?.killAll();
  await cleanup?.();
}, 60_000);

const upstreamConf = (): Promise<string> => readFile(join(lab.dir, 'nginx', 'upstream.conf'), 'utf8');
const portOf = async (name: string): Promise<number> => (await lab.status()).nodes.find((n) => n.name === name)!.port;
const rosterdLog = (): Promise<string> => lab.log('rosterd.log');

/** Waits for a line of rosterd's log written after `offset` (a length of the log) that matches. */
async function logLine(offset: number, pattern: RegExp, timeout = 20_000): Promise<string> {
  return waitFor(async () => (await rosterdLog()).slice(offset).split('\n').find((line) => pattern.test(line)), `a rosterd log line matching ${pattern}`, { timeout, interval: 50 });
}

/** Runs `body` under load on nginx and stops the load however `body` ends. */
async function underLoad(options: { rate: number; maxSeconds: number }, body: (load: Load) => Promise<void>): Promise<{ load: Load; reports: LoadReport[] }> {
  const load = startLoad({ port: httpPort, connections: 8, ...options });
  let reports: LoadReport[] = [];
  try {
    await body(load);
  } finally {
    reports = await load.stop();
  }
  return { load, reports };
}

/**
 * Fails when a client saw a failed request, with the reports and nginx's logs of failed requests. The one
 * exception, and an nginx 1.22 limit: a reload makes the old worker close its idle keep-alive connections at
 * once, so a keep-alive client that sends its next request at that instant gets a TCP reset (nginx ≥ 1.27.4
 * has `keepalive_min_timeout` against it). Such a request never reached nginx; a client that retries an
 * idempotent request on a reused connection (RFC 9112, 9.3.1) loses nothing. Anything else (an error
 * answer, a timeout, a refused connection, a reset of a new connection) fails the test.
 */
async function expectNoFailure(reports: LoadReport[]): Promise<void> {
  const access = await readFile(join(lab.dir, 'nginx', 'logs', 'access.log'), 'utf8').catch(() => '');
  const failed = access.split('\n').filter((line) => / 5\d\d "/.test(line));
  const errors = (await readFile(join(lab.dir, 'nginx', 'logs', 'error.log'), 'utf8').catch(() => '')).split('\n').filter((l) => /\[(error|crit|alert|emerg)\]/.test(l));
  for (const report of reports) {
    const resets = report.mode === 'keep-alive' ? (report.errorCodes.ECONNRESET ?? 0) : 0;
    const why = `${report.mode}: ${JSON.stringify(report.errorCodes)}\n${[...report.errorSamples, ...failed.slice(-5), ...errors.slice(-5)].join('\n')}`;
    expect({ ...report, errors: report.errors - resets }, why).toMatchObject({ errors: 0, timeouts: 0, non2xx: 0 });
    expect(report.requests).toBeGreaterThan(50);
    if (resets > 0) console.log(`nginx-dns: ${resets} keep-alive request(s) of ${report.requests} reset by a reload`);
  }
}

describe('the nginx + DNS lab (examples/nginx-dns)', () => {
  it('serves the nodes whose records were there before nginx started, from its first upstream.conf on', async () => {
    const seen = new Set<string>();
    await waitFor(async () => seen.add(decodeURIComponent(String((await httpGet(httpPort)).headers['x-served-by']))).size === 2, 'both first nodes to answer');
    expect([...seen].sort()).toEqual(['web-1', 'web-2']);
    const status = await lab.status();
    expect(status.records.map((r) => r.name).sort()).toEqual(['web-1.nginx-dns.test', 'web-2.nginx-dns.test']);
    expect(status.upstream.sort()).toEqual(status.nodes.map((n) => n.port).sort());
    // `render --once --no-reload` wrote it before nginx started; the daemon found it right and reloaded nothing.
    expect(await rosterdLog()).not.toMatch(/reloaded/);
  });

  it('answers every request while records are added and withdrawn under load, one node killed', async () => {
    const add = (name: string, ...flags: string[]) => lab.run(['add', name, ...flags]);
    const { load, reports } = await underLoad({ rate: 200, maxSeconds: 120 }, async (load) => {
      const seen = (names: string[]) => Promise.all(names.map((name) => waitFor(() => load.served.get(name), `${name} to serve the load`, { timeout: 10_000 })));
      await seen(['web-1', 'web-2']);
      // Two commands at once take turns at rewriting dnsmasq's records.
      await Promise.all([add('web-3'), add('web-4')]);
      await seen(['web-3', 'web-4']);
      await Promise.all([lab.run(['remove', 'web-1']), lab.run(['remove', 'web-2', '--kill'])]);
      await Promise.all([add('web-5', '--weight', '5'), add('spare', '--priority', '20')]);
      await seen(['web-5']);
      await lab.run(['remove', 'web-3']);
    });

    await expectNoFailure(reports);
    for (const name of ['web-1', 'web-2', 'web-3', 'web-4', 'web-5']) expect(load.served.get(name)?.count, `requests served by ${name}`).toBeGreaterThan(0);
    // A record with a higher priority is a backup server: unused while the primary ones answer.
    expect(load.served.has('spare')).toBe(false);
    const upstream = await upstreamConf();
    expect(upstream).toContain(`server 127.0.0.1:${await portOf('web-5')} weight=5;`);
    expect(upstream).toContain(`server 127.0.0.1:${await portOf('spare')} backup;`);
    expect((await lab.status()).upstream.sort()).toEqual((await lab.status()).nodes.map((n) => n.port).sort());
  }, 150_000);

  it('never installs a candidate nginx refuses, keeps serving, and recovers once the template is fixed', async () => {
    const templateFile = join(conf, 'upstream.conf.liquid');
    const template = await readFile(templateFile, 'utf8');
    const rosterdPid = (await lab.status()).programs.rosterd.pid!;
    const before = await upstreamConf();
    const { load, reports } = await underLoad({ rate: 100, maxSeconds: 60 }, async (load) => {
      try {
        const broken = template.replace('keepalive 16;', 'keepalive sixteen;');
        expect(broken).not.toBe(template);
        await writeFile(templateFile, broken);
        let offset = (await rosterdLog()).length;
        // SIGHUP: rosterd re-reads its config and template, and renders.
        process.kill(rosterdPid, 'SIGHUP');
        expect(await logLine(offset, /\[emerg\]/)).toMatch(/invalid value "sixteen" in .*\.upstream\.conf\.rosterd-[0-9a-f]+:\d+/);
        expect(await logLine(offset, /E_CHECK_FAILED/)).toContain('upstream.conf left as it was');
        expect(await upstreamConf()).toBe(before);

        // Every render fails its check until the template is fixed: a new record is not served meanwhile.
        offset = (await rosterdLog()).length;
        await lab.run(['add', 'web-6', '--no-wait']);
        await logLine(offset, /E_CHECK_FAILED/);
        expect(await upstreamConf()).toBe(before);
      } finally {
        await writeFile(templateFile, template);
      }
      const offset = (await rosterdLog()).length;
      process.kill(rosterdPid, 'SIGHUP');
      await logLine(offset, /reloaded: nginx -s reload/);
      await waitFor(() => load.served.get('web-6'), 'web-6 to serve the load', { timeout: 15_000 });
    });
    await expectNoFailure(reports);
    expect(load.served.get('web-6')?.count).toBeGreaterThan(0);
    expect(await upstreamConf()).toContain(`server 127.0.0.1:${await portOf('web-6')};`);
  }, 90_000);

  it('down stops every process the lab started', async () => {
    const status = await lab.status();
    const groups = [...Object.values(status.programs).map((p) => p.pid!), ...status.nodes.map((n) => n.pid)];
    expect(groups).toHaveLength(3 + 4);
    await lab.run(['down']);
    for (const group of groups) expect(await groupMembers(group)).toEqual([]);
    expect(await lab.status()).toMatchObject({ lab: null, nodes: [] });
  }, 60_000);
});
