#!/usr/bin/env node
/**
 * A web node of the etcd lab: the Serf lab's web app, then `rosterd announce`, which registers the node in
 * etcd (tags `role=web`, the app's port) under a lease and keeps it alive. The app starts first, so the node
 * is never announced before it can serve; on SIGTERM the announcement stops first (the lease is revoked:
 * the load balancer drops the node at once), then the app serves until requests stop coming, and exits.
 * A node killed with -9 leaves when its lease expires (LAB_TTL).
 *
 * Settings come from the environment:
 *   LAB_NODE_NAME, LAB_ADDR, LAB_APP_PORT   as for the Serf lab's web node
 *   LAB_ETCD_ENDPOINTS   comma-separated etcd client endpoints (default http://127.0.0.1:2379)
 *   LAB_TTL              the lease's time to live (default 5s)
 *   LAB_TAGS             more tags, as a JSON object of strings, e.g. {"weight":"50"}
 */
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import { httpGet, supervise } from '../haproxy-serf/lib.mjs';

const env = process.env;
const name = env.LAB_NODE_NAME ?? hostname();
const addr = env.LAB_ADDR ?? '127.0.0.1';
const appPort = Number(env.LAB_APP_PORT ?? 8080);
const tags = { role: 'web', ...JSON.parse(env.LAB_TAGS ?? '{}') };
const rosterdBin = fileURLToPath(new URL('cli/bin.js', import.meta.resolve('rosterd')));

await supervise(`web-node ${name}`, [
  {
    name: 'app',
    command: process.execPath,
    args: [fileURLToPath(new URL('../haproxy-serf/app.mjs', import.meta.url)), '--name', name, '--port', String(appPort), '--host', addr],
    ready: async () => (await httpGet(addr, appPort, '/health')).status === 200,
    stopTimeout: 30_000,
  },
  {
    name: 'announce',
    command: process.execPath,
    args: [
      rosterdBin,
      'announce',
      `--endpoints=${env.LAB_ETCD_ENDPOINTS ?? 'http://127.0.0.1:2379'}`,
      '--prefix=/lab/web/',
      `--name=${name}`,
      `--address=${addr}`,
      `--port=${appPort}`,
      `--ttl=${env.LAB_TTL ?? '5s'}`,
      ...Object.entries(tags).map(([key, value]) => `--tag=${key}=${value}`),
    ],
  },
]);
