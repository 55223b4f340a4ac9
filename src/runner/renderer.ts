import { EventEmitter } from 'node:events';
import { isDeepStrictEqual } from 'node:util';
import { createReloader, type EarlyApply, type FileChange, type Reloader } from '../reload/reloader.js';
import type { ConfigExport } from '../config/define.js';
import { formatDuration } from '../config/duration.js';
import { loadConfig, type ResolvedConfig, type ResolvedTemplate } from '../config/load.js';
import { RosterdError, SourceError } from '../errors.js';
import { silentLogger, type Logger } from '../logger.js';
import type { Member } from '../members/model.js';
import { removeStaleTemporaries } from '../output/install.js';
import { InProcessBackend, renderProcessBackend, type RenderBackend } from '../render/backend.js';
import { createSource, isSource } from '../sources/index.js';
import type { SerfQueryHandler, Source } from '../sources/types.js';
import type { ReloadReport, RendererEvents, TemplateResult, TemplateStatus } from './events.js';
import { renderAndInstallFanOut } from './fan-out.js';
import { failedResult, renderReport, reportOutcome } from './outcomes.js';
import { internalError, renderAndInstall, type StepOutcome, type TemplateMemory } from './pipeline.js';
import { ReloadRunner, reloadGroups, type ReloadItem } from './reloads.js';
import { Roster, type SourceStatus } from './roster.js';
import { createSchedule, type Schedule } from './schedule.js';

export interface RendererOptions {
  /** Where the renderer logs. Default: nothing is logged (library use); the CLI passes its logger. */
  logger?: Logger;
  /** Serf queries the renderer's `serf` sources answer, by query name (the daemon's fleet view uses one). */
  serfQueries?: Readonly<Record<string, SerfQueryHandler>>;
  /**
   * Render templates in this process instead of in a render process of their own. Default false: a daemon's
   * renders run in a child process, so that a template that runs away (a step that blocks, a heap that runs
   * out) fails its render and not the daemon. True saves that process's start (about as long as Node's own)
   * where the process renders once and exits anyway, as `rosterd render --once` does; liquidjs's time and
   * allocation limits still apply.
   */
  renderInProcess?: boolean;
}

export interface RenderOnceOptions {
  /** Render and compare, but write nothing and run no command. Results carry `content` and `diff`. */
  dry?: boolean;
  /** How long to wait for each source's first snapshot, in ms. Default 30 s. */
  timeout?: number;
  /**
   * Run the reload commands after installing. Default true; false installs (after the check) and reloads
   * nothing, e.g. to write a first config before the program that reads it is started.
   */
  reload?: boolean;
}

/** A template's runtime state in a renderer. */
interface TemplateRuntime {
  config: ResolvedTemplate;
  log: Logger;
  reloader: Reloader | undefined;
  /** Destinations of every template that shares this template's reload, its own included. */
  reloadGroup: string[];
  /** Names of those templates, sorted: a stable label for the reload. */
  reloadGroupNames: string[];
  schedule: Schedule;
  memory: TemplateMemory;
  /** Rendered at least once since start: later changes go through `wait`. */
  attempted: boolean;
  /** Stale temporary files next to the destination were looked for (once per runtime, before its first write). */
  swept: boolean;
  /** Whether the running program was compared with an unchanged file since start (`Reloader.inSync`). */
  syncChecked: boolean;
  /** The last render's error, undefined after a success (written or unchanged). */
  lastError: RosterdError | undefined;
  /** Written or found unchanged at least once since start. */
  ok: boolean;
  running: boolean;
  /** A change arrived while a render was running: render again when it ends. */
  dirty: boolean;
}

/**
 * The engine behind the daemon, `render --once` and the library: sources feed a roster; each template
 * renders when its sources change (debounced by `wait`), at most one render at a time per template;
 * templates rendered in the same batch that share a reload command reload once.
 */
