/**
 * rosterd's config for the HAProxy + Serf lab: one Serf source (the load balancer's own agent), one template
 * (haproxy.cfg), checked with `haproxy -c` before it is installed and reloaded through HAProxy's master CLI.
 *
 * The same file serves the native lab and the Docker image; what differs between them comes from the
 * environment (lb-node.mjs passes it on):
 *   LAB_DIR        where haproxy.cfg and HAProxy's sockets live (default /run/lab)
 *   LAB_SERF_RPC   the local Serf agent's RPC address (default 127.0.0.1:7373)
 *   LAB_LISTEN, LAB_HTTP_PORT, LAB_STATS_PORT   read by the template (see its `env` list)
 *
 * Only types are imported, so the file also loads when copied out of this repository.
 */
import type { RosterdConfig } from 'rosterd';

const dir = process.env.LAB_DIR ?? '/run/lab';

export default {
  sources: {
    cluster: {
      type: 'serf',
      rpcAddr: process.env.LAB_SERF_RPC ?? '127.0.0.1:7373',
      // Only web nodes: the load balancer's own agent (role=lb) is a member too.
      tags: { role: 'web' },
      // The defaults: the member list is read 20 ms after the agent logs a membership change (a join shows
      // within milliseconds), on every member event, and polled every second (less often on a big cluster).
    },
  },
  templates: [
    {
      name: 'haproxy',
      source: 'haproxy.cfg.liquid',
      destination: `${dir}/haproxy.cfg`,
      // The only environment variables the template can read: ports and paths are the operator's choice.
      env: ['LAB_DIR', 'LAB_LISTEN', 'LAB_HTTP_PORT', 'LAB_STATS_PORT'],
      // No `wait`: every change is applied at once, and rosterd never runs two renders of a template at once,
      // so the changes that come during one are applied together right after it.
      // HAProxy validates the candidate file before it replaces haproxy.cfg; a refused file is never installed.
      // Without -q: in HAProxy 2.6, -q also hides the ALERT lines that say what is wrong and where.
      check: ['haproxy', '-c', '-f', '{{candidate}}'],
      // The built-in HAProxy reloader, in runtime mode: when only server lines changed (a node joined, left or
      // moved, a weight changed), the change goes through HAProxy's runtime API on the master CLI, with no
      // reload and no new worker, even before the check above runs (a failed check undoes it); `show servers
      // state` must then match the file. Anything else (or a runtime
      // error) is a reload: `reload` on the master CLI, confirmed through `show proc` (a new worker and no
      // failed reload); on failure the previous haproxy.cfg is put back. Before each reload the servers' state
      // is saved for the new worker (server-state-file in the template), so health checks do not start over.
      // The bind guard refuses a candidate that adds a `bind` on an address another process holds, which would
      // make HAProxy pause its listeners for ~2 s before failing.
      reload: {
        haproxy: { masterSocket: `${dir}/master.sock`, method: 'cli', bindGuard: true, runtime: true, stateFile: `${dir}/server-state` },
      },
      timeout: '10s',
    },
  ],
} satisfies RosterdConfig;
