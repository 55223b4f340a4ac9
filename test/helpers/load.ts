import type { IncomingHttpHeaders } from 'node:http';
import autocannon from 'autocannon';

/**
 * Bounded HTTP load on one frontend for end-to-end tests and benchmarks: one autocannon run per client
 * kind, at a fixed rate, that records which node served each response (the lab app's `X-Served-By`) and
 * when. It stops by itself after `maxSeconds`, or earlier with `stop()`.
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
    const errorSamples: string[] = [];
    let instance: autocannon.Instance | undefined;
    const done = new Promise<LoadReport>((resolve, reject) => {
      instance = autocannon(
        {
          url: `http://${options.host ?? '127.0.0.1'}:${options.port}/`,
          connections: options.connections ?? 8,
          overallRate: options.rate ?? 300,
          duration: options.maxSeconds,
          timeout: 5,
          headers: mode === 'close' ? { connection: 'close' } : {},
          requests: [{ method: 'GET', onResponse }],
        },
        (err: unknown, result: autocannon.Result) => {
          if (err) {
            reject(err instanceof Error ? err : new Error(String(err)));
            return;
          }
          resolve({
            mode,
            requests: result.requests.total,
            errors: result.errors,
            timeouts: result.timeouts,
            non2xx: result.non2xx,
            failed: result.errors + result.non2xx,
            errorSamples: [...errorSamples, ...samples],
          });
        },
      );
      instance.on('reqError', (error: unknown) => {
        if (errorSamples.length < 5) errorSamples.push(error instanceof Error ? error.message : String(error));
      });
    });
    return { stop: () => instance?.stop(), done };
  });
  return {
    served,
    async stop() {
      for (const run of runs) run.stop();
      return Promise.all(runs.map((run) => run.done));
    },
  };
}
