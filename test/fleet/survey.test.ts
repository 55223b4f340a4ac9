import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FLEET_QUERY, decodeQuestion, encodeAnswer, type ServedTemplate } from '../../src/fleet/answer.js';
import { surveyFleet, surveyThrough } from '../../src/fleet/survey.js';
import { SerfClient } from '../../src/serf/index.js';
import { startSerfAgent, type SerfAgent } from '../helpers/serf.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Surveys through real Serf agents, whose peers answer as rosterds would, or as broken or hostile ones:
 * paging through many templates, answers that are refused, a rosterd answering twice, one that stops
 * answering after the first page, a group that is not asked.
 */

type Answerer = (question: Buffer | null) => Buffer | string | undefined;

const agents: SerfAgent[] = [];
const clients: SerfClient[] = [];
const answerers = new Map<string, Answerer>();

const templates = (count: number, hash = '0123456789abcdef'): ServedTemplate[] =>
  Array.from({ length: count }, (_, i) => ({ template: `backend-template-number-${String(i).padStart(3, '0')}`, hash, members: i, ageMs: 1000 + i }));

/** A rosterd-like peer of group `edge` that serves `served`, answering every page. */
const rosterd = (served: ServedTemplate[]): Answerer => (question) => {
  const asked = decodeQuestion(question);
  return asked?.group === 'edge' ? encodeAnswer(served, asked.from) : undefined;
};

async function answerOn(agent: SerfAgent): Promise<void> {
  const client = await SerfClient.connect({ address: agent.rpcAddr });
  clients.push(client);
  await client.stream(`query:${FLEET_QUERY}`, (event) => {
    if (event.event !== 'query') return;
    const reply = answerers.get(agent.name)?.(event.payload);
    if (reply !== undefined) void client.respond(event.id, reply).catch(() => undefined);
  });
}

beforeAll(async () => {
  const first = await startSerfAgent({ name: 'lb-a' });
  agents.push(first, ...(await Promise.all(['lb-b', 'lb-c', 'lb-d', 'lb-e'].map((name) => startSerfAgent({ name, join: [first.bindAddr] })))));
  for (const agent of agents) await answerOn(agent);
  const probe = await SerfClient.connect({ address: first.rpcAddr });
  await waitFor(async () => (await probe.members()).filter((m) => m.status === 'alive').length === agents.length, 'five agents in the cluster', { timeout: 20_000 });
  await probe.close();
}, 60_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(agents.map((a) => a.kill()));
}, 30_000);

describe('a fleet survey', () => {
  it('collects every page of many templates, refuses bad answers, counts a rosterd that answers twice once, and what was left out', async () => {
    const many = templates(60);
    answerers.set('lb-a', rosterd(many));
    // Two Serf sources on one agent (two connections): both answer; lb-b is one rosterd.
    answerers.set('lb-b', rosterd(many));
    await answerOn(agents[1]!);
    answerers.set('lb-c', () => '{"v":1,"t":[["web\\u001b[2J","0123456789abcdef",3,10]]}');
    // Answers its first page only.
    answerers.set('lb-d', (question) => (decodeQuestion(question)?.from === 0 ? encodeAnswer(many, 0) : undefined));
    // Another group: stays silent.
    answerers.set('lb-e', () => undefined);

    const client = await SerfClient.connect({ address: agents[0]!.rpcAddr });
    try {
      const answers = await surveyFleet(client, { group: 'edge', timeout: 1000 });
      expect(answers.map((a) => a.node)).toEqual(['lb-a', 'lb-b', 'lb-c', 'lb-d']);
      const [a, b, c, d] = answers;
      expect(a!.templates?.map((t) => t.template)).toEqual(many.map((t) => t.template));
      expect(a!.templates?.[0]).toEqual({ template: many[0]!.template, hash: '0123456789abcdef', members: 0, ageMs: 1000 });
      // A later page was asked after the first round's timeout: its ages are brought back to the first question.
      expect(a!.templates?.[59]).toMatchObject({ template: many[59]!.template, hash: '0123456789abcdef', members: 59 });
      expect(a!.templates![59]!.ageMs).toBeLessThan(1059 - 1000);
      expect(a!.omitted).toBe(0);
      expect(b!.templates).toHaveLength(60);
      expect(c).toEqual({ node: 'lb-c', templates: undefined, omitted: 0 });
      expect(d!.templates!.length).toBeGreaterThan(0);
      expect(d!.templates!.length + d!.omitted).toBe(60);
      expect(d!.omitted).toBeGreaterThan(0);
    } finally {
      await client.close();
    }
  }, 60_000);

  it('refuses a rosterd whose next page repeats templates it already reported', async () => {
    const many = templates(30);
    answerers.set('lb-a', (question) => (decodeQuestion(question) ? encodeAnswer(many, 0) : undefined));
    for (const name of ['lb-b', 'lb-c', 'lb-d', 'lb-e']) answerers.delete(name);
    const client = await SerfClient.connect({ address: agents[0]!.rpcAddr });
    try {
      expect(await surveyFleet(client, { group: 'edge', timeout: 500 })).toEqual([{ node: 'lb-a', templates: undefined, omitted: 0 }]);
    } finally {
      await client.close();
    }
  }, 30_000);

  it('judges what it collected and names the agent asked through', async () => {
    answerers.set('lb-a', rosterd(templates(2)));
    answerers.set('lb-b', rosterd(templates(2)));
    answerers.set('lb-c', rosterd(templates(2, 'fedcba9876543210')));
    const { self, view } = await surveyThrough({ rpcAddr: agents[1]!.rpcAddr, connectTimeout: 5000, group: 'edge', timeout: 500, lag: 0 });
    expect(self).toBe('lb-b');
    expect(view.nodes.map((n) => [n.node, n.flagged])).toEqual([
      ['lb-a', false],
      ['lb-b', false],
      ['lb-c', true],
    ]);
    expect(view.templates.map((t) => [t.majority, t.ok, t.differing])).toEqual([
      ['0123456789abcdef', 2, 1],
      ['0123456789abcdef', 2, 1],
    ]);
  }, 30_000);

  it('is called off by its signal', async () => {
    const controller = new AbortController();
    const survey = surveyThrough({ rpcAddr: agents[0]!.rpcAddr, connectTimeout: 5000, group: 'edge', timeout: 30_000, lag: 0 }, controller.signal);
    setTimeout(() => controller.abort(), 200);
    await expect(survey).rejects.toThrow(/closed/);
  }, 10_000);
});

describe('SerfClient.query with filterNodes', () => {
  it('resolves once every node asked has answered, long before the deadline', async () => {
    answerers.set('lb-c', () => 'c');
    answerers.set('lb-d', () => 'd');
    const client = await SerfClient.connect({ address: agents[0]!.rpcAddr });
    try {
      // The deadline is a minute away; the agents' logs say what happened if the answers do not come.
      let timer: NodeJS.Timeout | undefined;
      const stuck = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answers from lb-c and lb-d:\n${agents.map((a) => `--- ${a.name}\n${a.output()}`).join('\n')}`)), 15_000);
      });
      const responses = await Promise.race([client.query({ name: FLEET_QUERY, timeout: 60_000, filterNodes: ['lb-c', 'lb-d'] }), stuck]).finally(() => clearTimeout(timer));
      expect(responses.map((r) => [r.from, r.payload.toString()]).sort()).toEqual([
        ['lb-c', 'c'],
        ['lb-d', 'd'],
      ]);
      // The connection stays usable while the query's records still come.
      expect((await client.stats()).agent?.name).toBe('lb-a');
    } finally {
      await client.close();
    }
  }, 20_000);
});
