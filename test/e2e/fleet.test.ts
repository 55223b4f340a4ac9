import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetView } from '../../src/fleet/survey.js';
import { runCli, startDaemon, type Daemon } from '../helpers/cli.js';
import { freePort } from '../helpers/ports.js';
import { startSerfAgent, type SerfAgent } from '../helpers/serf.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

/**
 * A fleet of three load balancers: three Serf agents, a rosterd beside each, rendering the same web nodes.
 * One is given a different template: `rosterd fleet` and `/metrics` flag it, and stop once it is fixed. One
 * that is slow to follow a change lags until it catches up.
 */

const TEMPLATE = 'backend web\n{% for m in members %}  server {{ m.name }} {{ m.address }}:{{ m.port }}\n{% endfor %}';
const ODD_TEMPLATE = `${TEMPLATE}  # a local change\n`;

// A group of this run's own: rosterds of other tests' clusters (on reused ports) stay out of its surveys.
const GROUP = `e2e-${process.pid}`;
let dir: string;
let cleanup: () => Promise<void>;
const agents: SerfAgent[] = [];
const lbs: { agent: SerfAgent; dir: string; port: number; daemon?: Daemon }[] = [];

async function writeConfig(lb: (typeof lbs)[number], template: string, extra: Record<string, unknown> = {}): Promise<string> {
  const config = {
    sources: { web: { type: 'serf', rpcAddr: lb.agent.rpcAddr, tags: { role: 'web' }, resyncDelay: '50ms' } },
    templates: [{ name: 'haproxy', contents: template, destination: 'haproxy.cfg', ...extra }],
    http: { listen: `127.0.0.1:${lb.port}` },
    fleet: { group: GROUP, interval: '1s', timeout: '700ms', lag: '1s' },
  };
  const file = join(lb.dir, 'renderer.config.json');
  await writeFile(file, JSON.stringify(config));
  return file;
}

interface FleetRun {
  code: number | null;
  view: FleetView;
  self: string;
}

/** `rosterd fleet --json` from the first load balancer. */
async function fleet(...args: string[]): Promise<FleetRun> {
  const run = await runCli(['fleet', '--json', '-c', join(lbs[0]!.dir, 'renderer.config.json'), ...args], { timeout: 20_000 });
  if (run.code !== 0 && run.code !== 1) throw new Error(`rosterd fleet exited ${run.code}: ${run.stderr}`);
  return { code: run.code, ...(JSON.parse(run.stdout) as { view: FleetView; self: string }) };
}

const node = (run: FleetRun, name: string) => run.view.nodes.find((n) => n.node === name);