export class Renderer extends EventEmitter<RendererEvents> {
  private config: ResolvedConfig;
  private readonly logger: Logger;
  private readonly serfQueries: RendererOptions['serfQueries'];
  private roster: Roster;
  private templates = new Map<string, TemplateRuntime>();
  private running = false;
  private stopping = false;
  private readonly inFlight = new Set<Promise<void>>();
  private pendingBatch = new Set<TemplateRuntime>();
  private batchTimer: NodeJS.Immediate | undefined;
  /** Runs the reloads of every batch, one at a time per reload command. */
  private readonly reloads: ReloadRunner;
  private warnTimer: NodeJS.Timeout | undefined;
  /** True while `reconfigure()` swaps configs: no new render starts. */
  private swapping = false;
  /** start(), stop() and reconfigure() run one after the other, never interleaved. */
  private lifecycle: Promise<unknown> = Promise.resolve();
  /** Renders run in a child process (unless `renderInProcess`): a runaway template fails its render, not the daemon. */
  private readonly sandbox: RenderBackend;

  constructor(config: ResolvedConfig, options: RendererOptions = {}) {
    super();
    this.config = config;
    this.logger = options.logger ?? silentLogger();
    this.serfQueries = options.serfQueries;
    this.sandbox = options.renderInProcess ? new InProcessBackend() : renderProcessBackend();
    this.reloads = new ReloadRunner(this.logger, {
      reloaded: (event) => this.emit('reloaded', event),
      reloadFailed: (event) => this.emit('reloadFailed', event),
    });
    this.roster = this.createRoster();
    this.templates = this.createTemplates(config, new Map());
  }

  /** The config the renderer currently runs. */
  get currentConfig(): ResolvedConfig {
    return this.config;
  }

  /** What is known about each source. */
  sourceStatus(): SourceStatus[] {
    return this.roster.names().map((name) => this.roster.status(name)!);
  }

  /**
   * Per template: `ready` when it has been written or found unchanged since start and its last render
   * succeeded; the last error otherwise, if any. `pending`: a change waits for its render (`wait`, or the
   * render under way); `rendering`: a render is under way.
   */
  templateStatus(): TemplateStatus[] {
    return [...this.templates.values()].map((t) => ({
      template: t.config.name,
      destination: t.config.destination,
      ready: t.ok && !t.lastError,
      lastError: t.lastError,
      sources: t.config.sources,
      pending: t.schedule.pending || t.dirty || this.pendingBatch.has(t),
      rendering: t.running,
    }));
  }

  /**
   * Starts every source and keeps the outputs true from then on. The first render of a template happens
   * as soon as all its sources have delivered a first snapshot, without waiting for `wait.min`.
   * Throws, with nothing started, when a source refuses its options.
   */
  start(): Promise<void> {
    return this.serially(async () => {
      if (this.running) return;
      const sources = this.createSources(this.config, new Set(this.roster.names()));
      this.running = true;
      this.stopping = false;
      this.startWaitWarnings();
      await this.addSources(sources);
    });
  }

  /** Stops sources, timers and renders. Resolves when watchers, sockets, timers and children are gone. */
  stop(): Promise<void> {
    return this.serially(async () => {
      this.stopping = true;
      this.stopWaitWarnings();
      for (const t of this.templates.values()) t.schedule.cancel();
      if (this.batchTimer) clearImmediate(this.batchTimer);
      this.batchTimer = undefined;
      this.pendingBatch.clear();
      await this.roster.stop();
      // A render under way has written nothing yet: it is stopped rather than waited for.
      await this.sandbox.close();
      await this.idle();
      this.running = false;
    });
  }

