import type { ServerResponse } from 'node:http';

/** How often the page's state is looked at while a page is open, for changes no event announces (a debounce begun). */
export const LIVE_TICK_MS = 1000;
/** Pushes after an event are at most this often: a burst of renders costs one push. */
export const LIVE_COALESCE_MS = 100;
/** Open pages at most; a further one is refused (each holds a connection). */
export const LIVE_MAX_CLIENTS = 20;
/** A comment line this often keeps proxies from closing an idle stream. */
const KEEPALIVE_MS = 15_000;

/** An emitter and the event of it that says the page's state changed. */
export type Announcement = readonly [emitter: { on(event: string, listener: () => void): unknown; off(event: string, listener: () => void): unknown }, event: string];

/**
 * Server-Sent Events for the status page: each open page gets `main` events carrying the new `<main>` HTML,
 * sent soon after an event of the renderer, the history or the fleet, and after a tick that finds the state
 * changed. A version equal to the last one sent is not sent, so an idle page costs one render per tick.
 */
export class LiveUpdates {
  readonly #clients = new Set<ServerResponse>();
  readonly #render: () => string;
  readonly #subscriptions: readonly Announcement[];
  readonly #poke = (): void => this.#schedule();
  #last = '';
  #timer: NodeJS.Timeout | undefined;
  #tick: NodeJS.Timeout | undefined;
  #keepalive: NodeJS.Timeout | undefined;

  /** `render` makes the current `<main>`; `announcements` are the events after which it may have changed. */
  constructor(render: () => string, announcements: readonly Announcement[]) {
    this.#render = render;
    this.#subscriptions = announcements;
  }

  /** Answers `GET /events`: the stream starts with the current version. */
  open(res: ServerResponse): void {
    if (this.#clients.size >= LIVE_MAX_CLIENTS) {
      res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '10' }).end(`too many open pages (${LIVE_MAX_CLIENTS})\n`);
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', 'x-accel-buffering': 'no' });
    res.write('retry: 2000\n\n');
    if (this.#clients.size === 0) this.#start();
    res.on('close', () => {
      this.#clients.delete(res);
      if (this.#clients.size === 0) this.#stop();
    });
    // The open pages first, so that every page holds the same version as `#last`.
    this.#push();
    this.#clients.add(res);
    res.write(message(this.#last));
  }

  /** Ends every stream. */
  close(): void {
    for (const res of this.#clients) res.end();
    this.#clients.clear();
    this.#stop();
  }

  #start(): void {
    for (const [announcer, event] of this.#subscriptions) announcer.on(event, this.#poke);
    this.#tick = setInterval(() => this.#push(), LIVE_TICK_MS);
    this.#keepalive = setInterval(() => {
      for (const res of this.#clients) res.write(': keepalive\n\n');
    }, KEEPALIVE_MS);
  }

  #stop(): void {
    for (const [announcer, event] of this.#subscriptions) announcer.off(event, this.#poke);
    clearInterval(this.#tick);
    clearInterval(this.#keepalive);
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(): void {
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      this.#push();
    }, LIVE_COALESCE_MS);
  }

  #push(): void {
    const html = this.#render();
    if (html === this.#last) return;
    this.#last = html;
    const text = message(html);
    for (const res of this.#clients) res.write(text);
  }
}

/** One SSE message: every line of the data gets its own `data:` field. */
function message(html: string): string {
  return `event: main\n${html
    .split('\n')
    .map((line) => `data: ${line}\n`)
    .join('')}\n`;
}
