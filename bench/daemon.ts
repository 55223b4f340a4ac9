import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, watch } from 'node:fs';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { SerfClient } from '../src/serf/index.js';
import { startSerfAgent } from '../test/helpers/serf.js';
import { freePort } from '../test/helpers/ports.js';
import { waitFor } from '../test/helpers/wait.js';
import { percentile, type BenchSection } from './types.js';

/**
 * The daemon, end to end: the real CLI (`dist/`) rendering from real files and a real Serf agent.
 * Latencies are from the change to the new output file being in place, with `wait.min` subtracted.
 */

const BIN = fileURLToPath(new URL('../dist/cli/bin.js', import.meta.url));
const WAIT_MIN = 50;
const TEMPLATE = '{% for m in members %}server {{ m.name | slug }} {{ m.address }}:{{ m.port | default: 80 }}{% if m.tags.rev %} # {{ m.tags.rev }}{% endif %}\n{% endfor %}';

interface Lab {
  dir: string;
  out: string;
  daemon: ChildProcess;
  stop(): Promise<void>;
}

async function startLab(sources: Record<string, unknown>, extra: Record<string, unknown> = {}, members?: unknown[]): Promise<Lab> {
  const dir = await mkdtemp(join(tmpdir(), 'rosterd-bench-'));
  if (members) await writeFile(join(dir, 'members.json'), JSON.stringify(members));
  const config = { sources, templates: [{ contents: TEMPLATE, destination: 'out.cfg', wait: { min: `${WAIT_MIN}ms`, max: '1s' } }], ...extra };
  await writeFile(join(dir, 'renderer.config.json'), JSON.stringify(config));
  const daemon = spawn(process.execPath, [BIN, 'run', '--log-level', 'warn'], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
  const out = join(dir, 'out.cfg');
  await waitFor(async () => (await readFile(out, 'utf8').catch(() => '')) !== '', 'the first render', { timeout: 120_000, interval: 50 });
  return {
    dir,
    out,
    daemon,
    async stop() {
      daemon.kill('SIGTERM');
      await new Promise((resolve) => daemon.once('exit', resolve));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Resolves when `file` holds `marker`, watching its directory (an atomic rename is one event). */
async function waitForContent(file: string, marker: string, timeout = 120_000): Promise<number> {
  const dir = join(file, '..');
  return new Promise((resolve, reject) => {
    let done = false;
    const check = async (): Promise<void> => {
      if (done) return;
      if ((await readFile(file, 'utf8').catch(() => '')).includes(marker)) {
        done = true;
        const at = performance.now();
        watcher.close();
        clearTimeout(timer);
        resolve(at);
      }
    };
    const watcher = watch(dir, () => void check());
    const timer = setTimeout(() => {
      done = true;
      watcher.close();
      reject(new Error(`${marker} did not appear in ${file}`));
    }, timeout);
    void check();
  });
}

function members(count: number, rev: number): unknown[] {
  return Array.from({ length: count }, (_, i) => ({ name: `web-${i}`, address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, port: 8080, tags: i === 0 ? { rev: `r${rev}` } : {} }));
}

async function writeAtomically(path: string, text: string): Promise<void> {
  await writeFile(`${path}.tmp`, text);
  await rename(`${path}.tmp`, path);
}

/** Change → installed latency over `count` member-file changes, optionally while `during` runs. */
async function fileLatencies(lab: Lab, count: number, size: number, first = 1): Promise<number[]> {
  const samples: number[] = [];
  for (let rev = first; rev < first + count; rev++) {
    const seen = waitForContent(lab.out, `# r${rev}\n`);
    const start = performance.now();
    await writeAtomically(join(lab.dir, 'members.json'), JSON.stringify(members(size, rev)));
    samples.push((await seen) - start - WAIT_MIN);
  }
  return samples;
}

function rssMiB(pid: number): { rss: number; peak: number } {
  // VmRSS: now; VmHWM: the peak since start.
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number => Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN) / 1024;
  return { rss: field('VmRSS'), peak: field('VmHWM') };
}

/** The same for the daemon's render process (its one child while no command runs). */
function renderProcessMiB(daemonPid: number): { rss: number; peak: number } {
  const children = readFileSync(`/proc/${daemonPid}/task/${daemonPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
  if (children.length !== 1) return { rss: NaN, peak: NaN };
  return rssMiB(Number(children[0]));
}

const row = (what: string, samples: number[]): Record<string, string | number> => ({
  what,
  samples: samples.length,
  'p50 (ms)': percentile(samples, 0.5),
  'p95 (ms)': percentile(samples, 0.95),
});

export async function run(): Promise<BenchSection[]> {
  // 1. Member file change → installed, and daemon memory with 10,000 members.
  const small = await startLab({ web: { type: 'file', path: 'members.json' } }, {}, members(10, 0));
  const fileSamples = await fileLatencies(small, 60, 10);
  await small.stop();
  const big = await startLab({ web: { type: 'file', path: 'members.json' } }, {}, members(10_000, 0));
  const bigSamples = await fileLatencies(big, 10, 10_000);
  const memory = rssMiB(big.daemon.pid!);
  const renderMemory = renderProcessMiB(big.daemon.pid!);
  await big.stop();
  // The same with 200,000 members. The render process is not in the daemon's RSS: it is measured apart.
  const started = performance.now();
  const huge = await startLab({ web: { type: 'file', path: 'members.json' } }, {}, members(200_000, 0));
  const hugeFirst = performance.now() - started;
  const hugeSamples = await fileLatencies(huge, 3, 200_000);
  const hugeMemory = rssMiB(huge.daemon.pid!);
  const hugeRenderMemory = renderProcessMiB(huge.daemon.pid!);
  await huge.stop();

  // 2. Status endpoint under load: the same change latency with and without 20,000 /metrics requests.
  const port = await freePort();
  const withHttp = await startLab({ web: { type: 'file', path: 'members.json' } }, { http: { listen: `127.0.0.1:${port}` } }, members(10, 0));
  const quiet = await fileLatencies(withHttp, 30, 10);
  // 20,000 requests at 2,000/s: about 10 s of load, and every change below is measured while it lasts.
  let loading = true;
  const load = autocannon({ url: `http://127.0.0.1:${port}/metrics`, connections: 10, amount: 20_000, overallRate: 2_000 });
  void load.then(() => (loading = false));
  const loaded: number[] = [];
  for (let rev = 1000; loading; rev++) loaded.push(...(await fileLatencies(withHttp, 1, 10, rev)));
  const loadResult = await load;
  await withHttp.stop();

  // 3. Serf agent event → installed. Serf's own delay (gossip + the agent's 1 s event coalescing) is shown apart.
  const lb = await startSerfAgent({ name: 'lb' });
  const node = await startSerfAgent({ name: 'web-1', tags: { port: '8080' }, join: [lb.bindAddr] });
  const serfLab = await startLab({ cluster: { type: 'serf', rpcAddr: lb.rpcAddr, resyncDelay: '20ms' } });
  const watcher = await SerfClient.connect({ address: lb.rpcAddr });
  const nodeClient = await SerfClient.connect({ address: node.rpcAddr });
  const serfDelay: number[] = [];
  const total: number[] = [];
  let eventAt = 0;
  const stream = await watcher.stream('member-update', () => {
    eventAt ||= performance.now();
  });
  for (let rev = 1; rev <= 12; rev++) {
    eventAt = 0;
    const seen = waitForContent(serfLab.out, `# r${rev}\n`);
    const start = performance.now();
    await nodeClient.tags({ rev: `r${rev}` });
    const installed = await seen;
    // The source reads the members when the agent logs the change, usually before the event is streamed.
    await waitFor(() => eventAt, `the member-update of r${rev}`, { timeout: 10_000 });
    serfDelay.push(eventAt - start);
    total.push(installed - start - WAIT_MIN);
  }
  await stream.stop();
  await watcher.close();
  await nodeClient.close();
  await serfLab.stop();
  await node.kill();
  await lb.kill();

  return [
    {
      title: `Daemon: change → new output installed (wait.min ${WAIT_MIN} ms subtracted)`,
      rows: [row('member file, 10 members', fileSamples), row('member file, 10,000 members', bigSamples), row('member file, 200,000 members', hugeSamples)],
      notes: [
        `Daemon memory with 10,000 members: RSS ${memory.rss.toFixed(0)} MiB, peak ${memory.peak.toFixed(0)} MiB.`,
        `Daemon memory with 10,000 members, its render process: RSS ${renderMemory.rss.toFixed(0)} MiB, peak ${renderMemory.peak.toFixed(0)} MiB.`,
        `Daemon memory with 200,000 members: RSS ${hugeMemory.rss.toFixed(0)} MiB, peak ${hugeMemory.peak.toFixed(0)} MiB (${(hugeMemory.peak / memory.peak).toFixed(1)}× the peak at 10,000); its render process: RSS ${hugeRenderMemory.rss.toFixed(0)} MiB, peak ${hugeRenderMemory.peak.toFixed(0)} MiB (${(hugeRenderMemory.peak / renderMemory.peak).toFixed(1)}×). Start to first output ${(hugeFirst / 1000).toFixed(1)} s.`,
      ],
    },
    {
      title: 'Status endpoint under load: change → installed with and without /metrics traffic',
      rows: [
        row('no HTTP load', quiet),
        row(`during ${loadResult.requests.total} /metrics requests (10 connections)`, loaded),
      ],
      notes: [
        `/metrics under load: ${Math.round(loadResult.requests.average)} req/s, p99 ${loadResult.latency.p99} ms, ${loadResult.errors} errors, ${loadResult.non2xx} non-2xx.`,
        `Ratio of p50 with load to p50 without: ${(percentile(loaded, 0.5) / percentile(quiet, 0.5)).toFixed(2)}×.`,
      ],
    },
    {
      title: `Serf: tag change on a node → output installed (wait.min ${WAIT_MIN} ms subtracted)`,
      rows: [row("Serf's event (tags call → member-update on the LB agent's stream)", serfDelay), row('tags call → output installed', total)],
      notes: ["rosterd reads the member list as soon as the LB agent logs the update: it does not wait for Serf's event."],
    },
  ];
}
