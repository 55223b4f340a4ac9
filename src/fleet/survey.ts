import type { SourceConfig } from '../config/schema.js';
import { CONTROL } from '../members/text.js';
import { SerfClient } from '../serf/client.js';
import { FLEET_QUERY, decodeAnswer, encodeQuestion, type ServedTemplate } from './answer.js';

/**
 * Asking the fleet what it serves, and judging the answers. Per template, the content (or the absence of the
 * template) that more than half of the rosterds report is the majority's. A rosterd reporting something else
 * differs; it lags once it has differed for longer than `lag`: since the later of its own last change and the
 * majority's change to its content (the split's latest change when there is no majority).
 */

/** One rosterd's answer, as received. */
export interface Answer {
  /** The Serf node name of its agent. */
  node: string;
  /** Undefined when the answer was not a valid one (a peer is another machine: its answer is checked). */
  templates: ServedTemplate[] | undefined;
  /** Templates it did not report (pages it did not answer, or beyond the limit of pages). */
  omitted: number;
}

/** The most rosterds one survey keeps: answers beyond are dropped. */
export const MAX_FLEET = 1000;
/** The most questions one survey asks each rosterd (each page fits one Serf response). */
export const MAX_PAGES = 8;

/**
 * Asks every rosterd of `group` in the Serf cluster and resolves with their answers, sorted by node: the first
 * page after `timeout` ms, then the next pages of those that have more, from those rosterds only (each of
 * these rounds ends as soon as all of them answered). Ages are as of the first question.
 */
export async function surveyFleet(client: SerfClient, options: { group: string; timeout: number }): Promise<Answer[]> {
  const ask = (from: number, nodes?: string[]) =>
    client.query({ name: FLEET_QUERY, payload: encodeQuestion({ group: options.group, from }), timeout: options.timeout, ...(nodes ? { filterNodes: nodes } : {}) });
  // `more`: templates not reported yet; `stalled`: it did not answer its last page, so it is not asked again.
  const byNode = new Map<string, { templates: ServedTemplate[] | undefined; more: number; stalled?: boolean }>();
  const started = performance.now();
  for (const { from, payload } of await ask(0)) {
    // A node with several Serf sources on one agent answers once per source: the first answer counts.
    if (byNode.has(from) || byNode.size >= MAX_FLEET || !isNodeName(from)) continue;
    const answer = decodeAnswer(payload);
    byNode.set(from, { templates: answer?.templates, more: answer?.more ?? 0 });
  }
  for (let page = 1; page < MAX_PAGES; page++) {
    // Rosterds with the same templates have the same pages: one question per distinct next page.
    const next = new Map<number, string[]>();
    for (const [node, { templates, more, stalled }] of byNode) {
      if (templates && more > 0 && !stalled) next.set(templates.length, [...(next.get(templates.length) ?? []), node]);
    }
    if (next.size === 0) break;
    // Ages in later pages are counted from a later question: brought back to the first one's time.
    const later = performance.now() - started;
    const rounds = await Promise.all([...next].map(async ([from, nodes]) => ({ asked: new Set(nodes), responses: await ask(from, nodes) })));
    for (const { asked, responses } of rounds) {
      const answered = new Set<string>();
      for (const { from, payload } of responses) {
        const entry = byNode.get(from);
        if (!entry?.templates || answered.has(from) || !asked.has(from)) continue;
        answered.add(from);
        const answer = decodeAnswer(payload);
        const names = new Set(entry.templates.map((t) => t.template));
        const fresh = answer?.templates.every((t) => !names.has(t.template));
        const aged = answer?.templates.map((t) => ({ ...t, ageMs: Math.max(0, Math.round(t.ageMs - later)) })) ?? [];
        if (answer && fresh) Object.assign(entry, { templates: [...entry.templates, ...aged], more: answer.more });
        else entry.templates = undefined;
      }
      // A rosterd that did not answer its next page keeps what it said; the rest counts as omitted.
      for (const node of asked) if (!answered.has(node)) byNode.get(node)!.stalled = true;
    }
  }
  return [...byNode]
    .map(([node, { templates, more }]) => ({ node, templates, omitted: templates ? more : 0 }))
    .sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
}

/** How one rosterd stands on one template. */
export interface NodeTemplate {
  template: string;
  /** Undefined when it does not serve the template. */
  hash?: string;
  members?: number;
  /** When it installed (or first found) this content, in ms since epoch by this machine's clock. */
  changedAt?: number;
  /** `ok`: serves the majority's content; `differs`: something else, or nothing; `lagging`: differs for longer than the lag. */
  state: 'ok' | 'differs' | 'lagging';
  /** When it differs: since when (ms since epoch). */
  differsSince?: number;
}

/** One rosterd in the fleet view. */
export interface FleetNode {
  node: string;
  /** False when its answer was not valid: then `templates` is empty and it is flagged. */
  valid: boolean;
  /** Templates it did not report: absent from `templates`, and not judged. */
  omitted: number;
  templates: NodeTemplate[];
  /** It differs or lags on some template, or its answer was not valid. */
  flagged: boolean;
  /** It lags on some template. */
  lagging: boolean;
}

/** One template across the fleet. */
export interface FleetTemplate {
  template: string;
  /** The content hash more than half of the rosterds serve; undefined when none has a majority. */
  majority?: string;
  /** Since when the first of them served it (ms since epoch). */
  majoritySince?: number;
  /**
   * True when nothing has a majority: neither one content nor the template's absence is reported by more
   * than half of the rosterds. (No `majority` and no `split`: most rosterds do not serve the template.)
   */
  split: boolean;
  /** Rosterds serving the majority's content (or, when most do not serve it, not serving it). */
  ok: number;
  /** Rosterds serving something else or nothing (`lagging` ones included). */
  differing: number;
  /** Of those, the ones that differ for longer than the lag. */
  lagging: number;
}

