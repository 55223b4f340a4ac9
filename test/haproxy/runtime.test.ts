import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReloader, type Reloader, type ReloadOutcome } from '../../src/reload/reloader.js';
import { masterCliCommand } from '../../src/haproxy/master-cli.js';
import { parseShowProc } from '../../src/haproxy/show-proc.js';
import { createLogger } from '../../src/logger.js';
import { createMetrics } from '../../src/ops/metrics.js';
import { createRenderer } from '../../src/runner/renderer.js';
import { httpGet, startHaproxy, type HaproxyProcess } from '../helpers/haproxy.js';
import { freePort } from '../helpers/ports.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The HAProxy reloader's runtime mode against a real HAProxy 2.6 and real HTTP backends: the file is installed
 * first (as the renderer does), then `run()` gets the batch's before/after bytes and either changes the servers
 * through the master CLI or reloads.
 */

interface App {
  name: string;
  port: number;
  server: Server;
}

let dir: { path: string; cleanup: () => Promise<void> };
let haproxy: HaproxyProcess;
let frontend: number;
const apps = new Map<string, App>();

/** An HTTP backend that says who it is; `/slow?ms=N` answers after N ms. */
async function startApp(name: string): Promise<App> {
  const server = createServer((req, res) => {
    const ms = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('ms') ?? 0);
    setTimeout(() => res.writeHead(200, { 'x-served-by': name }).end(name), ms);
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const app = { name, port, server };
  apps.set(name, app);
  return app;
}

interface Backend {
  /** server name → app name and weight */
  servers: Record<string, { app: string; weight?: number; extra?: string }>;
  /** Extra lines in the frontend (a change outside server lines). */
  frontendExtra?: string;
}

function render({ servers, frontendExtra = '' }: Backend): string {
  const lines = Object.entries(servers).map(([name, s]) => `    server ${name} 127.0.0.1:${apps.get(s.app)!.port}${s.weight === undefined ? '' : ` weight ${s.weight}`}${s.extra ? ` ${s.extra}` : ''}`);
  return `global
    hard-stop-after 10s
    server-state-file ${join(dir.path, 'server-state')}

defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    load-server-state-from-file global
    default-server check inter 500ms fall 2 rise 1

frontend www
    bind 127.0.0.1:${frontend}
    default_backend web${frontendExtra}

backend web
    balance roundrobin
${lines.join('\n')}
`;
}

let current: Backend;
let reloader: Reloader;

/** Installs the new file, then runs the reloader with the batch's change, as the renderer does. */
async function apply(next: Backend, using = reloader): Promise<ReloadOutcome> {
  next = { ...(current.frontendExtra === undefined ? {} : { frontendExtra: current.frontendExtra }), ...next };
  const before = Buffer.from(render(current));
  const after = Buffer.from(render(next));
  await haproxy.writeConfig(after.toString());
  current = next;
  return using.run(() => {}, [{ path: haproxy.configPath, before, after }]);
}

const cli = (command: string): Promise<string> => masterCliCommand(haproxy.masterSocket, command, { timeout: 5000, retryEmpty: true });
const workers = async (): Promise<number[]> => parseShowProc(await cli('show proc')).workers.map((w) => w.pid);

/** `show servers state web`: name → address:port and weight. */
async function running(): Promise<Record<string, string>> {
  const lines = (await cli('@1 show servers state web')).split('\n').filter((l) => /^\d+ web /.test(l));
  return Object.fromEntries(lines.map((l) => l.split(' ')).map((f) => [f[3], `${f[4]}:${f[18]} w${f[7]}`]));
}

/** What the file says, in the same form. */
function expected(backend: Backend): Record<string, string> {
  return Object.fromEntries(Object.entries(backend.servers).map(([name, s]) => [name, `127.0.0.1:${apps.get(s.app)!.port} w${s.weight ?? 1}`]));
}

/** The servers of backend `web` that the running HAProxy has (`show servers state web`), sorted by name. */
async function webServerNames(masterSocket: string): Promise<string[]> {
  return (await masterCliCommand(masterSocket, '@1 show servers state web', { retryEmpty: true }))
    .split('\n')
    .filter((l) => /^\d+ web /.test(l))
    .map((l) => l.split(' ')[3]!)
    .sort();
}

/** Who answers GETs on fresh connections: until each of `names` has (weights may make one rare), at most 300. */
async function servedBy(names: string[]): Promise<Set<string>> {
  const seen = new Set<string>();
  for (let i = 0; i < 300 && !names.every((n) => seen.has(n)); i++) seen.add(String((await httpGet(frontend)).headers['x-served-by']));
  for (let i = 0; i < 10; i++) seen.add(String((await httpGet(frontend)).headers['x-served-by']));
  return seen;
}

beforeAll(async () => {
  dir = await tempDir('rosterd-runtime-');
  frontend = await freePort();
  for (const name of ['a', 'b', 'c', 'd', 'e']) await startApp(name);
  current = { servers: { a: { app: 'a' }, b: { app: 'b' } } };
  haproxy = await startHaproxy({ dir: dir.path, config: render(current) });
  reloader = createReloader(
    { haproxy: { masterSocket: haproxy.masterSocket, method: 'cli', bindGuard: false, runtime: true, drainTimeout: 5000, stateFile: join(dir.path, 'server-state') } },
    { destination: haproxy.configPath, timeout: 10_000, cwd: dir.path },
  );
}, 30_000);

afterAll(async () => {
  await haproxy?.stop();
  for (const app of apps.values()) app.server.close();
  await dir?.cleanup();
});

describe('the HAProxy runtime mode', () => {
  it('adds a server without a new worker: it serves at once', async () => {
    const before = await workers();
    const outcome = await apply({ servers: { ...current.servers, c: { app: 'c' } } });
    expect(outcome).toMatchObject({ ok: true, path: 'runtime', applied: ['add web/c'] });
    expect(await workers()).toEqual(before);
    expect(await running()).toEqual(expected(current));
    expect(await servedBy(['a', 'b', 'c'])).toEqual(new Set(['a', 'b', 'c']));
    // The added server took the backend's default-server settings: its check runs.
    const state = (await cli('@1 show servers state web')).split('\n').find((l) => / c /.test(l))!.split(' ');
    expect(Number(state[13]) & 0x04).toBe(0x04);
  });

  it('changes a weight and an address without a new worker', async () => {
    const before = await workers();
    const outcome = await apply({ servers: { a: { app: 'a', weight: 40 }, b: { app: 'd' }, c: { app: 'c' } } });
    expect(outcome).toMatchObject({ ok: true, path: 'runtime' });
    expect(outcome.applied).toEqual(['set web/a weight 40', `set web/b address 127.0.0.1:${apps.get('d')!.port}`]);
    expect(await workers()).toEqual(before);
    expect(await running()).toEqual(expected(current));
    expect(await servedBy(['a', 'd', 'c'])).toEqual(new Set(['a', 'd', 'c']));
  });

  it('removes a server with requests in flight to it: they finish, then it is deleted, without a new worker', async () => {
    await apply({ servers: { a: { app: 'a' }, b: { app: 'd' }, c: { app: 'c' } } });
    const before = await workers();
    // Slow requests land on every server (round robin, equal weights), the one that leaves included.
    const inFlight = Array.from({ length: 6 }, () => httpGet(frontend, '/slow?ms=800'));
    await new Promise((resolve) => setTimeout(resolve, 200));
    const outcome = await apply({ servers: { a: current.servers.a!, c: current.servers.c! } });
    const responses = await Promise.all(inFlight);
    expect(responses.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(responses.map((r) => r.headers['x-served-by'])).toContain('d');
    expect(outcome).toMatchObject({ ok: true, path: 'runtime', applied: ['remove web/b'] });
    expect(await workers()).toEqual(before);
    expect(await running()).toEqual(expected(current));
    expect(await servedBy(['a', 'c'])).toEqual(new Set(['a', 'c']));
  });

  it('reloads for a change outside server lines, and keeps a moved port across the reload (state file filtered)', async () => {
    const before = await workers();
    // The same server name on another port, in the same batch as a frontend change: one reload.
    const outcome = await apply({ servers: { a: current.servers.a!, c: { app: 'e' } }, frontendExtra: '\n    http-response set-header X-Gen 2' });
    expect(outcome).toMatchObject({ ok: true, path: 'reload', fallback: expect.stringMatching(/frontend www changed outside its server lines/) });
    const after = await workers();
    expect(after).toHaveLength(1);
    expect(before).not.toContain(after[0]);
    expect((await httpGet(frontend)).headers['x-gen']).toBe('2');
    // HAProxy applies a saved port to a server of the same name: the stale line was left out of the state file.
    expect(await running()).toEqual(expected(current));
    expect(await readFile(join(dir.path, 'server-state'), 'utf8')).toMatch(/^1\n# be_id /);
    expect(await servedBy(['a', 'e'])).toEqual(new Set(['a', 'e']));
  });

  it('falls back to a reload when the runtime API refuses a change', async () => {
    const before = await workers();
    // `cookie` is valid in the file but not for a server added at runtime.
    const outcome = await apply({ servers: { ...current.servers, b: { app: 'b', extra: 'cookie b1' } } });
    expect(outcome).toMatchObject({ ok: true, path: 'reload', fallback: expect.stringMatching(/runtime API: "add server web\/b .*": 'cookie' option is not accepted for dynamic server/) });
    expect(before).not.toContain((await workers())[0]);
    expect(await running()).toEqual(expected(current));
  });

  it('falls back to a reload when a leaving server keeps its sessions past drainTimeout; they still finish', async () => {
    const impatient = createReloader(
      { haproxy: { masterSocket: haproxy.masterSocket, method: 'cli', bindGuard: false, runtime: true, drainTimeout: 200 } },
      { destination: haproxy.configPath, timeout: 10_000, cwd: dir.path },
    );
    await apply({ servers: { a: { app: 'a' }, c: { app: 'e' } } });
    const inFlight = Array.from({ length: 6 }, () => httpGet(frontend, '/slow?ms=1500'));
    await new Promise((resolve) => setTimeout(resolve, 200));
    const outcome = await apply({ servers: { a: { app: 'a' }, e: { app: 'e' } } }, impatient);
    expect(outcome).toMatchObject({ ok: true, path: 'reload', fallback: expect.stringMatching(/sessions still open after 200 ms on web\/c \(\d session/) });
    expect((await Promise.all(inFlight)).map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(await running()).toEqual(expected(current));
  });

  it('after 50 random changes the running servers are the file\'s, all applied without a new worker', async () => {
    const before = await workers();
    const names = ['a', 'b', 'c', 'd', 'e'];
    let seed = 11;
    const random = (n: number): number => (seed = (seed * 48271) % 2147483647) % n;
    const paths: string[] = [];
    for (let i = 0; i < 50; i++) {
      const servers = { ...current.servers };
      const name = `s${random(6)}`;
      const kind = random(3);
      if (kind === 0 && Object.keys(servers).length > 1) delete servers[name in servers ? name : Object.keys(servers)[0]!];
      else if (kind === 1 || !(name in servers)) servers[name] = { app: names[random(5)]! };
      else servers[name] = { ...servers[name]!, weight: 1 + random(100) };
      const outcome = await apply({ servers });
      expect(outcome.ok, outcome.reason).toBe(true);
      paths.push(outcome.path!);
      expect(await running()).toEqual(expected(current));
    }
    expect(new Set(paths)).toEqual(new Set(['runtime']));
    expect(await workers()).toEqual(before);
  }, 60_000);
});

describe('a renderer with the HAProxy runtime mode', () => {
  const TEMPLATE = `global
    hard-stop-after 10s
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend www
    bind 127.0.0.1:{{ env.FRONTEND_PORT }}
    default_backend web
backend web
{%- for m in members %}
    server {{ m.name | slug }} {{ m.address }}:{{ m.port }}
{%- endfor %}
`;
  let work: { path: string; cleanup: () => Promise<void> };
  let proxy: HaproxyProcess;
  const members = (names: string[]): string => JSON.stringify(names.map((name) => ({ name, address: '127.0.0.1', port: apps.get(name)!.port })));

  beforeAll(async () => {
    work = await tempDir('rosterd-runtime-renderer-');
  });
  afterAll(async () => {
    delete process.env.FRONTEND_PORT;
    await proxy?.stop();
    await work?.cleanup();
  });

  it('applies a join and a departure before the candidate\'s check: a failed check undoes them, a passed one installs the file', async () => {
    const dirPath = join(work.path, 'early');
    await mkdir(dirPath, { recursive: true });
    const port = await freePort();
    process.env.FRONTEND_PORT = String(port);
    const masterSocket = join(dirPath, 'master.sock');
    const destination = join(dirPath, 'haproxy.cfg');
    // The check waits until the test says how it ends (a file holding `ok` or `fail`), and shows it is waiting.
    const gate = join(dirPath, 'gate');
    const gateScript = join(dirPath, 'gate.mjs');
    await writeFile(
      gateScript,
      `import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
const gate = process.argv[2];
writeFileSync(gate + '.waiting', '');
const timer = setInterval(() => {
  if (!existsSync(gate)) return;
  clearInterval(timer);
  const verdict = readFileSync(gate, 'utf8').trim();
  rmSync(gate);
  rmSync(gate + '.waiting', { force: true });
  if (verdict !== 'ok') console.error('[ALERT] the gate says no');
  process.exit(verdict === 'ok' ? 0 : 1);
}, 10);
`,
    );
    const config = {
      sources: { web: { type: 'file' as const, path: join(dirPath, 'members.json') } },
      templates: [
        {
          name: 'haproxy',
          contents: TEMPLATE,
          destination,
          env: ['FRONTEND_PORT'],
          check: [process.execPath, gateScript, gate],
          reload: { haproxy: { masterSocket, runtime: true } },
          timeout: '60s',
        },
      ],
    };
    await writeFile(join(dirPath, 'members.json'), members(['a']));
    await writeFile(gate, 'ok');
    await (await createRenderer(config)).renderOnce({ reload: false });
    const early = await startHaproxy({ dir: dirPath, config: await readFile(destination, 'utf8') });
    try {
      const pids = async (): Promise<number[]> => parseShowProc(await masterCliCommand(masterSocket, 'show proc', { retryEmpty: true })).workers.map((w) => w.pid);
      const before = await pids();
      const names = (): Promise<string[]> => webServerNames(masterSocket);
      // The renderer's log, for the message of a failure.
      const logged: string[] = [];
      const logger = createLogger({ level: 'debug', format: 'json', destination: new Writable({ write: (chunk: Buffer, _encoding, done) => done(void logged.push(chunk.toString().trim())) }) });
      const renderer = await createRenderer(config, { logger });
      const failed: string[] = [];
      const reloads: string[] = [];
      renderer.on('checkFailed', (e) => failed.push(e.error.message));
      renderer.on('reloaded', (e) => reloads.push(e.path));
      await renderer.start();
      try {
        const waiting = async (): Promise<boolean> => (await readFile(`${gate}.waiting`).then(() => true, () => false));

        // A join: in the running HAProxy, and serving, while its check still waits; the file is not installed yet.
        await writeFile(join(dirPath, 'members.json'), members(['a', 'c']));
        await waitFor(async () => (await waiting()) && (await names()).includes('c'), 'web/c to run while the check waits', { timeout: 30_000 });
        await waitFor(async () => (await httpGet(port)).headers['x-served-by'] === 'c', 'web/c to serve while the check waits', { timeout: 30_000, interval: 10 });
        expect(await waiting()).toBe(true);
        expect(await readFile(destination, 'utf8')).not.toMatch(/server c /);

        // The check fails: the add is undone, the file stays as it was.
        await writeFile(gate, 'fail');
        await waitFor(() => failed.length > 0, 'the check to fail', { timeout: 30_000 });
        expect(failed[0]).toMatch(/the gate says no/);
        expect(await names()).toEqual(['a']);
        expect(await readFile(destination, 'utf8')).not.toMatch(/server c /);
        expect(reloads).toEqual([]);

        // The next join passes its check: the file is installed and the server stays, still without a reload.
        await writeFile(join(dirPath, 'members.json'), members(['a', 'd']));
        await waitFor(async () => (await waiting()) && (await names()).includes('d'), 'web/d to run while the check waits', { timeout: 30_000 });
        await writeFile(gate, 'ok');
        await waitFor(() => reloads.length > 0, 'the change to be applied', { timeout: 30_000 });
        expect(reloads).toEqual(['runtime']);
        expect(await readFile(destination, 'utf8')).toMatch(/server d /);
        expect(await names()).toEqual(['a', 'd']);

        // A departure: drained before the check (no new requests), made ready again when the check fails.
        const admin = async (server: string): Promise<number | undefined> => {
          const line = (await masterCliCommand(masterSocket, '@1 show servers state web', { retryEmpty: true })).split('\n').find((l) => l.split(' ')[3] === server);
          return line === undefined ? undefined : Number(line.split(' ')[6]);
        };
        await writeFile(join(dirPath, 'members.json'), members(['d']));
        await waitFor(async () => (await waiting()) && ((await admin('a')) ?? 0) & 0x08, 'web/a to be drained while the check waits', { timeout: 30_000 });
        await writeFile(gate, 'fail');
        await waitFor(() => failed.length > 1, 'the second check to fail', { timeout: 30_000 });
        expect(await admin('a')).toBe(0);
        expect(await names()).toEqual(['a', 'd']);
        expect(await readFile(destination, 'utf8')).toMatch(/server a /);
        expect(await pids()).toEqual(before);
      } catch (err) {
        throw new Error(`${(err as Error).message}\n--- rosterd log ---\n${logged.join('\n')}`, { cause: err });
      } finally {
        await renderer.stop();
      }
    } finally {
      await early.stop();
    }
  }, 120_000);

  it('applies joins at runtime, counts them by path, and converges after a stop between an install and its apply', async () => {
    const port = await freePort();
    process.env.FRONTEND_PORT = String(port);
    const masterSocket = join(work.path, 'master.sock');
    const config = {
      sources: { web: { type: 'file' as const, path: join(work.path, 'members.json') } },
      templates: [
        {
          name: 'haproxy',
          contents: TEMPLATE,
          destination: join(work.path, 'haproxy.cfg'),
          env: ['FRONTEND_PORT'],
          check: ['haproxy', '-c', '-q', '-f', '{{candidate}}'],
          reload: { haproxy: { masterSocket, runtime: true } },
        },
      ],
    };
    await writeFile(join(work.path, 'members.json'), members(['a']));
    // The first file, before HAProxy starts (as the lab does): installed, nothing reloaded.
    await (await createRenderer(config)).renderOnce({ reload: false });
    proxy = await startHaproxy({ dir: work.path, config: await readFile(join(work.path, 'haproxy.cfg'), 'utf8') });
    const pids = await parseShowProc(await masterCliCommand(masterSocket, 'show proc')).workers.map((w) => w.pid);
    const names = (): Promise<string[]> => webServerNames(masterSocket);

    const renderer = await createRenderer(config);
    const metrics = createMetrics(renderer, 'test');
    const reloads: { path: string; fallback?: string }[] = [];
    renderer.on('reloaded', (e) => reloads.push({ path: e.path, ...(e.fallback === undefined ? {} : { fallback: e.fallback }) }));
    await renderer.start();
    await writeFile(join(work.path, 'members.json'), members(['a', 'b']));
    await waitFor(() => reloads.length > 0, 'the change to be applied');
    expect(reloads).toEqual([{ path: 'runtime' }]);
    expect(await names()).toEqual(['a', 'b']);
    expect(await metrics.registry.getSingleMetricAsString('rosterd_applied_total')).toMatch(/rosterd_applied_total\{template="haproxy",path="runtime"\} 1/);
    expect(parseShowProc(await masterCliCommand(masterSocket, 'show proc')).workers.map((w) => w.pid)).toEqual(pids);
    metrics.close();
    await renderer.stop();

    // Stopped after installing a file and before applying it: another render installs without applying.
    await writeFile(join(work.path, 'members.json'), members(['a', 'c']));
    await (await createRenderer(config)).renderOnce({ reload: false });
    expect(await names()).toEqual(['a', 'b']);

    // Started again, it finds the file unchanged but not what runs, and applies it.
    const restarted = await createRenderer(config);
    const again: string[] = [];
    restarted.on('reloaded', (e) => again.push(e.path));
    await restarted.start();
    await waitFor(() => again.length > 0, 'the file to be applied again');
    await restarted.stop();
    expect(again).toEqual(['reload']);
    expect(await names()).toEqual(['a', 'c']);
  }, 30_000);
});
