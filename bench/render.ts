import { Liquid } from 'liquidjs';
import { buildContext } from '../src/render/context.js';
import { compileTemplate, renderTemplate } from '../src/render/engine.js';
import { RenderSandbox } from '../src/render/sandbox.js';
import type { Member } from '../src/sources/types.js';
import { median, type BenchSection } from './types.js';

/** The same template for both sides: only built-in Liquid, so the bare engine can render it too. */
const TEMPLATE = `backend web
    balance roundrobin
{%- for m in members %}
    server {{ m.name }} {{ m.address }}:{{ m.port | default: 80 }} check{% if m.tags.zone %} # zone {{ m.tags.zone }}{% endif %}
{%- endfor %}
`;

function makeMembers(count: number): Member[] {
  // Unsorted on purpose: rosterd sorts the merged list, the bare render does not need to.
  return Array.from({ length: count }, (_, i) => {
    const n = (i * 7919) % count;
    return { name: `web-${n}`, address: `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`, port: 8000 + (n % 1000), tags: { role: 'web', zone: `z${n % 3}` }, status: 'alive', source: 'cluster' };
  });
}

/**
 * Render time per member count: rosterd's render step (context with the merged, sorted list + strict
 * render), in this process and in the render process the daemon uses, against a bare liquidjs parse + render
 * of the same template and data, alternating in the same run.
 */
export async function run(): Promise<BenchSection> {
  const rows: BenchSection['rows'] = [];
  const sandbox = new RenderSandbox();
  try {
    for (const count of [100, 1_000, 10_000, 200_000]) {
      const members = makeMembers(count);
      const snapshots = new Map([['cluster', members]]);
      const compiled = compileTemplate({ name: 'bench', text: TEMPLATE, file: 'bench.liquid', root: '.', strict: true });
      const bare = new Liquid();
      const rounds = count >= 200_000 ? 3 : count >= 10_000 ? 15 : 40;
      const sides = {
        bare: () => bare.parseAndRender(TEMPLATE, { members }),
        ours: () => renderTemplate(compiled, buildContext(snapshots, ['cluster'], [])),
        worker: () => sandbox.render(compiled, buildContext(snapshots, ['cluster'], [])),
      };
      const times: Record<keyof typeof sides, number[]> = { bare: [], ours: [], worker: [] };
      // Warm up every path, then alternate them so that noise on the shared machine hits all alike.
      for (const render of Object.values(sides)) for (let i = 0; i < (count >= 200_000 ? 1 : 3); i++) await render();
      for (let i = 0; i < rounds; i++) {
        for (const [side, render] of Object.entries(sides) as [keyof typeof sides, () => Promise<string>][]) {
          const t = performance.now();
          await render();
          times[side].push(performance.now() - t);
        }
      }
      const [bareMs, oursMs, workerMs] = [median(times.bare), median(times.ours), median(times.worker)];
      rows.push({
        members: count,
        'bare liquidjs parse+render (ms)': bareMs,
        'rosterd render (ms)': oursMs,
        ratio: `${(oursMs / bareMs).toFixed(2)}×`,
        'rosterd render in the render process (ms)': workerMs,
        'render process / this process': `${(workerMs / oursMs).toFixed(2)}×`,
      });
    }
  } finally {
    await sandbox.close();
  }
  return {
    title: 'Render time (median), rosterd vs bare liquidjs, same template and data',
    rows,
    notes: [
      'Goal: ratio ≤ 1.3× at 10,000 members.',
      'The daemon renders in its render process: the members are copied there and the output back, and the daemon stays free meanwhile.',
    ],
  };
}
