import { silentLogger } from '../../src/logger.js';
import { createSource } from '../../src/sources/index.js';
import { startDnsmasq } from '../helpers/dnsmasq.js';
import { sourceContract } from './contract.js';

// SRV records are fixed on dnsmasq's command line, so the targets are declared up front and a change gives
// the next one an address (a new file in the watched hosts directory): a new member appears.
const SERVICE = '_app._tcp.contract.test';
const TARGETS = 8;
const target = (i: number): string => `t${i}.contract.test`;

sourceContract('dns', async () => {
  const dns = await startDnsmasq({
    srvRecords: Array.from({ length: TARGETS }, (_, i) => ({ name: SERVICE, target: target(i), port: 9000 + i, priority: 10, weight: 1 })),
    hostsFiles: { t0: `10.1.0.1 ${target(0)}\n` },
  });
  let revision = 0;
  return {
    // Through the driver, as the runner builds it: the implementation loads when the source starts.
    source: createSource('app', { type: 'dns', name: SERVICE, record: 'SRV', servers: [dns.server], interval: 200, timeout: 300 }, silentLogger()),
    // No hostile(): answers come as DNS labels the resolver checks; a line break cannot be served.
    async change() {
      const i = ++revision;
      if (i >= TARGETS) throw new Error('the contract asked for more changes than targets were declared');
      await dns.writeHosts(`t${i}`, `10.1.0.${i + 1} ${target(i)}\n`);
      return (members) => members.some((m) => m.name === `${target(i)}:${9000 + i}` && m.address === `10.1.0.${i + 1}`);
    },
    // The same bytes again: dnsmasq re-reads the file and serves the same records.
    touch: () => dns.writeHosts('t0', `10.1.0.1 ${target(0)}\n`),
    breakBackend: () => dns.stop(),
    restoreBackend: () => dns.restart(),
    cleanup: () => dns.cleanup(),
  };
});
