import { EventEmitter } from 'node:events';
import { Gauge, type Registry } from 'prom-client';
import type { SourceConfig } from '../config/schema.js';
import type { Logger } from '../logger.js';
import type { Renderer } from '../runner/renderer.js';
import { SerfClient } from '../serf/client.js';
import { assessFleet, surveyFleet, type FleetView } from './survey.js';

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

  constructor(renderer: Renderer, logger: Logger) {
    super();
    this.#renderer = renderer;
    this.#logger = logger;
    this.#schedule(0);
  }

  get source(): string | undefined {
    return this.#serfSource()?.[0];
  }

  /** Stops surveying; resolves once a survey under way is over. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#running;
  }

  #serfSource(): [string, Extract<SourceConfig, { type: 'serf' }>] | undefined {
    for (const [name, source] of Object.entries(this.#renderer.currentConfig.sources)) {
      if ('type' in source && source.type === 'serf') return [name, source];
    }
    return undefined;
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
    const serf = this.#serfSource();
    if (!serf) return;
    const [, options] = serf;
    const { group, timeout, lag } = this.#renderer.currentConfig.fleet;
    let client: SerfClient | undefined;
    try {
      client = await SerfClient.connect({ address: options.rpcAddr, authKey: options.authKey || undefined, connectTimeout: options.connectTimeout });
      this.self ??= (await client.stats()).agent?.name;
      const askedAt = Date.now();
      const answers = await surveyFleet(client, { group, timeout });
      this.view = assessFleet(answers, { askedAt, lagMs: lag });
      this.lastError = undefined;
    } catch (err) {
      const message = (err as Error).message;
      if (message !== this.lastError) this.#logger.warn(`cannot survey the fleet: ${message}`);
      this.lastError = message;
    } finally {
      await client?.close();
    }
    this.emit('update');
  }
}

/**
 * The fleet gauges. Labels are template names from the config; peers' node names are not labels (they come
 * from the network): the status page and `rosterd fleet` name them.
 */
export function registerFleetMetrics(registry: Registry, fleet: FleetState, prefix: string): void {
  new Gauge({
    name: `${prefix}fleet_rosterds`,
    help: 'Rosterds of this group that answered the last fleet survey, this one included.',
    registers: [registry],
    collect() {
      this.reset();
      if (fleet.view) this.set(fleet.view.nodes.length);
    },
  });
  const perTemplate = (name: string, help: string, value: (t: FleetView['templates'][number]) => number): void => {
    new Gauge({
      name: `${prefix}${name}`,
      help,
      labelNames: ['template'],
      registers: [registry],
      collect() {
        this.reset();
        for (const t of fleet.view?.templates ?? []) this.set({ template: t.template }, value(t));
      },
    });
  };
  perTemplate('fleet_differing', 'Rosterds whose content for the template differs from the majority (or that lack it), lagging ones included.', (t) => t.differing);
  perTemplate('fleet_lagging', 'Rosterds whose content differs from the majority for longer than fleet.lag.', (t) => t.lagging);
  new Gauge({
    name: `${prefix}fleet_in_majority`,
    help: "1 when this rosterd serves the majority's content for the template, 0 when not.",
    labelNames: ['template'],
    registers: [registry],
    collect() {
      this.reset();
      const own = fleet.view?.nodes.find((n) => n.node === fleet.self);
      for (const t of own?.templates ?? []) this.set({ template: t.template }, t.state === 'ok' ? 1 : 0);
    },
  });
}
