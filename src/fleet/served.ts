import { contentHash } from '../ops/content-hash.js';
import type { RenderReport } from '../runner/events.js';
import type { Renderer } from '../runner/renderer.js';
import { decodeQuestion, encodeAnswer, type ServedTemplate } from './answer.js';

/** What this rosterd serves, per template, kept from the renderer's `settled` events. */
export interface ServedState {
  /** Per template of the running config that has been in place since start: its content hash, members, age. */
  served(): ServedTemplate[];
  /**
   * The answer to a `rosterd-fleet` question: undefined (silence) when it is not a question this version
   * knows, asks another group than the running config's `fleet.group`, when `fleet.answer` is off, or while
   * a template of the running config has not had its first render (a rosterd that is starting would
   * otherwise be reported as lacking its templates).
   */
  answer(question: Buffer | null): Buffer | undefined;
  close(): void;
}

/**
 * Follows what is in place: a render that was written and applied (or found unchanged) sets the template's
 * content; a failed one leaves the previous content in place (a failed reload restores the previous file), so
 * it changes nothing here. Fan-out templates (many files) are not followed.
 */
export function createServedState(renderer: Renderer): ServedState {
  const byTemplate = new Map<string, { hash: string; members: number; since: number }>();
  const rendered = new Set<string>();
  const listener = (report: RenderReport): void => {
    rendered.add(report.template);
    if ((report.outcome !== 'written' && report.outcome !== 'unchanged') || !report.content || report.reload?.ok === false) return;
    const hash = contentHash(report.content);
    const previous = byTemplate.get(report.template);
    byTemplate.set(report.template, { hash, members: report.members, since: previous?.hash === hash ? previous.since : report.startedAt });
  };
  renderer.on('settled', listener);
  const served = (): ServedTemplate[] => {
    const now = Date.now();
    return renderer.templateStatus().flatMap(({ template }) => {
      const state = byTemplate.get(template);
      return state ? [{ template, hash: state.hash, members: state.members, ageMs: now - state.since }] : [];
    });
  };
  return {
    served,
    answer(payload) {
      const { answer, group } = renderer.currentConfig.fleet;
      const question = answer ? decodeQuestion(payload) : undefined;
      if (question?.group !== group || !renderer.templateStatus().every((t) => rendered.has(t.template))) return undefined;
      return encodeAnswer(served(), question.from);
    },
    close: () => renderer.off('settled', listener),
  };
}