  /**
   * Renders every template once. When the renderer is not running, starts the sources, waits for their
   * first snapshots (`timeout`), renders, and stops them again. `wait` does not apply. Every template is
   * attempted, whatever happens to the others.
   */
  async renderOnce(options: RenderOnceOptions = {}): Promise<TemplateResult[]> {
    const dry = options.dry ?? false;
    const templates = [...this.templates.values()];
    const ownSources = !this.running;
    // Sources started for this render are stopped after it: they look once and follow no changes.
    if (ownSources) await this.startSources(this.config, { once: true });
    // On a running renderer, let its renders under way finish first: one render at a time per template.
    else await this.idle();
    try {
      const needed = [...new Set(templates.flatMap((t) => t.config.sources))];
      let sourceFailure: RosterdError | undefined;
      if (ownSources) this.startWaitWarnings();
      try {
        await this.roster.waitForFirst(needed, options.timeout ?? 30_000);
      } catch (err) {
        if (!RosterdError.is(err)) throw err;
        sourceFailure = err;
      } finally {
        if (ownSources) this.stopWaitWarnings();
      }
      const ready = templates.filter((t) => this.roster.ready(t.config.sources));
      const results = new Map<TemplateRuntime, TemplateResult>();
      for (const t of templates) {
        if (ready.includes(t)) continue;
        const missing = t.config.sources.find((s) => !this.roster.ready([s])) ?? '';
        // The failure that ended the wait if it is about this source, else what this source last said.
        const cause = sourceFailure instanceof SourceError && sourceFailure.source === missing ? sourceFailure : (this.roster.status(missing)?.lastError ?? sourceFailure);
        const error = RosterdError.is(cause) ? cause : new SourceError(missing, cause?.message ?? 'no first snapshot', { cause, code: 'E_SOURCE_TIMEOUT' });
        t.log.error({ code: error.code }, `not rendered: ${error.message}`);
        results.set(t, failedResult(t.config, error, 0, 0));
      }
      const rendered = await this.runBatch(ready, { dry, reload: options.reload ?? true });
      ready.forEach((t, i) => results.set(t, rendered[i]!));
      return templates.map((t) => results.get(t)!);
    } finally {
      if (ownSources) {
        await this.roster.stop();
        // Its render process too: a renderer used once must not keep one for the rest of the process.
        await this.sandbox.close();
      }
    }
  }

  /**
   * Swaps in a new, already validated config (the daemon does on SIGHUP). Sources whose config is unchanged
   * keep running with their last good snapshots; the others are stopped or started. Every template then
   * renders once. Throws, with the previous config still running as it was, when a new source refuses its
   * options.
   */
  reconfigure(config: ResolvedConfig): Promise<void> {
    return this.serially(async () => {
      const kept = this.roster.names().filter((name) => {
        const before = this.config.sources[name];
        const after = config.sources[name];
        return before !== undefined && after !== undefined && sameSource(before, after);
      });
      // Built before anything changes: a source that refuses its options leaves the previous config as it was.
      const fresh = this.running ? this.createSources(config, new Set(kept)) : new Map<string, Source>();
      // Renders under way finish on the old config; changes meanwhile are picked up by the renders below.
      this.swapping = true;
      try {
        for (const t of this.templates.values()) t.schedule.cancel();
        this.pendingBatch.clear();
        await this.idle();
        for (const name of this.roster.names()) if (!kept.includes(name)) await this.roster.remove(name);
        const memories = new Map([...this.templates].map(([name, t]) => [name, t.memory]));
        this.config = config;
        this.templates = this.createTemplates(config, memories);
        if (this.running) {
          this.startWaitWarnings();
          await this.addSources(fresh);
        }
      } finally {
        this.swapping = false;
      }
      this.logger.info({ templates: config.templates.length, sources: Object.keys(config.sources).length, keptSources: kept }, 'config reloaded');
      // Kept sources deliver no new first snapshot: render from what they have.
      if (this.running) for (const t of this.templates.values()) if (this.roster.ready(t.config.sources)) this.enqueue(t);
    });
  }

  /**
   * The former name of {@link Renderer.reconfigure}, which it calls.
   * @deprecated Use `reconfigure(config)`: "reload" is what a template's reload command does.
   */
  reload(config: ResolvedConfig): Promise<void> {
    return this.reconfigure(config);
  }

  // --- internal ---

  private serially<T>(operation: () => Promise<T>): Promise<T> {
    const run = this.lifecycle.then(operation);
    this.lifecycle = run.catch(() => undefined);
    return run;
  }

