import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigError } from '../errors.js';
import { parseListen } from '../net/address.js';
import type { Logger } from '../logger.js';
import type { Renderer } from '../runner/renderer.js';
import type { FleetState } from '../fleet/monitor.js';
import type { RenderHistory } from './history.js';
import { LiveUpdates, type Announcement } from './live.js';
import type { RendererMetrics } from './metrics.js';
import { PAGE_CSP, renderMain, renderPage } from './page.js';

/** The renderer's events after which the status page may have changed. */
const LIVE_RENDERER_EVENTS = ['rendered', 'unchanged', 'guarded', 'checkFailed', 'reloaded', 'reloadFailed', 'settled', 'sourceError'] as const;

/**
 * How long one computation of `/metrics` serves further scrapes while the metrics' state key stays the same:
 * only values that move with time alone (ages, process CPU and memory) can be this much older than a scrape.
 */
const METRICS_MAX_AGE_MS = 1000;
/**
 * Bounds for clients that are slow or many: the endpoint serves a few scrapers and health checks, and every
 * connection held open costs a file descriptor the sources need too. A client gets this long to send its
 * headers and its whole request (Node's defaults: 60 s and 5 min, checked every 30 s), and connections beyond
 * the cap are closed at once.
 */
export const HTTP_LIMITS = { headersTimeoutMs: 5000, requestTimeoutMs: 10_000, checkIntervalMs: 1000, maxConnections: 100 } as const;

/** A running status endpoint. */
export interface StatusServer {
  /** The address it listens on, as `host:port`. */
  readonly address: string;
  /** Stops listening and closes open connections. */
  close(): Promise<void>;
}

/** What `/ready` answers, as JSON. */
export interface Readiness {
  ready: boolean;
  templates: { template: string; ok: boolean; error?: string }[];
  sources: { source: string; up: boolean; members?: number; error?: string }[];
}

/**
 * Whether the renderer is ready: every template has been written or found unchanged since start and its
 * last render succeeded, and every source delivered its last look.
 */
export function readiness(renderer: Renderer): Readiness {
  const templates = renderer.templateStatus().map((t) => ({
    template: t.template,
    ok: t.ready,
    ...(t.lastError ? { error: t.lastError.message } : {}),
  }));
  const sources = renderer.sourceStatus().map((s) => ({
    source: s.name,
    up: s.up,
    ...(s.members ? { members: s.members.length } : {}),
    ...(s.lastError ? { error: s.lastError.message } : {}),
  }));
  return { ready: templates.every((t) => t.ok) && sources.every((s) => s.up), templates, sources };
}

/** What the status endpoint serves. */
export interface StatusServerOptions {
  /** `host:port`; IPv6 as `[::1]:port`. */
  listen: string;
  renderer: Renderer;
  metrics: RendererMetrics;
  logger: Logger;
  /** The render history, for `/history` and the page; without it, both say none is kept. */
  history?: RenderHistory;
  /** The fleet view, for `/fleet` and the page; without it, there is no fleet (no Serf source). */
  fleet?: LiveFleetState;
  /** Shown on the page. */
  version?: string;
}

/** A {@link FleetState} that announces each new survey with an `update` event (as the fleet monitor does). */
export type LiveFleetState = FleetState & Announcement[0];

/**
 * Serves `/` (the status page, see page.ts; `/events` keeps it live), `/health` (the process answers),
 * `/ready` (see {@link readiness}; 200 or 503), `/metrics` (Prometheus text format), `/history` (JSON; `?template=`
 * and `?limit=` narrow it) and `/fleet` (JSON).
 */
