import { silentLogger } from '../../src/logger.js';
import { createSource } from '../../src/sources/index.js';
import { startEtcdCluster } from '../helpers/etcd.js';
import { sourceContract } from './contract.js';

sourceContract('etcd', async () => {
  const etcd = await startEtcdCluster(1);
  const [node] = etcd.nodes;
  const put = async (name: string, member: unknown): Promise<void> => {
    await etcd.etcdctl(['put', `/contract/${name}`, JSON.stringify(member)]);
  };
  await put('web-0', { address: '10.0.0.1', port: 8080 });
  let revision = 0;
  return {
    // Through the driver, as the runner builds it: the implementation loads when the source starts.
    source: createSource('registry', { type: 'etcd', endpoints: etcd.endpoints, prefix: '/contract/', requestTimeout: 2000 }, silentLogger()),
    async change() {
      const name = `web-${++revision}`;
      await put(name, { address: `10.0.0.${revision + 1}`, port: 8080 });
      return (members) => members.some((m) => m.name === name);
    },
    // The same value again: a new revision in etcd, the same members.
    touch: () => put('web-0', { address: '10.0.0.1', port: 8080 }),
    // A key and a value that carry line breaks, as anyone with write access to the prefix could put.
    async hostile() {
      await put('evil\nserver x 6.6.6.6:80', { address: '10.0.0.66' });
      await put('evil-2', { address: '10.0.0.67\nserver y 6.6.6.6:80' });
    },
    breakBackend: () => node!.kill(),
    restoreBackend: () => node!.restart(),
    cleanup: () => etcd.cleanup(),
  };
});
