import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { defineConfig } from '../src/config/define.js';
import { silentLogger } from '../src/logger.js';
import { createHistory, DIFF_TIME_MS, type RenderHistory } from '../src/ops/history.js';
import { createMetrics } from '../src/ops/metrics.js';
import { createRenderer } from '../src/runner/renderer.js';
import type { RenderReport } from '../src/runner/events.js';
import type { Member, Source } from '../src/sources/types.js';
import { freePort } from '../test/helpers/ports.js';
import { waitFor } from '../test/helpers/wait.js';
import { cpuTicks, TICKS_PER_SECOND } from './proc.js';
import { median, percentile, type BenchSection } from './types.js';

/**
 * What the operator's view costs: the render history on the render path and in memory, and `/metrics` under a
 * flood of scrapes with renders going on.
 */

const BIN = fileURLToPath(new URL('../dist/cli/bin.js', import.meta.url));
const TEMPLATE = '{% for m in members %}server {{ m.name }} {{ m.address }}:{{ m.port }} check\n{% endfor %}';
const MEMBERS = 10_000;

/** `count` members; `rev` moves the port of one in `every`, so each render changes `count / every` lines. */
function members(rev: number, count = MEMBERS, every = 10): Member[] {
  return Array.from({ length: count }, (_, i) => ({
    name: `web-${String(i).padStart(5, '0')}`,
    address: `10.0.${i >> 8}.${i & 255}`,
    port: 8000 + (i % every === 0 ? rev % 1000 : 0),
    tags: {},
    status: 'alive',
    source: 'web',
  }));
}

export async function run(): Promise<BenchSection[]> {
  return [await renderLatency(), await historyMemory(), await metricsFlood()];
}

/**
 * Push → `settled` (every listener, the history's hash and diff included), alternating with and without a
 * history, for a small change (10 lines) and a large one (1,000 lines, beyond what a diff may take).
 */
async function renderLatency(): Promise<BenchSection> {
  const dir = await mkdtemp(join(tmpdir(), 'rosterd-bench-history-'));
  let push: (m: Member[]) => void = () => undefined;
  const source: Source = {
    name: 'web',
    async start(onSnapshot) {
      push = onSnapshot;
    },
    async stop() {},
  };
  const renderer = await createRenderer(defineConfig({ sources: { web: source }, templates: [{ name: 'bench', contents: TEMPLATE, destination: join(dir, 'out.cfg') }] }));
  await renderer.start();
  const rows: BenchSection['rows'] = [];
  let rev = 0;
  try {
    const render = async (every: number): Promise<number> => {
      const settled = new Promise<void>((resolve) => renderer.once('settled', () => resolve()));
      const started = performance.now();
      push(members(++rev, MEMBERS, every));
      await settled;
      return performance.now() - started;
    };
    for (const every of [1000, 10]) {
      for (let i = 0; i < 3; i++) await render(every);
      const times = { without: [] as number[], with: [] as number[] };
      let diffNote = '';
      for (let round = 0; round < 16; round++) {
        const withHistory = round % 2 === 1;
        const history: RenderHistory | undefined = withHistory ? createHistory(renderer, { entries: 100, maxDiffBytes: 65_536 }, silentLogger()) : undefined;
        // The history's listener runs before this one: `settled` resolves after it recorded the entry.
        (withHistory ? times.with : times.without).push(await render(every));
        const file = history?.entries().at(-1)?.files?.[0];
        if (file) diffNote = file.diffOmitted ? `diff ${file.diffOmitted}` : `diff of ${Buffer.byteLength(file.diff ?? '')} bytes`;
        await history?.close();
      }
      const [off, on] = [median(times.without), median(times.with)];
      const lines = `${(MEMBERS / every).toLocaleString('en')} lines changed`;
      rows.push({ change: lines, history: 'off', 'latency (ms)': off }, { change: lines, history: `on (${diffNote})`, 'latency (ms)': on, ratio: `${(on / off).toFixed(2)}×` });
    }
  } finally {
    await renderer.stop();
    await rm(dir, { recursive: true, force: true });
  }
  return {
    title: `Render history: latency of a render of ${MEMBERS.toLocaleString('en')} members, push → settled (median of 8 each, alternating)`,
    rows,
    notes: [`The history hashes the content and diffs each file after the render, on the daemon's thread (the render itself runs in the render process); an entry's diffs may take ${DIFF_TIME_MS} ms together, then they are left out.`],
  };
}

