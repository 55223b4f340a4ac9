import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SerfClient } from '../../src/serf/index.js';
import { runCli, startDaemon, type Daemon } from '../helpers/cli.js';
import { startSerfAgent, type SerfAgent } from '../helpers/serf.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The CLI rendering from real Serf agents: the output follows joins and leaves, survives the agent going
 * away and comes back with it, and auth is a clear error.
 */

const TEMPLATE = '{% for m in members %}server {{ m.name | slug }} {{ m.address }}:{{ m.port }} # {{ m.tags.note | default: "-" }}\n{% endfor %}';

let dir: string;
let cleanup: () => Promise<void>;
const agents: SerfAgent[] = [];
let lb: SerfAgent;

async function agent(name: string, tags: Record<string, string>, options: Partial<Parameters<typeof startSerfAgent>[0]> = {}): Promise<SerfAgent> {
  const started = await startSerfAgent({ name, tags, join: lb ? [lb.bindAddr] : [], ...options });
  agents.push(started);
  return started;
}

async function writeConfig(file: string, source: Record<string, unknown>): Promise<string> {
  const path = join(dir, file);
  await writeFile(path, JSON.stringify({ sources: { cluster: { type: 'serf', resyncDelay: '50ms', ...source } }, templates: [{ contents: TEMPLATE, destination: 'out.cfg' }] }));
  return path;
}

const output = (): Promise<string> => readFile(join(dir, 'out.cfg'), 'utf8').catch(() => '');

beforeAll(async () => {
  ({ path: dir, cleanup } = await tempDir());
  lb = await startSerfAgent({ name: 'lb' }); // the agent beside the load balancer: no role tag, so not rendered
  agents.push(lb);
}, 30_000);

afterAll(async () => {
  await Promise.all(agents.map((a) => a.kill()));
  await cleanup();
}, 30_000);

describe('rendering from Serf', () => {
  let daemon: Daemon | undefined;
  afterAll(async () => {
    await daemon?.stop('SIGKILL').catch(() => undefined);
  });

  it('renders three agents, follows a join and a leave, keeps the output while the agent is down and resyncs', async () => {
    await agent('web-1', { role: 'web', port: '8081' });
    await agent('web 2', { role: 'web', port: '8082', note: 'spaces fine' });
    const config = await writeConfig('renderer.config.json', { rpcAddr: lb.rpcAddr, tags: { role: 'web' } });
    daemon = startDaemon(['-c', config], { cwd: dir });
    await waitFor(async () => (await output()).split('\n').filter(Boolean).length === 2, 'two web members rendered', { timeout: 20_000 });
    expect(await output()).toMatch(/^server web_2-[0-9a-f]{6} 127\.0\.0\.1:8082 # spaces fine\nserver web-1 127\.0\.0\.1:8081 # -\n$/);

    const third = await agent('web-3', { role: 'web', port: '8083' });
    await waitFor(async () => (await output()).includes('server web-3 127.0.0.1:8083'), 'the join rendered', { timeout: 20_000 });

    await third.stop('SIGINT'); // a graceful leave
    await waitFor(async () => !(await output()).includes('web-3'), 'the leave rendered', { timeout: 20_000 });

    // The agent rosterd talks to goes away: the output stays, the error is reported.
    const before = await output();
    const since = daemon.logs.length;
    await lb.kill();
    await daemon.waitForLog(/cannot connect|closed/, { since, timeout: 20_000 });
    expect(await output()).toBe(before);

    // While it is down a node joins the cluster through another agent; the restarted agent rejoins and
    // rosterd renders the current members, including the one it never saw an event for.
    const web1 = agents.find((a) => a.name === 'web-1')!;
    await startSerfAgent({ name: 'web-4', tags: { role: 'web', port: '8084' }, join: [web1.bindAddr] }).then((a) => agents.push(a));
    lb = await startSerfAgent({ name: 'lb', bindPort: lb.bindPort, rpcPort: lb.rpcPort, join: [web1.bindAddr] });
    agents.push(lb);
    await waitFor(async () => (await output()).includes('server web-4 127.0.0.1:8084'), 'a resync after the agent came back', { timeout: 30_000 });
  }, 120_000);

  it('drops a member whose tag value holds a newline: it never reaches the output', async () => {
    const evil = await agent('evil', { role: 'web', port: '8090' });
    const client = await SerfClient.connect({ address: evil.rpcAddr });
    await client.tags({ note: 'x\n    server injected 6.6.6.6:80' });
    await client.close();
    await daemon!.waitForLog(/member "evil" dropped: tag "note" contains a control character/, { timeout: 20_000 });
    expect(await output()).not.toContain('injected');
    expect(await output()).not.toContain('evil');
  }, 60_000);
});

describe('auth', () => {
  let secured: SerfAgent;
  beforeAll(async () => {
    secured = await startSerfAgent({ name: 'secured', authKey: 'open sesame', tags: { port: '9000' } });
    agents.push(secured);
  }, 30_000);

  it('renders with the right key', async () => {
    const config = await writeConfig('right.json', { rpcAddr: secured.rpcAddr, authKey: 'open sesame' });
    const run = await runCli(['render', '--once', '--timeout', '10s', '-c', config]);
    expect(run.code).toBe(0);
    expect(await output()).toBe('server secured 127.0.0.1:9000 # -\n');
  });

  it('a wrong key is a clear error, exit 3 at once, and the key never reaches the log', async () => {
    const config = await writeConfig('wrong.json', { rpcAddr: secured.rpcAddr, authKey: 'wrong-key-value' });
    const started = Date.now();
    const run = await runCli(['render', '--once', '--timeout', '20s', '--log-level', 'trace', '-c', config]);
    expect(run.code).toBe(3);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(run.stderr).toContain(`the Serf agent at ${secured.rpcAddr} refused the auth key: check \`authKey\``);
    expect(run.stderr).not.toContain('wrong-key-value');
  });
});
