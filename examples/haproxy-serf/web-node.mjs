#!/usr/bin/env node
/**
 * A web node of the lab: the web app (app.mjs) and a Serf agent that advertises it with the tags `role=web`
 * and `port=<app port>`, run by the supervisor of lib.mjs. The app starts first, so the node is never
 * advertised before it can serve; on SIGTERM the agent leaves the cluster first (SIGINT: a graceful leave,
 * which the load balancer's rosterd sees within a few hundred ms), then the app serves until requests stop
 * coming, and exits.
 *
 * `lab.mjs add` runs this file natively; the Docker web image runs it as its entry point. Settings come from
 * the environment (all optional):
 *   LAB_NODE_NAME  the node's name in Serf and in X-Served-By (default: the host name)
 *   LAB_ADDR       the address the app and the agent bind to and advertise (default: every interface; the
 *                  agent then advertises the host's first private address)
 *   LAB_APP_PORT   default 8080
 *   LAB_SERF_BIND  the agent's gossip port (default 7946)
 *   LAB_SERF_RPC   the agent's RPC address (default 127.0.0.1:7373)
 *   LAB_SERF_JOIN  comma-separated gossip addresses to join, retried every second until one answers
 *   LAB_SERF_TAGS  more tags, as a JSON object of strings, e.g. {"weight":"50"}
 */
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import { httpGet, splitHostPort, supervise, tcpAnswers } from './lib.mjs';

const env = process.env;
const name = env.LAB_NODE_NAME ?? hostname();
const addr = env.LAB_ADDR;
const appPort = Number(env.LAB_APP_PORT ?? 8080);
const rpc = env.LAB_SERF_RPC ?? '127.0.0.1:7373';
const tags = { role: 'web', port: String(appPort), ...JSON.parse(env.LAB_SERF_TAGS ?? '{}') };

await supervise(`web-node ${name}`, [
  {
    name: 'app',
    command: process.execPath,
    args: [fileURLToPath(new URL('app.mjs', import.meta.url)), '--name', name, '--port', String(appPort), '--host', addr ?? '0.0.0.0'],
    ready: async () => (await httpGet(addr ?? '127.0.0.1', appPort, '/health')).status === 200,
    // The app serves until the load balancer stops sending requests (up to 20 s), then finishes.
    stopTimeout: 30_000,
  },
  {
    name: 'serf',
    command: 'serf',
    args: [
      'agent',
      `-node=${name}`,
      `-bind=${addr ?? '0.0.0.0'}:${env.LAB_SERF_BIND ?? 7946}`,
      `-rpc-addr=${rpc}`,
      ...Object.entries(tags).flatMap(([key, value]) => ['-tag', `${key}=${value}`]),
      ...(env.LAB_SERF_JOIN ?? '').split(',').filter(Boolean).map((a) => `-retry-join=${a}`),
      '-retry-interval=1s',
    ],
    ready: () => tcpAnswers(...splitHostPort(rpc)),
    // SIGINT is Serf's graceful leave: the others learn at once that the node left, instead of suspecting a
    // failure for seconds.
    stopSignal: 'SIGINT',
  },
]);