  /** Resolves when no render batch is under way. */
  private async idle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled(this.inFlight);
  }

  /** Warns every `warnInterval` about each template still waiting for a source's first snapshot. */
  private startWaitWarnings(): void {
    this.stopWaitWarnings();
    this.warnTimer = setInterval(() => {
      for (const t of this.templates.values()) {
        for (const source of t.config.sources) {
          const status = this.roster.status(source);
          if (!status || status.members !== undefined) continue;
          const waitedMs = Date.now() - status.startedAt;
          const error = status.lastError && detailOf(status.lastError);
          this.logger.child({ template: t.config.name, source }).warn(
            { waitedMs, lastError: error },
            `waiting for source ${source}: no first snapshot after ${formatDuration(waitedMs)}${error ? `; last error: ${error}` : ''}`,
          );
        }
      }
    }, this.config.warnInterval);
  }

  private stopWaitWarnings(): void {
    clearInterval(this.warnTimer);
    this.warnTimer = undefined;
  }

  private createRoster(): Roster {
    const roster = new Roster(this.logger);
    roster.onChange((source) => this.onSourceChange(source));
    roster.onError((source, error) => {
      // A known error is one line (what and where); only an unexpected one carries its stack.
      this.logger.child({ source }).error(RosterdError.is(error) ? { code: error.code } : { err: error }, error.message);
      this.emit('sourceError', { source, error: error as SourceError });
    });
    return roster;
  }

  private createTemplates(config: ResolvedConfig, memories: Map<string, TemplateMemory>): Map<string, TemplateRuntime> {
    const templates = new Map<string, TemplateRuntime>();
    for (const t of config.templates) {
      const runtime: TemplateRuntime = {
        config: t,
        log: this.logger.child({ template: t.name }),
        reloader: t.reload === undefined ? undefined : createReloader(t.reload, { destination: t.destination, timeout: t.timeout, cwd: config.baseDir }),
        reloadGroup: [t.destination],
        reloadGroupNames: [t.name],
        schedule: createSchedule(t.wait, () => this.enqueue(runtime)),
        memory: memories.get(t.name) ?? {},
        attempted: false,
        swept: false,
        syncChecked: false,
        lastError: undefined,
        ok: false,
        running: false,
        dirty: false,
      };
      templates.set(t.name, runtime);
    }
    for (const [t, group] of reloadGroups([...templates.values()])) {
      t.reloadGroup = group.destinations;
      t.reloadGroupNames = group.names;
    }
    return templates;
  }

  /** Starts the config's sources that are not running yet. */
  private async startSources(config: ResolvedConfig, options: { once?: boolean } = {}): Promise<void> {
    await this.addSources(this.createSources(config, new Set(this.roster.names()), options));
  }

  /** Builds the config's sources, but those named in `skip`. Throws when a source refuses its options. */
  private createSources(config: ResolvedConfig, skip: ReadonlySet<string>, { once = false } = {}): Map<string, Source> {
    const sources = new Map<string, Source>();
    for (const [name, sourceConfig] of Object.entries(config.sources)) if (!skip.has(name)) sources.set(name, createSource(name, sourceConfig, this.logger, { queries: this.serfQueries, once }));
    return sources;
  }

  private async addSources(sources: ReadonlyMap<string, Source>): Promise<void> {
    await Promise.all([...sources].map(([name, source]) => this.roster.add(name, source)));
  }

  private onSourceChange(source: string): void {
    if (!this.running || this.stopping) return;
    for (const t of this.templates.values()) {
      if (!t.config.sources.includes(source) || !this.roster.ready(t.config.sources)) continue;
      if (t.attempted) t.schedule.poke();
      else this.enqueue(t);
    }
  }

  /** Adds a template to the next batch; templates that fire in the same turn of the event loop share it. */
  private enqueue(t: TemplateRuntime): void {
    // A runtime replaced by a config reload may still have a timer or a dirty flag: it renders no more.
    if (!this.running || this.stopping || this.swapping || this.templates.get(t.config.name) !== t) return;
    if (t.running) {
      t.dirty = true;
      return;
    }
    this.pendingBatch.add(t);
    this.batchTimer ??= setImmediate(() => {
      this.batchTimer = undefined;
      const batch = [...this.pendingBatch];
      this.pendingBatch.clear();
      this.runBatch(batch, { dry: false, reload: true }).catch((err: unknown) => {
        this.logger.error({ err }, `unexpected error in a render batch: ${(err as Error).message}`);
      });
    });
  }

  /**
   * Runs a batch and keeps track of it: `idle()` waits for it, and a template that changed meanwhile renders
   * again once it is done. Every way of rendering (daemon, `renderOnce`) goes through here.
   */
  private runBatch(batch: TemplateRuntime[], options: { dry: boolean; reload: boolean }): Promise<TemplateResult[]> {
    for (const t of batch) t.running = true;
    const run = this.renderBatch(batch, options);
    const tracked: Promise<void> = run
      .then(
        () => undefined,
        () => undefined,
      )
      .finally(() => {
        this.inFlight.delete(tracked);
        for (const t of batch) {
          t.running = false;
          if (!t.dirty) continue;
          t.dirty = false;
          t.schedule.poke();
        }
      });
    this.inFlight.add(tracked);
    return run;
  }

  /** Renders and installs each template of a batch, then runs each distinct reload once. */
  private async renderBatch(batch: TemplateRuntime[], options: { dry: boolean; reload: boolean }): Promise<TemplateResult[]> {
    const snapshots = this.roster.snapshots();
    const first = new Set(batch.filter((t) => !t.attempted));
    if (!options.dry) for (const t of batch) t.attempted = true;
    if (!options.dry) await Promise.all(batch.filter((t) => !t.swept).map((t) => this.sweep(t)));
    // Reload locks this batch took for changes applied before their check (`Reloader.applyEarly`): key → release.
    const held = new Map<string, () => void>();
    try {
      return await this.renderAndReload(batch, options, snapshots, first, held);
    } finally {
      for (const release of held.values()) release();
    }
  }

  private async renderAndReload(
    batch: TemplateRuntime[],
    options: { dry: boolean; reload: boolean },
    snapshots: ReadonlyMap<string, readonly Member[]>,
    first: ReadonlySet<TemplateRuntime>,
    held: Map<string, () => void>,
  ): Promise<TemplateResult[]> {
    const early = !options.dry && options.reload;
    const results = await Promise.all(
      batch.map(async (t) => {
        const startedAt = Date.now();
        const started = performance.now();
        const applyEarly = early && t.reloader?.applyEarly ? (change: FileChange) => this.applyEarly(t, held, change) : undefined;
        const outcome = await this.renderOne(t, snapshots, options.dry, applyEarly);
        this.remember(t, outcome);
        return { t, outcome, startedAt, result: reportOutcome(t.config, outcome, performance.now() - started, t.log, this) };
      }),
    );
    const reloads = new Map<string, { reloader: Reloader; group: readonly string[]; templates: TemplateRuntime[]; items: ReloadItem[] }>();
    for (const { t, outcome } of results) {
      if (!t.reloader || !options.reload) continue;
      if (outcome.status === 'installed') t.syncChecked = true;
      // An unchanged file whose last reload failed is reloaded again, and so is one that is not what runs.
      const item: ReloadItem | undefined =
        outcome.status === 'installed'
          ? { template: t.config, memory: t.memory, rollback: outcome.rollback, changes: outcome.changes }
          : outcome.status === 'unchanged' && (t.memory.reloadPending || (await this.outOfSync(t)))
            ? { template: t.config, memory: t.memory, rollback: undefined, changes: undefined }
            : undefined;
      if (!item) continue;
      const group = reloads.get(t.reloader.key) ?? { reloader: t.reloader, group: t.reloadGroupNames, templates: [], items: [] };
      group.templates.push(t);
      group.items.push(item);
      reloads.set(t.reloader.key, group);
    }
    // A lock taken for a change that was then not installed (and undone) has no reload to wait for.
    for (const [key, release] of held) if (!reloads.has(key)) release();
    const reloadReports = new Map<TemplateRuntime, ReloadReport>();
    await Promise.all(
      [...reloads.values()].map(async ({ reloader, group, templates, items }) => {
        const reload = await this.reloads.run(reloader, group, items, held.get(reloader.key));
        for (const t of templates) reloadReports.set(t, reload);
        const failure = reload.error;
        if (!failure) return;
        for (const t of templates) {
          Object.assign(results.find((r) => r.t === t)!.result, { status: 'failed', error: failure });
          t.lastError = failure;
        }
      }),
    );
    if (!options.dry) {
      for (const { t, outcome, startedAt, result } of results) this.emit('settled', renderReport(t.config, outcome, result, { startedAt, first: first.has(t), snapshots }, reloadReports.get(t)));
    }
    return results.map((r) => r.result);
  }

  /**
   * Removes the temporary files a killed rosterd left next to a template's destination. A candidate lives at
   * most through its check, which `timeout` bounds; twice that (an hour without a timeout) is surely stale.
   */
  private async sweep(t: TemplateRuntime): Promise<void> {
    t.swept = true;
    const removed = await removeStaleTemporaries(t.config.destination, t.config.timeout > 0 ? 2 * t.config.timeout : 3_600_000).catch(() => []);
    if (removed.length > 0) t.log.info({ removed }, `removed ${removed.length} temporary file(s) left by an earlier run next to ${t.config.destination}`);
  }

  /**
   * After start, the first time a template's file is found unchanged: does the program run what it says?
   * rosterd may have been stopped after an install and before the reload (or runtime change) that followed.
   */
  private async outOfSync(t: TemplateRuntime): Promise<boolean> {
    if (t.syncChecked || !t.reloader?.inSync) return false;
    t.syncChecked = true;
    const difference = await t.reloader.inSync(t.reloadGroup);
    if (difference === undefined) return false;
    t.log.warn(`the running program does not match ${t.config.destination} (${difference}): applying it again`);
    return true;
  }

  /** What a render tells about its template: `ready` once written or unchanged, the last error until a success. */
  private remember(t: TemplateRuntime, outcome: StepOutcome): void {
    if (outcome.status === 'failed') t.lastError = outcome.error;
    else if (outcome.status !== 'dry') {
      t.ok = true;
      t.lastError = undefined;
    }
  }

  /**
   * Applies a change before its check (HAProxy runtime mode) under its reload's lock, held until the batch's
   * reload for that key has run. The lock is taken only when it is free and no other template of the batch
   * holds it: waiting could deadlock two batches that each hold one HAProxy's lock and want the other's. A
   * change that finds it taken, or whose early apply throws, is applied after its check, as usual.
   */
  private async applyEarly(t: TemplateRuntime, held: Map<string, () => void>, change: FileChange): Promise<EarlyApply | undefined> {
    const reloader = t.reloader;
    if (!reloader?.applyEarly) return undefined;
    const key = reloader.key;
    if (held.has(key)) return undefined;
    const hold = this.reloads.tryHold(key);
    if (hold === undefined) return undefined;
    const release = (): void => {
      hold();
      if (held.get(key) === release) held.delete(key);
    };
    held.set(key, release);
    const early = await reloader.applyEarly(change).catch((err: unknown) => {
      t.log.child({ command: 'reload' }).warn(`the server changes could not be applied before the check (${(err as Error).message}); they are applied after it`);
      return undefined;
    });
    if (early === undefined) release();
    return early;
  }

  /** One template's render; an unexpected error becomes that template's failure, not the batch's. */
  private async renderOne(t: TemplateRuntime, snapshots: ReadonlyMap<string, readonly Member[]>, dry: boolean, applyEarly?: (change: FileChange) => Promise<EarlyApply | undefined>): Promise<StepOutcome> {
    try {
      const options = { dry, reloader: t.reloader, sandbox: this.sandbox, reloadGroup: t.reloadGroup, logger: t.log };
      // A fan-out template (`forEach`) renders many files through the same steps (see fan-out.ts); only a
      // single file applies server changes before its check.
      if (t.config.fanOut) return await renderAndInstallFanOut(t.config, snapshots, t.memory, options);
      return await renderAndInstall(t.config, snapshots, t.memory, applyEarly ? { ...options, applyEarly } : options);
    } catch (err) {
      const error = RosterdError.is(err) ? err : internalError(t.config.name, 'a render', err);
      return { status: 'failed', members: 0, error, stage: 'install' };
    }
  }

}

/**
 * Creates a renderer: the same pipeline as the daemon and `render --once`. Takes a loaded config, a config
 * object (validated here, relative paths against the working directory), or a path to a config file.
 */
export async function createRenderer(config: ResolvedConfig | ConfigExport | string, options: RendererOptions = {}): Promise<Renderer> {
  const resolved = isResolved(config) ? config : await loadConfig(config);
  return new Renderer(resolved, options);
}

// --- internal ---

function isResolved(value: unknown): value is ResolvedConfig {
  return typeof value === 'object' && value !== null && 'baseDir' in value && Array.isArray((value as ResolvedConfig).templates) && (value as ResolvedConfig).templates.every((t) => 'compiled' in t);
}

function sameSource(a: ResolvedConfig['sources'][string], b: ResolvedConfig['sources'][string]): boolean {
  if (isSource(a) || isSource(b)) return a === b;
  return isDeepStrictEqual(a, b);
}

/** An error's message without the component prefix, when it has one. */
function detailOf(error: Error): string {
  return RosterdError.is(error) ? error.detail : error.message;
}