/**
 * The heap that 100 entries hold, each with a diff of a 10,000-member file: 200 lines changed (within the
 * time bound) and 200 lines of context each side, so that diffs near maxDiffBytes are kept.
 */
async function historyMemory(): Promise<BenchSection> {
  const { EventEmitter } = await import('node:events');
  // Only `settled` and templateStatus() are read: a stand-in renderer feeds the history exactly its reports.
  const renderer = Object.assign(new EventEmitter(), { templateStatus: () => [{ template: 'bench' }] });
  const file = (rev: number): Buffer => Buffer.from(members(rev, MEMBERS, 50).map((m) => `server ${m.name} ${m.address}:${m.port} check\n`).join(''));
  const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined);
  const heap = (): number => {
    gc();
    return process.memoryUsage().heapUsed;
  };
  const history = createHistory(renderer as never, { entries: 100, maxDiffBytes: 65_536 }, silentLogger());
  const before = heap();
  let previous = file(0);
  const recordTimes: number[] = [];
  const snapshots = new Map([['web', members(0)]]);
  for (let rev = 1; rev <= 150; rev++) {
    const content = file(rev);
    const report: RenderReport = {
      template: 'bench',
      destination: '/etc/haproxy/haproxy.cfg',
      startedAt: Date.now(),
      first: false,
      durationMs: 1,
      members: MEMBERS,
      snapshots,
      outcome: 'written',
      content,
      changes: [{ path: '/etc/haproxy/haproxy.cfg', before: previous, after: content }],
    };
    const t = performance.now();
    renderer.emit('settled', report);
    recordTimes.push(performance.now() - t);
    previous = content;
  }
  const after = heap();
  const entries = history.entries();
  const diffBytes = entries.reduce((sum, e) => sum + Buffer.byteLength(e.files?.[0]?.diff ?? ''), 0);
  await history.close();
  const heldMiB = (after - before) / 2 ** 20;
  const fileMiB = previous.length / 2 ** 20;
  return {
    title: 'Render history: memory of 100 entries of 10,000-member diffs (150 renders recorded, 100 kept)',
    rows: [
      { what: 'one rendered file (10,000 members)', MiB: fileMiB },
      { what: `heap held by the history (${entries.length} entries, diffs ${(diffBytes / 2 ** 20).toFixed(1)} MiB of text)`, MiB: heldMiB, 'ratio to one file': `${(heldMiB / fileMiB).toFixed(2)}×` },
      { what: 'bound: 100 × maxDiffBytes (64 KiB)', MiB: (100 * 65_536) / 2 ** 20 },
    ],
    notes: [`Recording one entry (hash + diff of 200 changed lines in 10,000): median ${median(recordTimes).toFixed(1)} ms, p90 ${percentile(recordTimes, 0.9).toFixed(1)} ms.`],
  };
}

/**
 * The daemon under 2,000 `/metrics` scrapes a second while its members change every 250 ms: its CPU against
 * the same run without scrapes, how fresh each scrape after an install is, and what one scrape costs cached
 * and computed.
 */
