import type { HistoryEntry } from '../../ops/history.js';
import { forTerminal } from '../../ops/escape.js';
import { formatEntry } from '../../ops/history-text.js';
import type { CommandAction } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { usageError } from '../options.js';
import { lazyImport } from '../../lazy-import.js';

/** How long `rosterd history` waits for the daemon's answer. */
const FETCH_TIMEOUT_MS = 5000;

/**
 * `rosterd history`: prints the render history of a running daemon, read from its status endpoint
 * (`/history`). Member names and command output are shown with every character a terminal would act on
 * written out (`\u{1b}`), so a hostile name cannot rewrite the screen.
 */
export const action: CommandAction<{ url?: string; template?: string; limit: number; diff?: boolean; json?: boolean }> = async (options, ctx) => {
  const { io } = ctx;
  const base = options.url ?? (await endpointOfConfig(ctx.options.config, ctx.cwd));
  const url = new URL('/history', base);
  if (options.template !== undefined) url.searchParams.set('template', options.template);
  url.searchParams.set('limit', String(options.limit));
  let entries: HistoryEntry[];
  let kept: boolean;
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}: ${(await response.text()).trim()}`);
    ({ entries, kept } = (await response.json()) as { entries: HistoryEntry[]; kept: boolean });
  } catch (err) {
    const cause = (err as Error & { cause?: Error }).cause;
    io.stderr.write(`rosterd: cannot read the history from ${url.origin}: ${forTerminal(cause?.message ?? (err as Error).message)}\n`);
    return ExitCode.SOURCE;
  }
  if (options.json) io.stdout.write(`${JSON.stringify(entries, null, 2)}\n`);
  else if (!kept) io.stdout.write('the daemon keeps no history\n');
  else if (entries.length === 0) io.stdout.write(`no render yet${options.template === undefined ? '' : ` of ${forTerminal(options.template)}`}\n`);
  else for (const entry of entries) io.stdout.write(formatEntry(entry, options.diff === true));
  return ExitCode.OK;
};

// --- internal ---

/** The config's `http.listen` as a URL to connect to: an address of all interfaces becomes the loopback. */
async function endpointOfConfig(file: string | undefined, cwd: string): Promise<string> {
  const [{ loadConfig }, { parseListen }] = await Promise.all([
    lazyImport<typeof import('../../config/load.js')>('../../config/load.js', import.meta.url),
    lazyImport<typeof import('../../net/address.js')>('../../net/address.js', import.meta.url),
  ]);
  const listen = (await loadConfig(file, { cwd })).http?.listen;
  if (listen === undefined) throw usageError('the config has no http.listen: give the endpoint with --url');
  const { host, port } = parseListen(listen);
  const loopback = host === undefined || host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return `http://${loopback.includes(':') ? `[${loopback}]` : loopback}:${port}`;
}
