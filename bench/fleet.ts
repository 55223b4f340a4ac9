import { FLEET_QUERY, decodeAnswer, decodeQuestion, encodeAnswer, type ServedTemplate } from '../src/fleet/answer.js';
import { surveyFleet } from '../src/fleet/survey.js';
import { SerfClient } from '../src/serf/index.js';
import { startSerfAgent, type SerfAgent } from '../test/helpers/serf.js';
import { waitFor } from '../test/helpers/wait.js';
import { median, percentile, type BenchSection } from './types.js';

/**
 * A fleet survey with three peers (three real Serf agents on 127.0.0.1, each with a peer answering as a
 * rosterd would): how long it takes against the survey's timeout, with one page per rosterd and with many
 * templates (several pages, the later rounds asked of the rosterds that have more), and what one answer
 * costs the rosterd that gives it.
 */

const TIMEOUT_MS = 500;
const RUNS = 8;

const templates = (count: number): ServedTemplate[] =>
  Array.from({ length: count }, (_, i) => ({ template: `backend-${String(i).padStart(3, '0')}.cfg`, hash: 'ab'.repeat(32), members: 40 + i, ageMs: 60_000 + i }));

export async function run(): Promise<BenchSection> {
  const agents: SerfAgent[] = [];
  const peers: SerfClient[] = [];
  let served: ServedTemplate[] = [];
  try {
    const first = await startSerfAgent({ name: 'lb-1' });
    agents.push(first, ...(await Promise.all(['lb-2', 'lb-3'].map((name) => startSerfAgent({ name, join: [first.bindAddr] })))));
    for (const agent of agents) {
      const peer = await SerfClient.connect({ address: agent.rpcAddr });
      peers.push(peer);
      await peer.stream(`query:${FLEET_QUERY}`, (event) => {
        const question = event.event === 'query' ? decodeQuestion(event.payload) : undefined;
        if (event.event === 'query' && question) void peer.respond(event.id, encodeAnswer(served, question.from)).catch(() => undefined);
      });
    }
    const client = await SerfClient.connect({ address: first.rpcAddr });
    await waitFor(async () => (await client.members()).length === 3, 'three agents in the cluster', { timeout: 20_000 });
    const rows: Record<string, string | number>[] = [];
    for (const count of [1, 60]) {
      served = templates(count);
      const durations: number[] = [];
      const pages = Math.ceil(count / decodeAnswer(encodeAnswer(served, 0))!.templates.length);
      for (let i = 0; i < RUNS; i++) {
        const started = performance.now();
        const answers = await surveyFleet(client, { group: 'default', timeout: TIMEOUT_MS });
        durations.push(performance.now() - started);
        if (answers.length !== 3 || answers.some((a) => a.templates?.length !== count)) throw new Error(`survey of ${count} templates: ${JSON.stringify(answers)}`);
      }
      const answerStarted = performance.now();
      for (let i = 0; i < 1000; i++) encodeAnswer(served, 0);
      rows.push({
        templates: count,
        'pages per rosterd': pages,
        'survey median (ms)': median(durations),
        'survey p90 (ms)': percentile(durations, 0.9),
        'median / timeout': median(durations) / TIMEOUT_MS,
        'one answer (µs)': ((performance.now() - answerStarted) / 1000) * 1000,
      });
    }
    await client.close();
    return {
      title: `Fleet survey: three rosterds on three Serf agents, timeout ${TIMEOUT_MS} ms (${RUNS} surveys each)`,
      rows,
      notes: [
        'The first round always waits for the timeout (nobody knows how many rosterds will answer); later rounds end once every rosterd asked has answered, about 200 ms each here: a query reaches the other agents by gossip (the LAN profile gossips every 200 ms). One answer: encoding the first page, as each rosterd does per question.',
      ],
    };
  } finally {
    await Promise.all(peers.map((p) => p.close()));
    await Promise.all(agents.map((a) => a.kill()));
  }
}
