import { formatSection, type BenchSection } from './types.js';

/**
 * `npm run bench`: every benchmark section in one run, printed as Markdown tables. Figures that compare
 * two things were measured in the same run, alternating, because the machine is shared and noisy.
 */
const sections: { name: string; load: () => Promise<{ run: () => Promise<BenchSection | BenchSection[]> }> }[] = [
  { name: 'startup', load: () => import('./startup.js') },
  { name: 'render', load: () => import('./render.js') },
  { name: 'fan-out', load: () => import('./fan-out.js') },
  { name: 'serf-decode', load: () => import('./serf-decode.js') },
  { name: 'dns', load: () => import('./dns.js') },
  { name: 'haproxy-lab', load: () => import('./haproxy-lab.js') },
  { name: 'serf-idle', load: () => import('./serf-idle.js') },
  { name: 'daemon', load: () => import('./daemon.js') },
  { name: 'etcd', load: () => import('./etcd.js') },
  { name: 'fleet', load: () => import('./fleet.js') },
  { name: 'history', load: () => import('./history.js') },
];

const only = process.argv.slice(2);
console.log(`# rosterd benchmark (Node ${process.version}, ${new Date().toISOString()})\n`);
for (const section of sections) {
  if (only.length > 0 && !only.includes(section.name)) continue;
  const { run } = await section.load();
  const result = await run();
  for (const table of Array.isArray(result) ? result : [result]) console.log(formatSection(table));
}
console.log(`Peak RSS of the benchmark process: ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`);
