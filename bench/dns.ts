import { pino } from 'pino';
import { createDnsSource } from '../src/sources/dns.js';
import { startDnsmasq } from '../test/helpers/dnsmasq.js';
import { median, type BenchSection } from './types.js';

/**
 * DNS SRV names with many targets: time from starting a `dns` source to its first complete snapshot, and
 * between snapshots while it polls, against real dnsmasq. The targets' addresses come through a forwarding
 * dnsmasq (as from a resolver in front of a registry); the smallest size is the baseline of the ratio.
 */

const NAME = '_http._tcp.bench.service.test';
const target = (i: number) => `node-${i}.hosts.test`;

async function timeToSnapshots(server: string, count: number): Promise<{ first: number; poll: number }> {
  const stamps: number[] = [];
  const started = performance.now();
  let failure: Error | undefined;
  const source = createDnsSource('bench', { type: 'dns', name: NAME, record: 'SRV', servers: [server], interval: 1, timeout: 2000 }, { logger: pino({ level: 'silent' }) });
  await new Promise<void>((resolve, reject) => {
    void source.start(
      (members) => {
        if (members.length !== count) reject(new Error(`a snapshot of ${members.length} members, not ${count}`));
        stamps.push(performance.now());
        if (stamps.length === 6) resolve();
      },
      (err) => {
        failure = err;
        reject(err);
      },
    );
  }).finally(() => source.stop());
  if (failure) throw failure;
  const gaps = stamps.slice(1).map((t, i) => t - stamps[i]!);
  return { first: stamps[0]! - started, poll: median(gaps) };
}

export async function run(): Promise<BenchSection> {
  const rows: BenchSection['rows'] = [];
  let baseline: number | undefined;
  for (const count of [10, 100, 1000]) {
    const hosts = Array.from({ length: count }, (_, i) => `10.7.${i >> 8}.${i & 255} ${target(i)}`).join('\n');
    const addresses = await startDnsmasq({ hostsFiles: { bench: `${hosts}\n` } });
    const srvRecords = Array.from({ length: count }, (_, i) => ({ name: NAME, target: target(i), port: 8000 }));
    const dns = await startDnsmasq({ srvRecords, forward: [{ domain: 'hosts.test', server: addresses.server }], cacheSize: 0 });
    try {
      const runs = [];
      for (let i = 0; i < 3; i++) runs.push(await timeToSnapshots(dns.server, count));
      const first = median(runs.map((r) => r.first));
      const poll = median(runs.map((r) => r.poll));
      baseline ??= poll;
      rows.push({ 'SRV targets': count, 'start → first snapshot (ms)': first, 'one poll (ms)': poll, 'per target (ms)': poll / count, 'poll vs 10 targets': `${(poll / baseline).toFixed(1)}×` });
    } finally {
      await dns.cleanup();
      await addresses.cleanup();
    }
  }
  return {
    title: 'DNS: SRV name with many targets → complete snapshot (median of 3 starts, 5 polls each)',
    rows,
    notes: ['Address queries run 32 at a time per server; before, 150 targets or more never gave a snapshot against dnsmasq.'],
  };
}
