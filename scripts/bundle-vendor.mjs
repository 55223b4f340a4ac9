// Replaces the built `dist/vendor/<name>.js` modules (see src/vendor/) with bundles of what they re-export, so
// that a start loads one file per vendored package instead of its many modules. Runs after `tsc` in the build.
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const names = readdirSync(new URL('../src/vendor/', import.meta.url)).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'));

for (const name of names) {
  const pkg = name.replace(/\.ts$/, '');
  const { version, license } = JSON.parse(readFileSync(new URL(`../node_modules/${pkg}/package.json`, import.meta.url), 'utf8'));
  const notice = readFileSync(new URL(`../node_modules/${pkg}/LICENSE`, import.meta.url), 'utf8').trim();
  // tsc's source map describes the module that the bundle replaces.
  rmSync(new URL(`../dist/vendor/${pkg}.js.map`, import.meta.url), { force: true });
  await build({
    banner: { js: `/*! ${pkg} ${version} (${license}), bundled from its package.\n${notice}\n*/` },
    absWorkingDir: root,
    entryPoints: [`src/vendor/${name}`],
    outfile: `dist/vendor/${pkg}.js`,
    allowOverwrite: true,
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    // Readable, and a stack trace into it still names zod's functions.
    minify: false,
    legalComments: 'inline',
    sourcemap: false,
    logLevel: 'warning',
  });
}
