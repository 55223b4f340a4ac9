import { loadConfig } from '../../config/load.js';
import { firstSerfSource, surveyThrough, type FleetView } from '../../fleet/survey.js';
import { forTerminal } from '../../ops/escape.js';
import type { CommandAction } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { usageError } from '../options.js';

/**
 * `rosterd fleet`: asks every rosterd of the config's `fleet.group` in the Serf cluster what it serves, and
 * marks those that differ from the majority, or lag (differ for longer than `--lag`). Exit 0 when none lags,
 * 1 when one lags or answered something unreadable, or when none answered.
 */
export const action: CommandAction<{ json?: boolean; source?: string; lag?: number; timeout?: number }> = async (options, ctx) => {
  const config = await loadConfig(ctx.options.config, { cwd: ctx.cwd });
  const serf = firstSerfSource(options.source === undefined ? config.sources : { [options.source]: config.sources[options.source] });
  if (!serf) {
    throw usageError(options.source === undefined ? 'the config has no serf source to ask the fleet through' : `--source: no serf source named ${JSON.stringify(options.source)} in the config`);
  }
  const [source, serfConfig] = serf;
  const { group } = config.fleet;
  const { self, view } = await surveyThrough({ ...serfConfig, group, timeout: options.timeout ?? config.fleet.timeout, lag: options.lag ?? config.fleet.lag });
  ctx.io.stdout.write(options.json ? `${JSON.stringify({ source, self, view }, null, 2)}\n` : formatFleet(view, self, group));
  const failed = view.nodes.length === 0 || view.nodes.some((n) => n.lagging || !n.valid);
  if (view.nodes.length === 0) ctx.logger.error(`no rosterd of group ${group} answered within ${options.timeout ?? config.fleet.timeout} ms`);
  return failed ? ExitCode.TEMPLATE_FAILED : ExitCode.OK;
};

/**
 * The fleet as a table: one line per rosterd and template, the rosterd this agent belongs to starred, and
 * one summary line per template. Names come from the network: they are shown escaped.
 */
export function formatFleet(view: FleetView, self: string | undefined, group: string, now = Date.now()): string {
  const header = ['NODE', 'TEMPLATE', 'STATE', 'HASH', 'MEMBERS', 'CHANGED', 'DIFFERS FOR'];
  const rows: string[][] = [];
  for (const node of view.nodes) {
    const name = forTerminal(node.node) + (node.node === self ? ' *' : '');
    if (!node.valid) rows.push([name, '-', 'INVALID', '-', '-', '-', '-']);
    for (const t of node.templates) {
      rows.push([
        name,
        forTerminal(t.template),
        t.state === 'lagging' ? 'LAGGING' : t.state,
        t.hash ?? '(none)',
        t.members === undefined ? '-' : String(t.members),
        t.changedAt === undefined ? '-' : `${age(now - t.changedAt)} ago`,
        t.differsSince === undefined ? '-' : age(now - t.differsSince),
      ]);
    }
    if (node.omitted > 0) rows.push([name, `(${node.omitted} more, not reported)`, '-', '-', '-', '-', '-']);
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  const summary = view.templates.map((t) => {
    const agreed = t.majority ? `majority ${t.majority}` : t.split ? 'no majority' : 'most do not serve it';
    return `${forTerminal(t.template)}: ${agreed}; ${t.ok} agree, ${t.differing} differ, ${t.lagging} lag (longer than ${age(view.lagMs)})`;
  });
  const flagged = view.nodes.filter((n) => n.flagged).length;
  const total = `${view.nodes.length} rosterd${view.nodes.length === 1 ? '' : 's'} of group ${group} answered; ${flagged} flagged`;
  return [...(rows.length ? [line(header), ...rows.map(line), ''] : []), ...summary, total].join('\n') + '\n';
}

/** A duration in its largest whole unit: `850ms`, `42s`, `5m`, `3h`, `2d`. */
function age(ms: number): string {
  const units: [number, string][] = [
    [86_400_000, 'd'],
    [3_600_000, 'h'],
    [60_000, 'm'],
    [1000, 's'],
  ];
  for (const [size, unit] of units) if (ms >= size) return `${Math.floor(ms / size)}${unit}`;
  return `${Math.max(0, Math.round(ms))}ms`;
}
