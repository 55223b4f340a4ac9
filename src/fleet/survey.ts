import type { SerfClient } from '../serf/client.js';
import { FLEET_QUERY, decodeAnswer, encodeQuestion, type ServedTemplate } from './answer.js';

/**
 * Asking the fleet what it serves, and judging the answers: per template, the content most rosterds serve is
 * the majority's; a rosterd serving something else (or nothing) for that template differs, and lags once the
 * majority has served its content for longer than `lag`.
 */

/** One rosterd's answer, as received. */
export interface Answer {
  /** The Serf node name of its agent. */
  node: string;
  /** Undefined when the answer was not a valid one (a peer is another machine: its answer is checked). */
  templates: ServedTemplate[] | undefined;
  /** Templates it left out so its answer would fit. */
  omitted: number;
}

/** Asks every rosterd of `group` in the Serf cluster and resolves, after `timeout` ms, with their answers. */
export async function surveyFleet(client: SerfClient, options: { group: string; timeout: number }): Promise<Answer[]> {
  const responses = await client.query({ name: FLEET_QUERY, payload: encodeQuestion(options.group), timeout: options.timeout });
  const byNode = new Map<string, Answer>();
  for (const { from, payload } of responses) {
    // A node with several Serf sources on the same agent answers once per source: the first answer counts.
    if (byNode.has(from)) continue;
    const decoded = decodeAnswer(payload);
    byNode.set(from, { node: from, templates: decoded?.templates, omitted: decoded?.omitted ?? 0 });
  }
  return [...byNode.values()].sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
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
}

/** One rosterd in the fleet view. */
export interface FleetNode {
  node: string;
  /** False when its answer was not valid: then `templates` is empty and it is flagged. */
  valid: boolean;
  omitted: number;
  templates: NodeTemplate[];
  /** It differs or lags on some template, or its answer was not valid. */
  flagged: boolean;
}

/** One template across the fleet. */
export interface FleetTemplate {
  template: string;
  /** The content hash more than half of the rosterds serve; undefined when none has a majority. */
  majority?: string;
  /** Since when the first of them served it (ms since epoch). */
  majoritySince?: number;
  /** Rosterds serving the majority's content. */
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

/** Judges a survey's answers. `askedAt` turns the answers' ages into times. */
export function assessFleet(answers: readonly Answer[], options: { askedAt: number; lagMs: number; now?: number }): FleetView {
  const now = options.now ?? Date.now();
  const valid = answers.filter((a) => a.templates !== undefined);
  const names = [...new Set(valid.flatMap((a) => a.templates!.map((t) => t.template)))].sort();
  const templates: FleetTemplate[] = names.map((template) => {
    const counts = new Map<string, { count: number; since: number }>();
    for (const answer of valid) {
      const served = answer.templates!.find((t) => t.template === template);
      if (!served) continue;
      const at = options.askedAt - served.ageMs;
      const seen = counts.get(served.hash);
      counts.set(served.hash, { count: (seen?.count ?? 0) + 1, since: Math.min(seen?.since ?? at, at) });
    }
    const [majority, held] = [...counts].find(([, c]) => c.count * 2 > valid.length) ?? [];
    return { template, ...(majority === undefined ? {} : { majority, majoritySince: held!.since }), ok: 0, differing: 0, lagging: 0 };
  });
  const nodes: FleetNode[] = answers.map((answer) => {
    const node: FleetNode = { node: answer.node, valid: answer.templates !== undefined, omitted: answer.omitted, templates: [], flagged: answer.templates === undefined };
    if (!answer.templates) return node;
    for (const summary of templates) {
      const served = answer.templates.find((t) => t.template === summary.template);
      const entry: NodeTemplate = { template: summary.template, state: 'ok' };
      if (served) Object.assign(entry, { hash: served.hash, members: served.members, changedAt: options.askedAt - served.ageMs });
      if (served === undefined || served.hash !== summary.majority) {
        const lagging = summary.majoritySince !== undefined && now - summary.majoritySince > options.lagMs;
        entry.state = lagging ? 'lagging' : 'differs';
      }
      if (entry.state === 'ok') summary.ok++;
      else {
        summary.differing++;
        if (entry.state === 'lagging') summary.lagging++;
        node.flagged = true;
      }
      node.templates.push(entry);
    }
    return node;
  });
  return { askedAt: options.askedAt, lagMs: options.lagMs, nodes, templates };
}
