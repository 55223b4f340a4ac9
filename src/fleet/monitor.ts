import { EventEmitter } from 'node:events';
import type { Logger } from '../logger.js';
import type { Renderer } from '../runner/renderer.js';
import { firstSerfSource, surveyThrough, type FleetView } from './survey.js';

/** What the daemon knows about its fleet: the last survey, or why there is none. */
export interface FleetState {
  /** The last survey that got through. */
  readonly view: FleetView | undefined;
  /** This rosterd's Serf node name, once known. */
  readonly self: string | undefined;
  /** Why the last survey failed; undefined after a success. */
  readonly lastError: string | undefined;
  /** The Serf source asked through, by name; undefined when the config has none (no fleet). */
  readonly source: string | undefined;
}

export interface FleetMonitorEvents {
  /** A survey is over (`view` or `lastError` is new). */
  update: [];
}

/**
 * Surveys the fleet every `fleet.interval` through the agent of the config's first Serf source (on a
 * connection of its own, opened for each survey), for the status page and `/metrics`. Settings are read from
 * the running config at each survey, so a config reload applies from the next one.
 */
export class FleetMonitor extends EventEmitter<FleetMonitorEvents> implements FleetState {
  view: FleetView | undefined;
  self: string | undefined;
  lastError: string | undefined;
  readonly #renderer: Renderer;
  readonly #logger: Logger;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #closed = false;
  readonly #abort = new AbortController();

  constructor(renderer: Renderer, logger: Logger) {
    super();
    this.#renderer = renderer;
    this.#logger = logger;
    this.#schedule(0);
  }

  get source(): string | undefined {
    return firstSerfSource(this.#renderer.currentConfig.sources)?.[0];
  }

  /** Stops surveying; a survey under way is called off. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#abort.abort();
    await this.#running;
  }

  #schedule(delay: number): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#running = this.#survey().finally(() => {
        this.#running = undefined;
        this.#schedule(this.#renderer.currentConfig.fleet.interval);
      });
    }, delay);
  }

  async #survey(): Promise<void> {
    const serf = firstSerfSource(this.#renderer.currentConfig.sources);
    const { group, timeout, lag } = this.#renderer.currentConfig.fleet;
    try {
      if (serf) ({ self: this.self, view: this.view } = await surveyThrough({ ...serf[1], group, timeout, lag }, this.#abort.signal));
      else this.view = undefined;
      if (this.lastError !== undefined) this.#logger.info('the fleet survey works again');
      this.lastError = undefined;
    } catch (err) {
      if (this.#closed) return;
      const message = (err as Error).message;
      // Once per distinct error: a survey runs every few seconds.
      if (message !== this.lastError) this.#logger.warn(`cannot survey the fleet: ${message}`);
      this.lastError = message;
    }
    this.emit('update');
  }
}
