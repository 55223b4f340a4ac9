import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startCommand } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * What a command loads: `rosterd announce` runs on every web node and is waited for when a node joins, so
 * it loads the etcd client and nothing of the renderer (config schema, templates, file watching, commands).
 * What a process loaded is recorded by a preloaded module: V8 reports every script it compiles (ES modules
 * whether imported or required, CommonJS, bundles) to an inspector session, and the list is written at exit.
 */

const RENDERER_PACKAGES = ['zod', 'liquidjs', 'chokidar', 'execa', 'cosmiconfig', 'jiti', 'js-yaml', 'diff', 'prom-client', 'msgpack-lite'];

let dir: string;
let cleanup: () => Promise<void>;
let record: string;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  ({ path: dir, cleanup } = await tempDir());
  record = join(dir, 'loaded.txt');
  const preload = join(dir, 'preload.mjs');
  await writeFile(
    preload,
    `import { appendFileSync } from 'node:fs';
import { Session } from 'node:inspector';
const session = new Session();
session.connect();
const scripts = [];
session.on('Debugger.scriptParsed', ({ params }) => { if (params.url) scripts.push(params.url); });
session.post('Debugger.enable');
process.on('exit', () => appendFileSync(${JSON.stringify(record)}, scripts.join('\\n') + '\\n'));\n`,
  );
  env = { NODE_OPTIONS: `--import=${pathToFileURL(preload).href}` };
});
afterAll(() => cleanup?.());

/** The modules of rosterd's own build the last process loaded, as paths below `dist/` (the record stays). */
async function loadedModules(): Promise<Set<string>> {
  const text = await readFile(record, 'utf8');
  return new Set([...text.matchAll(/\/dist\/(\S+\.c?js)$/gm)].map((m) => m[1]!));
}

/**
 * The npm packages the last process loaded: from node_modules, or bundled by the build into `dist/vendor/<name>.(c)js`
 * (scripts/bundle-vendor.mjs), which counts as loading that package.
 */
async function loadedPackages(): Promise<Set<string>> {
  const text = await readFile(record, 'utf8');
  await writeFile(record, '');
  const fromNodeModules = [...text.matchAll(/node_modules\/((?:@[^/]+\/)?[^/]+)\//g)].map((m) => m[1]!);
  const vendored = [...text.matchAll(/\/dist\/vendor\/([^/\s.]+)\.c?js$/gm)].map((m) => m[1]!);
  return new Set([...fromNodeModules, ...vendored]);
}

describe('rosterd announce loads what it needs only', () => {
  it('the etcd client and the logger; nothing of the renderer, and no pretty-printer for a JSON log', async () => {
    // Nothing answers on port 1: announce keeps retrying until SIGTERM.
    const node = startCommand('announce', ['--endpoints', 'http://127.0.0.1:1', '--prefix', '/x/', '--name', 'web-1', '--address', '10.0.0.1'], { env });
    await node.waitForLog(/cannot announce \/x\/web-1: etcd unreachable/);
    expect(await node.stop('SIGTERM')).toBe(0);
    const loaded = await loadedPackages();
    for (const name of ['etcd3', '@grpc/grpc-js', 'commander', 'pino']) expect(loaded).toContain(name);
    for (const name of [...RENDERER_PACKAGES, 'pino-pretty']) expect(loaded).not.toContain(name);
  });

  it('the same for a usage error, which loads not even the etcd client', async () => {
    const run = await runCli(['announce', '--log-format', 'text', '--prefix', '/x/', '--address', 'not an address'], { env });
    expect(run.code).toBe(2);
    const loaded = await loadedPackages();
    expect(loaded).toContain('commander');
    for (const name of [...RENDERER_PACKAGES, 'etcd3', '@grpc/grpc-js']) expect(loaded).not.toContain(name);
  });

  it('a command that renders loads the renderer (the record sees what is loaded)', async () => {
    const run = await runCli(['validate', '-c', join(dir, 'missing.json')], { env });
    expect(run.code).toBe(2);
    const loaded = await loadedPackages();
    expect(loaded).toContain('zod');
  });
});

describe('rosterd render --once loads what the config uses only', () => {
  it('renders the quickstart without a file watcher, a render process, command runner or HAProxy reloader', async () => {
    const example = join(dir, 'quickstart');
    await cp(new URL('../../examples/quickstart', import.meta.url), example, { recursive: true, filter: (path) => !path.includes('/out') });
    const run = await runCli(['render', '--once', '-c', join(example, 'renderer.config.yaml')], { env });
    expect(run.code).toBe(0);
    expect(await readFile(join(example, 'out/haproxy.cfg'), 'utf8')).toContain('server ');
    const modules = await loadedModules();
    for (const module of ['runner/renderer.js', 'sources/file.js']) expect(modules).toContain(module);
    for (const module of ['render/sandbox.js', 'reload/haproxy.js', 'haproxy/reload.js', 'haproxy/runtime.js', 'exec/run.js', 'sources/serf.js']) expect(modules).not.toContain(module);
    const loaded = await loadedPackages();
    for (const name of ['liquidjs', 'zod', 'js-yaml']) expect(loaded).toContain(name);
    for (const name of ['chokidar', 'execa', 'prom-client', 'diff']) expect(loaded).not.toContain(name);

    // `rosterd members` looks once too.
    const members = await runCli(['members', '-c', join(example, 'renderer.config.yaml')], { env });
    expect(members.code).toBe(0);
    expect(members.stdout).toContain('web-1');
    expect(await loadedPackages()).not.toContain('chokidar');
  });
});
