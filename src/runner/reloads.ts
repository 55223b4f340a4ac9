import { logFailedOutput, type FileChange, type Reloader, type ReloadOutcome } from '../reload/reloader.js';
import type { ResolvedTemplate } from '../config/load.js';
import { TemplateRunError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { ReloadedEvent, ReloadFailedEvent, ReloadReport } from './events.js';
import type { TemplateMemory } from './pipeline.js';

/**
 * Reloads of a renderer: templates that share a reload command (the same reloader `key`) reload once per batch,
 * one reload at a time per key across batches, and a failed reload puts back the files it may restore.
 */

/** A template of a batch whose reload is to run: installed now, or installed earlier with its reload pending. */
export interface ReloadItem {
  template: Pick<ResolvedTemplate, 'name' | 'destination' | 'rollback'>;
  /** The template's memory: the reload updates `reloadPending`, a restore clears the `maxShrink` baseline. */
  memory: TemplateMemory;
  /** Puts back what the batch changed when the reload fails; undefined when nothing may be restored (a retried reload). */
  rollback: (() => Promise<void>) | undefined;
  /** What the batch installed or removed; undefined for a retried reload. */
  changes: FileChange[] | undefined;
}

/** Where a reload reports how it went: the renderer's `reloaded` and `reloadFailed` events. */
export interface ReloadListener {
  reloaded(event: ReloadedEvent): void;
  reloadFailed(event: ReloadFailedEvent): void;
}

/** A template and its reloader, as {@link reloadGroups} reads them. */
interface Reloadable {
  config: Pick<ResolvedTemplate, 'name' | 'destination'>;
  reloader: Reloader | undefined;
}

/**
 * For each template with a reloader, the templates of the config that share it (its own included), in config
 * order: their destinations (what a reloader checks together) and their names, sorted (a stable label).
 */
export function reloadGroups<T extends Reloadable>(templates: readonly T[]): Map<T, { destinations: string[]; names: string[] }> {
  const groups = new Map<T, { destinations: string[]; names: string[] }>();
  for (const t of templates) {
    if (t.reloader === undefined) continue;
    const group = templates.filter((o) => o.reloader?.key === t.reloader!.key);
    groups.set(t, { destinations: group.map((o) => o.config.destination), names: group.map((o) => o.config.name).sort() });
  }
  return groups;
}

/** Runs reloads for a renderer, one at a time per reload key, and reports each through the renderer's events. */
export class ReloadRunner {
  /** One reload at a time per reload key, across batches. */
  readonly #locks = new Map<string, Promise<unknown>>();
  readonly #logger: Logger;
  readonly #listener: ReloadListener;

  constructor(logger: Logger, listener: ReloadListener) {
    this.#logger = logger;
    this.#listener = listener;
  }

  /**
   * Runs one reload for the items of a batch that share `reloader`; on failure restores the files it may
   * restore. `group` names every template of the config that shares this reload (see {@link reloadGroups}).
   * `hold`: the batch holds this reload's lock already ({@link tryHold}); it is released when the reload is over.
   */
  async run(reloader: Reloader, group: readonly string[], items: readonly ReloadItem[], hold?: () => void): Promise<ReloadReport> {
    const names = items.map((item) => item.template.name);
    const log = this.#logger.child({ template: names.join(','), command: 'reload' });
    const outcome = await this.#locked(reloader, (stream, line) => log.debug({ stream }, line), items, hold);
    if (outcome.warning) log.warn(outcome.warning);
    const path = outcome.path ?? 'reload';
    if (outcome.ok) {
      for (const item of items) item.memory.reloadPending = false;
      if (path === 'runtime') {
        const applied = outcome.applied ?? [];
        log.info({ durationMs: outcome.durationMs, path, changes: applied.length }, `applied without a reload, through the HAProxy runtime API: ${applied.join(', ') || 'no server change'}`);
      } else {
        const why = outcome.fallback === undefined ? '' : ` (not through the runtime API: ${outcome.fallback})`;
        log.info({ durationMs: outcome.durationMs, path }, `reloaded: ${reloader.description}${why}`);
      }
      const event: ReloadedEvent = { templates: names, group: [...group], command: reloader.description, durationMs: outcome.durationMs, path };
      if (outcome.fallback !== undefined) event.fallback = outcome.fallback;
      this.#listener.reloaded(event);
      return { ok: true, command: reloader.description, path, durationMs: outcome.durationMs, ...(outcome.fallback === undefined ? {} : { fallback: outcome.fallback }) };
    }
    if (outcome.fallback !== undefined) log.warn({ path }, `not applied through the runtime API: ${outcome.fallback}`);
    logFailedOutput(log, outcome.output);
    // A reload that was triggered but not confirmed may still take effect: the file must match what runs.
    const keep = outcome.keepNewFile === true;
    const { rolledBack, restoreFailed } = keep ? { rolledBack: false, restoreFailed: false } : await rollBack(items, log);
    if (keep) for (const item of items) item.memory.reloadPending = true;
    const what = keep
      ? 'it may still take effect, so the new file stays in place'
      : rolledBack
        ? 'previous file restored'
        : restoreFailed
          ? 'restore failed'
          : items.some(({ rollback }) => !rollback)
            ? 'the file stays in place; the next render reloads again'
            : 'rollback is off, new file left in place';
    const error = new TemplateRunError('E_RELOAD_FAILED', names.join(', '), `reload (${reloader.description}) failed: ${outcome.reason ?? 'unknown reason'}; ${what}`, {
      exitCode: outcome.exitCode,
      timedOut: outcome.timedOut,
      output: outcome.output,
    });
    log.error({ code: error.code }, error.message);
    this.#listener.reloadFailed({ templates: names, group: [...group], command: reloader.description, error, rolledBack });
    return { ok: false, command: reloader.description, path, durationMs: outcome.durationMs, error, rolledBack };
  }

  /**
   * Takes a reload's lock now, only if no reload (or other hold) of that key is under way: for server changes
   * applied before a candidate's check (`Reloader.applyEarly`), which must not interleave with another batch's
   * reload of the same program. Returns the release, or undefined when the lock is taken. Never waits: a batch
   * that held one key's lock while waiting for another's could deadlock with a batch doing the opposite.
   */
  tryHold(key: string): (() => void) | undefined {
    if (this.#locks.has(key)) return undefined;
    let resolve!: () => void;
    const lock = new Promise<void>((r) => (resolve = r));
    this.#locks.set(key, lock);
    return () => {
      resolve();
      if (this.#locks.get(key) === lock) this.#locks.delete(key);
    };
  }

  /** Runs the reloader once the reload before it with the same key is over (at once under `hold`). Never rejects. */
  async #locked(reloader: Reloader, onLine: (stream: 'stdout' | 'stderr', line: string) => void, items: readonly ReloadItem[], hold?: () => void): Promise<ReloadOutcome> {
    // Held already: later reloads wait behind this batch's hold, and waiting behind them would never end.
    const previous = hold ? Promise.resolve() : (this.#locks.get(reloader.key) ?? Promise.resolve());
    const changes = items.every((item) => item.changes) ? items.flatMap((item) => item.changes!) : undefined;
    const run = previous.then(() => reloader.run(onLine, changes));
    const lock = run.catch(() => undefined);
    if (!hold) this.#locks.set(reloader.key, lock);
    try {
      return await run;
    } catch (err) {
      return { ok: false, reason: (err as Error).message, durationMs: 0 };
    } finally {
      if (hold) hold();
      else if (this.#locks.get(reloader.key) === lock) this.#locks.delete(reloader.key);
    }
  }
}

// --- internal ---

/**
 * After a failed reload: restores each item's previous file when its template has `rollback` on and the batch
 * may restore it; every file left in place is marked for a reload at its next render.
 */
async function rollBack(items: readonly ReloadItem[], log: Logger): Promise<{ rolledBack: boolean; restoreFailed: boolean }> {
  let restoreFailed = false;
  for (const { template, memory, rollback } of items) {
    if (!template.rollback || !rollback) {
      memory.reloadPending = true;
      continue;
    }
    try {
      await rollback();
      memory.reloadPending = false;
      // The restored file's members are not known: maxShrink has no baseline until the next install.
      memory.lastMembers = undefined;
      memory.lastDigest = undefined;
    } catch (err) {
      restoreFailed = true;
      memory.reloadPending = true;
      log.error({ err }, `could not restore ${template.destination}: ${(err as Error).message}`);
    }
  }
  const rolledBack = !restoreFailed && items.every(({ template, rollback }) => template.rollback && rollback);
  return { rolledBack, restoreFailed };
}
