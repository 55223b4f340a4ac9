import { describe, expect, it } from 'vitest';
import type { ServedTemplate } from '../../src/fleet/answer.js';
import { assessFleet, type Answer } from '../../src/fleet/survey.js';

/** Answers as a survey asked at ASKED gets them; `ago` is how long before ASKED the content was installed. */
const ASKED = 1_000_000_000;
const LAG = 30_000;
const t = (template: string, hash: string, ago: number, members = 3): ServedTemplate => ({ template, hash, members, ageMs: ago });
const answer = (node: string, ...templates: ServedTemplate[]): Answer => ({ node, templates, omitted: 0 });
const assess = (answers: Answer[], now = ASKED) => assessFleet(answers, { askedAt: ASKED, lagMs: LAG, now });
const states = (view: ReturnType<typeof assess>) => view.nodes.map((n) => [n.node, ...n.templates.map((x) => `${x.template}:${x.state}`)]);

describe('judging a fleet survey', () => {
  it('agrees when every rosterd serves the same content; the majority holds it since the first install', () => {
    const view = assess([answer('lb-1', t('web', 'aa', 60_000)), answer('lb-2', t('web', 'aa', 50_000)), answer('lb-3', t('web', 'aa', 55_000))]);
    expect(states(view)).toEqual([['lb-1', 'web:ok'], ['lb-2', 'web:ok'], ['lb-3', 'web:ok']]);
    expect(view.templates).toEqual([{ template: 'web', majority: 'aa', majoritySince: ASKED - 60_000, split: false, ok: 3, differing: 0, lagging: 0 }]);
    expect(view.nodes.every((n) => !n.flagged && !n.lagging)).toBe(true);
    expect(view.nodes[0]!.templates[0]).toEqual({ template: 'web', hash: 'aa', members: 3, changedAt: ASKED - 60_000, state: 'ok' });
  });

  it('a rosterd that changed to other content differs since its change, and lags once that is longer ago than the lag', () => {
    const answers = [answer('lb-1', t('web', 'aa', 3_600_000)), answer('lb-2', t('web', 'aa', 3_600_000)), answer('lb-3', t('web', 'bb', 10_000))];
    const now = assess(answers);
    expect(states(now)).toEqual([['lb-1', 'web:ok'], ['lb-2', 'web:ok'], ['lb-3', 'web:differs']]);
    expect(now.nodes[2]).toMatchObject({ flagged: true, lagging: false, templates: [{ differsSince: ASKED - 10_000 }] });
    expect(now.templates[0]).toMatchObject({ ok: 2, differing: 1, lagging: 0 });
    const later = assess(answers, ASKED + 25_000);
    expect(states(later)[2]).toEqual(['lb-3', 'web:lagging']);
    expect(later.nodes[2]).toMatchObject({ flagged: true, lagging: true });
    expect(later.templates[0]).toMatchObject({ ok: 2, differing: 1, lagging: 1 });
  });

  it('a rosterd left behind differs since the majority changed, however old its own content is', () => {
    const answers = [answer('lb-1', t('web', 'new', 5_000)), answer('lb-2', t('web', 'new', 4_000)), answer('lb-3', t('web', 'old', 86_400_000))];
    expect(assess(answers).nodes[2]!.templates[0]).toMatchObject({ state: 'differs', differsSince: ASKED - 5_000 });
    expect(assess(answers, ASKED + 26_000).nodes[2]!.templates[0]).toMatchObject({ state: 'lagging' });
  });

  it('a rosterd without a template the majority serves differs; one with a template the majority lacks differs too', () => {
    const view = assess([
      answer('lb-1', t('web', 'aa', 60_000), t('extra', 'ee', 40_000)),
      answer('lb-2', t('web', 'aa', 60_000)),
      answer('lb-3'),
    ]);
    expect(states(view)).toEqual([
      ['lb-1', 'extra:lagging', 'web:ok'],
      ['lb-2', 'extra:ok', 'web:ok'],
      ['lb-3', 'extra:ok', 'web:lagging'],
    ]);
    // Most do not serve "extra": no majority content, and no split.
    expect(view.templates[0]).toEqual({ template: 'extra', split: false, ok: 2, differing: 1, lagging: 1 });
    expect(view.nodes[2]!.templates[1]).toEqual({ template: 'web', state: 'lagging', differsSince: ASKED - 60_000 });
  });

  it('without a majority every rosterd differs, and they lag once the split has stood for longer than the lag', () => {
    const pair = [answer('lb-1', t('web', 'aa', 20_000)), answer('lb-2', t('web', 'bb', 10_000))];
    expect(states(assess(pair))).toEqual([['lb-1', 'web:differs'], ['lb-2', 'web:differs']]);
    expect(assess(pair).templates[0]).toMatchObject({ split: true, ok: 0, differing: 2 });
    expect(assess(pair).templates[0]!.majority).toBeUndefined();
    expect(states(assess(pair, ASKED + 21_000))).toEqual([['lb-1', 'web:lagging'], ['lb-2', 'web:lagging']]);
    // Two against two is no majority either.
    const four = [...pair, answer('lb-3', t('web', 'aa', 1000)), answer('lb-4', t('web', 'bb', 1000))];
    expect(assess(four).templates[0]).toMatchObject({ split: true, differing: 4 });
  });

  it('flags an invalid answer and leaves it out of the count', () => {
    const view = assess([answer('lb-1', t('web', 'aa', 1000)), answer('lb-2', t('web', 'aa', 1000)), { node: 'lb-3', templates: undefined, omitted: 0 }, { node: 'lb-4', templates: undefined, omitted: 0 }]);
    expect(view.templates[0]).toMatchObject({ majority: 'aa', ok: 2, differing: 0 });
    expect(view.nodes.map((n) => [n.node, n.valid, n.flagged, n.templates.length])).toEqual([
      ['lb-1', true, false, 1],
      ['lb-2', true, false, 1],
      ['lb-3', false, true, 0],
      ['lb-4', false, true, 0],
    ]);
  });

  it('does not judge templates a rosterd left out of its answer', () => {
    const view = assess([answer('lb-1', t('a', 'aa', 1000), t('b', 'bb', 1000)), answer('lb-2', t('a', 'aa', 1000), t('b', 'bb', 1000)), { node: 'lb-3', templates: [t('a', 'aa', 1000)], omitted: 1 }]);
    expect(states(view)).toEqual([['lb-1', 'a:ok', 'b:ok'], ['lb-2', 'a:ok', 'b:ok'], ['lb-3', 'a:ok']]);
    expect(view.templates[1]).toMatchObject({ template: 'b', majority: 'bb', ok: 2, differing: 0 });
  });

  it('an empty survey is an empty view', () => {
    expect(assess([])).toEqual({ askedAt: ASKED, lagMs: LAG, nodes: [], templates: [] });
  });
});
