import { silentLogger } from '../../src/logger.js';
import { SerfClient } from '../../src/serf/index.js';
import createSerfSource from '../../src/sources/serf.js';
import { startSerfAgent } from '../helpers/serf.js';
import { sourceContract } from './contract.js';

sourceContract('serf', async () => {
  const tags = { port: '8080' };
  let agent = await startSerfAgent({ name: 'contract', tags });
  const { bindPort, rpcPort } = agent;
  let revision = 0;

  const withClient = async (action: (client: SerfClient) => Promise<void>) => {
    const client = await SerfClient.connect({ address: agent.rpcAddr });
    try {
      await action(client);
    } finally {
      await client.close();
    }
  };

  const source = createSerfSource(
    'cluster',
    // A long refresh interval: it keeps a timer alive, which stop() must clear.
    { rpcAddr: agent.rpcAddr, status: ['alive'], portTag: 'port', resyncDelay: 100, connectTimeout: 2000, refreshInterval: 60_000 },
    { logger: silentLogger() },
  );

  return {
    source,
    async change() {
      const rev = String(++revision);
      await withClient((client) => client.tags({ rev }));
      return (members) => members.some((m) => m.name === 'contract' && m.tags.rev === rev);
    },
    // Setting a tag to its current value still makes the agent gossip a member-update.
    touch: () => withClient((client) => client.tags({ rev: String(revision) })),
    breakBackend: () => agent.kill(),
    async restoreBackend() {
      agent = await startSerfAgent({ name: 'contract', tags, bindPort, rpcPort });
    },
    cleanup: () => agent.kill(),
  };
});
