#!/usr/bin/env node
/**
 * The lab's web app: answers every request with its own name, so that a client can tell which node behind
 * HAProxy served it.
 *
 *   node app.mjs --name web-1 --port 8081 [--host 127.0.0.1]
 *
 * (or APP_NAME, APP_PORT, APP_HOST in the environment).
 *
 * - `GET /health` is HAProxy's health check: 200, or 503 once the app is stopping.
 * - `GET /stream?seconds=N`: a long-lived response, one line a second for N seconds (default 10, at most 300),
 *   like a server-sent events stream: what keeps an old HAProxy worker alive after a reload.
 * - Anything else: 200, header `X-Served-By: <name>` (percent-encoded, so that any name fits in a header)
 *   and body `served by <name>`.
 * - SIGTERM/SIGINT: a lame-duck period first. Requests are still served, but `/health` fails and every
 *   response closes its connection; once no request (other than a health check) has come for 3 s, the app
 *   stops accepting connections, finishes the requests in flight and exits 0 (after 20 s at the latest).
 *   web-node.mjs stops the app only after its Serf agent has left the cluster, but requests keep coming for a
 *   while: the load balancer's rosterd removes the server a few hundred ms later, draining it (its requests in
 *   flight finish here); and when that change is a reload, an old HAProxy worker may still send here the next
 *   request of a keep-alive client that was idle until then. The template closes idle client connections after
 *   2 s (`timeout http-keep-alive`), so 3 s without a request means no worker will send one any more.
 */
import { createServer } from 'node:http';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { name: { type: 'string' }, port: { type: 'string' }, host: { type: 'string' } } });
const name = values.name ?? process.env.APP_NAME ?? hostname();
const port = Number(values.port ?? process.env.APP_PORT ?? 8080);
const host = values.host ?? process.env.APP_HOST ?? '0.0.0.0';
/** Stop once no request has come for this long (more than the load balancer's `timeout http-keep-alive`)... */
const QUIET_MS = 3000;
/** ...or after this long anyway. */
const DRAIN_MAX_MS = 20_000;

let stopping = false;
let lastRequest = Date.now();
const servedBy = encodeURIComponent(name);

const server = createServer((req, res) => {
  if (stopping) res.setHeader('connection', 'close');
  if (req.url === '/health') {
    res.writeHead(stopping ? 503 : 200, { 'content-type': 'text/plain' });
    res.end(stopping ? 'stopping\n' : 'ok\n');
    return;
  }
  lastRequest = Date.now();
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'x-served-by': servedBy });
  if (req.url?.startsWith('/stream')) {
    const seconds = Math.min(300, Number(new URL(req.url, 'http://app').searchParams.get('seconds') ?? 10) || 10);
    let sent = 0;
    const tick = setInterval(() => {
      lastRequest = Date.now();
      res.write(`${name} ${++sent}\n`);
      if (sent >= seconds) {
        clearInterval(tick);
        res.end();
      }
    }, 1000);
    res.on('close', () => clearInterval(tick));
    return;
  }
  res.end(`served by ${name}\n`);
});
// HAProxy keeps idle connections to servers for reuse and closes them itself (pool-purge-delay, 5 s by
// default). Keeping them open longer here means HAProxy, not the app, closes an idle connection, so it never
// sends a request on a connection the app is closing at the same moment.
server.keepAliveTimeout = 65_000;

server.listen(port, host, () => console.log(`${name}: listening on ${host}:${port}`));

function stop(signal) {
  if (stopping) return;
  stopping = true;
  const since = Date.now();
  console.log(`${name}: ${signal}, serving until the requests stop`);
  const timer = setInterval(() => {
    if (Date.now() - lastRequest < QUIET_MS && Date.now() - since < DRAIN_MAX_MS) return;
    clearInterval(timer);
    console.log(`${name}: no request for ${QUIET_MS} ms, stopping`);
    // close() stops accepting and, since Node 19, also closes idle keep-alive connections.
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 10_000).unref();
  }, 100);
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
