import { Liquid } from 'liquidjs';
import { buildContext } from '../src/render/context.js';
import { compileTemplate, renderTemplate } from '../src/render/engine.js';
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
 * render) against a bare liquidjs parse + render of the same template and data, in the same run.
 */
export async function run(): Promise<BenchSection> {
  const rows: BenchSection['rows'] = [];
  for (const count of [100, 1_000, 10_000]) {
    const members = makeMembers(count);
    const snapshots = new Map([['cluster', members]]);
    const compiled = compileTemplate({ name: 'bench', text: TEMPLATE, file: 'bench.liquid', root: '.', strict: true });
    const bare = new Liquid();
    const rounds = count >= 10_000 ? 15 : 40;
    const ours: number[] = [];
    const theirs: number[] = [];
    // Warm up both paths, then alternate them so that noise on the shared machine hits both alike.
    for (let i = 0; i < 3; i++) {
      await renderTemplate(compiled, buildContext(snapshots, ['cluster'], []));
      await bare.parseAndRender(TEMPLATE, { members });
    }
    for (let i = 0; i < rounds; i++) {
      let t = performance.now();
      await bare.parseAndRender(TEMPLATE, { members });
      theirs.push(performance.now() - t);
      t = performance.now();
      await renderTemplate(compiled, buildContext(snapshots, ['cluster'], []));
      ours.push(performance.now() - t);
    }
    const a = median(ours);
    const b = median(theirs);
    rows.push({ members: count, 'bare liquidjs parse+render (ms)': b, 'rosterd render (ms)': a, ratio: `${(a / b).toFixed(2)}×` });
  }
  return {
    title: 'Render time (median), rosterd vs bare liquidjs, same template and data',
    rows,
    notes: ['Goal: ratio ≤ 1.3× at 10,000 members.'],
  };
}