export async function startStatusServer(options: StatusServerOptions): Promise<StatusServer> {
  const { renderer, history, fleet } = options;
  const paths = ['/', '/health', '/ready', '/metrics', '/history', '/fleet', '/events'];
  const { host, port } = parseListen(options.listen);
  // Scrapes share one computation while the metrics' state key stays the same (see METRICS_MAX_AGE_MS): a
  // flood of requests (many Prometheus servers, a runaway client) then costs little more than the responses
  // and never starves the renders of the event loop, and a scrape after an event always shows it.
  let cached: { at: number; key: string; text: Promise<string> } | undefined;
  const scrape = (): Promise<string> => {
    const now = Date.now();
    const key = options.metrics.stateKey();
    if (!cached || now - cached.at >= METRICS_MAX_AGE_MS || cached.key !== key) {
      const text = options.metrics.registry.metrics();
      cached = { at: now, key, text };
      text.catch(() => {
        if (cached?.text === text) cached = undefined;
      });
    }
    return cached.text;
  };
  const page = { renderer, ...(history ? { history } : {}), ...(fleet ? { fleet } : {}) };
  const announcements: Announcement[] = LIVE_RENDERER_EVENTS.map((event) => [renderer, event] as const);
  if (history) announcements.push([history, 'entry']);
  if (fleet) announcements.push([fleet, 'update']);
  const live = new LiveUpdates(() => renderMain(page), announcements);
  const server: Server = createServer(
    { headersTimeout: HTTP_LIMITS.headersTimeoutMs, requestTimeout: HTTP_LIMITS.requestTimeoutMs, connectionsCheckingInterval: HTTP_LIMITS.checkIntervalMs },
    (req, res) => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      const send = (status: number, type: string, body: string, headers: Record<string, string> = {}): void => {
        res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', ...headers });
        res.end(req.method === 'HEAD' ? undefined : body);
      };
      const json = (value: unknown, status = 200): void => send(status, 'application/json', `${JSON.stringify(value)}\n`);
      switch (url.pathname) {
        case '/':
          send(200, 'text/html; charset=utf-8', renderPage(page, options.version ?? ''), { 'content-security-policy': PAGE_CSP });
          return;
        case '/events':
          live.open(res);
          return;
        case '/health':
          json({ status: 'ok' });
          return;
        case '/ready': {
          const state = readiness(renderer);
          json(state, state.ready ? 200 : 503);
          return;
        }
        case '/history': {
          const query = historyQuery(url.searchParams);
          if (typeof query === 'string') send(400, 'text/plain', `${query}\n`);
          else json({ kept: history !== undefined, entries: history?.entries(query) ?? [] });
          return;
        }
        case '/fleet':
          json(fleet?.source === undefined ? { source: null, view: null } : { source: fleet.source, self: fleet.self ?? null, lastError: fleet.lastError ?? null, view: fleet.view ?? null });
          return;
        case '/metrics':
          scrape().then(
            (text) => send(200, options.metrics.registry.contentType, text),
            (err: unknown) => {
              options.logger.error({ err }, `metrics failed: ${(err as Error).message}`);
              send(500, 'text/plain', 'metrics failed\n');
            },
          );
          return;
        default:
          send(404, 'text/plain', `not found: try ${paths.join(', ')}\n`);
      }
    },
  );
  server.maxConnections = HTTP_LIMITS.maxConnections;
  await new Promise<void>((resolve, reject) => {
    const fail = (err: NodeJS.ErrnoException): void => {
      reject(new ConfigError([{ path: 'http.listen', message: `cannot listen on ${options.listen}: ${err.code ?? err.message}` }], undefined, { cause: err }));
    };
    server.once('error', fail);
    server.listen(port, host, () => {
      server.off('error', fail);
      resolve();
    });
  });
  const bound = server.address() as AddressInfo;
  const address = `${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`;
  options.logger.info({ address }, `status endpoint on http://${address} (${paths.join(', ')})`);
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        live.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** `/history?template=NAME&limit=N`: the entries asked for, or what is wrong with the query. */
function historyQuery(params: URLSearchParams): { template?: string; limit?: number } | string {
  const query: { template?: string; limit?: number } = {};
  const template = params.get('template');
  if (template !== null) query.template = template;
  const limit = params.get('limit');
  if (limit !== null) {
    if (!/^\d{1,9}$/.test(limit)) return `limit: "${limit}" is not a whole number`;
    query.limit = Number(limit);
  }
  return query;
}
