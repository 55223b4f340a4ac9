import type { Member } from '../../sources/types.js';
import type { CommandAction } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { lazyImport } from '../../lazy-import.js';

/** `rosterd members`: print the members each source sees (after validation), then exit. */
export const action: CommandAction<{ json?: boolean; timeout: number }> = async (options, ctx) => {
  const { io } = ctx;
  const [{ loadConfig }, { Roster }, { createSource }] = await Promise.all([
    lazyImport<typeof import('../../config/load.js')>('../../config/load.js', import.meta.url),
    lazyImport<typeof import('../../runner/roster.js')>('../../runner/roster.js', import.meta.url),
    lazyImport<typeof import('../../sources/index.js')>('../../sources/index.js', import.meta.url),
  ]);
  const config = await loadConfig(ctx.options.config, { cwd: ctx.cwd });
  const roster = new Roster(ctx.logger);
  roster.onError((source, error) => ctx.logger.child({ source }).error(error.message));
  try {
    for (const [name, sourceConfig] of Object.entries(config.sources)) await roster.add(name, createSource(name, sourceConfig, ctx.logger, { once: true }));
    await roster.waitForFirst(roster.names(), options.timeout);
    const bySource = Object.fromEntries(roster.names().map((name) => [name, [...(roster.status(name)?.members ?? [])]]));
    io.stdout.write(options.json ? `${JSON.stringify(bySource, null, 2)}\n` : formatTable(Object.values(bySource).flat()));
    return ExitCode.OK;
  } finally {
    await roster.stop();
  }
};

/** A plain table: one member per line, columns aligned, tags as `k=v` sorted by key. */
function formatTable(members: readonly Member[]): string {
  const header = ['SOURCE', 'NAME', 'ADDRESS', 'PORT', 'STATUS', 'TAGS'];
  const rows = members.map((m) => [
    m.source,
    m.name,
    m.address,
    m.port === undefined ? '-' : String(m.port),
    m.status,
    Object.keys(m.tags)
      .sort()
      .map((k) => `${k}=${m.tags[k]}`)
      .join(',') || '-',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}
