import { execFile } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpGet } from '../helpers/haproxy.js';
import { startLoad } from '../helpers/load.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The HAProxy lab on etcd (examples/haproxy-etcd), end to end through its own `lab.mjs`: a real etcd, web
 * nodes that announce themselves with `rosterd announce`, HAProxy and `rosterd run` with the Serf lab's
 * template and reloader. A graceful leave under load fails no request; a killed node leaves with its lease.
 */

const LAB = fileURLToPath(new URL('../../examples/haproxy-etcd/lab.mjs', import.meta.url));
const run = promisify(execFile);

interface Status {
  lb: { httpPort: number; pid: number };
  etcd: { pid: number; endpoint: string };
  nodes: { name: string; pid: number; key?: string; server?: string }[];
  keys: { name: string; value: string }[];
  servers: { name: string }[];
}

let dir: string;
let cleanup: () => Promise<void>;
const lab = async (...args: string[]): Promise<string> => (await run(process.execPath, [LAB, '--dir', dir, ...args], { timeout: 90_000 })).stdout;
const status = async (): Promise<Status> => JSON.parse(await lab('status', '--json')) as Status;
const servers = async (): Promise<string[]> => (await status()).servers.map((s) => s.name);

/** Kills every process group the run directory names (after a failure, `down` may not have run). */
function killAll(): void {
  const pids: number[] = [];
  try {
    const state = JSON.parse(readFileSync(join(dir, 'lab.json'), 'utf8')) as Partial<Status>;
    pids.push(...[state.lb?.pid, state.etcd?.pid].filter((p): p is number => p !== undefined));
  } catch {
    // Never written, or removed by `down`.
  }
  try {
    for (const file of readdirSync(join(dir, 'nodes'))) pids.push((JSON.parse(readFileSync(join(dir, 'nodes', file), 'utf8')) as { pid: number }).pid);
  } catch {
    // No nodes.
  }
  for (const pid of pids) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // Gone.
    }
  }
}

beforeAll(async () => {
  ({ path: dir, cleanup } = await tempDir('rosterd-etcd-lab-'));
  await lab('up', '--nodes', '2', '--ttl', '2s');
}, 120_000);

afterAll(async () => {
  await lab('down').catch(() => undefined);
  killAll();
  await cleanup?.();
}, 120_000);

describe('the HAProxy + etcd lab (examples/haproxy-etcd)', () => {
  it('serves the nodes announced before the load balancer, from its first haproxy.cfg on', async () => {
    const { lb, keys } = await status();
    expect(keys.map((k) => [k.name, JSON.parse(k.value).tags.role])).toEqual([['web-1', 'web'], ['web-2', 'web']]);
    expect(await servers()).toEqual(['web-1', 'web-2']);
    const seen = new Set<string>();
    await waitFor(async () => seen.add(String((await httpGet(lb.httpPort)).headers['x-served-by'])).size === 2, 'both nodes to answer');
    expect(await readFile(join(dir, 'logs', 'lb.log'), 'utf8')).toMatch(/first haproxy\.cfg rendered with 2 member\(s\)/);
  });

  it('a node added later is served; a graceful leave under load fails no request', async () => {
    await lab('add', 'web-3', '--tag', 'weight=50');
    expect(await servers()).toEqual(['web-1', 'web-2', 'web-3']);
    expect(await readFile(join(dir, 'haproxy.cfg'), 'utf8')).toMatch(/server web-3 127\.0\.0\.1:\d+ weight 50\n/);

    const load = startLoad({ port: (await status()).lb.httpPort, connections: 8, rate: 150, maxSeconds: 60 });
    let reports;
    try {
      const out = await lab('remove', 'web-2');
      expect(out).toMatch(/its key is gone from etcd after .* \(the lease was revoked\)/);
      await waitFor(async () => !(await servers()).includes('web-2'), 'web-2 out of haproxy.cfg', { timeout: 20_000 });
    } finally {
      reports = await load.stop();
    }
    for (const report of reports) expect(report, report.errorSamples.join('\n')).toMatchObject({ errors: 0, timeouts: 0, non2xx: 0 });
  }, 120_000);

  it('a killed node leaves when its lease expires', async () => {
    const out = await lab('remove', 'web-3', '--kill');
    expect(out).toMatch(/its key is gone from etcd after .* \(the lease expired\)/);
    await waitFor(async () => (await servers()).join() === 'web-1', 'only web-1 left in haproxy.cfg', { timeout: 20_000 });
  }, 120_000);
});
