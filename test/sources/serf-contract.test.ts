import { silentLogger } from '../../src/logger.js';
import { SerfClient } from '../../src/serf/index.js';
import { createSource } from '../../src/sources/index.js';
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

  // Through the driver, as the runner builds it: the implementation loads when the source starts.
  const source = createSource(
    'cluster',
    // A long refresh interval: it keeps a timer alive, which stop() must clear.
    { type: 'serf', rpcAddr: agent.rpcAddr, status: ['alive'], portTag: 'port', monitor: true, resyncDelay: 100, connectTimeout: 2000, refreshInterval: 60_000 },
    silentLogger(),
  );

  return {
    source,
    async change() {
      const rev = String(++revision);
      // Also removes the hostile tag, if any: this agent is the only member.
      await withClient((client) => client.tags({ rev }, ['evil']));
      return (members) => members.some((m) => m.name === 'contract' && m.tags.rev === rev);
    },
    // Setting a tag to its current value still makes the agent gossip a member-update.
    touch: () => withClient((client) => client.tags({ rev: String(revision) })),
    // A tag holding a line break: the agent gossips it as it is, and the gate drops the member until change() removes it.
    hostile: () => withClient((client) => client.tags({ evil: 'x\nserver evil 6.6.6.6:80' })),
    breakBackend: () => agent.kill(),
    async restoreBackend() {
      agent = await startSerfAgent({ name: 'contract', tags, bindPort, rpcPort });
    },
    cleanup: () => agent.kill(),
  };
});
