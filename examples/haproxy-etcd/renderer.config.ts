/**
 * rosterd's config for the HAProxy + etcd lab: one etcd source (the keys the web nodes announce under
 * `/lab/web/`), and the HAProxy lab's own template, check and reloader, unchanged.
 *
 * Settings come from the environment (lb-node.mjs passes them on):
 *   LAB_DIR             where haproxy.cfg and HAProxy's sockets live (default /run/lab)
 *   LAB_ETCD_ENDPOINTS  comma-separated etcd client endpoints (default http://127.0.0.1:2379)
 *   LAB_LISTEN, LAB_HTTP_PORT, LAB_STATS_PORT   read by the template (see its `env` list)
 *
 * Only types are imported, so the file also loads when copied out of this repository.
 */
import type { RosterdConfig } from 'rosterd';

const dir = process.env.LAB_DIR ?? '/run/lab';

export default {
  sources: {
    registry: {
      type: 'etcd',
      endpoints: (process.env.LAB_ETCD_ENDPOINTS ?? 'http://127.0.0.1:2379').split(','),
      // Each web node's `rosterd announce` writes /lab/web/<name> under a lease.
      prefix: '/lab/web/',
    },
  },
  templates: [
    {
      name: 'haproxy',
      // The Serf lab's template: it renders the members tagged role=web, whatever their source.
      source: '../haproxy-serf/haproxy.cfg.liquid',
      destination: `${dir}/haproxy.cfg`,
      env: ['LAB_DIR', 'LAB_LISTEN', 'LAB_HTTP_PORT', 'LAB_STATS_PORT'],
      check: ['haproxy', '-c', '-f', '{{candidate}}'],
      reload: { haproxy: { masterSocket: `${dir}/master.sock`, method: 'cli', bindGuard: true } },
      timeout: '10s',
    },
  ],
} satisfies RosterdConfig;