/** The fleet as one survey saw it. */
export interface FleetView {
  /** When the question was asked (ms since epoch). */
  askedAt: number;
  lagMs: number;
  nodes: FleetNode[];
  templates: FleetTemplate[];
}

/** Judges a survey's answers. `askedAt` turns the answers' ages into times; `now` is when lag is measured. */
export function assessFleet(answers: readonly Answer[], options: { askedAt: number; lagMs: number; now?: number }): FleetView {
  const now = options.now ?? Date.now();
  const valid = answers.filter((a): a is Answer & { templates: ServedTemplate[] } => a.templates !== undefined);
  const names = [...new Set(valid.flatMap((a) => a.templates.map((t) => t.template)))].sort();
  const byName = new Map(valid.map((a) => [a, new Map(a.templates.map((t) => [t.template, t]))]));
  // Per template and node: what it serves (null: it reported all its templates, not this one).
  const served = (answer: Answer & { templates: ServedTemplate[] }, template: string): ServedTemplate | null | undefined =>
    byName.get(answer)!.get(template) ?? (answer.omitted === 0 ? null : undefined);
  const changedAt = (t: ServedTemplate): number => options.askedAt - t.ageMs;

  const judged = names.map((template) => {
    const reports = valid.flatMap((answer) => {
      const report = served(answer, template);
      return report === undefined ? [] : [report];
    });
    const counts = new Map<string | null, number>();
    for (const report of reports) counts.set(report?.hash ?? null, (counts.get(report?.hash ?? null) ?? 0) + 1);
    const winner = [...counts].find(([, count]) => count * 2 > reports.length);
    const majority = winner?.[0];
    const times = reports.flatMap((r) => (r ? [changedAt(r)] : []));
    const majoritySince = majority ? Math.min(...reports.flatMap((r) => (r?.hash === majority ? [changedAt(r)] : []))) : undefined;
    const summary: FleetTemplate = { template, ...(majority ? { majority, majoritySince } : {}), split: winner === undefined, ok: 0, differing: 0, lagging: 0 };
    // Since when a rosterd serving `report` has differed: the later of its change and the majority's.
    const differsSince = (report: ServedTemplate | null): number => {
      const own = report ? changedAt(report) : -Infinity;
      if (winner === undefined) return Math.max(own, ...times);
      return Math.max(own, majoritySince ?? -Infinity);
    };
    return { summary, winner, differsSince };
  });

  const nodes: FleetNode[] = answers.map((answer) => {
    const node: FleetNode = { node: answer.node, valid: answer.templates !== undefined, omitted: answer.omitted, templates: [], flagged: answer.templates === undefined, lagging: false };
    if (answer.templates === undefined) return node;
    for (const { summary, winner, differsSince } of judged) {
      const report = served(answer as Answer & { templates: ServedTemplate[] }, summary.template);
      if (report === undefined) continue;
      const entry: NodeTemplate = { template: summary.template, state: 'ok' };
      if (report) Object.assign(entry, { hash: report.hash, members: report.members, changedAt: changedAt(report) });
      if (winner === undefined || winner[0] !== (report?.hash ?? null)) {
        const since = differsSince(report);
        Object.assign(entry, { state: now - since > options.lagMs ? 'lagging' : 'differs', differsSince: since });
      }
      if (entry.state === 'ok') summary.ok++;
      else {
        summary.differing++;
        node.flagged = true;
        if (entry.state === 'lagging') {
          summary.lagging++;
          node.lagging = true;
        }
      }
      node.templates.push(entry);
    }
    return node;
  });
  return { askedAt: options.askedAt, lagMs: options.lagMs, nodes, templates: judged.map((j) => j.summary) };
}

/** The config's first Serf source, by name: the agent to survey the fleet through. */
export function firstSerfSource(sources: Readonly<Record<string, unknown>>): [string, Extract<SourceConfig, { type: 'serf' }>] | undefined {
  for (const [name, source] of Object.entries(sources)) {
    if (typeof source === 'object' && source !== null && 'type' in source && source.type === 'serf') return [name, source as Extract<SourceConfig, { type: 'serf' }>];
  }
  return undefined;
}

/** The settings of one survey: which agent, which group, how long to wait, the lag. */
export interface SurveyOptions {
  rpcAddr: string;
  authKey?: string | undefined;
  connectTimeout: number;
  group: string;
  timeout: number;
  lag: number;
}

/**
 * Surveys the fleet through one agent, on a connection of its own: the agent's node name, and the view.
 * `signal` ends a survey under way (it then rejects).
 */
export async function surveyThrough(options: SurveyOptions, signal?: AbortSignal): Promise<{ self: string | undefined; view: FleetView }> {
  const client = await SerfClient.connect({ address: options.rpcAddr, authKey: options.authKey || undefined, connectTimeout: options.connectTimeout, signal });
  const abort = (): void => void client.close();
  signal?.addEventListener('abort', abort);
  try {
    const self = (await client.stats()).agent?.name;
    const askedAt = Date.now();
    const answers = await surveyFleet(client, { group: options.group, timeout: options.timeout });
    return { self, view: assessFleet(answers, { askedAt, lagMs: options.lag }) };
  } finally {
    signal?.removeEventListener('abort', abort);
    await client.close();
  }
}

/** A node name this view can show: Serf names are short, printable text (an agent may be configured otherwise). */
function isNodeName(name: string): boolean {
  return name.length > 0 && name.length <= 256 && !CONTROL.test(name);
}