async function metric(lb: (typeof lbs)[number], series: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${lb.port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

beforeAll(async () => {
  ({ path: dir, cleanup } = await tempDir());
  const first = await startSerfAgent({ name: 'lb-1' });
  agents.push(first);
  agents.push(...(await Promise.all(['lb-2', 'lb-3'].map((name) => startSerfAgent({ name, join: [first.bindAddr] })))));
  agents.push(...(await Promise.all(['web-1', 'web-2'].map((name, i) => startSerfAgent({ name, tags: { role: 'web', port: String(8081 + i) }, join: [first.bindAddr] })))));
  for (const agent of agents.slice(0, 3)) {
    const lbDir = join(dir, agent.name);
    await mkdir(lbDir);
    lbs.push({ agent, dir: lbDir, port: await freePort() });
  }
}, 60_000);

afterAll(async () => {
  await Promise.all(lbs.map((lb) => lb.daemon?.stop('SIGKILL').catch(() => undefined)));
  await Promise.all(agents.map((a) => a.kill()));
  await cleanup();
}, 30_000);

describe('a fleet of three load balancers', () => {
  it('flags the one given a different template, in `rosterd fleet` and /metrics', async () => {
    for (const [i, lb] of lbs.entries()) {
      const config = await writeConfig(lb, i === 2 ? ODD_TEMPLATE : TEMPLATE);
      lb.daemon = startDaemon(['-c', config], { cwd: lb.dir });
    }
    const rendered = (lb: (typeof lbs)[number]) => readFile(join(lb.dir, 'haproxy.cfg'), 'utf8').catch(() => '');
    await waitFor(async () => (await Promise.all(lbs.map(rendered))).every((text) => text.includes('web-2')), 'every load balancer rendered both web nodes', { timeout: 30_000 });

    // Every rosterd answers; lb-3 differs at once, and lags once it has differed for longer than --lag.
    const run = await waitFor(async () => {
      const result = await fleet('--lag', '1h');
      return result.view.nodes.length === 3 ? result : undefined;
    }, 'three rosterds in the survey', { timeout: 20_000 });
    expect(run.code).toBe(0);
    expect(run.self).toBe('lb-1');
    expect(run.view.nodes.map((n) => [n.node, n.flagged, n.lagging])).toEqual([
      ['lb-1', false, false],
      ['lb-2', false, false],
      ['lb-3', true, false],
    ]);
    expect(node(run, 'lb-3')!.templates).toMatchObject([{ template: 'haproxy', state: 'differs', members: 2 }]);
    expect(node(run, 'lb-3')!.templates[0]!.hash).not.toBe(node(run, 'lb-1')!.templates[0]!.hash);
    expect(run.view.templates).toMatchObject([{ template: 'haproxy', majority: node(run, 'lb-1')!.templates[0]!.hash, split: false, ok: 2, differing: 1, lagging: 0 }]);

    const strict = await waitFor(async () => {
      const result = await fleet('--lag', '500ms');
      return node(result, 'lb-3')?.lagging ? result : undefined;
    }, 'lb-3 lagging', { timeout: 20_000 });
    expect(strict.code).toBe(1);
    expect(strict.view.nodes.filter((n) => n.flagged).map((n) => n.node)).toEqual(['lb-3']);

    // The table says the same, lb-1 starred as the rosterd asked through.
    const table = await runCli(['fleet', '--lag', '500ms', '-c', join(lbs[0]!.dir, 'renderer.config.json')], { timeout: 20_000 });
    expect(table.code).toBe(1);
    expect(table.stdout).toMatch(/^lb-1 \* +haproxy +ok /m);
    expect(table.stdout).toMatch(/^lb-3 +haproxy +LAGGING /m);
    expect(table.stdout).toContain(`3 rosterds of group ${GROUP} answered; 1 flagged`);

    // Each daemon's /metrics shows it too (its own survey, every second, with fleet.lag 1s).
    await waitFor(async () => (await metric(lbs[0]!, 'rosterd_fleet_lagging{template="haproxy"}')) === 1, 'lb-1 counting one lagging rosterd', { timeout: 20_000 });
    expect(await metric(lbs[0]!, 'rosterd_fleet_rosterds')).toBe(3);
    expect(await metric(lbs[0]!, 'rosterd_fleet_differing{template="haproxy"}')).toBe(1);
    expect(await metric(lbs[0]!, 'rosterd_fleet_in_majority{template="haproxy"}')).toBe(1);
    await waitFor(async () => (await metric(lbs[2]!, 'rosterd_fleet_in_majority{template="haproxy"}')) === 0, 'lb-3 knowing it is not in the majority', { timeout: 20_000 });
  }, 120_000);

  it('no longer flags it once its template is fixed', async () => {
    const lb3 = lbs[2]!;
    // The fixed config also debounces for long: the next case needs a load balancer that is slow to follow.
    await writeConfig(lb3, TEMPLATE, { wait: { min: '12s', max: '12s' } });
    lb3.daemon!.child.kill('SIGHUP');
    const run = await waitFor(async () => {
      const result = await fleet('--lag', '0ms');
      return result.view.nodes.length === 3 && result.code === 0 ? result : undefined;
    }, 'a converged fleet', { timeout: 30_000 });
    expect(run.view.nodes.map((n) => n.flagged)).toEqual([false, false, false]);
    expect(run.view.templates).toMatchObject([{ template: 'haproxy', ok: 3, differing: 0, lagging: 0 }]);
    await waitFor(async () => (await metric(lbs[0]!, 'rosterd_fleet_differing{template="haproxy"}')) === 0, 'lb-1 counting no differing rosterd', { timeout: 20_000 });
    await waitFor(async () => (await metric(lb3, 'rosterd_fleet_in_majority{template="haproxy"}')) === 1, 'lb-3 back in the majority', { timeout: 20_000 });
  }, 60_000);

  it('marks a load balancer slow to follow a change as lagging, until it catches up', async () => {
    const web3 = await startSerfAgent({ name: 'web-3', tags: { role: 'web', port: '8083' }, join: [lbs[0]!.agent.bindAddr] });
    agents.push(web3);
    const lagging = await waitFor(async () => {
      const result = await fleet('--lag', '500ms');
      // All three answers: on a busy machine one may miss the survey's timeout, and two that differ have no majority.
      return result.view.nodes.length === 3 && node(result, 'lb-3')?.lagging ? result : undefined;
    }, 'lb-3 lagging behind the join', { timeout: 20_000 });
    expect(lagging.code).toBe(1);
    expect(node(lagging, 'lb-1')!.templates[0]).toMatchObject({ state: 'ok', members: 3 });
    expect(node(lagging, 'lb-3')!.templates[0]).toMatchObject({ state: 'lagging', members: 2 });

    const caughtUp = await waitFor(async () => {
      const result = await fleet('--lag', '500ms');
      return result.code === 0 && result.view.nodes.length === 3 ? result : undefined;
    }, 'lb-3 caught up', { timeout: 30_000 });
    expect(node(caughtUp, 'lb-3')!.templates[0]).toMatchObject({ state: 'ok', members: 3 });
  }, 60_000);
});

describe('rosterd fleet exit codes', () => {
  const cli = async (config: Record<string, unknown>, ...args: string[]) => {
    const file = join(dir, 'exit-codes.config.json');
    await writeFile(file, JSON.stringify({ templates: [{ name: 'x', contents: 'x', destination: 'x.cfg' }], ...config }));
    return runCli(['fleet', '-c', file, ...args], { timeout: 20_000 });
  };
  const serf = (rpcAddr: string) => ({ web: { type: 'serf', rpcAddr } });

  it('2 without a serf source to ask through, or with --source naming none', async () => {
    const noSerf = await cli({ sources: { web: { type: 'file', path: 'members.json' } } });
    expect([noSerf.code, noSerf.stderr]).toEqual([2, 'rosterd: the config has no serf source to ask the fleet through\n']);
    const wrong = await cli({ sources: serf(lbs[0]!.agent.rpcAddr) }, '--source', 'nope');
    expect([wrong.code, wrong.stderr]).toEqual([2, 'rosterd: --source: no serf source named "nope" in the config\n']);
  });

  it('3 when the agent cannot be reached', async () => {
    const run = await cli({ sources: serf(`127.0.0.1:${await freePort()}`) });
    expect(run.code).toBe(3);
    expect(run.stderr).toMatch(/Serf agent at 127\.0\.0\.1:\d+/);
  });

  it('1 when no rosterd of the group answers', async () => {
    const run = await cli({ sources: serf(lbs[0]!.agent.rpcAddr), fleet: { group: 'nobody-here', timeout: '300ms' } });
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('0 rosterds of group nobody-here answered; 0 flagged\n');
    expect(run.stderr).toContain('no rosterd of group nobody-here answered within 300 ms');
  });
});
