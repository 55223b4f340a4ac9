import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const execFileAsync = promisify(execFile);

interface Manifest {
  type: string;
  bin: Record<string, string>;
  exports: Record<string, Record<string, string> | string>;
}

/** The package as npm publishes it and as users import it (the built `dist/`, test/global-setup.ts builds it). */
describe('the published package', () => {
  it('is ESM, lists types first in every export, and has an executable entry with a shebang', async () => {
    const manifest = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as Manifest;
    expect(manifest.type).toBe('module');
    for (const [subpath, target] of Object.entries(manifest.exports)) {
      if (typeof target === 'string') continue;
      expect(Object.keys(target)[0], subpath).toBe('types');
    }
    const bin = await readFile(new URL(`../${manifest.bin.rosterd}`, import.meta.url), 'utf8');
    expect(bin.startsWith('#!/usr/bin/env node\n')).toBe(true);
  });

  it('resolves rosterd, rosterd/serf and rosterd/haproxy by name', async () => {
    const script = `const [a, s, h] = await Promise.all([import('rosterd'), import('rosterd/serf'), import('rosterd/haproxy')]);
console.log([typeof a.createRenderer, typeof a.defineConfig, typeof s.SerfClient, typeof h.reloadHaproxy].join(' '));`;
    const { stdout } = await execFileAsync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT });
    expect(stdout.trim()).toBe('function function function function');
  });

  it('packs the build, the docs, the examples and the example config, and no generated output', async () => {
    const { stdout } = await execFileAsync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT });
    const files = (JSON.parse(stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
    expect(files).toEqual(
      expect.arrayContaining(['dist/index.js', 'dist/index.d.ts', 'dist/cli/bin.js', 'dist/serf/index.js', 'dist/haproxy/index.js', 'docs/configuration.md', 'examples/quickstart/renderer.config.yaml', 'examples/quickstart/fixtures/expected/out/haproxy.cfg', 'renderer.config.example.ts']),
    );
    // Golden files mirror the outputs' paths (`fixtures/expected/out/…`): they are sources, not output.
    expect(files.filter((f) => f.startsWith('src/') || f.startsWith('test/') || (f.includes('/out/') && !f.includes('/fixtures/expected/')))).toEqual([]);
  });
});
