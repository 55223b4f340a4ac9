import type { EventEmitter } from 'node:events';
import type { ResolvedTemplate } from '../config/load.js';
import { TemplateError, type RosterdError, type TemplateRunError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Member } from '../members/model.js';
import type { ReloadReport, RenderedEvent, RenderReport, RendererEvents, TemplateResult } from './events.js';
import { fanOutResult } from './fan-out.js';
import type { StepOutcome } from './pipeline.js';

/**
 * How a renderer reports one template's render: the log line, the narrow event (`rendered`, `unchanged`,
 * `guarded`, `checkFailed`, `error`), the result `renderOnce` returns, and the `settled` report once its
 * reload is over.
 */

/** Logs and emits one template's outcome, and turns it into a result. */
export function reportOutcome(template: ResolvedTemplate, outcome: StepOutcome, durationMs: number, log: Logger, events: EventEmitter<RendererEvents>): TemplateResult {
  const { name, destination } = template;
  const base = { template: name, destination, members: outcome.members, durationMs: Math.round(durationMs) };
  switch (outcome.status) {
    case 'unchanged':
      log.debug({ members: outcome.members }, `${destination} unchanged`);
      events.emit('unchanged', { template: name, destination, members: outcome.members, durationMs: base.durationMs });
      return { ...base, status: 'unchanged', changed: false };
    case 'dry':
      return { ...base, status: 'dry', changed: outcome.changed, content: outcome.content, diff: outcome.diff, ...fanOutResult(outcome.fanOut) };
    case 'installed': {
      const event: RenderedEvent = { template: name, destination, members: outcome.members, durationMs: base.durationMs };
      if (outcome.fanOut) {
        const files = outcome.fanOut.files.filter((f) => f.changed).map((f) => f.destination);
        const removed = outcome.fanOut.removed;
        log.info({ members: outcome.members, written: files.length, removed: removed.length }, `wrote ${files.length} and removed ${removed.length} file(s) in ${destination}`);
        Object.assign(event, { files, removed });
      } else log.info({ members: outcome.members, backup: outcome.backupPath }, `wrote ${destination}`);
      if (outcome.backupPath) event.backupPath = outcome.backupPath;
      events.emit('rendered', event);
      const result: TemplateResult = { ...base, status: 'written', changed: true, ...fanOutResult(outcome.fanOut) };
      if (outcome.backupPath) result.backupPath = outcome.backupPath;
      return result;
    }
    case 'failed': {
      const error = outcome.error;
      log.error(failureFields(error), error.message);
      if (error.code === 'E_GUARD') events.emit('guarded', { template: name, reason: error.message, error: error as TemplateRunError });
      else if (error.code === 'E_CHECK_FAILED') events.emit('checkFailed', { template: name, error: error as TemplateRunError });
      else if (events.listenerCount('error') > 0) events.emit('error', { template: name, error });
      return failedResult(template, error, outcome.members, base.durationMs);
    }
  }
}

/** The `settled` event of one template's render: the outcome of its steps, with the snapshots of its sources. */
export function renderReport(
  template: ResolvedTemplate,
  outcome: StepOutcome,
  result: TemplateResult,
  batch: { startedAt: number; first: boolean; snapshots: ReadonlyMap<string, readonly Member[]> },
  reload: ReloadReport | undefined,
): RenderReport {
  const used = new Map<string, readonly Member[]>();
  for (const source of template.sources) used.set(source, batch.snapshots.get(source) ?? []);
  const report: RenderReport = {
    template: template.name,
    destination: template.destination,
    startedAt: batch.startedAt,
    first: batch.first,
    durationMs: result.durationMs,
    members: outcome.members,
    snapshots: used,
    outcome: 'failed',
  };
  if (outcome.status === 'installed') {
    const file = template.fanOut ? undefined : outcome.changes.find((c) => c.path === template.destination);
    Object.assign(report, { outcome: 'written', changes: outcome.changes }, file?.after ? { content: file.after } : {});
  }
  else if (outcome.status === 'unchanged') Object.assign(report, { outcome: 'unchanged', content: outcome.content });
  else if (outcome.status === 'failed') {
    report.error = outcome.error;
    if (outcome.stage === 'guard') report.outcome = 'guarded';
    else if (outcome.stage === 'check') report.outcome = 'check-failed';
  }
  if (reload) report.reload = reload;
  return report;
}

/** The result of a template that failed (or was not rendered: a source gave nothing). */
export function failedResult(template: ResolvedTemplate, error: RosterdError, members: number, durationMs: number): TemplateResult {
  return { template: template.name, destination: template.destination, status: 'failed', changed: false, members, error, durationMs };
}

// --- internal ---

/**
 * The log fields of a template's failure: its code; a template error's source excerpt (the `>>` line and its
 * neighbours); a bug's stack.
 */
function failureFields(error: RosterdError): Record<string, unknown> {
  if (error.code === 'E_INTERNAL') return { code: error.code, err: error.cause };
  if (error instanceof TemplateError && error.excerpt !== undefined) return { code: error.code, excerpt: error.excerpt };
  return { code: error.code };
}
