import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpGet } from '../helpers/haproxy.js';
import { startLoad, type LoadReport } from '../helpers/load.js';
import { createPodman, type Podman } from '../helpers/podman.js';
import { freePort } from '../helpers/ports.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

/**
 * `docker/` for real: both images built from `docker/Dockerfile` with podman (base images made locally, passed
 * as build arguments), a load balancer and web nodes on a podman network that resolves container names, as
 * Compose's does (`lb`, and `web` for every web node), and only the load balancer's HTTP port published, on
 * 127.0.0.1. Everything the run makes is removed at the end, whatever happened (see helpers/podman.ts).
 *
 * A run once served no node through the published port for 40 s: netavark 1.4 lets a network's bridge change
 * its MAC address when a container joins, which cuts the others off from the gateway until their ARP entries
 * expire. The helper pins the bridge's address (see helpers/podman.ts).
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DOCKERFILE = `${ROOT}docker/Dockerfile`;

let dir: { path: string; cleanup: () => Promise<void> };
let podman: Podman;
let network: string;
let port: number;
let lb: string;
let images: { lb: string; web: string };
const web = new Map<string, string>();

/** Re-throws with the load balancer's output, so that a failure says what Serf, HAProxy and rosterd saw. */
async function explained<T>(body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (err) {
    const logs = lb ? await podman.logs(lb) : '(no load balancer yet)';
    throw new Error(`${(err as Error).message}\n--- podman logs ${lb} ---\n${logs}`, { cause: err });
  }
}

/** What every lab container gets: the network, a host name and a DNS name (`alias`), as Compose gives them. */
const onNetwork = (hostname: string, alias: string): string[] => ['--network', network, '--network-alias', alias, '--hostname', hostname];

async function startWeb(name: string): Promise<void> {
  web.set(name, await podman.run(name, [...onNetwork(name, 'web'), '-e', 'LAB_SERF_JOIN=lb:7946', images.web]));
}

/** Resolves once every one of `names` has answered through the published port. */
async function served(names: string[], timeout = 60_000): Promise<void> {
  const missing = new Set(names);
  await waitFor(
    async () => {
      const res = await httpGet(port).catch(() => undefined);
      const by = res?.headers['x-served-by'];
      if (typeof by === 'string') missing.delete(decodeURIComponent(by));
      return missing.size === 0;
    },
    `${[...missing].join(', ')} to answer through 127.0.0.1:${port}`,
    { timeout, interval: 20 },
  );
}

const haproxyServers = async (): Promise<string[]> =>
  [...(await podman.exec(['exec', lb, 'cat', '/run/lab/haproxy.cfg'])).matchAll(/^\s+server (\S+) /gm)].map((m) => m[1]!).sort();

beforeAll(async () => {
  dir = await tempDir('rosterd-podman-');
  podman = await createPodman(dir.path);
  const base = await podman.baseImages();
  const started = Date.now();
  const args = { NODE_IMAGE: base.node, RUNTIME_IMAGE: base.runtime };
  images = {
    lb: (await podman.build({ context: ROOT, file: DOCKERFILE, target: 'lb', args })).image,
    web: (await podman.build({ context: ROOT, file: DOCKERFILE, target: 'web', args })).image,
  };
  const sizes = await Promise.all([podman.size(images.lb), podman.size(images.web)]);
  console.log(
    `podman: base images ${base.built ? `made in ${base.seconds.toFixed(0)} s` : 'reused'}, both targets built in ${((Date.now() - started) / 1000).toFixed(0)} s;` +
      ` lb ${(sizes[0] / 1e6).toFixed(0)} MB, web ${(sizes[1] / 1e6).toFixed(0)} MB`,
  );

  network = await podman.network('lab');
  port = await freePort();
  for (const name of ['web1', 'web2', 'web3']) await startWeb(name);
  lb = await podman.run('lb', [...onNetwork('lb', 'lb'), '-e', 'LAB_SERF_JOIN=web:7946', '-p', `127.0.0.1:${port}:80`, images.lb]);
}, 900_000);

afterAll(async () => {
  try {
    await podman?.cleanup();
  } finally {
    await dir?.cleanup();
  }
}, 180_000);

describe('docker/ built and run with podman', () => {
  it('builds two images that share every layer of the base stage, without npm or the compiler', async () => {
    const [lbLayers, webLayers] = await Promise.all([podman.layers(images.lb), podman.layers(images.web)]);
    expect(lbLayers.slice(0, webLayers.length)).toEqual(webLayers);
    // The load balancer adds HAProxy and its three files; the web image adds nothing but settings.
    expect(lbLayers.length - webLayers.length).toBe(2);
    const probe = 'command -v node && ! command -v npm && ! test -e node_modules/typescript && test -d node_modules/liquidjs';
    await expect(podman.exec(['run', '--rm', '--entrypoint', 'sh', images.web, '-c', probe])).resolves.toContain('/usr/local/bin/node');
  });

  it('serves every web node through the port published on 127.0.0.1', async () => {
    await explained(async () => {
      await served(['web1', 'web2', 'web3']);
      expect(await haproxyServers()).toEqual(['web1', 'web2', 'web3']);
    });
  }, 90_000);

  it('serves two more web nodes once they start', async () => {
    await explained(async () => {
      await Promise.all(['web4', 'web5'].map(startWeb));
      await served(['web4', 'web5']);
      expect(await haproxyServers()).toEqual(['web1', 'web2', 'web3', 'web4', 'web5']);
    });
  }, 90_000);

  it('answers every request while a web node is stopped gracefully under load', async () => {
    await explained(async () => {
      const load = startLoad({ port, rate: 100, connections: 4, maxSeconds: 60 });
      let reports: LoadReport[] = [];
      try {
        await waitFor(() => load.served.get('web2'), 'web2 to serve the load');
        // tini passes SIGTERM on: the agent leaves, then the app serves until no request comes for 3 s.
        await podman.exec(['stop', '-t', '30', web.get('web2')!], { timeout: 60_000 });
        expect(await haproxyServers()).toEqual(['web1', 'web3', 'web4', 'web5']);
        // Requests keep going to the others after web2 is gone.
        const after = Date.now();
        await waitFor(() => ['web1', 'web3', 'web4', 'web5'].every((n) => (load.served.get(n)?.last ?? 0) > after), 'the other nodes to serve after the stop');
      } finally {
        reports = await load.stop();
      }
      for (const report of reports) {
        expect(report, `${report.mode}: ${report.errorSamples.join('\n')}`).toMatchObject({ errors: 0, timeouts: 0, non2xx: 0 });
        expect(report.requests).toBeGreaterThan(100);
      }
      expect(await podman.exec(['inspect', '--format', '{{.State.ExitCode}}', web.get('web2')!])).toBe('0\n');
    });
  }, 120_000);

  it('stops the load balancer cleanly on SIGTERM', async () => {
    await explained(async () => {
      await podman.exec(['stop', '-t', '30', lb], { timeout: 60_000 });
      expect(await podman.exec(['inspect', '--format', '{{.State.ExitCode}}', lb])).toBe('0\n');
      expect(await podman.logs(lb)).toMatch(/\[lb-node\] SIGTERM: stopping rosterd, haproxy, serf[\s\S]*\[lb-node\] stopped/);
    });
  }, 90_000);
});
