import { request, type IncomingHttpHeaders } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import autocannon from 'autocannon';

/**
 * Bounded HTTP load on one frontend for end-to-end tests and benchmarks: one run per client kind, at a fixed
 * rate, that records which node served each response (the lab app's `X-Served-By`) and when. It stops by
 * itself after `maxSeconds`, or earlier with `stop()`.
 */

/** A kind of client: HTTP/1.1 keep-alive, or a new connection per request (`Connection: close`). */
export type LoadMode = 'keep-alive' | 'close';

export interface LoadOptions {
  port: number;
  host?: string;
  /** The client kinds to run side by side. @default both */
  modes?: LoadMode[];
  /** Connections per mode. @default 8 */
  connections?: number;
  /** Requests per second per mode, in total over its connections. @default 300 */
  rate?: number;
  /** Upper bound on the run, in seconds. */
  maxSeconds: number;
}

/** When a node served its first and last response: epoch milliseconds (`Date.now()`), sub-millisecond precision. */
export interface Served {
  count: number;
  first: number;
  last: number;
}

/** What one mode saw. Failed = errors (connection errors and timeouts) + non-2xx responses. */
export interface LoadReport {
  mode: LoadMode;
  requests: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  failed: number;
  /** The first few error messages and non-2xx responses (of every mode), for diagnostics. */
  errorSamples: string[];
  /** Connection errors by code (`ECONNRESET`, `ECONNREFUSED`, …; `other` without one), all of them. */
  errorCodes: Record<string, number>;
}

export interface Load {
  /** Responses per node (decoded `X-Served-By`), over every mode. */
  readonly served: ReadonlyMap<string, Served>;
  /** Stops the load (if still running) and resolves with one report per mode. */
  stop(): Promise<LoadReport[]>;
}

export function startLoad(options: LoadOptions): Load {
  const served = new Map<string, Served>();
  const samples: string[] = [];
  const onResponse = (status: number, body: string, _context: object, headers: IncomingHttpHeaders | undefined): void => {
    if ((status < 200 || status > 299) && samples.length < 5) samples.push(`HTTP ${status}: ${body.trim().slice(0, 200)}`);
    const raw = headers?.['x-served-by'];
    if (typeof raw !== 'string') return;
    const name = decodeURIComponent(raw);
    const now = performance.timeOrigin + performance.now();
    const entry = served.get(name);
    if (entry) {
      entry.count++;
      entry.last = now;
    } else served.set(name, { count: 1, first: now, last: now });
  };
  const runs = (options.modes ?? ['keep-alive', 'close']).map((mode) => {
    const errors: ErrorLog = { samples: [], codes: {} };
    const run = mode === 'keep-alive' ? keepAliveRun(options, onResponse, errors) : newConnectionRun(options, onResponse, errors);
    const done = run.done.then(
      (counts): LoadReport => ({ mode, ...counts, failed: counts.errors + counts.non2xx, errorSamples: [...errors.samples, ...samples], errorCodes: errors.codes }),
    );
    return { stop: run.stop, done };
  });
  return {
    served,
    async stop() {
      for (const run of runs) run.stop();
      return Promise.all(runs.map((run) => run.done));
    },
  };
}

type OnResponse = (status: number, body: string, context: object, headers: IncomingHttpHeaders | undefined) => void;
interface ErrorLog {
  samples: string[];
  codes: Record<string, number>;
}
interface Run {
  stop(): void;
  done: Promise<{ requests: number; errors: number; timeouts: number; non2xx: number }>;
}

const REQUEST_TIMEOUT_MS = 5000;

function logError(errors: ErrorLog, error: unknown): void {
  const code = (error as NodeJS.ErrnoException | undefined)?.code ?? 'other';
  errors.codes[code] = (errors.codes[code] ?? 0) + 1;
  if (errors.samples.length < 5) errors.samples.push(error instanceof Error ? error.message : String(error));
}

/** HTTP/1.1 keep-alive clients: autocannon, at a fixed overall rate. */
function keepAliveRun(options: LoadOptions, onResponse: OnResponse, errors: ErrorLog): Run {
  let instance: autocannon.Instance | undefined;
  const done = new Promise<Awaited<Run['done']>>((resolve, reject) => {
    instance = autocannon(
      {
        url: `http://${options.host ?? '127.0.0.1'}:${options.port}/`,
        connections: options.connections ?? 8,
        overallRate: options.rate ?? 300,
        duration: options.maxSeconds,
        timeout: REQUEST_TIMEOUT_MS / 1000,
        requests: [{ method: 'GET', onResponse }],
      },
      (err: unknown, result: autocannon.Result) => {
        if (err) reject(err instanceof Error ? err : new Error(String(err)));
        else resolve({ requests: result.requests.total, errors: result.errors, timeouts: result.timeouts, non2xx: result.non2xx });
      },
    );
    instance.on('reqError', (error: unknown) => logError(errors, error));
  });
  return { stop: () => instance?.stop(), done };
}

/**
 * A new connection per request: `connections` loops, each sending one GET on a fresh connection
 * (`Connection: close`, no agent) and pacing itself to its share of the rate. Not autocannon: given
 * `Connection: close`, it writes its next request on the same connection right after the response, and a
 * server that lingers on close before it shuts the connection (nginx) resets that request seconds later.
 */
function newConnectionRun(options: LoadOptions, onResponse: OnResponse, errors: ErrorLog): Run {
  const connections = options.connections ?? 8;
  const interval = (1000 * connections) / (options.rate ?? 300);
  const deadline = Date.now() + options.maxSeconds * 1000;
  const counts = { requests: 0, errors: 0, timeouts: 0, non2xx: 0 };
  const stopped = new AbortController();
  const once = (): Promise<void> =>
    new Promise((resolve) => {
      let settled = false;
      const fail = (err: Error): void => {
        if (settled) return;
        settled = true;
        counts.requests++;
        counts.errors++;
        logError(errors, err);
        resolve();
      };
      const req = request({ host: options.host ?? '127.0.0.1', port: options.port, path: '/', agent: false, headers: { connection: 'close' } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (text: string) => (body += text));
        res.on('error', fail);
        res.on('end', () => {
          if (settled) return;
          settled = true;
          counts.requests++;
          const status = res.statusCode ?? 0;
          if (status < 200 || status > 299) counts.non2xx++;
          onResponse(status, body, {}, res.headers);
          resolve();
        });
      });
      req.setTimeout(REQUEST_TIMEOUT_MS, () => {
        counts.timeouts++;
        req.destroy(Object.assign(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`), { code: 'ETIMEDOUT' }));
      });
      req.on('error', fail);
      req.end();
    });
  const loop = async (): Promise<void> => {
    while (!stopped.signal.aborted && Date.now() < deadline) {
      const started = Date.now();
      await once();
      const pause = interval - (Date.now() - started);
      if (pause > 0) await sleep(pause, undefined, { signal: stopped.signal }).catch(() => undefined);
    }
  };
  const done = Promise.all(Array.from({ length: connections }, loop)).then(() => counts);
  return { stop: () => stopped.abort(), done };
}
