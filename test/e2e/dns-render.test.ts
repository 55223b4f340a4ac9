import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startDaemon, type Daemon } from '../helpers/cli.js';
import { startDnsmasq, type Dnsmasq } from '../helpers/dnsmasq.js';
import { freePort } from '../helpers/ports.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

/** The CLI rendering from a real dnsmasq: the daemon follows the records, and survives the server's absence. */

const TEMPLATE = '{% for m in members %}server {{ m.name | slug }} {{ m.address }}:{{ m.port }}\n{% endfor %}';

let dir: string;
let cleanup: () => Promise<void>;
let dns: Dnsmasq;

beforeAll(async () => {
  ({ path: dir, cleanup } = await tempDir());
  dns = await startDnsmasq({
    srvRecords: [
      { name: '_http._tcp.web.test', target: 'web-a.web.test', port: 8080, priority: 10, weight: 5 },
      { name: '_http._tcp.web.test', target: 'web-b.web.test', port: 8081, priority: 10, weight: 5 },
    ],
    hostsFiles: { web: '10.0.0.1 web-a.web.test\n' },
  });
}, 30_000);

afterAll(async () => {
  await dns.cleanup();
  await cleanup();
});

async function writeConfig(file: string, source: Record<string, unknown>, template: Record<string, unknown> = {}): Promise<string> {
  const path = join(dir, file);
  const config = {
    sources: { web: { type: 'dns', servers: [dns.server], interval: '200ms', timeout: '300ms', ...source } },
    templates: [{ contents: TEMPLATE, destination: `${file}.out`, ...template }],
  };
  await writeFile(path, JSON.stringify(config));
  return path;
}

describe('rendering from DNS', () => {
  let daemon: Daemon | undefined;
  afterAll(async () => {
    await daemon?.stop('SIGKILL').catch(() => undefined);
  });

  it('the daemon follows a record added to the hosts file, keeps its output while the server is down, and recovers', async () => {
    const config = await writeConfig('srv.json', { name: '_http._tcp.web.test' });
    const output = (): Promise<string> => readFile(`${config}.out`, 'utf8').catch(() => '');
    daemon = startDaemon(['-c', config], { cwd: dir });
    await waitFor(async () => (await output()) === 'server web-a.web.test:8080 10.0.0.1:8080\n', 'the first render (web-b has no address yet)');

    await dns.writeHosts('web', '10.0.0.1 web-a.web.test\n10.0.0.2 web-b.web.test\n');
    await waitFor(async () => (await output()).includes('server web-b.web.test:8081 10.0.0.2:8081'), 'the added record rendered');

    const before = await output();
    const since = daemon.logs.length;
    await dns.stop();
    await daemon.waitForLog(/SRV lookup of _http\._tcp\.web\.test/, { since });
    expect(await output()).toBe(before);

    await dns.writeHosts('web', '10.0.0.1 web-a.web.test\n10.0.0.3 web-b.web.test\n');
    await dns.restart();
    await waitFor(async () => (await output()).includes('10.0.0.3:8081'), 'a render after the server came back', { timeout: 15_000 });
  }, 60_000);

  it('render --once: a name that does not exist renders an empty set; minMembers guards it (exit 1)', async () => {
    const empty = await writeConfig('none.json', { name: '_nope._tcp.web.test' }, { contents: 'servers: {{ members | size }}\n' });
    const run = await runCli(['render', '--once', '-c', empty]);
    expect(run.code).toBe(0);
    expect(await readFile(`${empty}.out`, 'utf8')).toBe('servers: 0\n');

    const guarded = await writeConfig('guarded.json', { name: '_nope._tcp.web.test' }, { minMembers: 1 });
    await writeFile(`${guarded}.out`, 'previous\n');
    const refused = await runCli(['render', '--once', '-c', guarded]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('fewer than minMembers 1');
    expect(await readFile(`${guarded}.out`, 'utf8')).toBe('previous\n');
  });

  it('render --once: an unreachable server is exit 3 after --timeout', async () => {
    const port = await freePort(); // nothing answers there
    const config = await writeConfig('down.json', { name: '_http._tcp.web.test', servers: [`127.0.0.1:${port}`] });
    const started = Date.now();
    const run = await runCli(['render', '--once', '--timeout', '1500ms', '-c', config]);
    expect(run.code).toBe(3);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1500);
    expect(run.stderr).toContain('no first snapshot within 1500 ms');
    expect(run.stderr).toContain(`127.0.0.1:${port}`);
  });
});
