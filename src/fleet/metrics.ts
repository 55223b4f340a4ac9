import { Gauge, type Registry } from 'prom-client';
import type { FleetState } from './monitor.js';
import type { FleetTemplate } from './survey.js';

/**
 * The fleet gauges, read from the last survey at scrape time. Labels are template names; peers' node names
 * are not labels (they come from the network, and a fleet can be large): the status page and `rosterd fleet`
 * name them. Series are absent until a survey got through.
 */
export function registerFleetMetrics(registry: Registry, fleet: FleetState, prefix: string): void {
  const gauge = (name: string, help: string, value: (state: FleetState) => number | undefined): void => {
    new Gauge({
      name: `${prefix}${name}`,
      help,
      registers: [registry],
      collect() {
        this.reset();
        const current = value(fleet);
        if (current !== undefined) this.set(current);
      },
    });
  };
  gauge('fleet_rosterds', 'Rosterds of this group that answered the last fleet survey, this one included.', (f) => f.view?.nodes.length);
  gauge('fleet_invalid_answers', 'Answers to the last fleet survey that were not valid (their rosterds are flagged).', (f) => f.view?.nodes.filter((n) => !n.valid).length);
  gauge('fleet_survey_timestamp_seconds', 'When the last fleet survey that got through was asked (Unix time).', (f) => (f.view ? f.view.askedAt / 1000 : undefined));

  const perTemplate = (name: string, help: string, value: (t: FleetTemplate) => number): void => {
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
  perTemplate('fleet_differing', "Rosterds whose content for the template differs from the majority's (or that lack it), lagging ones included.", (t) => t.differing);
  perTemplate('fleet_lagging', 'Rosterds that have differed from the majority on the template for longer than fleet.lag.', (t) => t.lagging);
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
