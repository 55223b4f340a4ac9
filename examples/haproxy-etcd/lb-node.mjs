#!/usr/bin/env node
/**
 * The load balancer of the etcd lab, run by the Serf lab's supervisor (lib.mjs):
 *
 * 1. HAProxy in master-worker mode. Before its first start, haproxy.cfg is rendered once from the keys in
 *    etcd (rosterd's library, dry run) and checked with `haproxy -c`, so the nodes announced before the load
 *    balancer are in it from the start;
 * 2. `rosterd run -c renderer.config.ts`, which keeps haproxy.cfg true from then on.
 *
 * Settings come from the environment: LAB_DIR, LAB_ETCD_ENDPOINTS, LAB_LISTEN, LAB_HTTP_PORT, LAB_STATS_PORT
 * (see renderer.config.ts) and LAB_RENDERER_CONFIG (another rosterd config).
 */
import { execFile } from 'node:child_process';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createRenderer, loadConfig } from 'rosterd';
import { masterCli, supervise } from '../haproxy-serf/lib.mjs';

const configFile = process.env.LAB_RENDERER_CONFIG ?? fileURLToPath(new URL('renderer.config.ts', import.meta.url));
const rosterdBin = fileURLToPath(new URL('cli/bin.js', import.meta.resolve('rosterd')));
const config = await loadConfig(configFile);
const template = config.templates[0];
const masterSocket = template?.reload?.haproxy?.masterSocket;
if (!template || !masterSocket) throw new Error(`${configFile}: the first template needs reload.haproxy.masterSocket`);
const haproxyCfg = template.destination;

/** Renders haproxy.cfg once from the members in etcd, checks it, and installs it. */
async function renderFirstConfig() {
  await mkdir(dirname(haproxyCfg), { recursive: true });
  const renderer = await createRenderer(config);
  const [result] = await renderer.renderOnce({ dry: true, timeout: 10_000 });
  if (result?.content === undefined) throw new Error(`first render failed: ${result?.error?.message ?? 'no result'}`);
  await writeFile(`${haproxyCfg}.first`, result.content);
  await promisify(execFile)('haproxy', ['-c', '-f', `${haproxyCfg}.first`]);
  await rename(`${haproxyCfg}.first`, haproxyCfg);
  console.log(`[lb-node] first haproxy.cfg rendered with ${result.members} member(s)`);
}

await supervise(
  'lb-node',
  [
    {
      name: 'haproxy',
      command: 'haproxy',
      args: ['-W', '-S', masterSocket, '-f', haproxyCfg],
      prepare: renderFirstConfig,
      ready: async () => /^\d+\s+worker\b/m.test(await masterCli(masterSocket, 'show proc')),
      stopSignal: 'SIGUSR1',
    },
    { name: 'rosterd', command: process.execPath, args: [rosterdBin, 'run', '-c', configFile], forwardHup: true },
  ],
  { pidDir: process.env.LAB_DIR ?? '/run/lab' },
);
