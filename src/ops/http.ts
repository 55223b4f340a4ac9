import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Renderer } from '../runner/renderer.js';
import type { RendererMetrics } from './metrics.js';

/** How long one computation of `/metrics` serves further scrapes while no event moves a metric, in ms. */
const METRICS_CACHE_MS = 1000;
/**
 * Bounds for clients that are slow or many: the endpoint serves a few scrapers and health checks, and every
 * connection held open costs a file descriptor the sources need too. A client gets this long to send its
 * headers and its whole request (Node's defaults: 60 s and 5 min, checked every 30 s), and connections beyond
 * the cap are closed at once.
 */
export const HTTP_LIMITS = { headersTimeoutMs: 5000, requestTimeoutMs: 10_000, checkIntervalMs: 1000, maxConnections: 100 } as const;

/**
 * Answers one path of the endpoint (GET and HEAD). `send` writes a whole answer (no body for HEAD); a handler
 * that streams writes to `res` itself.
 */
export type RouteHandler = (
  request: { req: IncomingMessage; query: URLSearchParams },
  res: ServerResponse,
  send: (status: number, type: string, body: string) => void,
) => void;

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

/**
 * Serves `/health` (the process answers), `/ready` (see {@link readiness}; 200 or 503) and `/metrics`
 * (Prometheus text format). Listens on `listen` (`host:port`; IPv6 as `[::1]:port`).
 */
export async function startStatusServer(options: {
  listen: string;
  renderer: Renderer;
  metrics: RendererMetrics;
  logger: Logger;
  /** More paths, by path (`/history`). */
  routes?: Readonly<Record<string, RouteHandler>>;
}): Promise<StatusServer> {
  const routes = options.routes ?? {};
  const paths = ['/health', '/ready', '/metrics', ...Object.keys(routes)];
  const { host, port } = parseListen(options.listen);
  // Scrapes share one computation until an event moves a metric, for a second at most: a burst of requests
  // (many Prometheus servers, a runaway client) then costs little more than the responses and never starves
  // the renders of the event loop, and a scrape after a render always shows it.
  let cached: { at: number; generation: number; text: Promise<string> } | undefined;
  const scrape = (): Promise<string> => {
    const now = Date.now();
    const generation = options.metrics.generation;
    if (!cached || now - cached.at >= METRICS_CACHE_MS || cached.generation !== generation) {
      const text = options.metrics.registry.metrics();
      cached = { at: now, generation, text };
      text.catch(() => {
        if (cached?.text === text) cached = undefined;
      });
    }
    return cached.text;
  };
  const server: Server = createServer(
    { headersTimeout: HTTP_LIMITS.headersTimeoutMs, requestTimeout: HTTP_LIMITS.requestTimeoutMs, connectionsCheckingInterval: HTTP_LIMITS.checkIntervalMs },
    (req, res) => {
      const [path = '/', search = ''] = (req.url ?? '/').split('?', 2);
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      const send = (status: number, type: string, body: string): void => {
        res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : body);
      };
      switch (path) {
        case '/health':
          send(200, 'application/json', '{"status":"ok"}\n');
          return;
        case '/ready': {
          const state = readiness(options.renderer);
          send(state.ready ? 200 : 503, 'application/json', `${JSON.stringify(state)}\n`);
          return;
        }
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
          if (Object.hasOwn(routes, path)) routes[path]!({ req, query: new URLSearchParams(search) }, res, send);
          else send(404, 'text/plain', `not found: try ${paths.join(', ')}\n`);
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
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** `127.0.0.1:9465`, `[::1]:9465`, `:9465` (all interfaces). */
export function parseListen(listen: string): { host: string | undefined; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(listen.trim());
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw new TypeError(`listen address "${listen}" is not "host:port"`);
  const host = match[1] ?? match[2];
  return { host: host === '' ? undefined : host, port };
}
