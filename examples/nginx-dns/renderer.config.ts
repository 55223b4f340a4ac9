/**
 * rosterd's config for the nginx + DNS lab: one dns source (the SRV records of the app's service name, served
 * by the lab's dnsmasq), one template (nginx's upstream block), checked with `nginx -t` on the whole config
 * as it would be with the candidate installed (check.mjs), and `nginx -s reload` after the install.
 *
 * lab.mjs passes the run's settings in the environment:
 *   LAB_DIR         the run directory; nginx's prefix is LAB_DIR/nginx (default ./run beside this file)
 *   LAB_DNS_SERVER  the lab's dnsmasq, as ip:port
 *   LAB_DNS_NAME    the SRV name to follow (default _http._tcp.app.nginx-dns.test)
 *
 * Only types are imported, so the file also loads when copied out of this repository.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RosterdConfig } from 'rosterd';

const here = fileURLToPath(new URL('.', import.meta.url));
const prefix = join(process.env.LAB_DIR ?? join(here, 'run'), 'nginx');
const mainConfig = join(prefix, 'nginx.conf');
// The same flags for every nginx command, so that each one reads the same config, pid file and error log.
const nginx = ['-p', prefix, '-c', mainConfig, '-e', join(prefix, 'logs', 'error.log')];

export default {
  sources: {
    app: {
      type: 'dns',
      name: process.env.LAB_DNS_NAME ?? '_http._tcp.app.nginx-dns.test',
      record: 'SRV',
      servers: [process.env.LAB_DNS_SERVER ?? '127.0.0.1:5353'],
      // A lab wants to see changes quickly; a real fleet can poll every few seconds.
      interval: '1s',
      timeout: '500ms',
    },
  },
  templates: [
    {
      name: 'nginx-upstream',
      source: 'upstream.conf.liquid',
      destination: join(prefix, 'upstream.conf'),
      // nginx tests the whole config with the candidate in place of upstream.conf; a refused candidate is
      // never installed, and nginx's [emerg] line (file and line) is in rosterd's log.
      check: [process.execPath, join(here, 'check.mjs'), ...nginx, '{{candidate}}'],
      // SIGHUP to the master (through the pid file): it re-reads the config, starts new workers, and lets the
      // old ones finish their requests.
      reload: ['nginx', '-s', 'reload', ...nginx],
      timeout: '10s',
    },
  ],
} satisfies RosterdConfig;
