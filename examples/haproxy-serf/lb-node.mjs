#!/usr/bin/env node
/**
 * The load balancer node of the lab, run by the supervisor of lib.mjs:
 *
 * 1. a Serf agent (tag `role=lb`) that joins the web nodes' cluster;
 * 2. HAProxy in master-worker mode, `haproxy -W -S <dir>/master.sock -f <dir>/haproxy.cfg`. Before its first
 *    start, haproxy.cfg is rendered once from the template and the agent's *current* member list (rosterd's
 *    library, dry run) and checked with `haproxy -c`, so nodes that joined before the load balancer are in it
 *    from the start;
 * 3. the rosterd daemon, `rosterd run -c renderer.config.ts`, which keeps haproxy.cfg true from then on.
 *    Its first render finds the file as it should be and leaves it (and HAProxy) alone. SIGHUP sent to this
 *    process reaches rosterd, which re-reads its config and template.
 *
 * `lab.mjs up` runs this file natively; the Docker load balancer image runs it as its entry point. Settings
 * come from the environment (all optional):
 *   LAB_DIR              haproxy.cfg, HAProxy's sockets and the pid files (default /run/lab)
 *   LAB_NODE_NAME        the agent's node name (default lb)
 *   LAB_ADDR, LAB_SERF_BIND, LAB_SERF_RPC, LAB_SERF_JOIN   as for web-node.mjs
 *   LAB_LISTEN, LAB_HTTP_PORT, LAB_STATS_PORT   where HAProxy listens (read by the template)
 *   LAB_RENDERER_CONFIG  another rosterd config (default: renderer.config.ts beside this file)
 */
import { execFile } from 'node:child_process';
import { access, mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createRenderer, loadConfig } from 'rosterd';
import { masterCli, serfMembers, splitHostPort, supervise, tcpAnswers } from './lib.mjs';

const env = process.env;
const dir = env.LAB_DIR ?? '/run/lab';
const rpc = env.LAB_SERF_RPC ?? '127.0.0.1:7373';
const join = (env.LAB_SERF_JOIN ?? '').split(',').filter(Boolean);
const configFile = env.LAB_RENDERER_CONFIG ?? fileURLToPath(new URL('renderer.config.ts', import.meta.url));
// The installed package's CLI: dist/cli/bin.js next to the library entry point.
const rosterdBin = fileURLToPath(new URL('cli/bin.js', import.meta.resolve('rosterd')));

// HAProxy must read the file rosterd writes and listen on the socket rosterd reloads through: take both from
// the rosterd config itself, so that they cannot disagree.
const config = await loadConfig(configFile);
const template = config.templates[0];
const masterSocket = template?.reload?.haproxy?.masterSocket;
if (!template || !masterSocket) throw new Error(`${configFile}: the first template needs reload.haproxy.masterSocket`);
const haproxyCfg = template.destination;

let joinDeadline;

/** Renders haproxy.cfg once from the agent's current members, checks it, and installs it. */
async function renderFirstConfig() {
  await mkdir(dirname(haproxyCfg), { recursive: true });
  // The server state file the template names: HAProxy warns when it is missing, and rosterd fills it before
  // each reload. "1" alone is a valid, empty one (the format's version line).
  const stateFile = template.reload.haproxy.stateFile;
  if (stateFile) await access(stateFile).catch(() => writeFile(stateFile, '1\n'));
  const renderer = await createRenderer(config);
  const [result] = await renderer.renderOnce({ dry: true, timeout: 10_000 });
  if (result?.content === undefined) throw new Error(`first render failed: ${result?.error?.message ?? 'no result'}`);
  const candidate = `${haproxyCfg}.first`;
  await writeFile(candidate, result.content);
  await promisify(execFile)('haproxy', ['-c', '-f', candidate]);
  await rename(candidate, haproxyCfg);
  console.log(`[lb-node] first haproxy.cfg rendered with ${result.members} member(s)`);
}

await supervise(
  'lb-node',
  [
    {
      name: 'serf',
      command: 'serf',
      args: [
        'agent',
        `-node=${env.LAB_NODE_NAME ?? 'lb'}`,
        `-bind=${env.LAB_ADDR ?? '0.0.0.0'}:${env.LAB_SERF_BIND ?? 7946}`,
        `-rpc-addr=${rpc}`,
        '-tag',
        'role=lb',
        ...join.map((a) => `-retry-join=${a}`),
        '-retry-interval=1s',
      ],
      // With peers to join, give the join a few seconds, so that the first haproxy.cfg already lists the nodes
      // that are up. Without them, or past that, go on: rosterd adds them as soon as the agent sees them.
      ready: async () => {
        if (!(await tcpAnswers(...splitHostPort(rpc)))) return false;
        joinDeadline ??= Date.now() + 5000;
        return join.length === 0 || Date.now() > joinDeadline || (await serfMembers(rpc)).length > 1;
      },
      stopSignal: 'SIGINT',
    },
    {
      name: 'haproxy',
      command: 'haproxy',
      args: ['-W', '-S', masterSocket, '-f', haproxyCfg],
      prepare: renderFirstConfig,
      ready: async () => /^\d+\s+worker\b/m.test(await masterCli(masterSocket, 'show proc')),
      // SIGUSR1 is a soft stop: stop listening, finish the requests in flight.
      stopSignal: 'SIGUSR1',
    },
    {
      name: 'rosterd',
      command: process.execPath,
      args: [rosterdBin, 'run', '-c', configFile],
      forwardHup: true,
    },
  ],
  { pidDir: dir },
);
