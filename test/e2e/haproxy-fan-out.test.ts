import { mkdir, readdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defineConfig } from '../../src/config/define.js';
import { loadConfig } from '../../src/config/load.js';
import { createRenderer, type Renderer } from '../../src/runner/renderer.js';
import { haproxyConfig, httpGet, startHaproxy, type HaproxyProcess } from '../helpers/haproxy.js';
import { freePort } from '../helpers/ports.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

/**
 * A fan-out into a directory that a real HAProxy reads (`-f sites/`): one `listen` section per member, each
 * with its own bind. The built-in reloader reloads once per batch, and its bind guard knows that the binds of
 * files already installed are the running HAProxy's own.
 */
const SITE = `listen site_{{ member.name | slug }}
  bind 127.0.0.1:{{ member.port }}
  http-request return status 200 content-type text/plain string "site {{ member.name | slug }} v{{ member.tags.v | default: 1 | slug }}"
`;

let dir: string;
let cleanup: () => Promise<void>;
let haproxy: HaproxyProcess | undefined;
let renderer: Renderer | undefined;
beforeEach(async () => {
  ({ path: dir, cleanup } = await tempDir('rosterd-fan-out-haproxy-'));
});
afterEach(async () => {
  await renderer?.stop();
  await haproxy?.stop();
  renderer = undefined;
  haproxy = undefined;
  await cleanup();
});

async function writeMembers(list: { name: string; port: number; tags?: Record<string, string> }[]): Promise<void> {
  await writeFile(join(dir, 'members.json.tmp'), JSON.stringify(list.map((m) => ({ ...m, address: '127.0.0.1' }))));
  await rename(join(dir, 'members.json.tmp'), join(dir, 'members.json'));
}

describe('fan-out into a directory HAProxy reads', () => {
  it('adds and removes sites with one confirmed reload per batch; binds of installed files are no clash', async () => {
    const [main, a, b] = [await freePort(), await freePort(), await freePort()];
    await mkdir(join(dir, 'sites'));
    haproxy = await startHaproxy({ dir, config: haproxyConfig({ port: main, gen: 1 }), extraArgs: ['-f', join(dir, 'sites')] });
    await writeMembers([{ name: 'a', port: a }]);
    renderer = await createRenderer(
      await loadConfig(
        defineConfig({
          sources: { web: { type: 'file', path: 'members.json' } },
          templates: [{ contents: SITE, destination: 'sites/{{ member.name | slug }}.cfg', forEach: 'member', prune: true, reload: { haproxy: { masterSocket: haproxy.masterSocket } } }],
        }),
        { baseDir: dir },
      ),
    );
    const reloads: string[][] = [];
    const failures: string[] = [];
    renderer.on('reloaded', (e) => reloads.push(e.templates));
    renderer.on('checkFailed', (e) => failures.push(e.error.message));
    renderer.on('reloadFailed', (e) => failures.push(e.error.message));
    await renderer.start();
    await waitFor(() => reloads.length === 1, 'the first reload');
    expect((await httpGet(a)).body).toBe('site a v1');

    // b joins and a's file changes, keeping its bind, which the running HAProxy holds: no clash; one reload.
    await writeMembers([{ name: 'a', port: a, tags: { v: '2' } }, { name: 'b', port: b }]);
    await waitFor(() => reloads.length === 2 || failures.length > 0, 'the second reload');
    expect(failures).toEqual([]);
    expect((await httpGet(b)).body).toBe('site b v1');
    expect((await httpGet(a)).body).toBe('site a v2');

    // a leaves: its file is pruned, and after the reload nothing listens on its port any more.
    await writeMembers([{ name: 'b', port: b }]);
    await waitFor(() => reloads.length === 3 || failures.length > 0, 'the third reload');
    expect(failures).toEqual([]);
    expect((await readdir(join(dir, 'sites'))).sort()).toEqual(['.rosterd-manifest.json', 'b.cfg']);
    await waitFor(async () => httpGet(a).then(() => false, () => true), 'the port of a to close', { timeout: 10_000 });
    expect((await httpGet(b)).body).toBe('site b v1');
    expect(reloads).toHaveLength(3);
  });
});
