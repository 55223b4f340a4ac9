import { createRequire } from 'node:module';
import type { Registry } from 'prom-client';
import type { Renderer } from '../runner/renderer.js';

/**
 * Prometheus metrics of a renderer, fed by its events and read from its status at scrape time. Labels are
 * template and source names from the config, never member data or secrets.
 */
export interface RendererMetrics {
  readonly registry: Registry;
  /**
   * Changes whenever a value these metrics show moved: an event counted, or the state the gauges read (a
   * source up or down, its members, its last look; a template's readiness). A scrape computed under another
   * key holds stale numbers. Values that move with time alone (ages, the process's CPU and memory) do not
   * change it.
   */
  stateKey(): string;
  /** Marks the metrics changed, for metrics added to the registry by others. */
  invalidate(): void;
  /** Stops listening to the renderer. */
  close(): void;
}

/** Metric names, all prefixed `rosterd_`. */
export const METRIC_PREFIX = 'rosterd_';

const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Creates a registry with rosterd's metrics and the default process metrics, wired to `renderer`. */
export function createMetrics(renderer: Renderer, version: string): RendererMetrics {
  // Required when metrics are made, not when rosterd is imported: prom-client takes 40 ms to load.
  const { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } = createRequire(import.meta.url)('prom-client') as typeof import('prom-client');
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: METRIC_PREFIX });
  // Every series exists from the start at 0, so that `increase()` sees the first event too.
  const labelValues = (label: 'template' | 'source'): string[] =>
    label === 'template' ? renderer.templateStatus().map((t) => t.template) : renderer.sourceStatus().map((s) => s.name);
  const counter = (name: string, help: string, label: 'template' | 'source') =>
    new Counter({
      name: METRIC_PREFIX + name,
      help,
      labelNames: [label],
      registers: [registry],
      collect() {
        for (const value of labelValues(label)) this.inc({ [label]: value }, 0);
      },
    });

  const rendered = counter('renders_total', 'Renders that installed new content.', 'template');
  const unchanged = counter('unchanged_total', 'Renders whose content equalled the file on disk (nothing written).', 'template');
  const guarded = counter('guard_refusals_total', 'Renders refused by minMembers or maxShrink.', 'template');
  const checkFailed = counter('check_failures_total', 'Candidates rejected by the check command.', 'template');
  const reloaded = counter('reloads_total', 'Successful reloads, counted once per template they covered (runtime API changes are not reloads).', 'template');
  const applied = new Counter({
    name: `${METRIC_PREFIX}applied_total`,
    help: 'New content taken by the running program, per template, by path: reload, or runtime (HAProxy runtime API, no reload).',
    labelNames: ['template', 'path'],
    registers: [registry],
    collect() {
      for (const template of labelValues('template')) for (const path of ['reload', 'runtime']) this.inc({ template, path }, 0);
    },
  });
  const fallbacks = counter('runtime_fallbacks_total', 'Changes the HAProxy runtime mode applied with a reload instead (the log says why).', 'template');
  const reloadFailed = counter('reload_failures_total', 'Failed reloads, counted once per template they covered.', 'template');
  const errors = counter('render_errors_total', 'Other template failures (render or install errors).', 'template');
  const sourceErrors = counter('source_errors_total', 'Errors reported by a source.', 'source');
  const renderDuration = new Histogram({
    name: `${METRIC_PREFIX}render_duration_seconds`,
    help: 'Time to render a template, compare it with the file and install it (check command included, reload not).',
    labelNames: ['template'],
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  const reloadDuration = new Histogram({
    name: `${METRIC_PREFIX}reload_duration_seconds`,
    help: 'Duration of reloads, once per reload; labelled with the templates that share the reload.',
    labelNames: ['reload'],
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });

  // Gauges read the renderer's current state at scrape time, so they can never drift from it.
  new Gauge({
    name: `${METRIC_PREFIX}source_members`,
    help: 'Members in the last good snapshot of each source.',
    labelNames: ['source'],
    registers: [registry],
    collect() {
      this.reset();
      for (const s of renderer.sourceStatus()) if (s.members) this.set({ source: s.name }, s.members.length);
    },
  });
  new Gauge({
    name: `${METRIC_PREFIX}source_up`,
    help: '1 when the source delivered its last look, 0 while it reports errors or has not delivered yet.',
    labelNames: ['source'],
    registers: [registry],
    collect() {
      this.reset();
      for (const s of renderer.sourceStatus()) this.set({ source: s.name }, s.up ? 1 : 0);
    },
  });
  new Gauge({
    name: `${METRIC_PREFIX}source_last_snapshot_age_seconds`,
    help: 'Seconds since the source last looked successfully, changed or not (since its start when it never did).',
    labelNames: ['source'],
    registers: [registry],
    collect() {
      this.reset();
      const now = Date.now();
      for (const s of renderer.sourceStatus()) this.set({ source: s.name }, (now - (s.lastSnapshotAt ?? s.startedAt)) / 1000);
    },
  });
  new Gauge({
    name: `${METRIC_PREFIX}template_ok`,
    help: '1 when the template was written or found unchanged since start and its last render succeeded.',
    labelNames: ['template'],
    registers: [registry],
    collect() {
      this.reset();
      for (const t of renderer.templateStatus()) this.set({ template: t.template }, t.ready ? 1 : 0);
    },
  });
  new Gauge({
    name: `${METRIC_PREFIX}build_info`,
    help: 'The running rosterd version.',
    labelNames: ['version'],
    registers: [registry],
  }).set({ version }, 1);

  const listeners = {
    rendered: (e: { template: string; durationMs: number }) => {
      rendered.inc({ template: e.template });
      renderDuration.observe({ template: e.template }, e.durationMs / 1000);
    },
    unchanged: (e: { template: string; durationMs: number }) => {
      unchanged.inc({ template: e.template });
      renderDuration.observe({ template: e.template }, e.durationMs / 1000);
    },
    guarded: (e: { template: string }) => guarded.inc({ template: e.template }),
    checkFailed: (e: { template: string }) => checkFailed.inc({ template: e.template }),
    reloaded: (e: { templates: string[]; group: string[]; durationMs: number; path: 'reload' | 'runtime'; fallback?: string }) => {
      for (const template of e.templates) {
        if (e.path === 'reload') reloaded.inc({ template });
        applied.inc({ template, path: e.path });
        if (e.fallback !== undefined) fallbacks.inc({ template });
      }
      reloadDuration.observe({ reload: e.group.join(',') }, e.durationMs / 1000);
    },
    reloadFailed: (e: { templates: string[] }) => {
      for (const template of e.templates) reloadFailed.inc({ template });
    },
    error: (e: { template?: string }) => {
      if (e.template !== undefined) errors.inc({ template: e.template });
    },
    sourceError: (e: { source: string }) => sourceErrors.inc({ source: e.source }),
  };
  let generation = 0;
  const invalidate = (): void => {
    generation++;
  };
  const subscriptions = Object.entries(listeners).map(([event, listener]) => {
    const counted = (e: never): void => {
      (listener as (e: never) => void)(e);
      invalidate();
    };
    renderer.on(event as never, counted as never);
    return [event, counted] as const;
  });
  return {
    registry,
    stateKey() {
      const sources = renderer.sourceStatus().map((s) => `${s.up ? 1 : 0}:${s.members?.length}:${s.lastSnapshotAt}`);
      const templates = renderer.templateStatus().map((t) => (t.ready ? 1 : 0));
      return `${generation}|${sources.join(',')}|${templates.join('')}`;
    },
    invalidate,
    close() {
      for (const [event, listener] of subscriptions) renderer.off(event as never, listener as never);
    },
  };
}