async function metricsFlood(): Promise<BenchSection> {
  const dir = await mkdtemp(join(tmpdir(), 'rosterd-bench-metrics-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/metrics`;
  const out = join(dir, 'out.cfg');
  const write = async (rev: number): Promise<void> => {
    await writeFile(join(dir, 'm.tmp'), JSON.stringify(members(rev, 10).map(({ name, address, port: p }) => ({ name, address, port: p }))));
    await rename(join(dir, 'm.tmp'), join(dir, 'members.json'));
  };
  await write(0);
  await writeFile(join(dir, 'renderer.config.json'), JSON.stringify({ sources: { web: { type: 'file', path: 'members.json' } }, templates: [{ name: 'app', contents: TEMPLATE, destination: 'out.cfg' }], http: { listen: `127.0.0.1:${port}` } }));
  const daemon = spawn(process.execPath, [BIN, 'run', '--log-level', 'warn'], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
  const renders = async (): Promise<number> => Number(/^rosterd_renders_total\{template="app"\} (\d+)$/m.exec(await (await fetch(url)).text())?.[1]);
  try {
    await waitFor(async () => (await renders()) === 1, 'the first render', { timeout: 60_000 });
    let rev = 0;
    /** Changes the members every 250 ms for `ms`; after each install, how long until a scrape counts it. */
    const churn = async (ms: number): Promise<{ cpuPercent: number; visible: number[] }> => {
      const start = await cpuTicks(daemon.pid!);
      const t0 = performance.now();
      const visible: number[] = [];
      while (performance.now() - t0 < ms) {
        const expected = (await renders()) + 1;
        await write(++rev);
        const marker = `:${8000 + (rev % 1000)} check`;
        await waitFor(async () => (await readFile(out, 'utf8')).includes(marker), 'the install', { timeout: 10_000, interval: 2 });
        const installed = performance.now();
        await waitFor(async () => (await renders()) >= expected, 'the render in /metrics', { timeout: 10_000, interval: 1 });
        visible.push(performance.now() - installed);
        await new Promise((r) => setTimeout(r, 250));
      }
      const end = await cpuTicks(daemon.pid!);
      return { cpuPercent: (((end.own - start.own) / TICKS_PER_SECOND) * 1000 * 100) / (performance.now() - t0), visible };
    };
    const quiet = await churn(5000);
    const flood = autocannon({ url, connections: 10, duration: 6, overallRate: 2000 });
    const loaded = await churn(5000);
    const result = await flood;
    const cost = await scrapeCost();
    return {
      title: '/metrics under 2,000 scrapes/s (10 connections), members changing every 250 ms: the daemon\'s CPU',
      rows: [
        { load: 'no scrapes', 'daemon CPU (%)': quiet.cpuPercent, installs: quiet.visible.length, 'file in place → scrape shows it, p50 / max (ms)': `${median(quiet.visible).toFixed(1)} / ${Math.max(...quiet.visible).toFixed(1)}` },
        {
          load: `${Math.round(result.requests.average)} scrapes/s, p99 ${result.latency.p99} ms, ${result.errors + result.non2xx} errors`,
          'daemon CPU (%)': loaded.cpuPercent,
          installs: loaded.visible.length,
          'file in place → scrape shows it, p50 / max (ms)': `${median(loaded.visible).toFixed(1)} / ${Math.max(...loaded.visible).toFixed(1)}`,
          ratio: `CPU ${(loaded.cpuPercent / Math.max(quiet.cpuPercent, 0.1)).toFixed(1)}×`,
        },
      ],
      notes: [
        `One scrape in-process: computed ${cost.computed.toFixed(3)} ms, answered from the cache ${cost.cached.toFixed(4)} ms (the state key read each time): ${(cost.computed / cost.cached).toFixed(0)}× cheaper.`,
        'The cache is keyed by the metrics\' state (events counted, sources up, members, last looks, readiness): any of them moving makes the next scrape compute afresh; values moving with time alone are at most 1 s old.',
      ],
    };
  } finally {
    daemon.kill('SIGTERM');
    await new Promise((resolve) => daemon.once('exit', resolve));
    await rm(dir, { recursive: true, force: true });
  }
}

/** The time of one full computation of the registry against one read of the state key (what a cached scrape costs). */
async function scrapeCost(): Promise<{ computed: number; cached: number }> {
  const source: Source = { name: 'web', start: async (onSnapshot) => onSnapshot(members(0, 10)), stop: async () => undefined };
  const dir = await mkdtemp(join(tmpdir(), 'rosterd-bench-scrape-'));
  const renderer = await createRenderer(defineConfig({ sources: { web: source }, templates: [{ name: 'app', contents: TEMPLATE, destination: join(dir, 'out.cfg') }] }));
  const metrics = createMetrics(renderer, 'bench');
  try {
    await renderer.renderOnce();
    const time = async (n: number, f: () => unknown): Promise<number> => {
      const t = performance.now();
      for (let i = 0; i < n; i++) await f();
      return (performance.now() - t) / n;
    };
    await time(200, () => metrics.registry.metrics());
    return { computed: await time(2000, () => metrics.registry.metrics()), cached: await time(20_000, () => metrics.stateKey()) };
  } finally {
    metrics.close();
    await rm(dir, { recursive: true, force: true });
  }
}
